"""Checks the meter (`moto_meter.py`) against DynamoDB's billing rules on a
small table with a KEYS_ONLY index: `make soak` runs it before the soak.

Usage: moto_meter_check.py ENDPOINT (a moto_server.py with MORAG_METER=1)
"""
import json
import sys
import urllib.request

import boto3

endpoint = sys.argv[1]
meter = endpoint + "/_morag/meter"
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")
ddb = boto3.client("dynamodb", **kw)
table = "meter-check"
ddb.create_table(
    TableName=table, BillingMode="PAY_PER_REQUEST",
    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "g", "AttributeType": "S"}],
    GlobalSecondaryIndexes=[{"IndexName": "ByG", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                             "Projection": {"ProjectionType": "KEYS_ONLY"}}])
urllib.request.urlopen(urllib.request.Request(meter, method="DELETE"))
s = lambda v: {"S": v}  # noqa: E731
# 3 KB item, not in the index: 3 write units
ddb.put_item(TableName=table, Item={"pk": s("a"), "x": s("y" * 3000)})
# small item in the index: 1 + 1
ddb.put_item(TableName=table, Item={"pk": s("b"), "g": s("k")})
# its index key moves: 1 + 2 (delete and put of the entry)
ddb.update_item(TableName=table, Key={"pk": s("b")}, UpdateExpression="SET g = :v",
                ExpressionAttributeValues={":v": s("k2")})
# a failed condition is billed too: 1
try:
    ddb.put_item(TableName=table, Item={"pk": s("b")}, ConditionExpression="attribute_not_exists(pk)")
except ddb.exceptions.ConditionalCheckFailedException:
    pass
# eventually consistent 0.5, strongly consistent 1
ddb.get_item(TableName=table, Key={"pk": s("a")})
ddb.get_item(TableName=table, Key={"pk": s("a")}, ConsistentRead=True)
# a transaction counts double: 2 x 1 + 2 x 3
ddb.transact_write_items(TransactItems=[
    {"Put": {"TableName": table, "Item": {"pk": s("c")}}},
    {"Update": {"TableName": table, "Key": {"pk": s("a")}, "UpdateExpression": "SET z = :v",
                "ExpressionAttributeValues": {":v": s("1")}}}])
sqs = boto3.client("sqs", **kw)
queue = sqs.create_queue(QueueName="meter-check")["QueueUrl"]
sqs.send_message(QueueUrl=queue, MessageBody="x")
sqs.receive_message(QueueUrl=queue)
sqs.receive_message(QueueUrl=queue)
got = json.load(urllib.request.urlopen(meter))
want = {
    "write_units": {"dynamodb.PutItem": 3 + 2 + 1, "dynamodb.UpdateItem": 3, "dynamodb.TransactWriteItems": 8},
    "read_units": {"dynamodb.GetItem": 1.5},
}
requests = got["requests"]
problems = [f"{kind}[{op}] = {got[kind].get(op)}, expected {n}"
            for kind, ops in want.items() for op, n in ops.items() if got[kind].get(op) != n]
for op, n in {"dynamodb.PutItem": 3, "sqs.SendMessage": 1, "sqs.ReceiveMessage": 1,
              "sqs.ReceiveMessage (empty)": 1}.items():
    if requests.get(op) != n:
        problems.append(f"requests[{op}] = {requests.get(op)}, expected {n}")
ddb.delete_table(TableName=table)
sqs.delete_queue(QueueUrl=queue)
urllib.request.urlopen(urllib.request.Request(meter, method="DELETE"))
if problems:
    sys.exit("the meter does not count as DynamoDB bills:\n  " + "\n  ".join(problems))
print("meter: write units, read units, transactions, index writes and requests as billed")

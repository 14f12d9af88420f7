"""Checks the launcher's TransactWriteItems (`moto_txn.py`) against the
moto server at URL: what DynamoDB answers, and that a cancelled or failed
transaction leaves nothing behind. Run by `make test`.

Usage: moto_txn_check.py URL
"""
import sys
import uuid

import boto3
from botocore.exceptions import ClientError


def main(url):
    ddb = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    table = "txn-check-" + uuid.uuid4().hex[:12]
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )

    def key(pk, sk="S"):
        return {"pk": {"S": pk}, "sk": {"S": sk}}

    def exists(pk, sk="S"):
        return "Item" in ddb.get_item(TableName=table, Key=key(pk, sk), ConsistentRead=True)

    def put(pk, condition=True, **attrs):
        op = {"TableName": table, "Item": {**key(pk), **attrs}}
        if condition:
            op["ConditionExpression"] = "attribute_not_exists(pk)"
        return {"Put": op}

    failures = []

    def check(what, ok):
        print(("ok      " if ok else "FAILED  ") + what)
        if not ok:
            failures.append(what)

    # a transaction applies every write
    ddb.transact_write_items(TransactItems=[put("A", n={"N": "1"}), put("B"), {
        "Update": {"TableName": table, "Key": key("C"), "UpdateExpression": "ADD n :one",
                   "ExpressionAttributeValues": {":one": {"N": "1"}}}}])
    check("a transaction writes all its items", exists("A") and exists("B") and exists("C"))

    # a failed condition cancels it: reasons per item, nothing written, old item returned
    try:
        ddb.transact_write_items(TransactItems=[
            put("D"),
            {"Put": {"TableName": table, "Item": key("A"), "ConditionExpression": "attribute_not_exists(pk)",
                     "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
            {"ConditionCheck": {"TableName": table, "Key": key("B"), "ConditionExpression": "attribute_exists(pk)"}},
        ])
        check("a failed condition cancels the transaction", False)
    except ClientError as e:
        reasons = e.response.get("CancellationReasons", [])
        check("cancelled with one reason per item",
              [r.get("Code") for r in reasons] == ["None", "ConditionalCheckFailed", "None"])
        check("the failed item comes back (ALL_OLD)", reasons[1].get("Item", {}).get("n") == {"N": "1"})
    check("a cancelled transaction writes nothing", not exists("D"))

    # a write that fails after others were written puts them back
    try:
        ddb.transact_write_items(TransactItems=[
            put("E"),
            {"Delete": {"TableName": table, "Key": key("B")}},
            {"Update": {"TableName": table, "Key": key("A"), "UpdateExpression": "SET n = n + :s",
                        "ExpressionAttributeValues": {":s": {"S": "text"}}}},
        ])
        check("an invalid update fails the transaction", False)
    except ClientError as e:
        check("an invalid update fails the transaction", e.response["Error"]["Code"] == "ValidationException")
    check("a failed transaction's earlier writes are undone", not exists("E") and exists("B"))

    # two operations on one item are refused
    try:
        ddb.transact_write_items(TransactItems=[put("F", condition=False), put("F", condition=False)])
        check("two operations on one item are refused", False)
    except ClientError as e:
        check("two operations on one item are refused", e.response["Error"]["Code"] == "ValidationException")
    check("the refused transaction writes nothing", not exists("F"))

    ddb.delete_table(TableName=table)
    if failures:
        sys.exit(f"{len(failures)} TransactWriteItems checks failed")


if __name__ == "__main__":
    main(sys.argv[1])

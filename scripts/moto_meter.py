"""A meter for moto server: counts every AWS request by service and
operation, and DynamoDB's request units the way on-demand bills them.

Enabled by `moto_server.py` when MORAG_METER=1 (`make soak` sets it).
`GET /_morag/meter` answers the counts as JSON; `DELETE /_morag/meter`
resets them.

Request units follow DynamoDB's on-demand rules, from item sizes (attribute
names plus values, as DynamoDB sizes them):
- a write: one write unit per KB of the larger of the item before and
  after (at least one, conditional failures included); a transaction's
  items count double (ConditionCheck items too);
- each global secondary index the write touches: one more write per KB of
  the projected entry, two when the write moves the entry to a new key;
- a read: one read unit per 4 KB read (a Query sums its items before
  rounding), half for an eventually consistent read, double in a
  transaction.
A Query's units are counted on the items it returned; with a filter,
DynamoDB bills the items it read, which the emulator does not report
(our code filters nowhere on a hot path).
"""
import base64
import collections
import io
import json
import math
import threading

_LOCK = threading.Lock()
_COUNTS = {"requests": collections.Counter(), "read_units": collections.Counter(),
           "write_units": collections.Counter()}


def _value_size(v):
    (kind, x), = v.items()
    if kind == "S":
        return len(x.encode())
    if kind == "N":
        digits = x.lstrip("-").replace(".", "").lstrip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(base64.b64decode(x))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in x)
    if kind == "NS":
        return sum(_value_size({"N": n}) for n in x)
    if kind == "BS":
        return sum(len(base64.b64decode(b)) for b in x)
    if kind == "L":
        return 3 + sum(1 + _value_size(e) for e in x)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(e) for k, e in x.items())
    return 0


def item_size(item):
    return sum(len(k.encode()) + _value_size(v) for k, v in (item or {}).items())


def _backend():
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends
    return dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]


def _table(name):
    try:
        return _backend().get_table(name)
    except Exception:  # an unknown table: the request itself fails
        return None


def _key_of(table, item):
    key = {table.hash_key_attr: item[table.hash_key_attr]}
    if table.range_key_attr:
        key[table.range_key_attr] = item[table.range_key_attr]
    return key


def _current(table, key):
    try:
        found = table.get_item(*_key_values(table, key))
    except Exception:
        return None
    return found.to_json()["Attributes"] if found else None


def _key_values(table, key):
    from moto.dynamodb.models.dynamo_type import DynamoType
    hash_value = DynamoType(key[table.hash_key_attr])
    range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
    return hash_value, range_value


def _index_writes(table, old, new):
    """Write units for the table's global indexes when `old` becomes `new`."""
    units = 0
    for index in table.global_indexes or []:
        keys = [k["AttributeName"] for k in index.schema]

        def entry(item):
            if not item or any(k not in item for k in keys):
                return None
            if index.projection.get("ProjectionType") == "KEYS_ONLY":
                wanted = set(keys) | {table.hash_key_attr, table.range_key_attr}
                return {k: v for k, v in item.items() if k in wanted}
            return item

        before, after = entry(old), entry(new)
        if before is None and after is None:
            continue
        if before is not None and after is not None:
            if [before[k] for k in keys] != [after[k] for k in keys]:
                units += math.ceil(item_size(before) / 1024) + math.ceil(item_size(after) / 1024)
            elif before != after:
                units += max(1, math.ceil(item_size(after) / 1024))
        else:
            units += max(1, math.ceil(item_size(before or after) / 1024))
    return units


def _write(table_name, key_or_item, is_item):
    """(table, key) for one write, read before it runs."""
    table = _table(table_name)
    if table is None:
        return None
    key = _key_of(table, key_or_item) if is_item else key_or_item
    return table, key, _current(table, key)


def _write_units(touched, factor):
    units = 0
    for table, key, old in touched:
        new = _current(table, key)
        units += factor * max(1, math.ceil(max(item_size(old), item_size(new)) / 1024))
        units += factor * _index_writes(table, old, new)
    return units


def _read_units(size, consistent, factor=1):
    units = math.ceil(size / 4096) or 1
    return factor * (units if consistent else units / 2)


def _dynamodb(op, request, app, environ, start_response):
    touched, factor = [], 1
    if op == "PutItem":
        touched = [_write(request["TableName"], request["Item"], True)]
    elif op in ("UpdateItem", "DeleteItem"):
        touched = [_write(request["TableName"], request["Key"], False)]
    elif op == "BatchWriteItem":
        for name, writes in request.get("RequestItems", {}).items():
            for w in writes:
                if "PutRequest" in w:
                    touched.append(_write(name, w["PutRequest"]["Item"], True))
                else:
                    touched.append(_write(name, w["DeleteRequest"]["Key"], False))
    elif op == "TransactWriteItems":
        factor = 2
        for entry in request.get("TransactItems", []):
            (kind, spec), = entry.items()
            if kind == "Put":
                touched.append(_write(spec["TableName"], spec["Item"], True))
            else:
                touched.append(_write(spec["TableName"], spec["Key"], False))
    touched = [t for t in touched if t is not None]
    body = b"".join(app(environ, start_response))
    if touched:
        units = _write_units(touched, factor)
        with _LOCK:
            _COUNTS["write_units"]["dynamodb." + op] += units
        return body
    try:
        answer = json.loads(body or b"{}")
    except ValueError:
        return body
    consistent = bool(request.get("ConsistentRead"))
    units = 0
    if op == "GetItem" and "Item" in answer:
        units = _read_units(item_size(answer["Item"]), consistent)
    elif op == "GetItem":
        units = _read_units(0, consistent)
    elif op in ("Query", "Scan"):
        units = _read_units(sum(item_size(i) for i in answer.get("Items", [])), consistent)
    elif op == "TransactGetItems":
        units = sum(_read_units(item_size(r.get("Item")), True, 2) for r in answer.get("Responses", []))
    elif op == "BatchGetItem":
        units = sum(_read_units(item_size(i), consistent)
                    for items in answer.get("Responses", {}).values() for i in items)
    if units:
        with _LOCK:
            _COUNTS["read_units"]["dynamodb." + op] += units
    return body


def _operation(environ, body):
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target.startswith("DynamoDB_"):
        return "dynamodb", target.split(".", 1)[1]
    if target.startswith("AmazonSQS."):
        return "sqs", target.split(".", 1)[1]
    auth = environ.get("HTTP_AUTHORIZATION", "")
    scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/") if "Credential=" in auth else []
    service = scope[3] if len(scope) > 3 else ""
    if service == "s3" or (not service and "X-Amz-Signature" in environ.get("QUERY_STRING", "")):
        key = environ.get("PATH_INFO", "").strip("/")
        return "s3", environ["REQUEST_METHOD"] + (" object" if "/" in key else " bucket")
    action = ""
    for pair in (environ.get("QUERY_STRING", "") + "&" + body.decode("utf-8", "replace")).split("&"):
        if pair.startswith("Action="):
            action = pair[len("Action="):]
    return service or "other", action or environ["REQUEST_METHOD"]


def _serve_meter(environ, start_response):
    if environ["REQUEST_METHOD"] == "DELETE":
        with _LOCK:
            for counter in _COUNTS.values():
                counter.clear()
    with _LOCK:
        body = json.dumps({k: dict(v) for k, v in _COUNTS.items()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def install(backend_lock):
    """Wraps moto's WSGI dispatcher with the meter; a DynamoDB request holds
    `backend_lock` (the launcher's) throughout, so the items read before and
    after it are the ones it wrote."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original = DomainDispatcherApplication.__call__

    def metered(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/_morag/meter":
            return _serve_meter(environ, start_response)
        if path.startswith("/moto-api"):
            return original(self, environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        service, op = _operation(environ, body)
        with _LOCK:
            _COUNTS["requests"][f"{service}.{op}"] += 1
        if service == "sqs" and op == "ReceiveMessage":
            # an empty receive is a poller's idle cost, not a message's
            answer = b"".join(original(self, environ, start_response))
            if b'"Messages"' not in answer and b"<Message>" not in answer:
                with _LOCK:
                    _COUNTS["requests"]["sqs.ReceiveMessage"] -= 1
                    _COUNTS["requests"]["sqs.ReceiveMessage (empty)"] += 1
            return [answer]
        if service != "dynamodb":
            return original(self, environ, start_response)
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return original(self, environ, start_response)
        app = lambda e, s: original(self, e, s)  # noqa: E731
        with backend_lock:
            return [_dynamodb(op, request, app, environ, start_response)]

    DomainDispatcherApplication.__call__ = metered

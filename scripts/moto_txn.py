"""TransactWriteItems for moto without copying the table.

moto keeps a deep copy of every table a transaction touches, one per item
of the transaction, so that it can put the copy back if the transaction is
cancelled: each recorder write costs time proportional to the table, and a
local stack slows down as it fills. This version does what DynamoDB does:
every condition is checked first against the state before the transaction
(items in one transaction are distinct, so checking them one by one is the
same); a cancelled transaction has written nothing, so there is nothing to
put back. Only if a write itself fails (an invalid update expression) are
the items written so far put back, from copies of just those items.
"""
import copy

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)

OPERATIONS = {"ConditionCheck", "Put", "Delete", "Update"}


def _key(backend, op_type, op):
    if op_type != "Put":
        return op["Key"]
    attrs = op["Item"]
    table = backend.get_table(op["TableName"])
    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attrs[table.range_key_attr]
    return key


def transact_write_items(self, transact_items):
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    seen = set()
    errors = []
    plan = []
    # 1. every check, nothing written
    for item in transact_items:
        if len(item) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(item.items()))
        original_item = None
        try:
            if op_type not in OPERATIONS:
                raise ValueError("Unsupported transaction operation")
            table_name = op["TableName"]
            key = _key(self, op_type, op)
            marker = (str(table_name), str(dict(sorted(key.items()))))
            if marker in seen:
                raise MultipleTransactionsException()
            seen.add(marker)
            current = self.get_item(table_name, key)
            condition = op.get("ConditionExpression")
            if condition is not None:
                check = get_filter_expression(
                    condition,
                    op.get("ExpressionAttributeNames"),
                    op.get("ExpressionAttributeValues"),
                )
                if not check.expr(current):
                    if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                        original_item = current.to_json()["Attributes"]
                    raise ConditionalCheckFailed(item=original_item)
            plan.append((op_type, op, table_name, key, current))
            errors.append((None, None, None))
        except MockValidationException:
            raise
        except ConditionalCheckFailed as e:
            errors.append(("ConditionalCheckFailed", str(e.message), original_item))
        except Exception as e:  # noqa: BLE001 (moto reports any other failure per item)
            errors.append((type(e).__name__, str(e), original_item))
    if any(code is not None for code, _, _ in errors):
        raise TransactionCanceledException(errors)
    # 2. the writes; a failing one puts back what was written before it
    written = []
    try:
        for op_type, op, table_name, key, before in plan:
            if op_type == "ConditionCheck":
                continue
            snapshot = copy.deepcopy(before.to_json()["Attributes"]) if before else None
            names = op.get("ExpressionAttributeNames")
            values = op.get("ExpressionAttributeValues")
            if op_type == "Put":
                self.put_item(table_name, op["Item"])
            elif op_type == "Delete":
                self.delete_item(table_name, key)
            else:
                self.update_item(
                    table_name,
                    key,
                    update_expression=op["UpdateExpression"],
                    expression_attribute_names=names,
                    expression_attribute_values=values,
                )
            written.append((table_name, key, snapshot))
    except Exception:
        for table_name, key, snapshot in reversed(written):
            if snapshot is None:
                self.delete_item(table_name, key)
            else:
                self.put_item(table_name, snapshot)
        raise

"""moto server, with two fixes to its DynamoDB backend.

1. It applies one write at a time.

moto's TransactWriteItems takes no lock and, when a transaction is cancelled,
"rolls back" by putting back a copy of the table taken when it began, which
erases whatever other requests wrote meanwhile (seen: an idempotency record
lost, then a second task created for the same key). DynamoDB isolates
transactions; serializing the backend's reads and writes gives the emulator
that isolation.

2. Its TransactWriteItems no longer copies the table (`moto_txn.py`): the
copy made every transaction cost time proportional to the table (58x slower
with 50,000 items than with 1,000); checks first, then writes, as DynamoDB
does, gives the same answers at a cost that does not grow with the table.

With MORAG_METER=1 it also counts requests and DynamoDB request units
(`moto_meter.py`, read by `make soak` at `/_morag/meter`).

Everything else is moto's own `moto_server`.

Usage: moto_server.py -H 127.0.0.1 -p PORT
"""
import functools
import os
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import moto_txn  # noqa: E402 (next to this file)

DynamoDBBackend.transact_write_items = moto_txn.transact_write_items

_LOCK = threading.RLock()

for _name in ("transact_write_items", "put_item", "update_item", "delete_item",
              "get_item", "query", "batch_write_item", "transact_get_items"):
    _original = getattr(DynamoDBBackend, _name, None)
    if _original is None:
        continue

    @functools.wraps(_original)
    def _serialized(self, *args, _original=_original, **kwargs):
        with _LOCK:
            return _original(self, *args, **kwargs)

    setattr(DynamoDBBackend, _name, _serialized)

if os.environ.get("MORAG_METER") == "1":
    import moto_meter  # noqa: E402

    moto_meter.install(_LOCK)

if __name__ == "__main__":
    main()

"""DynamoDB's key size limits, which the in-process emulation does not check on reads.

Real DynamoDB refuses a partition key over 2,048 bytes or a sort key over 1,024 bytes with a
ValidationException (a 500 if it escaped a route); these wrappers make the emulation do the same.
"""

from __future__ import annotations

from typing import Any

import pytest

MAX_PARTITION_KEY_BYTES = 2048
MAX_SORT_KEY_BYTES = 1024


def _refuse_oversize(operation: str, pk: str, sk: str | None = None) -> None:
    from botocore.exceptions import ClientError

    if len(pk.encode()) > MAX_PARTITION_KEY_BYTES or (sk is not None and len(sk.encode()) > MAX_SORT_KEY_BYTES):
        error = {"Code": "ValidationException", "Message": "Size of a key attribute exceeds the maximum size limit"}
        raise ClientError({"Error": error}, operation)


def enforce_key_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentplane.store import Store

    real_get, real_get_many, real_query = Store.get, Store.get_many, Store.query

    def get(self: Store, key: Any, *args: Any, **kwargs: Any) -> Any:
        _refuse_oversize("GetItem", key["PK"], key["SK"])
        return real_get(self, key, *args, **kwargs)

    def get_many(self: Store, keys: Any) -> Any:
        for key in keys:
            _refuse_oversize("BatchGetItem", key["PK"], key["SK"])
        return real_get_many(self, keys)

    def query(self: Store, partition: str, *args: Any, **kwargs: Any) -> Any:
        _refuse_oversize("Query", partition)
        return real_query(self, partition, *args, **kwargs)

    monkeypatch.setattr(Store, "get", get)
    monkeypatch.setattr(Store, "get_many", get_many)
    monkeypatch.setattr(Store, "query", query)

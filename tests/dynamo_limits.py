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

    # Every read of the store reaches the table through these two.
    real_get_raw, real_query_raw = Store._get_raw, Store._query_raw

    def get_raw(self: Store, keys: Any, *args: Any, **kwargs: Any) -> Any:
        for key in keys:
            _refuse_oversize("GetItem" if len(keys) == 1 else "BatchGetItem", key["PK"], key["SK"])
        return real_get_raw(self, keys, *args, **kwargs)

    def query_raw(self: Store, spec: Any, *args: Any, **kwargs: Any) -> Any:
        _refuse_oversize("Query", spec.partition)
        return real_query_raw(self, spec, *args, **kwargs)

    monkeypatch.setattr(Store, "_get_raw", get_raw)
    monkeypatch.setattr(Store, "_query_raw", query_raw)

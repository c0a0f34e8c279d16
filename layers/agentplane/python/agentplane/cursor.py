"""Opaque pagination cursors, signed and bound to the workspace and the query that made them.

A cursor replayed against another workspace, another list or other filters is refused as a 400,
so a cursor can never be used to read past a tenant boundary.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from agentplane.errors import InvalidCursor
from agentplane.settings import get_settings


def _scope_digest(scope: str, query: Mapping[str, Any]) -> str:
    canonical = json.dumps(
        {"scope": scope, "query": {k: v for k, v in sorted(query.items()) if v is not None}},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _sign(payload: bytes) -> str:
    key = get_settings().signing_secret.encode()
    return base64.urlsafe_b64encode(hmac.new(key, payload, hashlib.sha256).digest()[:16]).decode().rstrip("=")


def encode_cursor(last_key: Mapping[str, Any] | None, scope: str, query: Mapping[str, Any]) -> str | None:
    """`scope` names the list and its tenant (e.g. 'tasks:ws_123'); `query` its filters."""
    if not last_key:
        return None
    payload = json.dumps({"k": dict(last_key), "s": _scope_digest(scope, query)}, separators=(",", ":")).encode()
    body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return f"{body}.{_sign(payload)}"


def decode_cursor(cursor: str | None, scope: str, query: Mapping[str, Any]) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        body, signature = cursor.split(".", 1)
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (ValueError, TypeError) as exc:
        raise InvalidCursor("the cursor is malformed") from exc
    if not hmac.compare_digest(signature.encode(), _sign(payload).encode()):  # bytes: any text compares
        raise InvalidCursor("the cursor was not issued by this API")
    data = json.loads(payload)
    if data.get("s") != _scope_digest(scope, query):
        raise InvalidCursor("the cursor belongs to another list or other filters")
    key = data.get("k")
    if not isinstance(key, dict):
        raise InvalidCursor("the cursor is malformed")
    return key

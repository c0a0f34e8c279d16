"""API keys: workspace-bound bearer secrets with scopes, instant revocation, rotation with a grace
period, rolling, and a per-minute usage log.

A key is one record in its workspace (what lists show) plus one token item per secret it has had
(found by hash, as every bearer secret is). The record remembers the hash of the current secret
and of the secrets still inside a rotation grace period, so switching the key off, revoking it or
deleting it reaches every secret that still works, in the same transaction as its audit row.

Making, reading and changing keys is `crud`, ending them `revocation`, replacing their secret
`rolling`, reading their usage log `usage`; what they share is `records` and `grants`. Counting
each request a key makes is below.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agentplane import keys
from agentplane.ids import iso
from agentplane.logic.api_keys.crud import create_api_key, get_api_key, list_api_keys, update_api_key
from agentplane.logic.api_keys.records import MAX_GRACE_SECRETS, status_of
from agentplane.logic.api_keys.revocation import (
    KeyRevocation,
    delete_api_key,
    live_key_revocations,
    revoke_api_key,
    revoke_keys_made_by,
)
from agentplane.logic.api_keys.rolling import roll_api_key, rotate_api_key
from agentplane.logic.api_keys.usage import get_usage
from agentplane.store import ConditionFailed, Expr, TransactionFailed, Update, attr_eq, exists, get_store, not_exists

__all__ = [
    "MAX_GRACE_SECRETS",
    "KeyRevocation",
    "count_request",
    "create_api_key",
    "delete_api_key",
    "get_api_key",
    "get_usage",
    "list_api_keys",
    "live_key_revocations",
    "record_use",
    "reset_pending_usage",
    "revoke_api_key",
    "revoke_keys_made_by",
    "roll_api_key",
    "rotate_api_key",
    "status_of",
    "update_api_key",
]

USAGE_TTL_SECONDS = 30 * 86400
# Usage buckets are folded into the key's running total once they are this old, so a request still
# in flight for a minute that just ended is never lost from the total.
FOLD_AFTER_SECONDS = 120
FOLD_BATCH = 100


def _now() -> int:
    return int(time.time())


def _iso_epoch(epoch: int) -> str:
    return iso(datetime.fromtimestamp(epoch, UTC))


def _not_deleted() -> Expr:
    return Expr("attribute_not_exists(#deleted)", {"#deleted": "deleted_at"})


# --- usage ---------------------------------------------------------------------------------------


def _minute_label(epoch: int) -> str:
    return datetime.fromtimestamp(epoch - epoch % 60, UTC).strftime("%Y-%m-%dT%H:%MZ")


# The first requests of a key each minute are written one by one, so a key used now and then
# shows every call at once; past that, a busy key's requests are written in batches.
USAGE_WRITTEN_AT_ONCE = 5
USAGE_BATCH = 10


@dataclass
class _PendingUse:
    minute: int  # epoch of the minute being counted
    written_at_once: int = 0
    requests: int = 0  # counted, not yet written


_pending: dict[tuple[str, str], _PendingUse] = {}
_pending_lock = threading.Lock()


def count_request(workspace_id: str, key_id: str, now: int | None = None) -> None:
    """Count one request made with a workspace key (API key or agent key). Called on every call
    whose check passed, so the usage log counts exactly what the key did.

    Per Lambda instance and minute, the first USAGE_WRITTEN_AT_ONCE requests of a key are written
    at once; later ones every USAGE_BATCH requests, and what is left with the key's first request
    of a later minute. A busy key's figures therefore trail by less than a batch per instance, and
    an instance that is recycled loses at most that much.
    """
    now = _now() if now is None else now
    minute = now - now % 60
    writes: dict[int, int] = {}  # minute -> requests to add to its bucket
    with _pending_lock:
        pending = _pending.get((workspace_id, key_id))
        if pending is None or pending.minute != minute:
            if pending is not None and pending.requests:
                # Into the minute they were made in, unless that one may be folded already: the
                # running total only ever folds forward, so they go to this minute instead.
                late = pending.minute <= now - FOLD_AFTER_SECONDS
                writes[minute if late else pending.minute] = pending.requests
            pending = _pending[(workspace_id, key_id)] = _PendingUse(minute)
        if pending.written_at_once < USAGE_WRITTEN_AT_ONCE:
            pending.written_at_once += 1
            writes[minute] = writes.get(minute, 0) + 1
        else:
            pending.requests += 1
            if pending.requests >= USAGE_BATCH:
                writes[minute] = pending.requests
                pending.requests = 0
    for at, requests in sorted(writes.items()):
        record_use(workspace_id, key_id, now=now, minute=at, requests=requests)


def reset_pending_usage() -> None:
    with _pending_lock:
        _pending.clear()


def record_use(
    workspace_id: str, key_id: str, now: int | None = None, *, minute: int | None = None, requests: int = 1
) -> None:
    """Add `requests` to the key's bucket for `minute` (default: the minute of `now`).

    One UpdateItem. The first write of a minute also stamps the key's last_used_at and folds
    minutes that have ended into its running total, so the key's record is written at most once a
    minute however busy the key is.
    """
    now = _now() if now is None else now
    bucket = get_store().update(
        keys.api_key_usage_key(workspace_id, key_id, _minute_label(now if minute is None else minute)),
        Update(
            set={
                keys.ENTITY: "api_key_usage",
                "workspace_id": workspace_id,
                "key_id": key_id,
                keys.TTL: now + USAGE_TTL_SECONDS,
            },
            add={"requests": requests},
        ),
    )
    if int(bucket.get("requests", 0)) == requests:
        _fold_usage(workspace_id, key_id, now)


def _usage_total_item(ws: str, key_id: str, record: dict[str, Any] | None = None) -> dict[str, Any]:
    """The key's usage total as first written: with the key, or (for a key made before totals were
    kept beside its minutes) from what its record had folded."""
    record = record or {}
    return {
        **keys.api_key_usage_total_key(ws, key_id),
        keys.ENTITY: "api_key_usage_total",
        "workspace_id": ws,
        "key_id": key_id,
        "request_total": int(record.get("request_total", 0)),
        "usage_folded_through": record.get("usage_folded_through"),
        "last_used_at": record.get("last_used_at"),
    }


def _usage_total(ws: str, key_id: str) -> dict[str, Any] | None:
    """The key's usage total; None for an unknown or deleted key."""
    total = get_store().get(keys.api_key_usage_total_key(ws, key_id))
    if total is None:
        record = get_store().get(keys.api_key_key(ws, key_id))
        if record is None or record.get("deleted_at"):
            return None
        total = _usage_total_item(ws, key_id, record)
        try:
            get_store().put(total, not_exists())
        except ConditionFailed:
            total = get_store().get(keys.api_key_usage_total_key(ws, key_id))
    if total is None or total.get("deleted_at"):
        return None
    return total


def _fold_usage(ws: str, key_id: str, now: int) -> None:
    """Fold the minutes that have ended into the key's total and stamp its last use, on the total
    and on the key's record (what key views show), in one transaction."""
    total = _usage_total(ws, key_id)
    if total is None:
        return
    folded = total.get("usage_folded_through")
    upper = keys.api_key_usage_key(ws, key_id, _minute_label(now - FOLD_AFTER_SECONDS))["SK"]
    lower = folded or keys.API_KEY_USAGE_MINUTE
    page = get_store().query(
        keys.api_key_usage_pk(ws, key_id), sk_between=(lower, upper), limit=FOLD_BATCH + 1, consistent=True
    )
    ready = [item for item in page.items if item[keys.SK] != folded][:FOLD_BATCH]
    last_used = {"last_used_at": _iso_epoch(now)}
    changes: dict[str, Any] = dict(last_used)
    add: dict[str, int | float] = {}
    if ready:
        add["request_total"] = sum(int(item.get("requests", 0)) for item in ready)
        changes["usage_folded_through"] = ready[-1][keys.SK]
    unchanged = (
        Expr("attribute_not_exists(#folded)", {"#folded": "usage_folded_through"})
        if folded is None
        else attr_eq("usage_folded_through", folded)
    )
    tx = get_store().transaction()
    tx.update(
        keys.api_key_usage_total_key(ws, key_id), Update(set=changes, add=add), exists() & _not_deleted() & unchanged
    )
    tx.update(keys.api_key_key(ws, key_id), Update(set=last_used), exists() & _not_deleted())
    try:
        tx.commit()
    except TransactionFailed:
        # Another call folded these minutes first (its total already holds them), or the key is gone.
        return

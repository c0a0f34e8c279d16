"""How much each workspace key (API key or agent key) is used: a bucket of requests per minute,
folded into a running total beside them once the minute is over.

Counting happens at the HTTP edge, after a key's check passed (agentplane.http), so it lives below
the API key family, which reads the figures back (agentplane.logic.api_keys)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agentplane import keys
from agentplane.entities.api_keys import ApiKeyItem, ApiKeyUsageItem, ApiKeyUsageTotalItem, minutes_after
from agentplane.entities.tokens import expiry
from agentplane.ids import iso
from agentplane.store import ConditionFailed, TransactionFailed, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition

USAGE_TTL_SECONDS = 30 * 86400
# Usage buckets are folded into the key's running total once they are this old, so a request still
# in flight for a minute that just ended is never lost from the total.
FOLD_AFTER_SECONDS = 120
FOLD_BATCH = 100


def _now() -> int:
    return int(time.time())


def _iso_epoch(epoch: int) -> str:
    return iso(datetime.fromtimestamp(epoch, UTC))


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
    label = _minute_label(now if minute is None else minute)
    bucket = get_store().upsert(
        ApiKeyUsageItem,
        keys.api_key_usage_key(workspace_id, key_id, label),
        [
            ApiKeyUsageItem.workspace_id.set(workspace_id),
            ApiKeyUsageItem.key_id.set(key_id),
            ApiKeyUsageItem.ttl.set(expiry(now + USAGE_TTL_SECONDS)),
            ApiKeyUsageItem.requests.add(requests),
        ],
    )
    if int(bucket.requests or 0) == requests:
        _fold_usage(workspace_id, key_id, now)


def _usage_total(ws: str, key_id: str) -> ApiKeyUsageTotalItem | None:
    """The key's usage total; None for an unknown or deleted key."""
    store = get_store()
    total_key = keys.api_key_usage_total_key(ws, key_id)
    total = store.read(ApiKeyUsageTotalItem, total_key)
    if total is None:
        record = store.read(ApiKeyItem, keys.api_key_key(ws, key_id))
        if record is None or record.deleted_at:
            return None
        total = ApiKeyUsageTotalItem.of(record)
        try:
            store.create(total)
        except ConditionFailed:
            total = store.read(ApiKeyUsageTotalItem, total_key)
    if total is None or total.deleted_at:
        return None
    return total


def _fold_usage(ws: str, key_id: str, now: int) -> None:
    """Fold the minutes that have ended into the key's total and stamp its last use, on the total
    and on the key's record (what key views show), in one transaction."""
    total = _usage_total(ws, key_id)
    if total is None:
        return
    folded = total.usage_folded_through
    through = keys.api_key_usage_key(ws, key_id, _minute_label(now - FOLD_AFTER_SECONDS))["SK"]
    minutes = minutes_after(ws, key_id, folded, limit=FOLD_BATCH + 1, through=through)
    ready = [minute for minute in minutes if minute.sort_key != folded][:FOLD_BATCH]
    last_used = _iso_epoch(now)
    actions: list[Any] = [ApiKeyUsageTotalItem.last_used_at.set(last_used)]
    if ready:
        actions.append(ApiKeyUsageTotalItem.request_total.add(sum(int(minute.requests or 0) for minute in ready)))
        actions.append(ApiKeyUsageTotalItem.usage_folded_through.set(ready[-1].sort_key))
    unchanged: Condition = (
        ApiKeyUsageTotalItem.usage_folded_through.does_not_exist()
        if folded is None
        else ApiKeyUsageTotalItem.usage_folded_through == folded
    )
    tx = get_store().transaction()
    tx.adjust(
        ApiKeyUsageTotalItem,
        total.key,
        actions,
        ApiKeyUsageTotalItem.deleted_at.does_not_exist() & unchanged,
    )
    tx.adjust(
        ApiKeyItem,
        keys.api_key_key(ws, key_id),
        [ApiKeyItem.last_used_at.set(last_used)],
        ApiKeyItem.deleted_at.does_not_exist(),
    )
    try:
        tx.commit()
    except TransactionFailed:
        # Another call folded these minutes first (its total already holds them), or the key is gone.
        return

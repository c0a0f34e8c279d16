"""Reading a key's usage log: its requests per minute, newest first, and its all-time total (the
minutes folded into its running total, plus those not folded yet)."""

from __future__ import annotations

from agentplane import keys
from agentplane.access import Access
from agentplane.auth.key_usage import FOLD_BATCH
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.api_keys import (
    ApiKeyUsageItem,
    ApiKeyUsageTotalItem,
    latest_usage,
    minutes_after,
    usage_minutes,
)
from agentplane.errors import NotFound
from agentplane.logic.api_keys.records import load_live
from agentplane.models.api_keys import ApiKeyUsage, ApiKeyUsageBucket
from agentplane.store import get_store


def _bucket(minute: ApiKeyUsageItem) -> ApiKeyUsageBucket:
    return ApiKeyUsageBucket(minute=minute.minute_label.replace("Z", ":00Z"), requests=int(minute.requests or 0))


def get_usage(access: Access, key_id: str, *, limit: int, cursor: str | None) -> tuple[ApiKeyUsage, str | None]:
    """The key's requests per minute, newest first, with its all-time total.

    The first page is one Query: the key's total sorts after its minutes, so it comes first, and
    the minutes not yet folded into it are the newest ones, which follow."""
    ws = access.workspace_id
    scope = f"api_key_usage:{ws}:{key_id}"
    start = decode_cursor(cursor, scope, {})
    total: ApiKeyUsageTotalItem | None = None
    if start is None:
        first = latest_usage(ws, key_id, limit=limit + 1)
        items, last_key = first.items, first.last_key
        if items and isinstance(items[0], ApiKeyUsageTotalItem):
            total = items[0]
            if total.deleted_at:
                raise NotFound(f"API key {key_id} not found")
        minutes = [item for item in items if isinstance(item, ApiKeyUsageItem)]
    else:
        page = usage_minutes(ws, key_id, limit=limit, start=start)
        minutes, last_key = page.items, page.last_key
    if total is None:
        total = get_store().read(ApiKeyUsageTotalItem, keys.api_key_usage_total_key(ws, key_id))
        if total is None:
            # A key made before totals were kept beside its minutes: its record holds the total.
            total = ApiKeyUsageTotalItem.of(load_live(ws, key_id))
            if start is None:  # the page was read for a total that is not there: read it again
                page = usage_minutes(ws, key_id, limit=limit)
                minutes, last_key = page.items, page.last_key
        if total.deleted_at:
            raise NotFound(f"API key {key_id} not found")
    folded = total.usage_folded_through
    unfolded_seen = [minute for minute in minutes if folded is None or minute.sort_key > folded]
    if start is None and (len(unfolded_seen) < len(minutes) or last_key is None):
        # Every minute newer than the folded ones was on this page.
        unfolded = sum(int(minute.requests or 0) for minute in unfolded_seen)
    else:
        # The counter folds at most FOLD_BATCH minutes at once: no more (and the last folded one)
        # are newer than the total, when the first page did not show them all.
        recent = minutes_after(ws, key_id, folded, limit=FOLD_BATCH + 1)
        unfolded = sum(int(minute.requests or 0) for minute in recent if minute.sort_key != folded)
    usage = ApiKeyUsage(
        key_id=key_id,
        total_requests=int(total.request_total or 0) + unfolded,
        last_used_at=total.last_used_at,
        buckets=[_bucket(minute) for minute in minutes],
    )
    return usage, encode_cursor(last_key, scope, {})

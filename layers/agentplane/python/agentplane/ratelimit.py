"""Fixed-window rate limits kept in the table, shared by every Lambda instance.

Two modes:
- exact (`hit_exact`): one conditional UpdateItem per call; used for the small, strict limits
  (auth by IP, run-start per user, settings writes) where the Nth+1 call must be refused.
- the per-principal default (`hit_principal`): counts locally and folds the count into the table
  every few calls, so an ordinary request does not pay a round trip for its limiter. Across N warm
  instances it may admit up to N * SYNC_EVERY extra calls in a window: fine for a 600/min guard.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from agentplane import keys
from agentplane.errors import RateLimited
from agentplane.store import ConditionFailed, Expr, Update, get_store

WINDOW_SECONDS = 60
SYNC_EVERY = 10

# Named groups later families use: limit per minute, and what the counter is keyed by.
GROUPS: dict[str, int] = {
    "auth": 60,  # per IP
    "run-start": 6,  # per user
    "settings-write": 20,  # per user
}


@dataclass(frozen=True)
class Decision:
    limit: int
    remaining: int
    reset: int  # epoch seconds when the window ends

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(self.remaining, 0)),
            "X-RateLimit-Reset": str(self.reset),
        }


def _window(now: float) -> tuple[int, int]:
    start = int(now) // WINDOW_SECONDS * WINDOW_SECONDS
    return start, start + WINDOW_SECONDS


def _limited(detail: str, limit: int, reset: int) -> RateLimited:
    """A 429 carries the same X-RateLimit-* headers as every other answer, plus Retry-After."""
    error = RateLimited(detail, max(1, reset - int(time.time())))
    error.headers.update(Decision(limit=limit, remaining=0, reset=reset).headers())
    return error


def hit_exact(bucket: str, limit: int) -> Decision:
    """Count one call against `bucket`; raise RateLimited once `limit` calls were made this window."""
    start, reset = _window(time.time())
    try:
        item = get_store().update(
            keys.rate_key(bucket, start),
            Update(set={keys.TTL: reset + WINDOW_SECONDS}, add={"count": 1}),
            Expr("attribute_not_exists(#c) OR #c < :limit", {"#c": "count"}, {":limit": limit}),
        )
    except ConditionFailed:
        raise _limited(f"rate limit of {limit} per minute reached for {bucket.split(':')[0]}", limit, reset) from None
    return Decision(limit=limit, remaining=limit - int(item["count"]), reset=reset)


def hit_group(group: str, subject: str) -> Decision:
    return hit_exact(f"{group}:{subject}", GROUPS[group])


class _LocalCounter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.window = 0
        self.unsynced = 0
        self.known_total = 0


_counters: dict[str, _LocalCounter] = {}
_counters_lock = threading.Lock()


def hit_principal(principal_id: str, limit: int) -> Decision:
    start, reset = _window(time.time())
    with _counters_lock:
        counter = _counters.setdefault(principal_id, _LocalCounter())
    with counter.lock:
        if counter.window != start:
            counter.window, counter.unsynced, counter.known_total = start, 0, 0
        counter.unsynced += 1
        if counter.unsynced >= SYNC_EVERY or counter.known_total + counter.unsynced >= limit:
            item = get_store().update(
                keys.rate_key(f"principal:{principal_id}", start),
                Update(set={keys.TTL: reset + WINDOW_SECONDS}, add={"count": counter.unsynced}),
            )
            counter.known_total, counter.unsynced = int(item["count"]), 0
        used = counter.known_total + counter.unsynced
    if used > limit:
        raise _limited(f"rate limit of {limit} requests per minute reached", limit, reset)
    return Decision(limit=limit, remaining=limit - used, reset=reset)


def reset_local_counters() -> None:
    with _counters_lock:
        _counters.clear()

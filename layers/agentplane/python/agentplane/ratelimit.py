"""Rate limits kept in the table, shared by every Lambda instance.

Two modes:
- exact (`hit_exact`): a sliding log of the calls admitted in the last minute, so no 60 seconds
  ever hold more than `limit` calls, window boundaries included. Used for the small, strict limits
  (auth by IP, run-start per user, settings writes) where the Nth+1 call must be refused. While the
  log has room a call costs one conditional UpdateItem; once it is full, a read prunes it.
- the per-principal default (`hit_principal`): a fixed window that counts locally and folds the
  count into the table every few calls, so an ordinary request does not pay a round trip for its
  limiter. Across N warm instances it may admit up to N * SYNC_EVERY extra calls in a window: fine
  for a 600/min guard.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from pynamodb.expressions.condition import size

from agentplane import keys
from agentplane.entities.limits import RateLogItem, RateWindowItem
from agentplane.entities.tokens import expiry
from agentplane.errors import RateLimited
from agentplane.store import ConditionFailed, get_store

WINDOW_SECONDS = 60
SYNC_EVERY = 10
_LOG_ATTEMPTS = 5

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


def _now() -> float:
    return time.time()


def _window(now: float) -> tuple[int, int]:
    start = int(now) // WINDOW_SECONDS * WINDOW_SECONDS
    return start, start + WINDOW_SECONDS


def _limited(detail: str, limit: int, reset: int) -> RateLimited:
    """A 429 carries the same X-RateLimit-* headers as every other answer, plus Retry-After."""
    # `reset` is rounded up to a whole second, so it can sit a second past a full window from now.
    error = RateLimited(detail, max(1, min(WINDOW_SECONDS, reset - int(_now()))))
    error.headers.update(Decision(limit=limit, remaining=0, reset=reset).headers())
    return error


def hit_exact(bucket: str, limit: int) -> Decision:
    """Count one call against `bucket`; raise RateLimited if `limit` calls were admitted in the
    last WINDOW_SECONDS."""
    store = get_store()
    key = keys.rate_log_key(bucket)
    for _attempt in range(_LOG_ATTEMPTS):
        now = _now()
        kept = [RateLogItem.ttl.set(expiry(int(now) + 2 * WINDOW_SECONDS)), RateLogItem.writes.add(1)]
        try:
            # Fast path: the log has room, so appending cannot exceed the limit.
            room = RateLogItem.hits.does_not_exist() | (size(RateLogItem.hits) < limit)  # type: ignore[no-untyped-call]
            appended = RateLogItem.hits.set((RateLogItem.hits | []).append([now]))
            log = store.upsert(RateLogItem, key, [appended, *kept], room)
            return _decision(log.hits, limit, now)
        except ConditionFailed as full:
            current = full.current_as(RateLogItem)
        hits = current.hits if current is not None else []
        recent = [hit for hit in hits or [] if hit > now - WINDOW_SECONDS]
        if len(recent) >= limit:
            reset = math.ceil(min(recent) + WINDOW_SECONDS)
            raise _limited(f"rate limit of {limit} per minute reached for {bucket.split(':')[0]}", limit, reset)
        # The log is full of calls older than the window: drop them, unless someone else wrote first.
        unchanged = RateLogItem.writes == (int(current.writes or 0) if current is not None else 0)
        try:
            log = store.upsert(RateLogItem, key, [RateLogItem.hits.set([*recent, now]), *kept], unchanged)
            return _decision(log.hits, limit, now)
        except ConditionFailed:
            continue
    raise _limited(f"rate limit of {limit} per minute reached for {bucket.split(':')[0]}", limit, int(_now()) + 1)


def _decision(hits: list[float], limit: int, now: float) -> Decision:
    recent = [hit for hit in hits if hit > now - WINDOW_SECONDS]
    return Decision(limit=limit, remaining=limit - len(recent), reset=math.ceil(min(recent) + WINDOW_SECONDS))


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
    start, reset = _window(_now())
    with _counters_lock:
        counter = _counters.setdefault(principal_id, _LocalCounter())
    with counter.lock:
        if counter.window != start:
            counter.window, counter.unsynced, counter.known_total = start, 0, 0
        counter.unsynced += 1
        if counter.unsynced >= SYNC_EVERY or counter.known_total + counter.unsynced >= limit:
            window = get_store().upsert(
                RateWindowItem,
                keys.rate_key(f"principal:{principal_id}", start),
                [RateWindowItem.ttl.set(expiry(reset + WINDOW_SECONDS)), RateWindowItem.calls.add(counter.unsynced)],
            )
            counter.known_total, counter.unsynced = int(window.calls), 0
        used = counter.known_total + counter.unsynced
    if used > limit:
        raise _limited(f"rate limit of {limit} requests per minute reached", limit, reset)
    return Decision(limit=limit, remaining=limit - used, reset=reset)


def reset_local_counters() -> None:
    with _counters_lock:
        _counters.clear()

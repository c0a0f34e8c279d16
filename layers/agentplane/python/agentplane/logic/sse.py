"""Server-sent events behind a buffering gateway: one bounded wait per request.

API Gateway HTTP APIs buffer a Lambda's whole response, so an endless stream is impossible. Each
request instead waits (polling the table) until something is available or the wait runs out, then
answers with what it has and ends; `retry:` tells the browser when to reconnect and its
`Last-Event-ID` says where to resume. The stream is a sequence of bounded responses that together
deliver every event exactly once, in order.

Also here: the caller's notification stream (`GET …/notifications/stream`).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentplane.access import Access
from agentplane.entities.realtime import notifications_after
from agentplane.errors import BadRequest
from agentplane.logic import notifications
from agentplane.models.notifications import Notification

CONTENT_TYPE = "text/event-stream"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# One response carries at most this many events; the client reconnects for the rest.
MAX_EVENTS_PER_RESPONSE = 500
MAX_NOTIFICATIONS_PER_RESPONSE = 100
# Time kept back for the end of the Lambda's own timeout (the response must still be sent).
_TIMEOUT_MARGIN_SECONDS = 2.0
_NOTIFICATION_ID = re.compile(r"^ntf_[0-9a-z]{26}$")
T = TypeVar("T")


class StreamSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    max_wait_seconds: float = Field(default=20.0, alias="SSE_MAX_WAIT_SECONDS", ge=0, le=28)
    poll_seconds: float = Field(default=0.5, alias="SSE_POLL_SECONDS", gt=0, le=5)
    retry_ms: int = Field(default=500, alias="SSE_RETRY_MS", ge=0, le=60_000)
    # After `end` (the run is over) a client should close; if it does not, it comes back slowly.
    end_retry_ms: int = Field(default=30_000, alias="SSE_END_RETRY_MS", ge=0, le=600_000)


@lru_cache(maxsize=1)
def get_stream_settings() -> StreamSettings:
    try:
        return StreamSettings.model_validate(dict(os.environ))
    except ValidationError as exc:  # pragma: no cover - a deployment error, loud at cold start
        raise RuntimeError(f"invalid stream settings: {exc}") from exc


def wait_budget(context: Any = None) -> float:
    """Seconds this request may wait: the setting, capped by what is left of the Lambda timeout."""
    budget = get_stream_settings().max_wait_seconds
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        budget = min(budget, remaining() / 1000 - _TIMEOUT_MARGIN_SECONDS)
    return max(0.0, budget)


def wait_for(poll: Callable[[], T | None], budget: float) -> T | None:
    """Call `poll` until it answers something or `budget` seconds have passed (at least once)."""
    deadline = time.monotonic() + budget
    interval = get_stream_settings().poll_seconds
    while True:
        found = poll()
        if found is not None:
            return found
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        time.sleep(min(interval, remaining))


@dataclass(frozen=True)
class ServerEvent:
    event: str
    data: Any
    id: str | None = None


def render(events: Iterable[ServerEvent], retry_ms: int | None = None) -> str:
    """The response body: a `retry:` line and a `: ping` comment, then one block per event.

    `data` is compact JSON, so it never spans lines; an event without `id` (like `end`) leaves the
    client's Last-Event-ID where it was."""
    retry = get_stream_settings().retry_ms if retry_ms is None else retry_ms
    lines = [f"retry: {retry}", ": ping", ""]
    for item in events:
        if item.id is not None:
            lines.append(f"id: {item.id}")
        lines.append(f"event: {item.event}")
        lines.append("data: " + json.dumps(item.data, separators=(",", ":"), default=str))
        lines.append("")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------- notifications


def stream_notifications(access: Access, last_event_id: str | None, budget: float) -> str:
    """The caller's notifications after `last_event_id` (or, without one, after the newest one at
    the moment of connecting), as soon as at least one is available or the wait runs out.

    An inbox's notifications are written in id order (see logic/notifications.py), so everything
    after the last id a client saw is exactly what it has not seen: nothing is skipped or repeated."""
    ws, user_id = access.workspace_id, access.actor_id
    if last_event_id is not None and not _NOTIFICATION_ID.match(last_event_id):
        raise BadRequest("Last-Event-ID must be a notification id from this stream")
    after = last_event_id or notifications.newest_id(ws, user_id) or ""

    def poll() -> list[dict[str, Any]] | None:
        return notifications_after(ws, user_id, after, limit=MAX_NOTIFICATIONS_PER_RESPONSE) or None

    found = wait_for(poll, budget) or []
    events = []
    for item in found:
        notification = Notification.model_validate({**item, "read": bool(item.get("read_at"))})
        events.append(ServerEvent(notification.type.value, notification.model_dump(mode="json"), notification.id))
    return render(events)

"""Delivery in order, each event exactly once: a subscriber's cursor (`delivered_through`: a run
event id, or a notification id) is moved over a range, with a conditional write, before that range
is posted, so two deliverers (a subscribe's replay and a stream fan-out, say) never send the same
event; a failed post gives back the undelivered end of its range."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agentplane import keys
from agentplane.entities.realtime import RealtimeSubscriberItem, notifications_after
from agentplane.entities.runs import events_after
from agentplane.logic.realtime.posting import DeliveryFailed, Poster
from agentplane.logic.run_events import events_of
from agentplane.models.notifications import Notification
from agentplane.models.realtime import Push
from agentplane.store import ConditionFailed, get_store

# Events claimed and posted in one step, and batch items read per step when filling a gap.
MAX_EVENTS_PER_CLAIM = 500
ITEMS_PER_READ = 100
# A deliverer that keeps losing the cursor to others gives up after this many tries.
MAX_CLAIM_ATTEMPTS = 10
_CURSOR = RealtimeSubscriberItem.delivered_through


def run_event_push(run_id: str, event: Mapping[str, Any]) -> dict[str, Any]:
    """A stored run event as pushed: `data` is the event as the REST and SSE routes show it."""
    shown = {
        "id": int(event["id"]),
        "run_id": run_id,
        "event_type": event["event_type"],
        "severity": event.get("severity") or "info",
        "path": event.get("path"),
        "data": dict(event.get("data") or {}),
        "created_at": event.get("created_at"),
    }
    push = Push(channel=keys.realtime_run_channel(run_id), id=shown["id"], event=shown["event_type"], data=shown)
    return push.model_dump(mode="json")


def notification_push(item: Mapping[str, Any]) -> dict[str, Any]:
    notification = Notification.model_validate({**item, "read": bool(item.get("read_at"))})
    return Push(
        channel="notifications",
        id=notification.id,
        event=notification.type.value,
        data=notification.model_dump(mode="json"),
    ).model_dump(mode="json")


def _claim(ws: str, channel_key: str, connection_id: str, delivered: Any, through: Any) -> Any:
    """Move a subscriber's cursor from `delivered` to `through`: None when this caller won the range,
    else where the cursor is now (another deliverer moved it). Raises KeyError when unsubscribed."""
    key = keys.realtime_subscriber_key(ws, channel_key, connection_id)
    try:
        get_store().adjust(RealtimeSubscriberItem, key, [_CURSOR.set(through)], _CURSOR.at(delivered))
    except ConditionFailed as lost:
        current = lost.current_as(RealtimeSubscriberItem)
        if current is None:
            raise KeyError(connection_id) from lost
        return current.delivered_through
    return None


def _release(ws: str, channel_key: str, connection_id: str, claimed_through: Any, delivered: Any) -> None:
    """Give back the undelivered end of a claimed range, so the next deliverer sends it."""
    key = keys.realtime_subscriber_key(ws, channel_key, connection_id)
    try:
        get_store().adjust(RealtimeSubscriberItem, key, [_CURSOR.set(delivered)], _CURSOR.at(claimed_through))
    except ConditionFailed:
        return


@dataclass(frozen=True)
class CatchUp:
    delivered: int | str  # the subscriber's cursor as this call leaves it
    sent: int
    capped: bool  # stopped at its event budget; more may be stored


def _deliver_claimed(
    poster: Poster,
    ws: str,
    channel_key: str,
    connection_id: str,
    delivered: Any,
    *,
    next_chunk: Callable[[Any, int], list[Mapping[str, Any]]],
    push_of: Callable[[Mapping[str, Any]], dict[str, Any]],
    cursor: Callable[[Any], Any],
    max_events: int,
) -> CatchUp:
    """Send a subscriber what follows its cursor, a range at a time: each range is claimed on the
    cursor before it is posted, and a failed post gives back the undelivered end of its range.
    `next_chunk(delivered, budget)` reads what follows `delivered` (at most `budget` items);
    `cursor` turns an id as stored into a cursor value. Raises ConnectionGone and DeliveryFailed."""
    sent = lost = 0
    while sent < max_events and lost < MAX_CLAIM_ATTEMPTS:
        chunk = next_chunk(delivered, max_events - sent)
        if not chunk:
            break
        last = cursor(chunk[-1]["id"])
        try:
            moved = _claim(ws, channel_key, connection_id, delivered, last)
        except KeyError:
            break  # unsubscribed meanwhile
        if moved is not None:
            delivered, lost = cursor(moved), lost + 1
            continue
        before = delivered
        for item in chunk:
            try:
                poster.send(connection_id, push_of(item))
            except DeliveryFailed:
                _release(ws, channel_key, connection_id, last, before)
                raise
            before = cursor(item["id"])
        sent += len(chunk)
        delivered = last
    return CatchUp(delivered, sent, capped=sent >= max_events)


def _run_cursor(value: Any) -> int:
    return int(value or 0)


def _notification_cursor(value: Any) -> str:
    return str(value or "")


def catch_up_run(
    poster: Poster,
    ws: str,
    run_id: str,
    connection_id: str,
    delivered: int,
    *,
    known: list[dict[str, Any]] | None = None,
    through: int | None = None,
    max_events: int = MAX_EVENTS_PER_CLAIM,
) -> CatchUp:
    """Deliver a run's events after `delivered` (up to `through`, if given) to one subscriber.

    `known` are events at hand (a stream batch); anything before them is read from the table.
    Raises ConnectionGone and DeliveryFailed."""

    def next_chunk(after: int, budget: int) -> list[Mapping[str, Any]]:
        if through is not None and after >= through:
            return []
        if known and int(known[0]["id"]) <= after + 1:
            chunk = [e for e in known if int(e["id"]) > after]
        else:
            chunk = events_of(events_after(ws, run_id, after, limit=ITEMS_PER_READ).items, after)
        if through is not None:
            chunk = [e for e in chunk if int(e["id"]) <= through]
        return list(chunk[: min(MAX_EVENTS_PER_CLAIM, budget)])

    return _deliver_claimed(
        poster,
        ws,
        keys.realtime_run_channel(run_id),
        connection_id,
        delivered,
        next_chunk=next_chunk,
        push_of=lambda event: run_event_push(run_id, event),
        cursor=_run_cursor,
        max_events=max_events,
    )


def catch_up_notifications(
    poster: Poster,
    ws: str,
    user_id: str,
    connection_id: str,
    delivered: str,
    *,
    through: str | None = None,
    max_events: int = MAX_EVENTS_PER_CLAIM,
) -> CatchUp:
    """Deliver a member's notifications after `delivered` (up to `through`, if given) to one
    subscriber, in claimed ranges as `catch_up_run` does for run events."""

    def next_chunk(after: str, budget: int) -> list[Mapping[str, Any]]:
        if through is not None and after >= through:
            return []
        return list(notifications_after(ws, user_id, after, through=through, limit=min(ITEMS_PER_READ, budget)))

    return _deliver_claimed(
        poster,
        ws,
        keys.realtime_notification_channel(user_id),
        connection_id,
        delivered,
        next_chunk=next_chunk,
        push_of=notification_push,
        cursor=_notification_cursor,
        max_events=max_events,
    )

"""The table stream's fan-out: a newly stored batch of run events, or a notification, pushed to the
subscribers of its channels that may still have it. A fan-out that finds a subscriber's cursor
behind the item it carries fills the gap from the table, so nothing written while a subscription
was being set up is skipped."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from agentplane import keys
from agentplane.entities.realtime import RealtimeSubscriberItem, subscribers_of
from agentplane.entities.runs import RunEventsItem
from agentplane.logic.realtime.connections import remove_connection
from agentplane.logic.realtime.delivery import catch_up_notifications, catch_up_run, notification_push, run_event_push
from agentplane.logic.realtime.gate import PushGate
from agentplane.logic.realtime.posting import ConnectionGone, DeliveryFailed, Poster, control
from agentplane.logic.realtime.subscriptions import remove_subscription
from agentplane.logic.run_events import events_of
from agentplane.models.realtime import Unsubscribed
from agentplane.observability import logger

# The notifications family's kind of item (its inbox entries), as the stream carries them.
NOTIFICATION_KIND = "notification"


@dataclass
class FanoutResult:
    pushed: int = 0
    gone: int = 0
    revoked: int = 0  # subscribers that lost access since subscribing, and were removed


def fan_out(image: Mapping[str, Any], poster: Poster, gate: PushGate | None = None) -> FanoutResult:
    """Push what a newly stored item carries to the subscribers of its channels that may still
    have it (`gate`: one per fan-out batch, so each connection is checked once per batch)."""
    gate = gate or PushGate()
    kind = image.get(keys.ENTITY)
    if kind == RunEventsItem.kind():
        return _fan_out_run_events(image, poster, gate)
    if kind == NOTIFICATION_KIND:
        return _fan_out_notification(image, poster, gate)
    return FanoutResult()


def _admitted(
    gate: PushGate, subscriber: RealtimeSubscriberItem, scope: str | None, poster: Poster, result: FanoutResult
) -> bool:
    """Check a subscriber at push time; one refused is told so and loses what it may no longer have."""
    connection_id, ws = subscriber.connection_id, subscriber.workspace_id
    refusal = gate.refusal(connection_id, ws, scope)
    if refusal is None:
        return True
    logger.info("subscriber lost access; removing it", extra={"connection_id": connection_id, "reason": refusal})
    notice = Unsubscribed(channel=subscriber.channel or "", workspace_id=ws)
    with suppress(ConnectionGone, DeliveryFailed):  # the removal below is what matters
        poster.send(connection_id, control(notice))
    if refusal == "connection":
        remove_connection(connection_id)
    else:
        remove_subscription(connection_id, ws, subscriber.channel_key)
    result.revoked += 1
    return False


def _drop(connection_id: str, result: FanoutResult) -> None:
    logger.info("connection gone; removing it", extra={"connection_id": connection_id})
    remove_connection(connection_id)
    result.gone += 1


def _fan_out_run_events(image: Mapping[str, Any], poster: Poster, gate: PushGate) -> FanoutResult:
    ws, run_id = str(image["workspace_id"]), str(image["run_id"])
    events = events_of([image])
    result = FanoutResult()
    if not events:
        return result
    through = int(events[-1]["id"])
    served: set[str] = set()
    failed: DeliveryFailed | None = None
    for subscriber in subscribers_of(ws, keys.realtime_run_channel(run_id)):
        connection_id = subscriber.connection_id
        served.add(connection_id)
        if not _admitted(gate, subscriber, "runs:read", poster, result):
            continue
        delivered = int(subscriber.delivered_through or 0)
        try:
            caught_up = catch_up_run(poster, ws, run_id, connection_id, delivered, known=events, through=through)
        except ConnectionGone:
            _drop(connection_id, result)
            continue
        except DeliveryFailed as exc:
            failed = failed or exc
            continue
        result.pushed += caught_up.sent
    # The workspace channel gets every run's events, live; a connection following this run already has them.
    for subscriber in subscribers_of(ws, keys.REALTIME_WORKSPACE_CHANNEL):
        connection_id = subscriber.connection_id
        if not _admitted(gate, subscriber, "runs:read", poster, result) or connection_id in served:
            continue
        served.add(connection_id)
        result.pushed += _push_all(poster, connection_id, [run_event_push(run_id, e) for e in events], result)
    if failed is not None:
        raise failed  # the record is retried; run cursors make the retry send only what is missing
    return result


def _push_all(poster: Poster, connection_id: str, messages: list[dict[str, Any]], result: FanoutResult) -> int:
    """Best-effort live pushes (no cursor): a failure is logged, not retried."""
    for count, message in enumerate(messages):
        try:
            poster.send(connection_id, message)
        except ConnectionGone:
            _drop(connection_id, result)
            return count
        except DeliveryFailed:
            logger.warning("live push failed", extra={"connection_id": connection_id}, exc_info=True)
            return count
    return len(messages)


def _fan_out_notification(image: Mapping[str, Any], poster: Poster, gate: PushGate) -> FanoutResult:
    ws, user_id = str(image["workspace_id"]), str(image["user_id"])
    through = str(image["id"])
    result = FanoutResult()
    failed: DeliveryFailed | None = None
    for subscriber in subscribers_of(ws, keys.realtime_notification_channel(user_id)):
        connection_id = subscriber.connection_id
        if not _admitted(gate, subscriber, None, poster, result):
            continue
        delivered = subscriber.delivered_through
        if delivered is None:  # a live-only subscription (made before notifications had cursors)
            result.pushed += _push_all(poster, connection_id, [notification_push(image)], result)
            continue
        try:
            caught_up = catch_up_notifications(poster, ws, user_id, connection_id, str(delivered), through=through)
        except ConnectionGone:
            _drop(connection_id, result)
            continue
        except DeliveryFailed as exc:
            failed = failed or exc
            continue
        result.pushed += caught_up.sent
    if failed is not None:
        raise failed  # the record is retried; cursors make the retry send only what is missing
    return result

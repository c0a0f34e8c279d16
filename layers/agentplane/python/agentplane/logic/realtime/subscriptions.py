"""Subscriptions: a connection following a channel of a workspace it belongs to. Membership and
the token are re-checked on every subscribe, never trusted from connect time. Each subscription is
stored twice: under its channel (a subscriber, which the fan-out reads) and under its connection
(which a disconnect reads), with the connection's count of subscriptions moving in the same
transaction."""

from __future__ import annotations

from agentplane import keys
from agentplane.access import workspace_access
from agentplane.entities.realtime import (
    RealtimeConnectionItem,
    RealtimeConnectionSubscriptionItem,
    RealtimeSubscriberItem,
)
from agentplane.errors import Conflict, Unauthorized
from agentplane.ids import iso
from agentplane.logic.realtime import connections
from agentplane.logic.realtime.channels import Channel, channel_of, start_of, workspace_of
from agentplane.logic.realtime.connections import Connection, load_connection, require_live_token
from agentplane.logic.realtime.delivery import CatchUp, catch_up_notifications, catch_up_run
from agentplane.logic.realtime.posting import Poster, control
from agentplane.models.realtime import Pong, Replayed, Subscribe, Subscribed, Unsubscribe, Unsubscribed
from agentplane.store import ConditionFailed, TransactionFailed, get_store, retrying

# A `since` replay delivers at most this many events (posting them must fit the 29 s the API waits).
MAX_REPLAY_EVENTS = 1000
_TRANSACTION_ATTEMPTS = 3
# The operations of a subscribe's transaction that tell why it was refused.
_SUBSCRIBER, _COUNT = "subscriber", "subscription_count"


def subscribe(connection_id: str, message: Subscribe, poster: Poster) -> Subscribed:
    """Subscribe a connection to a channel of a workspace it belongs to; acknowledge, then replay.

    A run channel starts after `since` (or, without it, after the run's latest event): the events
    stored after that point are pushed before any live one. A replay ends with a `replayed` message;
    when it stopped at MAX_REPLAY_EVENTS (`complete: false`), subscribing again with `since` set to
    the last id received continues it."""
    connection = load_connection(connection_id)
    principal = connection.principal
    require_live_token(principal)
    channel = channel_of(message.channel, principal)
    ws = message.workspace_id or workspace_of(principal, channel)
    workspace_access(principal, ws, channel.scope)  # a non-member gets 404, a missing scope 403
    start = start_of(ws, channel, message.since)
    _store_subscription(connection, ws, channel, start, resubscribe_from=message.since)
    acknowledged = Subscribed(channel=channel.name, workspace_id=ws, since=start if start != "" else None)
    poster.send(connection_id, control(acknowledged))
    replay: CatchUp | None = None
    if channel.run_id is not None and isinstance(start, int):
        replay = catch_up_run(poster, ws, channel.run_id, connection_id, start, max_events=MAX_REPLAY_EVENTS)
    elif channel.user_id is not None and isinstance(start, str) and message.since is not None:
        replay = catch_up_notifications(poster, ws, channel.user_id, connection_id, start, max_events=MAX_REPLAY_EVENTS)
    if replay is not None and message.since is not None:
        done = Replayed(channel=channel.name, workspace_id=ws, through=replay.delivered, complete=not replay.capped)
        poster.send(connection_id, control(done))
    return acknowledged


def _store_subscription(
    connection: Connection, ws: str, channel: Channel, start: int | str | None, *, resubscribe_from: int | str | None
) -> None:
    cid = connection.connection_id
    limit = connections.MAX_SUBSCRIPTIONS_PER_CONNECTION

    def attempt() -> None:
        tx = get_store().transaction()
        subscriber = RealtimeSubscriberItem(
            connection_id=cid,
            workspace_id=ws,
            channel=channel.name,
            channel_key=channel.key,
            user_id=connection.principal.user_id,
            delivered_through=start,
            subscribed_at=iso(),
            ttl=connection.expires_at,
        )
        tx.create(subscriber, name=_SUBSCRIBER)
        tx.save(
            RealtimeConnectionSubscriptionItem(
                connection_id=cid,
                workspace_id=ws,
                channel=channel.name,
                channel_key=channel.key,
                ttl=connection.expires_at,
            )
        )
        one_more = [RealtimeConnectionItem.subscription_count.add(1)]
        tx.adjust(
            RealtimeConnectionItem,
            keys.realtime_connection_key(cid),
            one_more,
            RealtimeConnectionItem.below(limit),
            name=_COUNT,
        )
        try:
            tx.commit()
        except TransactionFailed as failure:
            refused = failure.reason(failure.failed or "") == "ConditionalCheckFailed"
            if refused and failure.failed == _SUBSCRIBER:
                # Already subscribed: a new `since` moves the run cursor back to replay from there.
                if resubscribe_from is not None and start is not None:
                    _rewind(ws, channel.key, cid, start)
                return
            if refused and failure.failed == _COUNT:
                if failure.current(_COUNT, RealtimeConnectionItem) is None:
                    raise Unauthorized("this connection is not registered (or has expired); reconnect") from failure
                raise Conflict(f"a connection holds at most {limit} subscriptions; unsubscribe first") from failure
            raise  # a concurrent write to the same items: tried again

    try:
        retrying(
            attempt, retry_if=lambda failure: isinstance(failure, TransactionFailed), attempts=_TRANSACTION_ATTEMPTS
        )
    except TransactionFailed as failure:
        raise Conflict("the subscription changed while it was being stored; retry") from failure


def _rewind(ws: str, channel_key: str, connection_id: str, start: int | str) -> None:
    key = keys.realtime_subscriber_key(ws, channel_key, connection_id)
    try:
        get_store().adjust(RealtimeSubscriberItem, key, [RealtimeSubscriberItem.delivered_through.set(start)])
    except ConditionFailed:  # unsubscribed in the meantime: nothing to rewind
        return


def unsubscribe(connection_id: str, message: Unsubscribe) -> Unsubscribed:
    """Stop a subscription (unsubscribing from a channel not subscribed to is not an error)."""
    connection = load_connection(connection_id)
    channel = channel_of(message.channel, connection.principal)
    ws = message.workspace_id or workspace_of(connection.principal, channel)
    remove_subscription(connection_id, ws, channel.key)
    return Unsubscribed(channel=channel.name, workspace_id=ws)


def remove_subscription(connection_id: str, ws: str, channel_key: str) -> None:
    """Remove one subscription of a connection, if it has it (a concurrent write: tried again)."""

    def attempt() -> None:
        tx = get_store().transaction()
        tx.drop(RealtimeSubscriberItem, keys.realtime_subscriber_key(ws, channel_key, connection_id))
        tx.discard(
            RealtimeConnectionSubscriptionItem,
            keys.realtime_connection_subscription_key(connection_id, ws, channel_key),
        )
        one_less = [RealtimeConnectionItem.subscription_count.add(-1)]
        tx.adjust(RealtimeConnectionItem, keys.realtime_connection_key(connection_id), one_less)
        try:
            tx.commit()
        except TransactionFailed as failure:
            if "TransactionConflict" in failure.reasons:
                raise
            # Not subscribed (or the connection is gone): there is nothing to stop.

    try:
        retrying(
            attempt, retry_if=lambda failure: isinstance(failure, TransactionFailed), attempts=_TRANSACTION_ATTEMPTS
        )
    except TransactionFailed:
        return  # still contended after every attempt: left as it is, as an unsubscribe may be


def ping() -> Pong:
    return Pong()

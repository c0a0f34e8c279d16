"""Realtime: WebSocket connections, channel subscriptions, and the table stream's fan-out to them.

A connection is checked once, on `$connect`, with the same bearer tokens as the HTTP API, and
remembered for two hours (API Gateway's longest connection). Each subscription is stored twice:
under its channel (`realtime_channel_pk`, so fan-out is one Query per channel) and under its
connection (so a disconnect, or a post answered 410 Gone, removes every trace in one Query).
Membership and the token are re-checked on every subscribe, never trusted from connect time, and
again when pushing (once per connection per fan-out batch): a member removed, or a token revoked or
expired, after subscribing gets no more pushes and loses the subscription.

Run and notification channels deliver each event exactly once, in id order: the subscription keeps
a cursor (`delivered_through`: a run event id, or a notification id), and whoever delivers a range
(the subscribe's `since` replay or the stream fan-out) first moves the cursor over that range with
a conditional write. A fan-out that finds the cursor behind the item it carries fills the gap from
the table, so nothing written while a subscription was being set up is skipped. (An inbox's
notifications are written in id order, see logic/notifications.py, so "after the cursor" is exact.)
The `workspace` channel is live only, without a cursor: its events are numbered per run.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel

from agentplane import clients, keys
from agentplane.access import workspace_access
from agentplane.auth.principal import Principal
from agentplane.auth.tokens import resolve_principal
from agentplane.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized, Unprocessable
from agentplane.ids import epoch, iso
from agentplane.logic import notifications
from agentplane.logic.run_events import events_of
from agentplane.logic.workspaces import list_memberships
from agentplane.models.notifications import Notification
from agentplane.models.realtime import Pong, Push, Replayed, Subscribe, Subscribed, Unsubscribe, Unsubscribed
from agentplane.observability import logger
from agentplane.store import (
    ConditionFailed,
    Expr,
    Item,
    TransactionFailed,
    Update,
    attr_eq,
    exists,
    get_store,
    not_exists,
)

CONNECTION_ENTITY = "realtime_connection"
SUBSCRIBER_ENTITY = "realtime_subscriber"
CONNECTION_SUBSCRIPTION_ENTITY = "realtime_connection_subscription"
RUN_EVENTS_ENTITY = "run_events"
NOTIFICATION_ENTITY = "notification"

# API Gateway closes every WebSocket connection after two hours; its records go with it (TTL).
CONNECTION_TTL_SECONDS = 2 * 3600
MAX_SUBSCRIPTIONS_PER_CONNECTION = 20
# A `since` replay delivers at most this many events (posting them must fit the 29 s the API waits).
MAX_REPLAY_EVENTS = 1000
# Events claimed and posted in one step, and batch items read per step when filling a gap.
MAX_EVENTS_PER_CLAIM = 500
ITEMS_PER_READ = 100
SUBSCRIBERS_PER_PAGE = 100
# A deliverer that keeps losing the cursor to others gives up after this many tries.
MAX_CLAIM_ATTEMPTS = 10
_TRANSACTION_ATTEMPTS = 3


def management_endpoint(api_id: str, stage: str, region: str | None = None) -> str:
    """Where posts to a connection of API `api_id` go (the execute-api host, also behind a custom domain)."""
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return f"https://{api_id}.execute-api.{region}.amazonaws.com/{stage}"


# ------------------------------------------------------------------------ posting to connections


class ConnectionGone(Exception):
    """The connection no longer exists (410 Gone from the management API)."""

    def __init__(self, connection_id: str) -> None:
        super().__init__(f"connection {connection_id} is gone")
        self.connection_id = connection_id


class DeliveryFailed(Exception):
    """A post failed for another reason (throttled, service error); the stream retries the record."""


@dataclass(frozen=True)
class Poster:
    """Posts JSON messages to connections of one WebSocket API stage."""

    endpoint: str

    def send(self, connection_id: str, message: Mapping[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":"), default=str).encode()
        try:
            clients.apigatewaymanagementapi(self.endpoint).post_to_connection(ConnectionId=connection_id, Data=data)
        except ClientError as exc:
            error = exc.response.get("Error") or {}
            status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if error.get("Code") == "GoneException" or status == 410:
                raise ConnectionGone(connection_id) from exc
            raise DeliveryFailed(f"posting to {connection_id} failed: {error.get('Code')}") from exc


def control(message: BaseModel) -> dict[str, Any]:
    """A control message (subscribed, pong, error…) as sent: fields that are not set are left out."""
    return message.model_dump(mode="json", exclude_none=True)


# ------------------------------------------------------------------------------- connections


@dataclass(frozen=True)
class Connection:
    connection_id: str
    principal: Principal
    expires_at: int


def _connection_item(connection_id: str, principal: Principal, connected_at: int) -> Item:
    expires_at = connected_at + CONNECTION_TTL_SECONDS
    return {
        **keys.realtime_connection_key(connection_id),
        keys.ENTITY: CONNECTION_ENTITY,
        "connection_id": connection_id,
        "kind": principal.kind,
        "principal_id": principal.id,
        "user_id": principal.user_id,
        "token_id": principal.token_id,
        "token_hash": principal.token_hash,
        "scopes": sorted(principal.scopes),
        "workspace_id": principal.workspace_id,
        "agent_name": principal.agent_name,
        "subscription_count": 0,
        "connected_at": iso(),
        "expires_at": expires_at,
        keys.TTL: expires_at,
    }


def _to_connection(item: Item) -> Connection:
    # Memberships are deliberately not carried over: every subscribe reads the membership afresh.
    principal = Principal(
        kind=item["kind"],
        id=item["principal_id"],
        user_id=item.get("user_id"),
        token_id=item["token_id"],
        token_hash=item["token_hash"],
        scopes=frozenset(item.get("scopes") or []),
        workspace_id=item.get("workspace_id"),
        agent_name=item.get("agent_name"),
        memberships={},
    )
    return Connection(item["connection_id"], principal, int(item["expires_at"]))


def connect(connection_id: str, token: str | None) -> Connection:
    """Accept a connection for a valid bearer token (Unauthorized otherwise) and remember who holds it."""
    if not token:
        raise Unauthorized("a bearer token is required: connect with ?token=<token>")
    principal = resolve_principal(token)
    item = _connection_item(connection_id, principal, epoch())
    get_store().put(item)
    return _to_connection(item)


def _load_connection(connection_id: str) -> Connection:
    item = get_store().get(keys.realtime_connection_key(connection_id))
    if item is None or int(item.get("expires_at") or 0) <= epoch():
        raise Unauthorized("this connection is not registered (or has expired); reconnect")
    return _to_connection(item)


def _require_live_token(principal: Principal) -> None:
    item = get_store().get(keys.token_key(principal.token_hash))
    expires_at = int((item or {}).get("expires_at") or 0)
    if item is None or item.get("revoked") is not None or (expires_at and expires_at <= epoch()):
        raise Unauthorized("the token is invalid, expired or revoked; reconnect with a valid one")


def disconnect(connection_id: str) -> int:
    """Forget a connection and every subscription it holds; the number of subscriptions removed."""
    return _remove_connection(connection_id)


def _remove_connection(connection_id: str) -> int:
    store = get_store()
    for _attempt in range(_TRANSACTION_ATTEMPTS):
        page = store.query(
            keys.realtime_connection_pk(connection_id), limit=MAX_SUBSCRIPTIONS_PER_CONNECTION + 1, consistent=True
        )
        if not page.items:
            return 0
        tx = store.transaction()
        removed = 0
        for item in page.items:
            if item.get(keys.ENTITY) == CONNECTION_SUBSCRIPTION_ENTITY:
                tx.delete(keys.realtime_subscriber_key(item["workspace_id"], item["channel_key"], connection_id))
                removed += 1
            tx.delete(keys.key(item[keys.PK], item[keys.SK]))
        try:
            tx.commit()
        except TransactionFailed as failure:
            # A subscribe of this very connection raced us: read its records again.
            logger.info("connection cleanup retried", extra={"reasons": failure.reasons})
            continue
        return removed
    raise Conflict("the connection changed while it was being removed; retry")


# ------------------------------------------------------------------------------ subscriptions


@dataclass(frozen=True)
class _Channel:
    name: str  # as the client names it
    key: str  # as stored: notifications carry the member's user id
    scope: str | None
    run_id: str | None = None
    user_id: str | None = None  # whose notifications


def _channel(name: str, principal: Principal) -> _Channel:
    if name.startswith("runs/"):
        run_id = name.removeprefix("runs/")
        return _Channel(name, keys.realtime_run_channel(run_id), "runs:read", run_id)
    if name == keys.REALTIME_WORKSPACE_CHANNEL:
        return _Channel(name, keys.REALTIME_WORKSPACE_CHANNEL, "runs:read")
    if not principal.user_id:
        raise Forbidden("notifications belong to people; an agent key has none")
    user_id = principal.user_id
    return _Channel(name, keys.realtime_notification_channel(user_id), None, user_id=user_id)


# Workspaces searched for a run channel named without its workspace (one BatchGetItem).
MAX_WORKSPACES_SEARCHED = 100


def _workspace_of(principal: Principal, channel: _Channel) -> str:
    """The workspace a channel named without one belongs to, as the contract writes it
    (`{"action":"subscribe","channel":"runs/<id>"}`): a workspace key's own; for a person, the one
    of their workspaces holding the run, or their only workspace for the other channels."""
    if principal.workspace_id:
        return principal.workspace_id
    assert principal.user_id is not None
    memberships, _ = list_memberships(principal.user_id, MAX_WORKSPACES_SEARCHED, None)
    workspaces = [membership.workspace_id for membership in memberships]
    if channel.run_id is not None:
        found = get_store().get_many([keys.run_key(ws, channel.run_id) for ws in workspaces])
        holding = [ws for ws, run in zip(workspaces, found, strict=True) if run is not None]
        if not holding:
            raise NotFound(f"run {channel.run_id} not found in any of your workspaces")
        return holding[0]
    if len(workspaces) != 1:
        detail = f"you belong to {len(workspaces)} workspaces: name one with workspace_id"
        raise Unprocessable(detail, errors=[{"field": "workspace_id", "message": detail, "type": "missing"}])
    return workspaces[0]


_NOTIFICATION_ID = re.compile(r"^ntf_[0-9a-z]{26}$")
_NOTIFICATION_ID_MAX = "ntf_" + "z" * 26


def _start_of(ws: str, channel: _Channel, since: int | str | None) -> int | str | None:
    """Where a new subscription's cursor starts: after `since`, or after the newest stored event."""
    if channel.run_id is not None:
        if since is not None and not isinstance(since, int):
            raise BadRequest("`since` on a run channel is a run event id (an integer)")
        last = _last_event_id(ws, channel.run_id)
        return last if since is None else min(since, last)
    if channel.user_id is not None:
        if since is not None and not (isinstance(since, str) and _NOTIFICATION_ID.match(since)):
            raise BadRequest("`since` on the notifications channel is a notification id (ntf_…)")
        return since if since is not None else notifications.newest_id(ws, channel.user_id) or ""
    if since is not None:
        raise BadRequest(
            "`since` does not apply to the workspace channel: its events are numbered per run; "
            "subscribe to runs/<run id> with `since` to replay one run"
        )
    return None


def _subscriber_item(connection: Connection, ws: str, channel: _Channel, delivered_through: int | str | None) -> Item:
    return {
        **keys.realtime_subscriber_key(ws, channel.key, connection.connection_id),
        keys.ENTITY: SUBSCRIBER_ENTITY,
        "connection_id": connection.connection_id,
        "workspace_id": ws,
        "channel": channel.name,
        "channel_key": channel.key,
        "user_id": connection.principal.user_id,
        "delivered_through": delivered_through,
        "subscribed_at": iso(),
        keys.TTL: connection.expires_at,
    }


def _last_event_id(ws: str, run_id: str) -> int:
    run = get_store().get(keys.run_key(ws, run_id))
    if run is None or run.get("deleted_at"):
        raise NotFound(f"run {run_id} not found")
    return int(run.get("last_event_id") or 0)


def subscribe(connection_id: str, message: Subscribe, poster: Poster) -> Subscribed:
    """Subscribe a connection to a channel of a workspace it belongs to; acknowledge, then replay.

    A run channel starts after `since` (or, without it, after the run's latest event): the events
    stored after that point are pushed before any live one. A replay ends with a `replayed` message;
    when it stopped at MAX_REPLAY_EVENTS (`complete: false`), subscribing again with `since` set to
    the last id received continues it."""
    connection = _load_connection(connection_id)
    principal = connection.principal
    _require_live_token(principal)
    channel = _channel(message.channel, principal)
    ws = message.workspace_id or _workspace_of(principal, channel)
    workspace_access(principal, ws, channel.scope)  # a non-member gets 404, a missing scope 403
    start = _start_of(ws, channel, message.since)
    _store_subscription(connection, ws, channel, start, resubscribe_from=message.since)
    acknowledged = Subscribed(channel=channel.name, workspace_id=ws, since=start if start != "" else None)
    poster.send(connection_id, control(acknowledged))
    replay: CatchUp | None = None
    if channel.run_id is not None and isinstance(start, int):
        replay = _catch_up(poster, ws, channel.run_id, connection_id, start, max_events=MAX_REPLAY_EVENTS)
    elif channel.user_id is not None and isinstance(start, str) and message.since is not None:
        replay = _catch_up_notifications(poster, ws, channel.user_id, connection_id, start,
                                         max_events=MAX_REPLAY_EVENTS)  # fmt: skip
    if replay is not None and message.since is not None:
        done = Replayed(channel=channel.name, workspace_id=ws, through=replay.delivered, complete=not replay.capped)
        poster.send(connection_id, control(done))
    return acknowledged


def _store_subscription(connection: Connection, ws: str, channel: _Channel, start: int | str | None, *,
                        resubscribe_from: int | str | None) -> None:  # fmt: skip
    store = get_store()
    cid = connection.connection_id
    under_limit = exists() & _count_below(MAX_SUBSCRIPTIONS_PER_CONNECTION)
    for _attempt in range(_TRANSACTION_ATTEMPTS):
        tx = store.transaction()
        tx.put(_subscriber_item(connection, ws, channel, start), not_exists())
        tx.put(
            {
                **keys.realtime_connection_subscription_key(cid, ws, channel.key),
                keys.ENTITY: CONNECTION_SUBSCRIPTION_ENTITY,
                "workspace_id": ws,
                "channel": channel.name,
                "channel_key": channel.key,
                keys.TTL: connection.expires_at,
            }
        )
        tx.update(keys.realtime_connection_key(cid), Update(add={"subscription_count": 1}), under_limit)
        try:
            tx.commit()
        except TransactionFailed as failure:
            failed = failure.failed_index()
            if failed == 0 and failure.reasons[0] == "ConditionalCheckFailed":
                # Already subscribed: a new `since` moves the run cursor back to replay from there.
                if resubscribe_from is not None and start is not None:
                    _rewind(ws, channel.key, cid, start)
                return
            if failed == 2 and failure.reasons[2] == "ConditionalCheckFailed":
                if failure.items[2] is None:
                    raise Unauthorized("this connection is not registered (or has expired); reconnect") from failure
                raise Conflict(
                    f"a connection holds at most {MAX_SUBSCRIPTIONS_PER_CONNECTION} subscriptions; unsubscribe first"
                ) from failure
            continue  # a concurrent write to the same items: try again
        return
    raise Conflict("the subscription changed while it was being stored; retry")


def _count_below(limit: int) -> Expr:
    return Expr("#count < :limit", {"#count": "subscription_count"}, {":limit": limit})


def _rewind(ws: str, channel_key: str, connection_id: str, start: int | str) -> None:
    try:
        get_store().update(
            keys.realtime_subscriber_key(ws, channel_key, connection_id),
            Update(set={"delivered_through": start}),
            exists(),
        )
    except ConditionFailed:  # unsubscribed in the meantime: nothing to rewind
        return


def unsubscribe(connection_id: str, message: Unsubscribe) -> Unsubscribed:
    """Stop a subscription (unsubscribing from a channel not subscribed to is not an error)."""
    connection = _load_connection(connection_id)
    channel = _channel(message.channel, connection.principal)
    ws = message.workspace_id or _workspace_of(connection.principal, channel)
    _remove_subscription(connection_id, ws, channel.key)
    return Unsubscribed(channel=channel.name, workspace_id=ws)


def _remove_subscription(connection_id: str, ws: str, channel_key: str) -> None:
    store = get_store()
    for _attempt in range(_TRANSACTION_ATTEMPTS):
        tx = store.transaction()
        tx.delete(keys.realtime_subscriber_key(ws, channel_key, connection_id), exists())
        tx.delete(keys.realtime_connection_subscription_key(connection_id, ws, channel_key))
        tx.update(keys.realtime_connection_key(connection_id), Update(add={"subscription_count": -1}), exists())
        try:
            tx.commit()
        except TransactionFailed as failure:
            if "TransactionConflict" in failure.reasons:
                continue  # a concurrent write to the same items: try again
            # Not subscribed (or the connection is gone): there is nothing to stop.
        return


def ping() -> Pong:
    return Pong()


# -------------------------------------------------------------------------------- delivering


def _subscribers(ws: str, channel_key: str) -> Iterator[Item]:
    """Every live subscriber of a channel, page by page."""
    now = epoch()
    start_key: dict[str, Any] | None = None
    while True:
        page = get_store().query(
            keys.realtime_channel_pk(ws, channel_key), limit=SUBSCRIBERS_PER_PAGE, start_key=start_key, consistent=True
        )
        for item in page.items:
            if int(item.get(keys.TTL) or 0) > now:  # TTL removes expired ones late; skip them now
                yield item
        if not page.last_key:
            return
        start_key = page.last_key


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


def _claim(ws: str, channel_key: str, connection_id: str, delivered: Any, through: Any) -> Any:
    """Move a subscriber's cursor from `delivered` to `through`: None when this caller won the range,
    else where the cursor is now (another deliverer moved it). Raises KeyError when unsubscribed."""
    try:
        get_store().update(
            keys.realtime_subscriber_key(ws, channel_key, connection_id),
            Update(set={"delivered_through": through}),
            attr_eq("delivered_through", delivered),
        )
    except ConditionFailed as lost:
        if lost.current is None:
            raise KeyError(connection_id) from lost
        return lost.current.get("delivered_through")
    return None


def _release(ws: str, channel_key: str, connection_id: str, claimed_through: Any, delivered: Any) -> None:
    """Give back the undelivered end of a claimed range, so the next deliverer sends it."""
    try:
        get_store().update(
            keys.realtime_subscriber_key(ws, channel_key, connection_id),
            Update(set={"delivered_through": delivered}),
            attr_eq("delivered_through", claimed_through),
        )
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
    next_chunk: Callable[[Any, int], list[dict[str, Any]]],
    push_of: Callable[[dict[str, Any]], dict[str, Any]],
    cursor: Callable[[Any], Any],
    max_events: int,
) -> CatchUp:
    """Send a subscriber what follows its cursor, a range at a time: each range is claimed on the
    cursor (a conditional write) before it is posted, so no item goes out twice, and a failed post
    gives back the undelivered end of its range. `next_chunk(delivered, budget)` reads what follows
    `delivered` (at most `budget` items); `cursor` turns an id as stored into a cursor value.
    Raises ConnectionGone and DeliveryFailed."""
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


def _catch_up(
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

    def next_chunk(after: int, budget: int) -> list[dict[str, Any]]:
        if through is not None and after >= through:
            return []
        if known and int(known[0]["id"]) <= after + 1:
            chunk = [e for e in known if int(e["id"]) > after]
        else:
            page = get_store().query(
                keys.run_events_pk(ws, run_id),
                sk_between=(keys.run_events_sk(after + 1), keys.run_events_sk(keys.RUN_EVENTS_MAX_ID)),
                limit=ITEMS_PER_READ,
                consistent=True,
            )
            chunk = events_of(page.items, after)
        if through is not None:
            chunk = [e for e in chunk if int(e["id"]) <= through]
        return chunk[: min(MAX_EVENTS_PER_CLAIM, budget)]

    return _deliver_claimed(
        poster, ws, keys.realtime_run_channel(run_id), connection_id, delivered,
        next_chunk=next_chunk, push_of=lambda event: run_event_push(run_id, event), cursor=_run_cursor,
        max_events=max_events,
    )  # fmt: skip


def notification_push(item: Mapping[str, Any]) -> dict[str, Any]:
    notification = Notification.model_validate({**item, "read": bool(item.get("read_at"))})
    return Push(
        channel="notifications",
        id=notification.id,
        event=notification.type.value,
        data=notification.model_dump(mode="json"),
    ).model_dump(mode="json")


def _catch_up_notifications(
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
    subscriber, in claimed ranges as `_catch_up` does for run events."""
    prefix = keys.notification_prefix()

    def next_chunk(after: str, budget: int) -> list[dict[str, Any]]:
        if through is not None and after >= through:
            return []
        budget = min(ITEMS_PER_READ, budget)
        page = get_store().query(
            keys.notification_inbox_pk(ws, user_id),
            sk_between=(f"{prefix}{after}", f"{prefix}{through or _NOTIFICATION_ID_MAX}"),
            limit=budget + 1,
            consistent=True,
        )
        return [item for item in page.items if str(item["id"]) > after][:budget]

    return _deliver_claimed(
        poster, ws, keys.realtime_notification_channel(user_id), connection_id, delivered,
        next_chunk=next_chunk, push_of=notification_push, cursor=_notification_cursor, max_events=max_events,
    )  # fmt: skip


# ------------------------------------------------------------------------ access at push time


@dataclass
class PushGate:
    """Whether a subscriber may still receive a workspace's pushes, checked when pushing.

    A connection whose token was revoked or expired (or that is no longer registered) and a member
    removed from the workspace (or without the channel's scope any more) get nothing more. Each
    (connection, workspace, scope) is checked once per gate: one gate serves one fan-out batch."""

    _verdicts: dict[tuple[str, str, str | None], str | None] = field(default_factory=dict)

    def refusal(self, connection_id: str, ws: str, scope: str | None) -> str | None:
        """None when the push may go out; else "connection" (the token or connection is no longer
        good) or "access" (no longer a member, or the scope is missing)."""
        key = (connection_id, ws, scope)
        if key not in self._verdicts:
            self._verdicts[key] = _push_refusal(connection_id, ws, scope)
        return self._verdicts[key]


def _push_refusal(connection_id: str, ws: str, scope: str | None) -> str | None:
    store = get_store()
    item = store.get(keys.realtime_connection_key(connection_id))
    if item is None or int(item.get("expires_at") or 0) <= epoch():
        return "connection"
    principal = _to_connection(item).principal
    person = principal.kind != "agent_key" and principal.user_id is not None
    wanted = [keys.token_key(principal.token_hash)]
    if person:
        assert principal.user_id is not None
        wanted.append(keys.member_key(ws, principal.user_id))
    token, *member = store.get_many(wanted)
    expires_at = int((token or {}).get("expires_at") or 0)
    if token is None or token.get("revoked") is not None or (expires_at and expires_at <= epoch()):
        return "connection"
    if person:
        if not member or member[0] is None:
            return "access"
        principal = replace(principal, memberships={ws: str(member[0]["role"])})
    try:
        workspace_access(principal, ws, scope)
    except (NotFound, Forbidden):
        return "access"
    return None


def _admitted(gate: PushGate, subscriber: Mapping[str, Any], scope: str | None, poster: Poster,
              result: FanoutResult) -> bool:  # fmt: skip
    """Check a subscriber at push time; one refused is told so and loses what it may no longer have."""
    connection_id, ws = str(subscriber["connection_id"]), str(subscriber["workspace_id"])
    refusal = gate.refusal(connection_id, ws, scope)
    if refusal is None:
        return True
    logger.info("subscriber lost access; removing it", extra={"connection_id": connection_id, "reason": refusal})
    notice = Unsubscribed(channel=str(subscriber.get("channel") or ""), workspace_id=ws)
    with suppress(ConnectionGone, DeliveryFailed):  # the removal below is what matters
        poster.send(connection_id, control(notice))
    if refusal == "connection":
        _remove_connection(connection_id)
    else:
        _remove_subscription(connection_id, ws, str(subscriber["channel_key"]))
    result.revoked += 1
    return False


@dataclass
class FanoutResult:
    pushed: int = 0
    gone: int = 0
    revoked: int = 0  # subscribers that lost access since subscribing, and were removed


def fan_out(image: Mapping[str, Any], poster: Poster, gate: PushGate | None = None) -> FanoutResult:
    """Push what a newly stored item carries to the subscribers of its channels that may still
    have it (`gate`: one per fan-out batch, so each connection is checked once per batch)."""
    gate = gate or PushGate()
    entity = image.get(keys.ENTITY)
    if entity == RUN_EVENTS_ENTITY:
        return _fan_out_run_events(image, poster, gate)
    if entity == NOTIFICATION_ENTITY:
        return _fan_out_notification(image, poster, gate)
    return FanoutResult()


def _drop(connection_id: str, result: FanoutResult) -> None:
    logger.info("connection gone; removing it", extra={"connection_id": connection_id})
    _remove_connection(connection_id)
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
    for subscriber in _subscribers(ws, keys.realtime_run_channel(run_id)):
        connection_id = str(subscriber["connection_id"])
        served.add(connection_id)
        if not _admitted(gate, subscriber, "runs:read", poster, result):
            continue
        delivered = int(subscriber.get("delivered_through") or 0)
        try:
            caught_up = _catch_up(poster, ws, run_id, connection_id, delivered, known=events, through=through)
        except ConnectionGone:
            _drop(connection_id, result)
            continue
        except DeliveryFailed as exc:
            failed = failed or exc
            continue
        result.pushed += caught_up.sent
    # The workspace channel gets every run's events, live; a connection following this run already has them.
    for subscriber in _subscribers(ws, keys.REALTIME_WORKSPACE_CHANNEL):
        connection_id = str(subscriber["connection_id"])
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
    for subscriber in _subscribers(ws, keys.realtime_notification_channel(user_id)):
        connection_id = str(subscriber["connection_id"])
        if not _admitted(gate, subscriber, None, poster, result):
            continue
        delivered = subscriber.get("delivered_through")
        if delivered is None:  # a live-only subscription (made before notifications had cursors)
            result.pushed += _push_all(poster, connection_id, [notification_push(image)], result)
            continue
        try:
            caught_up = _catch_up_notifications(poster, ws, user_id, connection_id, str(delivered), through=through)
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

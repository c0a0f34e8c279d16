"""WebSocket connections and their subscriptions.

A connection's record and its own record of each subscription share the connection's partition,
so a disconnect finds everything in one Query. Each subscription is also stored under its channel
(a subscriber), so a fan-out reads a channel's subscribers in one Query per page. All of them
expire with the connection (API Gateway's two hours, through `ttl`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pynamodb.attributes import Attribute, UnicodeAttribute
from pynamodb.constants import NUMBER, STRING
from pynamodb.expressions.operand import Path

from agentplane import keys
from agentplane.entities.base import Entity, EpochTTL, Keys, ListDocument, number
from agentplane.entities.notifications import NotificationItem
from agentplane.entities.patterns import access_pattern
from agentplane.ids import epoch
from agentplane.store import Item, QuerySpec, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition
    from pynamodb.expressions.update import Action

# Subscribers read per Query when a channel's are wanted.
SUBSCRIBERS_PER_PAGE = 100


class RealtimeConnectionItem(Entity, discriminator="realtime_connection"):
    """Who holds a connection, as its `$connect` found them (memberships are read afresh on use)."""

    connection_id = UnicodeAttribute()
    principal_kind = UnicodeAttribute(attr_name="kind")  # `kind()` is the item's own
    principal_id = UnicodeAttribute()
    user_id = UnicodeAttribute(null=True)
    token_id = UnicodeAttribute()
    token_hash = UnicodeAttribute()
    scopes = ListDocument(default=list)
    workspace_id = UnicodeAttribute(null=True)
    agent_name = UnicodeAttribute(null=True)
    subscription_count = number(default=0)
    connected_at = UnicodeAttribute()
    expires_at = number()
    ttl = EpochTTL(attr_name=keys.TTL, null=True)

    def where(self) -> Keys:
        return Keys(keys.realtime_connection_key(self.connection_id))

    def expired(self) -> bool:
        return int(self.expires_at or 0) <= epoch()

    @classmethod
    def below(cls, limit: int) -> Condition:
        """It holds fewer than `limit` subscriptions."""
        fewer: Condition = cls.subscription_count < limit
        return fewer


class RealtimeConnectionSubscriptionItem(Entity, discriminator="realtime_connection_subscription"):
    """The connection's own record of one of its subscriptions."""

    connection_id = UnicodeAttribute()
    workspace_id = UnicodeAttribute()
    channel = UnicodeAttribute()
    channel_key = UnicodeAttribute()
    ttl = EpochTTL(attr_name=keys.TTL, null=True)

    def where(self) -> Keys:
        return Keys(keys.realtime_connection_subscription_key(self.connection_id, self.workspace_id, self.channel_key))


class Cursor(Attribute[int | str]):
    """How far a subscriber has been delivered: a run event id (a number) on a run channel, a
    notification id (a string) on the notifications channel. It is stored as DynamoDB's own
    number or string, whichever the value is, so that conditions compare like with like. A pynamodb
    attribute has one DynamoDB type, so reading, setting and comparing go by the value's type here
    (and `RealtimeSubscriberItem.serialize` writes it so)."""

    attr_type = NUMBER  # nominal: the stored type follows the value

    def get_value(self, value: dict[str, Any]) -> Any:
        return value

    def serialize(self, value: Any) -> Any:
        return str(value)

    def deserialize(self, value: dict[str, Any]) -> int | str:
        return int(value[NUMBER]) if NUMBER in value else str(value[STRING])

    def typed(self, value: int | str) -> dict[str, Any]:
        return {NUMBER: str(value)} if isinstance(value, int) else {STRING: value}

    def set(self, value: Any) -> Action:  # type: ignore[override]
        return Path(self.attr_name).set(value)  # a path without the attribute: typed by the value

    def at(self, value: int | str) -> Condition:
        """The cursor is exactly here (a claim of the range after it)."""
        here: Condition = Path(self.attr_name) == value
        return here


class RealtimeSubscriberItem(Entity, discriminator="realtime_subscriber"):
    """A subscription as its channel holds it: who gets the channel's pushes, and how far."""

    connection_id = UnicodeAttribute()
    workspace_id = UnicodeAttribute()
    channel = UnicodeAttribute()  # as the client names it
    channel_key = UnicodeAttribute()  # as stored: notifications carry the member's user id
    user_id = UnicodeAttribute(null=True)
    # None on the workspace channel, which is live only.
    delivered_through = Cursor(null=True)
    subscribed_at = UnicodeAttribute()
    ttl = EpochTTL(attr_name=keys.TTL, null=True)

    def where(self) -> Keys:
        return Keys(keys.realtime_subscriber_key(self.workspace_id, self.channel_key, self.connection_id))

    def serialize(self, null_check: bool = True) -> dict[str, dict[str, Any]]:
        values = super().serialize(null_check)
        if self.delivered_through is not None:
            values["delivered_through"] = RealtimeSubscriberItem.delivered_through.typed(self.delivered_through)
        return values

    def live(self) -> bool:
        # TTL removes expired subscribers late; until then they are skipped.
        return self.ttl is not None and int(self.ttl.timestamp()) > epoch()


@access_pattern(
    RealtimeConnectionItem, partition=keys.realtime_connection_pk, sort="all: the connection and its subscriptions"
)
def connection_records(connection_id: str, *, limit: int) -> list[Entity]:
    """A connection's record and its records of its subscriptions, strongly consistent (a
    disconnect removes them all)."""
    spec = QuerySpec(keys.realtime_connection_pk(connection_id), consistent=True)
    return get_store().select(Entity, spec, limit=limit).items


@access_pattern(RealtimeSubscriberItem, partition=keys.realtime_channel_pk, sort="all, by connection id")
def subscribers_of(ws_id: str, channel_key: str) -> Iterator[RealtimeSubscriberItem]:
    """Every live subscriber of a workspace's channel, strongly consistent, a page at a time."""
    spec = QuerySpec(keys.realtime_channel_pk(ws_id, channel_key), consistent=True)
    start: dict[str, Any] | None = None
    while True:
        page = get_store().select(RealtimeSubscriberItem, spec, limit=SUBSCRIBERS_PER_PAGE, start=start)
        yield from (subscriber for subscriber in page.items if subscriber.live())
        if page.last_key is None:
            return
        start = page.last_key


_NOTIFICATION_ID_MAX = "ntf_" + "z" * 26


@access_pattern(
    "notification", partition=keys.notification_inbox_pk, sort="range NOTIF#{after} … NOTIF#{through}, oldest first"
)
def notifications_after(ws_id: str, user_id: str, after: str, *, through: str | None = None, limit: int) -> list[Item]:
    """A member's notifications with an id above `after` (and up to `through`), oldest first, at
    most `limit`, strongly consistent: what a stream or a subscription has not delivered yet.

    Notifications are the notifications family's entities, answered as the table holds them
    (plain items: `Notification.model_validate` turns each into the API model)."""
    prefix = keys.notification_prefix()
    spec = QuerySpec(
        keys.notification_inbox_pk(ws_id, user_id),
        sk_between=(f"{prefix}{after}", f"{prefix}{through or _NOTIFICATION_ID_MAX}"),
        consistent=True,
    )
    # The range starts at `after` itself, which is left out.
    found = get_store().select(NotificationItem, spec, limit=limit + 1).items
    return [item.as_item() for item in found if item.id > after][:limit]

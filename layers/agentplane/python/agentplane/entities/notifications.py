"""A member's inbox in a workspace: their notifications and the unread counter beside them.

An inbox is one partition (`notification_inbox_pk`): the notifications sort by id (newest last)
and the counter sits after them. Unread notifications are also in a sparse index (GSI1) that an
item leaves when it is read.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pynamodb.attributes import UnicodeAttribute

from agentplane import keys
from agentplane.entities.base import Entity, EpochTTL, Keys, MapDocument, number
from agentplane.entities.patterns import access_pattern
from agentplane.entities.workspaces import MemberItem
from agentplane.ids import iso
from agentplane.models.notifications import Notification
from agentplane.store import EntityPage, QuerySpec, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition
    from pynamodb.expressions.update import Action


class NotificationItem(Entity[Notification], discriminator="notification"):
    """One delivery of a notification to one member (the stream carries it to live clients)."""

    workspace_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    id = UnicodeAttribute()
    type = UnicodeAttribute()
    title = UnicodeAttribute()
    body = UnicodeAttribute(default="")
    data = MapDocument(default=dict)
    link = UnicodeAttribute(null=True)
    source = UnicodeAttribute(null=True)
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    read_at = UnicodeAttribute(null=True)
    ttl = EpochTTL(attr_name="ttl", null=True)  # read notifications expire; unread ones stay

    # `builtins.type`: the class body's own `type` is the notification's attribute.
    internal = frozenset({"ttl"})

    def where(self) -> Keys:
        unread = None if self.read_at else (keys.notification_unread_gsi(self.workspace_id, self.user_id), self.id)
        return Keys(keys.notification_key(self.workspace_id, self.user_id, self.id), gsi1=unread)

    def to_model(self) -> Notification:
        return Notification.model_validate({**self.fields(), "read": bool(self.read_at)})

    @classmethod
    def unread(cls) -> Condition:
        return cls.read_at.does_not_exist()

    def mark_read(self, at: datetime, kept_for: timedelta) -> list[Action]:
        """The actions that mark this notification read at `at`: it leaves the unread index and
        expires `kept_for` later."""
        return [*self.assign(read_at=iso(at), ttl=at + kept_for), *self.restamp()]


class NotificationCounterItem(Entity, discriminator="notification_counter"):
    """A member's unread count, and the newest notification id their inbox holds."""

    workspace_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    unread = number(attr_name="count", default=0)  # (`count` would hide the model's own count)
    last_id = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)

    def where(self) -> Keys:
        return Keys(keys.notification_counter_key(self.workspace_id, self.user_id))

    @classmethod
    def counted(cls, ws_id: str, user_id: str, delta: int) -> list[Action]:
        """The actions (of an upsert: the first delivery makes the counter) that move a member's
        unread count by `delta`."""
        return [
            cls.workspace_id.set(ws_id),
            cls.user_id.set(user_id),
            cls.updated_at.set(iso()),
            cls.unread.add(delta),
        ]

    @classmethod
    def arrival(cls, ws_id: str, user_id: str, notification_id: str) -> list[Action]:
        """One more unread notification, now the newest the inbox holds."""
        return [*cls.counted(ws_id, user_id, +1), cls.last_id.set(notification_id)]

    @classmethod
    def lands_after(cls, notification_id: str) -> Condition:
        """The inbox holds no notification newer than `notification_id`."""
        after: Condition = cls.last_id.does_not_exist() | (cls.last_id < notification_id)
        return after


@access_pattern(NotificationItem, partition=keys.notification_unread_gsi, index=keys.GSI1)
def unread_notifications(
    ws_id: str,
    user_id: str,
    *,
    type: str | None = None,
    newest_first: bool,
    limit: int,
    start: dict[str, Any] | None,
) -> EntityPage[NotificationItem]:
    """A member's unread notifications in id order (sparse: never reads the ones already read);
    `type` keeps those of that type."""
    condition = NotificationItem.type == type if type is not None else None
    spec = QuerySpec(
        keys.notification_unread_gsi(ws_id, user_id), index=keys.GSI1, newest_first=newest_first, filter=condition
    )
    return get_store().select(NotificationItem, spec, limit=limit, start=start)


@access_pattern(NotificationItem, partition=keys.notification_inbox_pk, sort="prefix NOTIF#, newest first")
def inbox(
    ws_id: str, user_id: str, *, only_read: bool, type: str | None, limit: int, start: dict[str, Any] | None
) -> EntityPage[NotificationItem]:
    """A member's notifications, newest first; `only_read` keeps the read ones, `type` those of
    that type."""
    conditions: list[Condition] = []
    if only_read:
        conditions.append(NotificationItem.read_at.exists())
    if type is not None:
        conditions.append(NotificationItem.type == type)
    condition: Condition | None = None
    for part in conditions:
        condition = part if condition is None else condition & part
    spec = QuerySpec(
        keys.notification_inbox_pk(ws_id, user_id),
        sk_prefix=keys.notification_prefix(),
        newest_first=True,
        filter=condition,
    )
    return get_store().select(NotificationItem, spec, limit=limit, start=start)


@access_pattern("member", partition=keys.ws_pk, sort="prefix MEMBER#, strongly consistent")
def workspace_member_ids(ws_id: str, *, limit: int) -> tuple[list[str], bool]:
    """The user ids of a workspace's first `limit` members, strongly consistent, and whether more
    remain (a notification to every member). Members are the workspace's own items: this reads
    their keys and user ids as the table holds them, in one Query."""
    spec = QuerySpec(keys.ws_pk(ws_id), sk_prefix=keys.MEMBER_PREFIX, consistent=True)
    page = get_store().select(MemberItem, spec, limit=limit)
    return [member.user_id for member in page.items], page.last_key is not None

"""Threads, their numbered messages and public shares; team messages by channel.

A thread lives in its workspace's partition and, while it is not deleted, in the workspace's
thread list (GSI1), sorted by its last activity: its creation, then its latest message. Its
messages and shares share one partition per thread. Team messages live in one partition per
channel and are listed across channels on GSI1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pynamodb.attributes import UnicodeAttribute, VersionAttribute

from agentplane import keys
from agentplane.entities.base import Entity, Keys, number
from agentplane.entities.patterns import access_pattern
from agentplane.models.threads import TeamMessage, Thread, ThreadMessage, ThreadShare
from agentplane.store import EntityPage, QuerySpec, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition
    from pynamodb.expressions.update import Action


class ThreadItem(Entity[Thread], discriminator="thread"):
    workspace_id = UnicodeAttribute()
    id = UnicodeAttribute()
    title = UnicodeAttribute()
    description = UnicodeAttribute(default="")
    status = UnicodeAttribute()
    message_count = number(default=0)  # numbers the thread's messages: the last one posted
    last_message_at = UnicodeAttribute(null=True)
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()
    deleted_at = UnicodeAttribute(null=True)  # soft delete: out of the list, messages unreachable

    internal = frozenset({"deleted_at"})

    def where(self) -> Keys:
        last_active = self.last_message_at or self.created_at
        listed = None if self.deleted_at else (keys.thread_list_gsi(self.workspace_id), f"{last_active}#{self.id}")
        return Keys(keys.thread_key(self.workspace_id, self.id), gsi1=listed)

    @classmethod
    def undeleted(cls) -> Condition:
        """The thread has not been deleted (for a write to an item read before)."""
        return cls.deleted_at.does_not_exist()

    @classmethod
    def live(cls) -> Condition:
        """The thread exists and has not been deleted."""
        live: Condition = cls.present() & cls.undeleted()
        return live

    def soft_delete(self, at: str) -> list[Action]:
        """The actions that delete the thread but keep its item: it leaves the thread list."""
        return [*self.assign(deleted_at=at), *self.restamp()]

    def numbered(self, sequence: int, at: str) -> list[Action]:
        """The actions that count a message posted at `at` as number `sequence`: the thread moves
        up the list to its latest activity (its version stays: the thread itself did not change)."""
        return [*self.assign(message_count=sequence, last_message_at=at), *self.restamp()]


class ThreadMessageItem(Entity[ThreadMessage], discriminator="thread_message"):
    workspace_id = UnicodeAttribute()
    thread_id = UnicodeAttribute()
    id = UnicodeAttribute()
    sequence = number()
    role = UnicodeAttribute()
    author = UnicodeAttribute()
    content = UnicodeAttribute()
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(keys.thread_message_key(self.workspace_id, self.thread_id, int(self.sequence)))


class ThreadShareItem(Entity[ThreadShare], discriminator="thread_share"):
    """A public share of a thread; its secret is a token record of kind 'share', stored by hash."""

    workspace_id = UnicodeAttribute()
    thread_id = UnicodeAttribute()
    id = UnicodeAttribute()
    token_hash = UnicodeAttribute()
    token_hint = UnicodeAttribute()
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    expires_at = UnicodeAttribute(null=True)
    revoked_at = UnicodeAttribute(null=True)

    internal = frozenset({"token_hash"})

    def where(self) -> Keys:
        return Keys(keys.thread_share_key(self.workspace_id, self.thread_id, self.id))


class TeamMessageItem(Entity[TeamMessage], discriminator="team_message"):
    workspace_id = UnicodeAttribute()
    channel = UnicodeAttribute()
    id = UnicodeAttribute()
    mode = UnicodeAttribute()
    author = UnicodeAttribute()
    to = UnicodeAttribute(null=True)
    content = UnicodeAttribute()
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(
            keys.team_message_key(self.workspace_id, self.channel, self.id),
            gsi1=(keys.team_message_list_gsi(self.workspace_id), self.id),
        )


@access_pattern(ThreadItem, partition=keys.thread_list_gsi, index=keys.GSI1, sort="most recently active first")
def threads_of_workspace(
    ws_id: str, *, status: str | None, limit: int, start: dict[str, Any] | None
) -> EntityPage[ThreadItem]:
    """A workspace's live threads, most recently active first; `status` keeps those in that status."""
    condition = ThreadItem.status == status if status is not None else None
    spec = QuerySpec(keys.thread_list_gsi(ws_id), index=keys.GSI1, newest_first=True, filter=condition)
    return get_store().select(ThreadItem, spec, limit=limit, start=start)


@access_pattern(ThreadMessageItem, partition=keys.thread_pk, sort="prefix MSG#, strongly consistent")
def messages_of_thread(
    ws_id: str, thread_id: str, *, limit: int, start: dict[str, Any] | None
) -> EntityPage[ThreadMessageItem]:
    """A thread's messages in the order it received them, strongly consistent."""
    spec = QuerySpec(keys.thread_pk(ws_id, thread_id), sk_prefix=keys.thread_message_prefix(), consistent=True)
    return get_store().select(ThreadMessageItem, spec, limit=limit, start=start)


@access_pattern(ThreadShareItem, partition=keys.thread_pk, sort="prefix SHARE#, strongly consistent")
def shares_of_thread(
    ws_id: str, thread_id: str, *, limit: int, start: dict[str, Any] | None
) -> EntityPage[ThreadShareItem]:
    """A thread's shares, revoked ones included, strongly consistent."""
    spec = QuerySpec(keys.thread_pk(ws_id, thread_id), sk_prefix=keys.thread_share_prefix(), consistent=True)
    return get_store().select(ThreadShareItem, spec, limit=limit, start=start)


@access_pattern(TeamMessageItem, partition=keys.team_message_pk, sort="newest first")
def messages_of_channel(
    ws_id: str, channel: str, *, mode: str | None, limit: int, start: dict[str, Any] | None
) -> EntityPage[TeamMessageItem]:
    """One channel's team messages, newest first; `mode` keeps team or direct ones."""
    condition = TeamMessageItem.mode == mode if mode is not None else None
    spec = QuerySpec(keys.team_message_pk(ws_id, channel), newest_first=True, filter=condition)
    return get_store().select(TeamMessageItem, spec, limit=limit, start=start)


@access_pattern(TeamMessageItem, partition=keys.team_message_list_gsi, index=keys.GSI1, sort="newest first")
def team_messages_of_workspace(
    ws_id: str, *, mode: str | None, limit: int, start: dict[str, Any] | None
) -> EntityPage[TeamMessageItem]:
    """Every channel's team messages, newest first; `mode` keeps team or direct ones."""
    condition = TeamMessageItem.mode == mode if mode is not None else None
    spec = QuerySpec(keys.team_message_list_gsi(ws_id), index=keys.GSI1, newest_first=True, filter=condition)
    return get_store().select(TeamMessageItem, spec, limit=limit, start=start)

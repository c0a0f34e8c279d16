"""Agent memories and their id pointers. A workspace's memories share one partition, SK
`<agent>#<key>`, so one agent's are a key prefix; three sparse indexes hold the shared ones, the
ones that expire (by expiry, so the expired ones are one key range) and the ones of each type.
A pointer item per memory id names its agent and key (revalidate finds a memory by id)."""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pynamodb.attributes import BooleanAttribute, UnicodeAttribute, VersionAttribute

from agentplane import keys
from agentplane.entities.base import Entity, Keys, number
from agentplane.entities.patterns import access_pattern
from agentplane.ids import iso
from agentplane.models.memories import Memory
from agentplane.store import LIST_READ_BUDGET, EntityPage, QuerySpec, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition


class MemoryItem(Entity[Memory], discriminator="memory"):
    workspace_id = UnicodeAttribute()
    id = UnicodeAttribute()
    agent_name = UnicodeAttribute()
    # The memory's key within its agent (stored as `key`; `Entity.key` is the table key).
    name = UnicodeAttribute(attr_name="key")
    memory_type = UnicodeAttribute(attr_name="type")
    content = UnicodeAttribute()
    shared = BooleanAttribute(default=False)
    expires_days = number(null=True)
    expires_at = UnicodeAttribute(null=True)  # last_validated_at + expires_days
    last_validated_at = UnicodeAttribute()
    search_text = UnicodeAttribute()  # the lower-cased key and content, for search
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_by = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()

    internal = frozenset({"search_text"})
    derived = ("search_text",)

    def where(self) -> Keys:
        ws, agent, name = self.workspace_id, self.agent_name, self.name
        sk = keys.memory_sk(agent, name)
        expiring = (keys.memory_expiry_gsi(ws), keys.memory_expiry_sk(self.expires_at, agent, name))
        return Keys(
            keys.memory_key(ws, agent, name),
            gsi1=(keys.memory_shared_gsi(ws), sk) if self.shared else None,
            gsi2=expiring if self.expires_at else None,
            gsi3=(keys.memory_type_gsi(ws, self.memory_type), sk),
        )

    def derive(self) -> None:
        self.search_text = f"{self.name}\n{self.content}".lower()

    def is_expired(self, at: str) -> bool:
        return bool(self.expires_at and self.expires_at < at)

    def to_model(self, at: str | None = None) -> Memory:
        """The memory as the API shows it; `expired` as of `at` (now, unless given)."""
        fields: dict[str, Any] = self.fields()
        fields["key"], fields["type"] = fields.pop("name"), fields.pop("memory_type")
        return Memory.model_validate({**fields, "expired": self.is_expired(at or iso())})


class MemoryPointerItem(Entity, discriminator="memory_pointer"):
    """Names the agent and key of a memory id, written and deleted in the memory's transactions."""

    workspace_id = UnicodeAttribute()
    id = UnicodeAttribute()
    agent_name = UnicodeAttribute()
    name = UnicodeAttribute(attr_name="key")

    def where(self) -> Keys:
        return Keys(keys.memory_id_key(self.workspace_id, self.id))


def _all(*conditions: Condition | None) -> Condition | None:
    present = [condition for condition in conditions if condition is not None]
    return functools.reduce(operator.and_, present) if present else None


def _narrowed(memory_type: str | None, agent_name: str | None, words: Sequence[str]) -> Condition | None:
    """Of one type, of one agent, holding every word (in its key or content, any case)."""
    return _all(
        MemoryItem.memory_type == memory_type if memory_type is not None else None,
        MemoryItem.agent_name == agent_name if agent_name is not None else None,
        *(MemoryItem.search_text.contains(word) for word in words),
    )


@access_pattern(MemoryItem, partition=keys.memory_pk)
def memories_of_workspace(
    ws_id: str, *, words: Sequence[str] = (), limit: int, start: dict[str, Any] | None, budget: int = LIST_READ_BUDGET
) -> EntityPage[MemoryItem]:
    """A workspace's memories by agent and key; `words` keeps those holding every word."""
    spec = QuerySpec(keys.memory_pk(ws_id), filter=_narrowed(None, None, words))
    return get_store().fill(MemoryItem, spec, limit=limit, start=start, budget=budget)


@access_pattern(MemoryItem, partition=keys.memory_pk, sort="prefix <agent>#")
def memories_of_agent(
    ws_id: str,
    agent_name: str,
    *,
    memory_type: str | None = None,
    words: Sequence[str] = (),
    limit: int,
    start: dict[str, Any] | None = None,
    budget: int = LIST_READ_BUDGET,
) -> EntityPage[MemoryItem]:
    """One agent's memories by key (of one type, holding every word, when asked)."""
    spec = QuerySpec(
        keys.memory_pk(ws_id),
        sk_prefix=keys.memory_agent_prefix(agent_name),
        filter=_narrowed(memory_type, None, words),
    )
    return get_store().fill(MemoryItem, spec, limit=limit, start=start, budget=budget)


@access_pattern(MemoryItem, partition=keys.memory_type_gsi, index=keys.GSI3)
def memories_of_type(
    ws_id: str,
    memory_type: str,
    *,
    words: Sequence[str] = (),
    limit: int,
    start: dict[str, Any] | None,
    budget: int = LIST_READ_BUDGET,
) -> EntityPage[MemoryItem]:
    """A workspace's memories of one type by agent and key (holding every word, when asked)."""
    spec = QuerySpec(keys.memory_type_gsi(ws_id, memory_type), index=keys.GSI3, filter=_narrowed(None, None, words))
    return get_store().fill(MemoryItem, spec, limit=limit, start=start, budget=budget)


@access_pattern(MemoryItem, partition=keys.memory_shared_gsi, index=keys.GSI1, sort="prefix <agent>#, or all")
def shared_memories(
    ws_id: str,
    *,
    agent_name: str | None = None,
    memory_type: str | None = None,
    limit: int,
    start: dict[str, Any] | None = None,
) -> EntityPage[MemoryItem]:
    """A workspace's shared memories by agent and key (one agent's, of one type, when asked)."""
    spec = QuerySpec(
        keys.memory_shared_gsi(ws_id),
        index=keys.GSI1,
        sk_prefix=keys.memory_agent_prefix(agent_name) if agent_name else None,
        filter=_narrowed(memory_type, None, ()),
    )
    return get_store().fill(MemoryItem, spec, limit=limit, start=start)


@access_pattern(MemoryItem, partition=keys.memory_expiry_gsi, index=keys.GSI2, sort="range up to now")
def expired_memories(
    ws_id: str,
    now: str,
    *,
    agent_name: str | None,
    memory_type: str | None,
    limit: int,
    start: dict[str, Any] | None,
) -> EntityPage[MemoryItem]:
    """The memories whose expiry has passed at `now`, soonest expired first (one agent's, of one
    type, when asked)."""
    # SKs are `<expires_at>#…`: every one that sorts at or below now expired before now.
    spec = QuerySpec(
        keys.memory_expiry_gsi(ws_id),
        index=keys.GSI2,
        sk_between=("0", now),
        filter=_narrowed(memory_type, agent_name, ()),
    )
    return get_store().fill(MemoryItem, spec, limit=limit, start=start)

"""Agent memories (Toban): versioned upserts by agent and key, shared and expiring entries, search.

Items (entities in `agentplane.entities.memories`, keys under `@keys:memories`):
- the memory, `memory_key(ws, agent, key)`: partition `memory_pk(ws)`, SK `<agent>#<key>`, so a
  workspace's memories are one Query and one agent's are one Query on the prefix `<agent>#`.
  - GSI1 `memory_shared_gsi(ws)` (SK `<agent>#<key>`) while it is shared;
  - GSI2 `memory_expiry_gsi(ws)` (SK `<expires_at>#<agent>#<key>`) while it has `expires_days`:
    the expired memories are the key range up to now, one bounded Query;
  - GSI3 `memory_type_gsi(ws, type)` (SK `<agent>#<key>`): the memories of one type.
- a pointer `memory_id_key(ws, id)` naming the agent and key, written and deleted in the memory's
  own transactions, so `…/memories/{id}/revalidate` finds a memory by id with two GetItems.

Versions (optimistic locking is optional, as Toban's upsert "supports" it):
- no version (in the body or If-Match): create the memory, or replace whatever is stored — last
  writer wins. Still each write is conditional on the version it read (or on absence) and a writer
  that lost a race reads again and replaces that, so concurrent writers are applied one after the
  other, each moving the version by one: none is lost half-way and none is torn;
- version 0: create only; the memory existing already is a 409;
- version n: replace only version n; any other is a 409 with `current_version`. Of concurrent
  writers sending the same version exactly one wins; the others change nothing.
A delete may name the version (If-Match) the same way.

A memory belongs to an agent name: writing one needs the agent to be registered, but deleting the
agent leaves its memories (re-registering the name finds them again; they can still be listed and
deleted).

Expiry: `expires_at = last_validated_at + expires_days`. Writing a memory validates it (its content
is fresh); `revalidate` does so without touching the content or the version.

Search: every word of `q` must appear, case-insensitively, in the key or the content. It reads the
memories (all of them, one agent's or one type's) in bounded pages with a filter, at most
SEARCH_READ_BUDGET per call; the cursor continues where the reading stopped.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from agentplane import keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.agents import AgentItem
from agentplane.entities.base import Entity
from agentplane.entities.memories import (
    MemoryItem,
    MemoryPointerItem,
    expired_memories,
    memories_of_agent,
    memories_of_type,
    memories_of_workspace,
    shared_memories,
)
from agentplane.errors import Conflict, NotFound, Unprocessable
from agentplane.ids import iso, new_id, parse_iso
from agentplane.models.agents import AGENT_NAME_PATTERN
from agentplane.models.memories import MEMORY_KEY_PATTERN, Memory, MemoryPut, MemoryType
from agentplane.store import EntityPage, Transaction, TransactionFailed, get_store, retrying

# Items a search reads per call (in Query rounds that fill the page).
SEARCH_READ_BUDGET = 1000
MAX_SEARCH_TERMS = 8
# Memories an agent's context includes: its own, then the others' shared ones.
CONTEXT_MEMORIES = 100
_REVALIDATE_ATTEMPTS = 3
# An unversioned (last-writer-wins) upsert that lost a race to another writer tries again this often.
_WRITE_ATTEMPTS = 25
_AGENT_NAME = re.compile(AGENT_NAME_PATTERN)
_MEMORY_KEY = re.compile(MEMORY_KEY_PATTERN)


def _lost_race(failure: Exception) -> bool:
    return isinstance(failure, TransactionFailed)


# --- checks -----------------------------------------------------------------------------------


def _expires_at(validated_at: str, days: int | None) -> str | None:
    return iso(parse_iso(validated_at) + timedelta(days=days)) if days else None


def _check_names(agent_name: str, name: str | None = None) -> None:
    if not _AGENT_NAME.match(agent_name):
        raise NotFound(f"agent {agent_name} not found")
    if name is not None and not _MEMORY_KEY.match(name):
        raise Unprocessable(
            "a memory key is 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
            errors=[{"field": "key", "message": "invalid memory key"}],
        )


def _read_with_agent(ws: str, agent_name: str, key: keys.Key) -> MemoryItem | None:
    """The memory at `key`, read in one batch with its agent, which must be registered."""
    # A read, not a condition in the write's transaction: agents heartbeat all the time, and a
    # condition check on their item would make memory writes collide with those heartbeats.
    agent, memory = get_store().read_many(Entity, [keys.agent_key(ws, agent_name), key])
    if not isinstance(agent, AgentItem):
        raise NotFound(f"agent {agent_name} not found")
    return memory if isinstance(memory, MemoryItem) else None


def _version_of(memory: MemoryItem | None) -> int:
    return int(memory.version) if memory is not None else 0


def _stale(agent_name: str, name: str, current: MemoryItem | None, expected: int | None) -> Conflict:
    version = _version_of(current)
    wanted = "version 0 (create only)" if not expected else f"version {expected}"
    state = f"is at version {version}" if current else "does not exist (version 0)"
    return Conflict(
        f"memory {name} of agent {agent_name} {state}; this write expected {wanted}", current_version=version
    )


# --- writes -----------------------------------------------------------------------------------


def put_memory(
    access: Access, agent_name: str, name: str, body: MemoryPut, if_match: int | None = None
) -> tuple[Memory, bool]:
    """Create or replace one memory; returns it and whether it was created. Without a version the
    write replaces whatever is stored (see the module docstring)."""
    ws = access.workspace_id
    _check_names(agent_name, name)
    expected = body.version if body.version is not None else if_match
    key = keys.memory_key(ws, agent_name, name)
    first_read = [_read_with_agent(ws, agent_name, key)]

    def write() -> tuple[Memory, bool]:
        current = first_read.pop() if first_read else get_store().read(MemoryItem, key)
        if expected is not None and expected != _version_of(current):
            raise _stale(agent_name, name, current, expected)
        at = iso()
        tx = access.transaction()
        memory = _stage_put(tx, access, agent_name, name, body, current, at)
        access.audit(
            tx,
            "memory.created" if current is None else "memory.updated",
            "memory",
            memory.id,
            {"agent": agent_name, "key": name, "type": body.type.value, "version": _version_of(current) + 1},
        )
        try:
            access.commit(tx)
        except TransactionFailed as failure:
            # Another writer got there first: nothing of ours was applied.
            now_stored = get_store().read(MemoryItem, key)
            if expected is not None and expected != _version_of(now_stored):
                raise _stale(agent_name, name, now_stored, expected) from failure
            raise  # unversioned (or a transient conflict): apply ours on top of what is there now
        return memory.to_model(at), current is None

    try:
        return retrying(write, retry_if=_lost_race, attempts=_WRITE_ATTEMPTS, base_delay=0.005, max_delay=0.05)
    except TransactionFailed as failure:
        raise Conflict(
            f"memory {name} of agent {agent_name} kept changing while it was being written; retry"
        ) from failure


def _stage_put(
    tx: Transaction,
    access: Access,
    agent_name: str,
    name: str,
    body: MemoryPut,
    current: MemoryItem | None,
    at: str,
) -> MemoryItem:
    """Add to `tx` the write that creates the memory (with its id pointer) or replaces `current`
    (only at the version read); returns the memory as it will be."""
    fields: dict[str, Any] = {
        "memory_type": body.type.value,
        "content": body.content,
        "shared": body.shared,
        "expires_days": body.expires_days,
        "expires_at": _expires_at(at, body.expires_days),
        "last_validated_at": at,
        "updated_by": access.actor_id,
        "updated_at": at,
    }
    if current is not None:
        tx.change(current, current.assign(**fields))
        return current
    ws = access.workspace_id
    memory = MemoryItem(
        workspace_id=ws,
        id=new_id("mem"),
        agent_name=agent_name,
        name=name,
        created_by=access.actor_id,
        created_at=at,
        **fields,
    )
    tx.create(memory)
    tx.create(MemoryPointerItem(workspace_id=ws, id=memory.id, agent_name=agent_name, name=name))
    return memory


def delete_memory(access: Access, agent_name: str, name: str, if_match: int | None = None) -> None:
    ws = access.workspace_id
    _check_names(agent_name, name)
    key = keys.memory_key(ws, agent_name, name)
    missing = f"memory {name} of agent {agent_name} not found"
    current = get_store().read_or_404(MemoryItem, key, missing)
    if if_match is not None and if_match != current.version:
        raise _stale(agent_name, name, current, if_match)
    tx = access.transaction()
    tx.remove(current)
    tx.discard(MemoryPointerItem, keys.memory_id_key(ws, current.id))
    access.audit(tx, "memory.deleted", "memory", current.id, {"agent": agent_name, "key": name})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        now_stored = get_store().read(MemoryItem, key)
        if now_stored is None:
            raise NotFound(missing) from failure
        raise _stale(agent_name, name, now_stored, current.version) from failure


def _load_by_id(ws: str, memory_id: str) -> MemoryItem:
    pointer = get_store().read(MemoryPointerItem, keys.memory_id_key(ws, memory_id))
    memory = get_store().read(MemoryItem, keys.memory_key(ws, pointer.agent_name, pointer.name)) if pointer else None
    if memory is None or memory.id != memory_id:
        raise NotFound(f"memory {memory_id} not found")
    return memory


def revalidate_memory(access: Access, memory_id: str) -> Memory:
    """Still true: last_validated_at is now, so its expiry starts over. Content and version stay."""
    ws = access.workspace_id

    def revalidate() -> Memory:
        memory = _load_by_id(ws, memory_id)
        version = memory.version
        at = iso()
        actions = memory.assign(last_validated_at=at, updated_at=at, updated_by=access.actor_id)
        if memory.expires_days:
            actions += memory.assign(expires_at=_expires_at(at, int(memory.expires_days)))
        # Only while it is the memory read, at that version (replaced or deleted meanwhile: read it again).
        unchanged = (MemoryItem.id == memory_id) & (MemoryItem.version == version)
        tx = access.transaction()
        tx.adjust(MemoryItem, memory.key, [*actions, *memory.restamp()], unchanged)
        access.audit(tx, "memory.revalidated", "memory", memory_id, {"agent": memory.agent_name, "key": memory.name})
        access.commit(tx)
        return memory.to_model(at)

    try:
        return retrying(revalidate, retry_if=_lost_race, attempts=_REVALIDATE_ATTEMPTS, base_delay=0.005)
    except TransactionFailed as failure:
        raise Conflict(f"memory {memory_id} kept changing while it was being revalidated; retry") from failure


# --- reads ------------------------------------------------------------------------------------


def _type(memory_type: MemoryType | None) -> str | None:
    return memory_type.value if memory_type is not None else None


def _listed(page: EntityPage[MemoryItem], scope: str, query: dict[str, Any]) -> tuple[list[Memory], str | None]:
    at = iso()
    return [memory.to_model(at) for memory in page.items], encode_cursor(page.last_key, scope, query)


def list_memories(
    access: Access, *, memory_type: MemoryType | None, agent_name: str | None, limit: int, cursor: str | None
) -> tuple[list[Memory], str | None]:
    """By agent and key. One agent's: one Query on its prefix; one type's: one Query on its index."""
    ws = access.workspace_id
    query = {"type": memory_type, "agent": agent_name}
    scope = f"memories:{ws}"
    start = decode_cursor(cursor, scope, query)
    if agent_name is not None:
        _check_names(agent_name)
        page = memories_of_agent(ws, agent_name, memory_type=_type(memory_type), limit=limit, start=start)
    elif memory_type is not None:
        page = memories_of_type(ws, memory_type.value, limit=limit, start=start)
    else:
        page = memories_of_workspace(ws, limit=limit, start=start)
    return _listed(page, scope, query)


def list_shared(
    access: Access, *, memory_type: MemoryType | None, agent_name: str | None, limit: int, cursor: str | None
) -> tuple[list[Memory], str | None]:
    ws = access.workspace_id
    query = {"type": memory_type, "agent": agent_name}
    scope = f"memories-shared:{ws}"
    if agent_name is not None:
        _check_names(agent_name)
    start = decode_cursor(cursor, scope, query)
    page = shared_memories(ws, agent_name=agent_name, memory_type=_type(memory_type), limit=limit, start=start)
    return _listed(page, scope, query)


def list_expired(
    access: Access, *, memory_type: MemoryType | None, agent_name: str | None, limit: int, cursor: str | None
) -> tuple[list[Memory], str | None]:
    """Memories whose last_validated_at + expires_days is past: one key range of the expiry index,
    soonest expired first."""
    ws = access.workspace_id
    query = {"type": memory_type, "agent": agent_name}
    scope = f"memories-expired:{ws}"
    start = decode_cursor(cursor, scope, query)
    page = expired_memories(ws, iso(), agent_name=agent_name, memory_type=_type(memory_type), limit=limit, start=start)
    return _listed(page, scope, query)


def search_memories(
    access: Access,
    q: str,
    *,
    memory_type: MemoryType | None,
    agent_name: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Memory], str | None]:
    ws = access.workspace_id
    terms = list(dict.fromkeys(q.lower().split()))
    if not terms:
        raise Unprocessable("q needs at least one word", errors=[{"field": "q", "message": "empty"}])
    if len(terms) > MAX_SEARCH_TERMS:
        raise Unprocessable(
            f"q has at most {MAX_SEARCH_TERMS} words", errors=[{"field": "q", "message": "too many words"}]
        )
    query = {"q": " ".join(terms), "type": memory_type, "agent": agent_name}
    scope = f"memories-search:{ws}"
    start = decode_cursor(cursor, scope, query)
    budget = SEARCH_READ_BUDGET
    if agent_name is not None:
        _check_names(agent_name)
        page = memories_of_agent(
            ws, agent_name, memory_type=_type(memory_type), words=terms, limit=limit, start=start, budget=budget
        )
    elif memory_type is not None:
        page = memories_of_type(ws, memory_type.value, words=terms, limit=limit, start=start, budget=budget)
    else:
        page = memories_of_workspace(ws, words=terms, limit=limit, start=start, budget=budget)
    return _listed(page, scope, query)


def memories_for_context(ws: str, agent_name: str) -> list[Memory]:
    """What an agent's prompt includes: its own memories, then the shared ones of other agents,
    leaving out expired ones; at most CONTEXT_MEMORIES in all."""
    at = iso()
    own = memories_of_agent(ws, agent_name, limit=CONTEXT_MEMORIES).items
    found = [memory for memory in own if not memory.is_expired(at)]
    if len(found) < CONTEXT_MEMORIES:
        shared = shared_memories(ws, limit=CONTEXT_MEMORIES).items
        found += [memory for memory in shared if memory.agent_name != agent_name and not memory.is_expired(at)]
    return [memory.to_model(at) for memory in found[:CONTEXT_MEMORIES]]

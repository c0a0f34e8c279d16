"""Agent memories (Toban): versioned upserts by agent and key, shared and expiring entries, search.

Items (keys under `@keys:memories`):
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

import random
import re
import time
from datetime import timedelta
from typing import Any

from agentplane import audit, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.errors import Conflict, NotFound, Unprocessable
from agentplane.ids import iso, new_id, parse_iso
from agentplane.models.agents import AGENT_NAME_PATTERN
from agentplane.models.memories import MEMORY_KEY_PATTERN, Memory, MemoryPut, MemoryType
from agentplane.store import (
    Expr,
    Page,
    Transaction,
    TransactionFailed,
    Update,
    attr_eq,
    exists,
    get_store,
    not_exists,
)

Item = dict[str, Any]

ENTITY = "memory"
POINTER_ENTITY = "memory_pointer"
# Internal attribute: the lower-cased key and content, for `search`.
SEARCH_TEXT = "search_text"
# Items a filtered list or a search reads per call, in Query pages of _PAGE.
LIST_READ_BUDGET = 1000
SEARCH_READ_BUDGET = 1000
_PAGE = 100
MAX_SEARCH_TERMS = 8
# Memories an agent's context includes: its own, then the others' shared ones.
CONTEXT_MEMORIES = 100
_ATTEMPTS = 3
# An unversioned (last-writer-wins) upsert that lost a race to another writer tries again this often.
_WRITE_ATTEMPTS = 25
_INDEX_ATTRS = (keys.GSI1PK, keys.GSI1SK, keys.GSI2PK, keys.GSI2SK, keys.GSI3PK, keys.GSI3SK)
_INDEX_KEYS = {
    None: (),
    keys.GSI1: (keys.GSI1PK, keys.GSI1SK),
    keys.GSI2: (keys.GSI2PK, keys.GSI2SK),
    keys.GSI3: (keys.GSI3PK, keys.GSI3SK),
}
_AGENT_NAME = re.compile(AGENT_NAME_PATTERN)
_MEMORY_KEY = re.compile(MEMORY_KEY_PATTERN)


# --- items ------------------------------------------------------------------------------------


def _expires_at(validated_at: str, days: int | None) -> str | None:
    return iso(parse_iso(validated_at) + timedelta(days=days)) if days else None


def _index_attrs(ws: str, item: Item) -> tuple[dict[str, str], list[str]]:
    """The index attributes a memory carries given its fields, and the ones it must not."""
    agent, name = item["agent_name"], item["key"]
    sk = keys.memory_sk(agent, name)
    attrs = {keys.GSI3PK: keys.memory_type_gsi(ws, item["type"]), keys.GSI3SK: sk}
    if item.get("shared"):
        attrs[keys.GSI1PK], attrs[keys.GSI1SK] = keys.memory_shared_gsi(ws), sk
    if item.get("expires_at"):
        attrs[keys.GSI2PK] = keys.memory_expiry_gsi(ws)
        attrs[keys.GSI2SK] = keys.memory_expiry_sk(item["expires_at"], agent, name)
    return attrs, [a for a in _INDEX_ATTRS if a not in attrs]


def to_memory(item: Item, at: str | None = None) -> Memory:
    expires_at = item.get("expires_at")
    return Memory.model_validate({**item, "expired": bool(expires_at and expires_at < (at or iso()))})


def is_expired(item: Item, at: str) -> bool:
    return bool(item.get("expires_at") and item["expires_at"] < at)


def _search_text(name: str, content: str) -> str:
    return f"{name}\n{content}".lower()


def _check_names(agent_name: str, name: str | None = None) -> None:
    if not _AGENT_NAME.match(agent_name):
        raise NotFound(f"agent {agent_name} not found")
    if name is not None and not _MEMORY_KEY.match(name):
        raise Unprocessable(
            "a memory key is 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
            errors=[{"field": "key", "message": "invalid memory key"}],
        )


def _require_agent(ws: str, agent_name: str) -> None:
    # A read, not a condition in the write's transaction: agents heartbeat all the time, and a
    # condition check on their item would make memory writes collide with those heartbeats.
    if get_store().get(keys.agent_key(ws, agent_name)) is None:
        raise NotFound(f"agent {agent_name} not found")


def _stale(agent_name: str, name: str, current: Item | None, expected: int | None) -> Conflict:
    version = int(current["version"]) if current else 0
    wanted = "version 0 (create only)" if not expected else f"version {expected}"
    state = f"is at version {version}" if current else "does not exist (version 0)"
    return Conflict(
        f"memory {name} of agent {agent_name} {state}; this write expected {wanted}", current_version=version
    )


def _pause(attempt: int) -> None:
    # Jitter only, so colliding writers spread out; not a security use of randomness.
    time.sleep(random.uniform(0, 0.005 * (attempt + 1)))  # noqa: S311


# --- writes -----------------------------------------------------------------------------------


def put_memory(
    access: Access, agent_name: str, name: str, body: MemoryPut, if_match: int | None = None, request_id: str = ""
) -> tuple[Memory, bool]:
    """Create or replace one memory; returns it and whether it was created. Without a version the
    write replaces whatever is stored (see the module docstring)."""
    ws = access.workspace_id
    _check_names(agent_name, name)
    _require_agent(ws, agent_name)
    expected = body.version if body.version is not None else if_match
    key = keys.memory_key(ws, agent_name, name)
    for attempt in range(_WRITE_ATTEMPTS):
        current = get_store().get(key)
        if expected is not None and expected != (int(current["version"]) if current else 0):
            raise _stale(agent_name, name, current, expected)
        at = iso()
        tx = access.transaction()
        item = _stage_put(tx, access, agent_name, name, body, current, at)
        audit.record(
            tx,
            ws,
            access.actor_id,
            "memory.created" if current is None else "memory.updated",
            "memory",
            item["id"],
            request_id,
            {"agent": agent_name, "key": name, "type": body.type.value, "version": item["version"]},
        )
        try:
            access.commit(tx)
        except TransactionFailed as failure:
            # Another writer got there first: nothing of ours was applied.
            now_item = get_store().get(key)
            if expected is not None and expected != (int(now_item["version"]) if now_item else 0):
                raise _stale(agent_name, name, now_item, expected) from failure
            _pause(attempt)
            continue  # unversioned (or a transient conflict): apply ours on top of what is there now
        return to_memory(item, at), current is None
    raise Conflict(f"memory {name} of agent {agent_name} kept changing while it was being written; retry")


def _stage_put(
    tx: Transaction, access: Access, agent_name: str, name: str, body: MemoryPut, current: Item | None, at: str
) -> Item:
    """Add to `tx` the conditional write that creates the memory (with its id pointer) or replaces
    `current`; returns the memory as it will be."""
    ws = access.workspace_id
    key = keys.memory_key(ws, agent_name, name)
    fields: Item = {
        "type": body.type.value,
        "content": body.content,
        "shared": body.shared,
        "expires_days": body.expires_days,
        "expires_at": _expires_at(at, body.expires_days),
        "last_validated_at": at,
        SEARCH_TEXT: _search_text(name, body.content),
        "updated_by": access.actor_id,
        "updated_at": at,
    }
    if current is None:
        memory_id = new_id("mem")
        item: Item = {
            **key,
            keys.ENTITY: ENTITY,
            "id": memory_id,
            "workspace_id": ws,
            "agent_name": agent_name,
            "key": name,
            **{k: v for k, v in fields.items() if v is not None},
            "version": 1,
            "created_by": access.actor_id,
            "created_at": at,
        }
        item.update(_index_attrs(ws, item)[0])
        tx.put(item, not_exists())
        tx.put(
            {
                **keys.memory_id_key(ws, memory_id),
                keys.ENTITY: POINTER_ENTITY,
                "id": memory_id,
                "workspace_id": ws,
                "agent_name": agent_name,
                "key": name,
            },
            not_exists(),
        )
        return item
    item = {**current, **fields, "version": int(current["version"]) + 1}
    attrs, absent = _index_attrs(ws, item)
    changes = {**fields, **attrs, "version": item["version"]}
    remove = [a for a in absent if a in current]
    tx.update(key, Update(set=changes, remove=remove), exists() & attr_eq("version", current["version"]))
    return {k: v for k, v in {**item, **attrs}.items() if k not in remove and v is not None}


def delete_memory(
    access: Access, agent_name: str, name: str, if_match: int | None = None, request_id: str = ""
) -> None:
    ws = access.workspace_id
    _check_names(agent_name, name)
    key = keys.memory_key(ws, agent_name, name)
    current = get_store().get(key)
    if current is None:
        raise NotFound(f"memory {name} of agent {agent_name} not found")
    if if_match is not None and if_match != current["version"]:
        raise _stale(agent_name, name, current, if_match)
    tx = access.transaction()
    tx.delete(key, exists() & attr_eq("version", current["version"]))
    tx.delete(keys.memory_id_key(ws, current["id"]))
    audit.record(
        tx,
        ws,
        access.actor_id,
        "memory.deleted",
        "memory",
        current["id"],
        request_id,
        {"agent": agent_name, "key": name},
    )
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        now_item = get_store().get(key)
        if now_item is None:
            raise NotFound(f"memory {name} of agent {agent_name} not found") from failure
        raise _stale(agent_name, name, now_item, current["version"]) from failure


def _load_by_id(ws: str, memory_id: str) -> Item:
    pointer = get_store().get(keys.memory_id_key(ws, memory_id))
    item = get_store().get(keys.memory_key(ws, pointer["agent_name"], pointer["key"])) if pointer else None
    if item is None or item.get("id") != memory_id:
        raise NotFound(f"memory {memory_id} not found")
    return item


def revalidate_memory(access: Access, memory_id: str, request_id: str = "") -> Memory:
    """Still true: last_validated_at is now, so its expiry starts over. Content and version stay."""
    ws = access.workspace_id
    for attempt in range(_ATTEMPTS):
        current = _load_by_id(ws, memory_id)
        at = iso()
        changes: Item = {"last_validated_at": at, "updated_at": at, "updated_by": access.actor_id}
        if current.get("expires_days"):
            changes["expires_at"] = _expires_at(at, int(current["expires_days"]))
        attrs, _absent = _index_attrs(ws, {**current, **changes})
        changes.update(attrs)
        tx = access.transaction()
        tx.update(
            keys.memory_key(ws, current["agent_name"], current["key"]),
            Update(set=changes),
            exists() & attr_eq("id", memory_id) & attr_eq("version", current["version"]),
        )
        audit.record(
            tx,
            ws,
            access.actor_id,
            "memory.revalidated",
            "memory",
            memory_id,
            request_id,
            {"agent": current["agent_name"], "key": current["key"]},
        )
        try:
            access.commit(tx)
        except TransactionFailed:
            _pause(attempt)
            continue  # replaced or deleted meanwhile: read it again
        return to_memory({**current, **changes}, at)
    raise Conflict(f"memory {memory_id} kept changing while it was being revalidated; retry")


# --- reads ------------------------------------------------------------------------------------


def _resume_key(item: Item, index: str | None) -> dict[str, Any]:
    resume = {keys.PK: item[keys.PK], keys.SK: item[keys.SK]}
    for attr in _INDEX_KEYS[index]:
        resume[attr] = item[attr]
    return resume


def _fill(
    partition: str,
    *,
    index: str | None = None,
    sk_prefix: str | None = None,
    sk_between: tuple[str, str] | None = None,
    filter: Expr | None = None,
    limit: int,
    start: dict[str, Any] | None,
    budget: int = LIST_READ_BUDGET,
) -> Page:
    """Up to `limit` matching items of one partition. Unfiltered, one Query; filtered, Query pages
    until the page is full, the partition ends or `budget` items were read (the key of the last
    item read, or returned, resumes)."""
    items: list[Item] = []
    last = start
    read = 0
    while read < budget:
        step = min(_PAGE, budget - read) if filter is not None else limit - len(items)
        page = get_store().query(
            partition,
            index=index,
            sk_prefix=sk_prefix,
            sk_between=sk_between,
            limit=step,
            start_key=last,
            filter=filter,
        )
        read += step
        items += page.items
        last = page.last_key
        if len(items) >= limit:
            if len(items) > limit:
                items = items[:limit]
                last = _resume_key(items[-1], index)
            break
        if last is None:
            break
    return Page(items=items, last_key=last)


def _and(*conditions: Expr | None) -> Expr | None:
    combined: Expr | None = None
    for condition in conditions:
        if condition is not None:
            combined = condition if combined is None else combined & condition
    return combined


def _type_filter(memory_type: MemoryType | None) -> Expr | None:
    return attr_eq("type", memory_type.value) if memory_type is not None else None


def _agent_filter(agent_name: str | None) -> Expr | None:
    return attr_eq("agent_name", agent_name) if agent_name is not None else None


def _listed(page: Page, scope: str, query: dict[str, Any]) -> tuple[list[Memory], str | None]:
    at = iso()
    return [to_memory(item, at) for item in page.items], encode_cursor(page.last_key, scope, query)


def list_memories(
    access: Access, *, memory_type: MemoryType | None, agent_name: str | None, limit: int, cursor: str | None
) -> tuple[list[Memory], str | None]:
    """By agent and key. One agent's: one Query on its prefix; one type's: one Query on GSI3."""
    ws = access.workspace_id
    query = {"type": memory_type, "agent": agent_name}
    scope = f"memories:{ws}"
    start = decode_cursor(cursor, scope, query)
    if agent_name is not None:
        _check_names(agent_name)
        page = _fill(
            keys.memory_pk(ws),
            sk_prefix=keys.memory_agent_prefix(agent_name),
            filter=_type_filter(memory_type),
            limit=limit,
            start=start,
        )
    elif memory_type is not None:
        page = _fill(keys.memory_type_gsi(ws, memory_type.value), index=keys.GSI3, limit=limit, start=start)
    else:
        page = _fill(keys.memory_pk(ws), limit=limit, start=start)
    return _listed(page, scope, query)


def list_shared(
    access: Access, *, memory_type: MemoryType | None, agent_name: str | None, limit: int, cursor: str | None
) -> tuple[list[Memory], str | None]:
    ws = access.workspace_id
    query = {"type": memory_type, "agent": agent_name}
    scope = f"memories-shared:{ws}"
    if agent_name is not None:
        _check_names(agent_name)
    page = _fill(
        keys.memory_shared_gsi(ws),
        index=keys.GSI1,
        sk_prefix=keys.memory_agent_prefix(agent_name) if agent_name else None,
        filter=_type_filter(memory_type),
        limit=limit,
        start=decode_cursor(cursor, scope, query),
    )
    return _listed(page, scope, query)


def list_expired(
    access: Access, *, memory_type: MemoryType | None, agent_name: str | None, limit: int, cursor: str | None
) -> tuple[list[Memory], str | None]:
    """Memories whose last_validated_at + expires_days is past: one key range of GSI2, soonest
    expired first."""
    ws = access.workspace_id
    query = {"type": memory_type, "agent": agent_name}
    scope = f"memories-expired:{ws}"
    # SKs are `<expires_at>#…`: every one that sorts at or below now expired before now.
    page = _fill(
        keys.memory_expiry_gsi(ws),
        index=keys.GSI2,
        sk_between=("0", iso()),
        filter=_and(_type_filter(memory_type), _agent_filter(agent_name)),
        limit=limit,
        start=decode_cursor(cursor, scope, query),
    )
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
    names = {"#search_text": SEARCH_TEXT}
    values = {f":term{i}": term for i, term in enumerate(terms)}
    matches = Expr(" AND ".join(f"contains(#search_text, {value})" for value in values), names, values)
    if agent_name is not None:
        _check_names(agent_name)
        page = _fill(
            keys.memory_pk(ws),
            sk_prefix=keys.memory_agent_prefix(agent_name),
            filter=_and(matches, _type_filter(memory_type)),
            limit=limit,
            start=start,
            budget=SEARCH_READ_BUDGET,
        )
    elif memory_type is not None:
        page = _fill(
            keys.memory_type_gsi(ws, memory_type.value),
            index=keys.GSI3,
            filter=matches,
            limit=limit,
            start=start,
            budget=SEARCH_READ_BUDGET,
        )
    else:
        page = _fill(keys.memory_pk(ws), filter=matches, limit=limit, start=start, budget=SEARCH_READ_BUDGET)
    return _listed(page, scope, query)


def memories_for_context(ws: str, agent_name: str) -> list[Item]:
    """What an agent's prompt includes: its own memories, then the shared ones of other agents,
    leaving out expired ones; at most CONTEXT_MEMORIES in all."""
    at = iso()
    own = (
        get_store()
        .query(keys.memory_pk(ws), sk_prefix=keys.memory_agent_prefix(agent_name), limit=CONTEXT_MEMORIES)
        .items
    )
    found = [item for item in own if not is_expired(item, at)]
    if len(found) < CONTEXT_MEMORIES:
        shared = get_store().query(keys.memory_shared_gsi(ws), index=keys.GSI1, limit=CONTEXT_MEMORIES).items
        found += [item for item in shared if item["agent_name"] != agent_name and not is_expired(item, at)]
    return found[:CONTEXT_MEMORIES]

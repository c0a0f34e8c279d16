"""Agents: the registry (Toban), heartbeats and stall detection, start/stop/restart (Orkosi),
engine configuration, progress reports, the assembled context, and agent templates.

Items (keys under `@keys:agents`):
- the agent, `agent_key(ws, name)`; its name is its id in paths. `version` moves with every change
  but heartbeats (it is what If-Match compares); `revision` moves with every write, heartbeats
  included, and every write is conditional on the revision it read. So no write is lost, and the
  index attributes below always match the fields they are derived from:
  - GSI1 `agent_list_gsi(ws)` / name: the agents a plain list shows. A finished child agent
    (status finished or done, with a parent) leaves it; `all=true` reads the main partition.
  - GSI2 `agent_live_gsi(ws)` / `<last_seen_at>#<name>`: the workspace's live agents (a heartbeat
    seen, status not resting). `POST …/agents/check-stalls` reads the range up to the cutoff:
    exactly the silent ones, one bounded Query.
  - GSI3 `agent_watch_gsi(shard)` / `<last_seen_at>#<ws>#<name>`: the same live agents of every
    workspace, spread over AGENT_WATCH_SHARDS partitions (crc32 of ws#name). This is the global
    index of workspaces with agents that the scheduled sweep reads: AGENT_WATCH_SHARDS bounded
    Queries on the range up to the cutoff find every silent agent of every workspace (each hit
    names its workspace), never reading a healthy agent and never scanning.
- progress reports, `agent_progress_key(ws, name, id)` (time-ordered ids), each with `ttl` 24 hours
  on (reads skip expired ones too, as TTL deletes lag); and per agent one "latest" item,
  `agent_latest_progress_key(ws, name)`, replaced only by a newer report: the latest report of
  every agent of a workspace is one Query.
- templates, `agent_template_key(ws, id)` listed on GSI1 `agent_template_list_gsi(ws)`, with a
  slug guard `agent_template_slug_key(ws, slug)`; soft deleted.

Stalls: an agent silent for longer than the timeout is marked `stalled` (or `stopped`, when it had
been asked to stop) with one conditional write — only if last_seen_at and status are still what the
index showed, so a heartbeat that lands meanwhile wins. The write also takes it out of the live
indexes, so it is reported once; its next heartbeat makes it active again. Each check sends the
workspace's members one `stalled` notification naming the agents it marked.

Audit: every change is audited in its own transaction, except the telemetry agents send all the
time: heartbeats that change only last_seen_at, activity, ws_port or current_task, and progress
reports (their own record, kept a day).
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from agentplane import audit, crypto, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.errors import Conflict, InvalidTransition, NotFound, PreconditionFailed, Unprocessable
from agentplane.ids import epoch, iso, new_id, now
from agentplane.logic import knowledge, known_secrets, memories, notifications
from agentplane.logic.workspaces import all_items, all_members
from agentplane.models.agents import (
    ACTIVE_STATUSES,
    FINISHED_STATUSES,
    MANAGER_AGENT,
    PROGRESS_LIST_MAX,
    RESERVED_AGENT_NAMES,
    RESTING_STATUSES,
    Agent,
    AgentConfig,
    AgentContext,
    AgentCreate,
    AgentDefinition,
    AgentStatus,
    AgentTemplate,
    AgentTemplateCreate,
    AgentTemplateUpdate,
    AgentUpdate,
    AgentUpsert,
    ContextMemory,
    ContextParts,
    ContextTask,
    DesiredState,
    Progress,
    ProgressCreate,
    PromptMode,
    PromptPreview,
    StallCheckResult,
    StalledAgent,
)
from agentplane.models.notifications import NotificationType
from agentplane.models.tasks import TaskStatus
from agentplane.redact import redact_text, redact_value
from agentplane.settings import get_settings
from agentplane.store import (
    Expr,
    Page,
    Transaction,
    TransactionFailed,
    Update,
    attr_eq,
    attr_in,
    exists,
    get_store,
    not_exists,
)

Item = dict[str, Any]

ENTITY = "agent"
PROGRESS_ENTITY = "agent_progress"
LATEST_PROGRESS_ENTITY = "agent_progress_latest"
TEMPLATE_ENTITY = "agent_template"
TEMPLATE_SLUG_ENTITY = "agent_template_slug"
# The sealed engine API key; never leaves the layer (the agent answers only `has_api_key`).
API_KEY_ATTR = "api_key_sealed"
PROGRESS_RETENTION = timedelta(hours=24)
# A write that lost to another write of the same agent reads again and retries this often.
_WRITE_ATTEMPTS = 25
# Before deleting an agent: the open tasks read at most (over the status index's open statuses),
# in Query pages of _HELD_TASKS_PAGE, and the ones the refusal names.
OPEN_TASK_STATUSES = tuple(status for status in TaskStatus if status != TaskStatus.done)
HELD_TASKS_READ_BUDGET = 4000
HELD_TASKS_SHOWN = 10
_HELD_TASKS_PAGE = 200
# Silent agents one check marks (a larger backlog is taken by the next check).
STALL_CHECK_MAX = 500
# The scheduled sweep: silent agents per shard per run, in Query pages of _PAGE.
SWEEP_MAX_PER_SHARD = 200
_PAGE = 100
LIST_READ_BUDGET = 1000
# Context: tasks of the agent it includes, and how much of each text the compact prompt keeps.
CONTEXT_TASK_STATUSES = (TaskStatus.in_progress, TaskStatus.review, TaskStatus.todo, TaskStatus.blocked)
CONTEXT_MAX_TASKS = 50
CONTEXT_TASK_READ_BUDGET = 500
CONTEXT_MAX_RULES = 100
COMPACT_TEXT = 300
COMPACT_TASKS = 20
COMPACT_MEMORIES = 30
MAX_TEMPLATE_CONFIG_BYTES = 8192
# Fields of an agent that only report what it is doing: writing them alone is a heartbeat.
_TELEMETRY = frozenset({"last_seen_at", "activity", "ws_port", "current_task"})
_CLEARABLE = ("display_name", "model", "emoji", "color", "activity", "current_task", "parent_agent", "interval_sec")
_CONFIG_CLEARABLE = ("engine", "model", "execution_mode", "system_prompt")
_TEMPLATE_CLEARABLE = (
    "icon", "category", "role", "model", "engine", "execution_mode", "system_prompt", "identity", "interval_sec",
)  # fmt: skip
_INDEX_ATTRS = (keys.GSI1PK, keys.GSI1SK, keys.GSI2PK, keys.GSI2SK, keys.GSI3PK, keys.GSI3SK)
_SLUG_CHARS = re.compile(r"[^a-z0-9]+")


def _pause(attempt: int) -> None:
    # Jitter only, so colliding writers spread out; not a security use of randomness.
    time.sleep(random.uniform(0, 0.003 * min(attempt + 1, 10)))  # noqa: S311


# --- the agent item -----------------------------------------------------------------------------


def to_agent(item: Item) -> Agent:
    return Agent.model_validate({**item, "has_api_key": API_KEY_ATTR in item})


def _is_live(item: Item) -> bool:
    return bool(item.get("last_seen_at")) and item["status"] not in RESTING_STATUSES


def _index_attrs(ws: str, item: Item) -> tuple[dict[str, str], list[str]]:
    """The index attributes an agent carries given its fields, and the ones it must not."""
    name = item["name"]
    attrs: dict[str, str] = {}
    if not (item["status"] in FINISHED_STATUSES and item.get("parent_agent")):
        attrs[keys.GSI1PK], attrs[keys.GSI1SK] = keys.agent_list_gsi(ws), name
    if _is_live(item):
        seen = str(item["last_seen_at"])
        attrs[keys.GSI2PK], attrs[keys.GSI2SK] = keys.agent_live_gsi(ws), keys.agent_live_sk(seen, name)
        attrs[keys.GSI3PK] = keys.agent_watch_gsi(keys.agent_watch_shard(ws, name))
        attrs[keys.GSI3SK] = keys.agent_watch_sk(seen, ws, name)
    return attrs, [a for a in _INDEX_ATTRS if a not in attrs]


def _check_name(name: str) -> None:
    if name in RESERVED_AGENT_NAMES:
        raise Unprocessable(
            f"'{name}' is reserved by the agents routes; choose another name",
            errors=[{"field": "name", "message": "reserved name"}],
        )


def _load(ws: str, name: str) -> Item:
    item = get_store().get(keys.agent_key(ws, name))
    if item is None:
        raise NotFound(f"agent {name} not found")
    return item


def _redact_activity(ws: str, fields: Item) -> Item:
    """An agent's activity line is its own words: redacted with the workspace's secrets (one read,
    only when it reports one)."""
    if fields.get("activity"):
        fields["activity"] = redact_text(fields["activity"], known_secrets.read(ws))
    return fields


def _new_agent(access: Access, name: str, fields: Item, at: str) -> Item:
    item: Item = {
        **keys.agent_key(access.workspace_id, name),
        keys.ENTITY: ENTITY,
        "id": new_id("agt"),
        "workspace_id": access.workspace_id,
        "name": name,
        "role": name,
        "description": "",
        "desired_state": DesiredState.running.value,
        **{k: v for k, v in fields.items() if v is not None},
        "created_by": access.actor_id,
        "created_at": at,
        "updated_at": at,
        "version": 1,
        "revision": 1,
    }
    item.update(_index_attrs(access.workspace_id, item)[0])
    return item


@dataclass
class _Change:
    """What one write does to an agent: a whole new item (`new`), or fields to set and remove."""

    set: Item = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)
    new: Item | None = None
    action: str | None = None  # audited when set
    details: dict[str, Any] = field(default_factory=dict)
    bump_version: bool = True
    # Updates of other items that go in the same transaction.
    also: list[tuple[keys.Key, Update]] = field(default_factory=list)


def _write(
    access: Access, name: str, decide: Callable[[Item | None], _Change | None], request_id: str, at: str
) -> Item:
    """Read the agent, let `decide` say what changes (None: nothing), and write that conditional on
    the revision read (or on absence); a lost race reads again and decides again."""
    ws = access.workspace_id
    key = keys.agent_key(ws, name)
    for attempt in range(_WRITE_ATTEMPTS):
        current = get_store().get(key)
        change = decide(current)
        if change is None:
            assert current is not None
            return current
        tx = access.transaction()
        if change.new is not None:
            result = change.new
            tx.put(result, not_exists())
        else:
            assert current is not None
            changes = dict(change.set)
            if change.bump_version:
                changes["version"] = current["version"] + 1
                changes["updated_at"] = at
            changes["revision"] = current["revision"] + 1
            merged = {k: v for k, v in {**current, **changes}.items() if k not in change.remove and v is not None}
            attrs, absent = _index_attrs(ws, merged)
            changes.update(attrs)
            remove = [a for a in [*change.remove, *absent] if a in current]
            tx.update(key, Update(set=changes, remove=remove), exists() & attr_eq("revision", current["revision"]))
            result = {k: v for k, v in {**merged, **attrs}.items() if k not in remove}
        for other, update in change.also:
            tx.update(other, update)
        if change.action:
            audit.record(tx, ws, access.actor_id, change.action, "agent", result["id"], request_id, change.details)
        try:
            access.commit(tx)
        except TransactionFailed:
            _pause(attempt)
            continue
        return result
    raise Conflict(f"agent {name} kept changing while this request was applied; retry")


# --- registry -------------------------------------------------------------------------------------


def create_agent(access: Access, body: AgentCreate, request_id: str = "") -> Agent:
    ws = access.workspace_id
    _check_name(body.name)
    fields = body.model_dump(exclude_none=True, exclude={"name"})
    if body.template_id:
        template = _load_template(ws, body.template_id, field="template_id")
        for copied in ("role", "description", "model", "engine", "execution_mode", "system_prompt", "interval_sec"):
            if copied not in fields and template.get(copied) not in (None, ""):
                fields[copied] = template[copied]
    item = _new_agent(access, body.name, fields, iso())
    # No read first: the put's condition is the uniqueness check.
    tx = access.transaction()
    put_index = len(tx.operations)
    tx.put(item, not_exists())
    audit.record(tx, ws, access.actor_id, "agent.created", "agent", item["id"], request_id,
                 {"name": body.name, "status": body.status.value})  # fmt: skip
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        # Taken, or being created by a concurrent request that collided with this one.
        if failure.reasons[put_index] == "ConditionalCheckFailed" or get_store().get(keys.agent_key(ws, body.name)):
            raise Conflict(f"agent {body.name} already exists") from failure
        raise
    return to_agent(item)


# What a workspace export carries of an agent: its definition, never its keys, config or state.
DEFINITION_FIELDS = tuple(name for name in AgentDefinition.model_fields if name != "name")


def definitions(ws: str) -> Iterator[Item]:
    """Every agent of the workspace as an export entry, by name."""
    for item in all_items(keys.ws_pk(ws), keys.AGENT_PREFIX):
        yield {"name": item["name"], **{f: item[f] for f in DEFINITION_FIELDS if item.get(f) not in (None, "")}}


def add_definition_writes(tx: Transaction, access: Access, definition: Item, current: Item | None, at: str) -> str:
    """Create the agent a document defines, or set the fields it states on the one that exists
    (its keys, config and live state untouched); answers "created", "updated" or "unchanged"."""
    name = str(definition["name"])
    _check_name(name)
    fields = {k: v for k, v in definition.items() if k != "name" and v is not None}
    if current is None:
        tx.put(_new_agent(access, name, {"status": AgentStatus.idle.value, **fields}, at), not_exists())
        return "created"
    changes = {k: v for k, v in fields.items() if current.get(k) != v}
    if not changes:
        return "unchanged"
    changes.update(updated_at=at, version=current["version"] + 1, revision=current["revision"] + 1)
    attrs, absent = _index_attrs(access.workspace_id, {**current, **changes})  # a new parent may unlist it
    remove = [attr for attr in absent if attr in current]
    key = keys.agent_key(access.workspace_id, name)
    tx.update(key, Update(set={**changes, **attrs}, remove=remove), exists() & attr_eq("revision", current["revision"]))
    return "updated"


def upsert_agent(access: Access, body: AgentUpsert, request_id: str = "") -> Agent:
    """The CLI's report and heartbeat: creates the agent when new, records last_seen_at, and answers
    the agent with its `desired_state`. Every reported field (status, activity, parent, ws_port,
    current task) is applied, whatever the order requests land in; only last_seen_at keeps the
    later of the stored and the reported time, so it never moves backwards."""
    _check_name(body.name)
    at = iso()
    reported = _redact_activity(access.workspace_id, body.model_dump(exclude_none=True, exclude={"name"}))

    def decide(current: Item | None) -> _Change:
        if current is None:
            status = body.status or AgentStatus.active
            new = _new_agent(access, body.name, {**reported, "status": status.value, "last_seen_at": at}, at)
            return _Change(new=new, action="agent.registered", details={"name": body.name, "status": status.value})
        old = current["status"]
        status = body.status or (AgentStatus.active if old == AgentStatus.stalled else AgentStatus(old))
        # A request that waited behind a later heartbeat still reports its fields; its older time
        # does not replace the stored one.
        seen = max(str(current.get("last_seen_at") or ""), at)
        changes: Item = {**reported, "status": status.value, "last_seen_at": seen}
        if current.get("desired_state") == DesiredState.restart and status == AgentStatus.starting:
            changes["desired_state"] = DesiredState.running.value  # the restart was carried out
        changed = sorted(k for k, v in changes.items() if k not in _TELEMETRY and current.get(k) != v)
        if not changed:
            return _Change(set=changes, bump_version=False)
        details: dict[str, Any] = {"fields": changed}
        if status != old:
            details.update({"from": old, "to": status.value})
        return _Change(set=changes, action="agent.reported", details=details)

    return to_agent(_write(access, body.name, decide, request_id, at))


def get_agent(access: Access, name: str) -> Agent:
    return to_agent(_load(access.workspace_id, name))


def _resume_key(item: Item, index: str | None) -> dict[str, Any]:
    resume = {keys.PK: item[keys.PK], keys.SK: item[keys.SK]}
    if index == keys.GSI1:
        resume.update({keys.GSI1PK: item[keys.GSI1PK], keys.GSI1SK: item[keys.GSI1SK]})
    return resume


def _fill(
    partition: str,
    *,
    index: str | None = None,
    sk_prefix: str | None = None,
    filter: Expr | None,
    limit: int,
    start: dict[str, Any] | None,
) -> Page:
    """Up to `limit` matching items: one Query unfiltered; filtered, Query pages until the page is
    full, the partition ends or LIST_READ_BUDGET items were read (then the cursor resumes)."""
    items: list[Item] = []
    last = start
    read = 0
    while read < LIST_READ_BUDGET:
        step = _PAGE if filter is not None else limit - len(items)
        page = get_store().query(partition, index=index, sk_prefix=sk_prefix, limit=step, start_key=last, filter=filter)
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


def parse_statuses(text: str | None) -> list[AgentStatus]:
    """`?status=` as Orkosi sends it: one status or several, comma-separated."""
    if text is None:
        return []
    names = [part.strip() for part in text.split(",") if part.strip()]
    allowed = {status.value for status in AgentStatus}
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise Unprocessable(
            f"status must be one or more of {', '.join(sorted(allowed))}, comma-separated",
            errors=[{"field": "status", "message": f"unknown status {name!r}"} for name in unknown]
            or [{"field": "status", "message": "empty"}],
        )
    return [AgentStatus(name) for name in dict.fromkeys(names)]


def list_agents(
    access: Access,
    *,
    include_all: bool,
    statuses: list[AgentStatus],
    role: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Agent], str | None]:
    """By name. Finished child agents are left out unless `include_all`; `statuses` (any of them)
    and `role` narrow the page."""
    ws = access.workspace_id
    wanted = sorted(status.value for status in statuses)
    query = {"all": include_all, "status": ",".join(wanted) or None, "role": role}
    scope = f"agents:{ws}"
    condition: Expr | None = attr_in("status", wanted) if wanted else None
    if role is not None:
        condition = attr_eq("role", role) if condition is None else condition & attr_eq("role", role)
    start = decode_cursor(cursor, scope, query)
    if include_all:
        page = _fill(keys.ws_pk(ws), sk_prefix=keys.AGENT_PREFIX, filter=condition, limit=limit, start=start)
    else:
        page = _fill(keys.agent_list_gsi(ws), index=keys.GSI1, filter=condition, limit=limit, start=start)
    return [to_agent(item) for item in page.items], encode_cursor(page.last_key, scope, query)


def update_agent(
    access: Access, name: str, body: AgentUpdate, if_match: int | None = None, request_id: str = ""
) -> Agent:
    expected = body.version or if_match
    changes = _redact_activity(access.workspace_id, body.model_dump(exclude_none=True, exclude={"version"}))
    cleared = [f for f in _CLEARABLE if f in body.model_fields_set and getattr(body, f) is None]
    at = iso()

    def decide(current: Item | None) -> _Change | None:
        if current is None:
            raise NotFound(f"agent {name} not found")
        if expected is not None and expected != current["version"]:
            raise PreconditionFailed(
                f"agent {name} is at version {current['version']}, not {expected}", current_version=current["version"]
            )
        remove = [f for f in cleared if f in current]
        if not changes and not remove:
            return None
        details: dict[str, Any] = {"fields": sorted({*changes, *remove})}
        if "status" in changes and changes["status"] != current["status"]:
            details.update({"from": current["status"], "to": changes["status"]})
        return _Change(set=dict(changes), remove=remove, action="agent.updated", details=details)

    return to_agent(_write(access, name, decide, request_id, at))


def configure_agent(
    access: Access, name: str, body: AgentConfig, if_match: int | None = None, request_id: str = ""
) -> Agent:
    """Engine configuration. An API key is sealed with the workspace's envelope key before anything
    is written; only the fact that one is set ever leaves (`has_api_key`), never the key. A copy of
    the sealed key goes beside the workspace's other secrets, so redaction masks it wherever an
    agent's text repeats it."""
    ws = access.workspace_id
    expected = body.version or if_match
    changes = body.model_dump(exclude_none=True, exclude={"version", "api_key"})
    cleared = [f for f in _CONFIG_CLEARABLE if f in body.model_fields_set and getattr(body, f) is None]
    clear_key = "api_key" in body.model_fields_set and body.api_key is None
    if body.api_key is not None:
        changes[API_KEY_ATTR] = crypto.seal(body.api_key.get_secret_value(), ws)
    at = iso()

    def decide(current: Item | None) -> _Change | None:
        if current is None:
            raise NotFound(f"agent {name} not found")
        if expected is not None and expected != current["version"]:
            raise PreconditionFailed(
                f"agent {name} is at version {current['version']}, not {expected}", current_version=current["version"]
            )
        remove = [f for f in cleared if f in current]
        also = []
        if API_KEY_ATTR in changes:
            also.append(known_secrets.agent_key_update(ws, name, changes[API_KEY_ATTR]))
        elif clear_key and API_KEY_ATTR in current:
            remove.append(API_KEY_ATTR)
            also.append(known_secrets.agent_key_update(ws, name, None))
        if not changes and not remove:
            return None
        names = {("api_key" if k == API_KEY_ATTR else k) for k in (*changes, *remove)}
        return _Change(
            set=dict(changes), remove=remove, action="agent.configured", details={"fields": sorted(names)}, also=also
        )

    return to_agent(_write(access, name, decide, request_id, at))


def control_agent(
    access: Access, name: str, desired: DesiredState, note: str | None = None, request_id: str = ""
) -> Agent:
    """start / stop / restart: records what the agent should be; the agent reads it back on its
    next heartbeat (`PUT …/agents` answers the agent with `desired_state`) and acts on it."""
    at = iso()
    verb = {DesiredState.running: "start", DesiredState.stopped: "stop", DesiredState.restart: "restart"}[desired]

    def decide(current: Item | None) -> _Change:
        if current is None:
            raise NotFound(f"agent {name} not found")
        changes: Item = {"desired_state": desired.value, "desired_state_at": at, "desired_state_by": access.actor_id}
        remove: list[str] = []
        if note:
            changes["desired_state_note"] = note
        elif "desired_state_note" in current:
            remove.append("desired_state_note")
        details = {"from": current.get("desired_state", DesiredState.running.value), "to": desired.value}
        return _Change(set=changes, remove=remove, action=f"agent.{verb}_requested", details=details)

    return to_agent(_write(access, name, decide, request_id, at))


def _held_tasks(ws: str, name: str) -> tuple[list[str], bool]:
    """Up to HELD_TASKS_SHOWN open tasks (every status but done) the agent is assignee or owner
    of: bounded, filtered reads of the status index. Also whether every open task was read (False
    when the read budget ran out first, so the answer is not known)."""
    mine = Expr("#assignee = :me OR #owner = :me", {"#assignee": "assignee", "#owner": "owner"}, {":me": name})
    held: list[str] = []
    read = 0
    for status in OPEN_TASK_STATUSES:
        start: dict[str, Any] | None = None
        while len(held) < HELD_TASKS_SHOWN:
            if read >= HELD_TASKS_READ_BUDGET:
                return held, False
            page = get_store().query(
                keys.task_status_gsi(ws, status.value),
                index=keys.GSI1,
                limit=_HELD_TASKS_PAGE,
                start_key=start,
                filter=mine,
            )
            read += _HELD_TASKS_PAGE
            held += [str(item["id"]) for item in page.items]
            start = page.last_key
            if not start:
                break
        if len(held) >= HELD_TASKS_SHOWN:
            break
    return held[:HELD_TASKS_SHOWN], True


def delete_agent(access: Access, name: str, request_id: str = "") -> None:
    """Refused (409) for the manager, an agent at work, or one with open tasks (assignee or owner
    of a task in any status but done)."""
    ws = access.workspace_id
    key = keys.agent_key(ws, name)
    for attempt in range(_WRITE_ATTEMPTS):
        current = _load(ws, name)
        if name == MANAGER_AGENT or current.get("role") == MANAGER_AGENT:
            raise Conflict("the manager agent cannot be deleted")
        if current["status"] in ACTIVE_STATUSES:
            raise InvalidTransition(
                f"agent {name} is {current['status']}; stop it before deleting it", current_status=current["status"]
            )
        held, complete = _held_tasks(ws, name)
        if held:
            raise Conflict(f"agent {name} has open tasks assigned; reassign them first", tasks=held)
        if not complete:
            raise Conflict(
                f"agent {name} may have open tasks assigned: more than {HELD_TASKS_READ_BUDGET} open tasks "
                "would have to be checked; reassign or close tasks first",
                tasks=[],
            )
        tx = access.transaction()
        tx.delete(key, exists() & attr_eq("revision", current["revision"]))
        tx.delete(keys.agent_latest_progress_key(ws, name))
        if API_KEY_ATTR in current:
            tx.update(*known_secrets.agent_key_update(ws, name, None))
        audit.record(tx, ws, access.actor_id, "agent.deleted", "agent", current["id"], request_id, {"name": name})
        try:
            access.commit(tx)
        except TransactionFailed:
            _pause(attempt)
            continue
        return
    raise Conflict(f"agent {name} kept changing while it was being deleted; retry")


# --- stalls ---------------------------------------------------------------------------------------


def _silent_status(item: Item) -> AgentStatus:
    asked_to_stop = item.get("desired_state") == DesiredState.stopped
    return AgentStatus.stopped if asked_to_stop else AgentStatus.stalled


def _mark_silent(tx: Transaction, ws: str, item: Item, at: str, actor: str, request_id: str) -> AgentStatus:
    """Add to `tx` the conditional write that marks a silent agent: it applies only while
    last_seen_at and status are what the index showed (a heartbeat since then wins)."""
    status = _silent_status(item)
    attrs, absent = _index_attrs(ws, {**item, "status": status.value})
    changes: Item = {"status": status.value, "updated_at": at, **attrs}
    if status == AgentStatus.stalled:
        changes["stalled_at"] = at
    tx.update(
        keys.agent_key(ws, item["name"]),
        Update(set=changes, remove=absent, add={"version": 1, "revision": 1}),
        exists() & attr_eq("last_seen_at", item["last_seen_at"]) & attr_eq("status", item["status"]),
    )
    audit.record(
        tx,
        ws,
        actor,
        f"agent.{status.value}",
        "agent",
        item["id"],
        request_id,
        {"name": item["name"], "last_seen_at": item["last_seen_at"], "from": item["status"]},
    )
    return status


def _notify_stalled(ws: str, stalled: list[StalledAgent]) -> None:
    if not stalled:
        return
    recipients = [str(m["user_id"]) for m in itertools.islice(all_members(ws), notifications.MAX_FANOUT)]
    if not recipients:
        return
    names = ", ".join(agent.name for agent in stalled[:20])
    title = f"Agent {stalled[0].name} stalled" if len(stalled) == 1 else f"{len(stalled)} agents stalled"
    notifications.notify(
        None,
        ws,
        recipients,
        NotificationType.stalled,
        title,
        f"No heartbeat from {names} since the configured timeout.",
        {"agents": [agent.model_dump() for agent in stalled[:50]]},
        source="agents",
    )


def _cutoff(timeout_seconds: int, moment: datetime | None = None) -> str:
    return iso((moment or now()) - timedelta(seconds=timeout_seconds))


def check_stalls(access: Access, timeout_seconds: int | None = None, request_id: str = "") -> StallCheckResult:
    """Toban's check-stalls for one workspace: the silent live agents (one Query on GSI2's range up
    to the cutoff) are marked, each with its own conditional write."""
    ws = access.workspace_id
    timeout = timeout_seconds or get_settings().agent_stall_timeout_seconds
    cutoff = _cutoff(timeout)
    at = iso()
    stalled: list[StalledAgent] = []
    start: dict[str, Any] | None = None
    read = 0
    while read < STALL_CHECK_MAX:
        page = get_store().query(
            keys.agent_live_gsi(ws), index=keys.GSI2, sk_between=("0", cutoff), limit=_PAGE, start_key=start
        )
        read += _PAGE
        for item in page.items:
            tx = access.transaction()
            status = _mark_silent(tx, ws, item, at, access.actor_id, request_id)
            try:
                access.commit(tx)
            except TransactionFailed:
                continue  # it reported in (or changed) meanwhile
            if status == AgentStatus.stalled:
                stalled.append(StalledAgent(name=item["name"], last_seen=item["last_seen_at"]))
        start = page.last_key
        if not start:
            break
    _notify_stalled(ws, stalled)
    return StallCheckResult(stalled=stalled, count=len(stalled), timeout_seconds=timeout)


def sweep_stalled_agents(timeout_seconds: int | None = None, moment: datetime | None = None) -> dict[str, int]:
    """The scheduled check across every workspace: per shard of GSI3, the range up to the cutoff
    holds exactly the silent agents (bounded per run; the next run takes any rest). Writes are
    attributed to `system`."""
    timeout = timeout_seconds or get_settings().agent_stall_timeout_seconds
    cutoff = _cutoff(timeout, moment)
    at = iso()
    by_workspace: dict[str, list[StalledAgent]] = {}
    marked = 0
    for shard in range(keys.AGENT_WATCH_SHARDS):
        start: dict[str, Any] | None = None
        read = 0
        while read < SWEEP_MAX_PER_SHARD:
            page = get_store().query(
                keys.agent_watch_gsi(shard), index=keys.GSI3, sk_between=("0", cutoff), limit=_PAGE, start_key=start
            )
            read += _PAGE
            for item in page.items:
                ws = str(item["workspace_id"])
                tx = get_store().transaction()
                status = _mark_silent(tx, ws, item, at, "system", "")
                try:
                    tx.commit()
                except TransactionFailed:
                    continue
                marked += 1
                if status == AgentStatus.stalled:
                    by_workspace.setdefault(ws, []).append(
                        StalledAgent(name=item["name"], last_seen=item["last_seen_at"])
                    )
            start = page.last_key
            if not start:
                break
    for ws, stalled in by_workspace.items():
        _notify_stalled(ws, stalled)
    return {"marked": marked, "stalled": sum(len(s) for s in by_workspace.values()), "workspaces": len(by_workspace)}


# --- progress -------------------------------------------------------------------------------------


def to_progress(item: Item) -> Progress:
    # Reports stored before the field took Toban's name kept it as `agent` (gone within a day).
    return Progress.model_validate({**item, "agent_name": item.get("agent_name") or item.get("agent")})


def report_progress(access: Access, body: ProgressCreate, request_id: str = "") -> Progress:
    """One progress report (kept 24 hours), redacted with the workspace's secrets (read with the
    agent). The agent's "latest" item is replaced in the same transaction unless a newer report is
    already there."""
    ws = access.workspace_id
    name = body.agent_name or access.principal.agent_name
    if not name:
        raise Unprocessable("name the reporting agent", errors=[{"field": "agent_name", "message": "required"}])
    # A read, not a condition in the transaction: agents heartbeat all the time, and a condition
    # on their item would make reports collide with those heartbeats.
    agent, known = known_secrets.read_with(keys.agent_key(ws, name), ws)
    if agent is None:
        raise Unprocessable(f"unknown agent {name}", errors=[{"field": "agent_name", "message": "no such agent"}])
    moment = now()
    progress_id = new_id("prg")
    entry: Item = {
        **keys.agent_progress_key(ws, name, progress_id),
        keys.ENTITY: PROGRESS_ENTITY,
        **redact_value(body.model_dump(exclude_none=True, exclude={"agent_name"}), known),
        "id": progress_id,
        "workspace_id": ws,
        "agent_name": name,
        "reported_by": access.actor_id,
        "created_at": iso(moment),
        "expires_at": iso(moment + PROGRESS_RETENTION),
        keys.TTL: epoch(moment + PROGRESS_RETENTION),
    }
    latest = {**entry, **keys.agent_latest_progress_key(ws, name), keys.ENTITY: LATEST_PROGRESS_ENTITY}
    newer_absent = Expr("attribute_not_exists(#pk) OR #id < :id", {"#pk": keys.PK, "#id": "id"}, {":id": progress_id})
    with_latest = True
    for attempt in range(_WRITE_ATTEMPTS):
        tx = access.transaction()
        tx.put(entry, not_exists())
        latest_index = len(tx.operations)
        if with_latest:
            tx.put(latest, newer_absent)
        try:
            access.commit(tx)
        except TransactionFailed as failure:
            if (
                with_latest
                and failure.failed_index() == latest_index
                and (failure.reasons[latest_index] == "ConditionalCheckFailed")
            ):
                with_latest = False  # a newer report is the latest: store this one only
            _pause(attempt)
            continue
        return to_progress(entry)
    raise Conflict("the progress report collided with others; retry")


def _unexpired() -> Expr:
    return Expr("#ttl > :now", {"#ttl": keys.TTL}, {":now": epoch()})


def list_progress(access: Access, name: str, limit: int = PROGRESS_LIST_MAX) -> list[Progress]:
    """An agent's latest reports, newest first (up to 20)."""
    page = get_store().query(
        keys.agent_progress_pk(access.workspace_id, name),
        limit=min(limit, PROGRESS_LIST_MAX),
        newest_first=True,
        filter=_unexpired(),
    )
    return [to_progress(item) for item in page.items]


def latest_progress(access: Access, limit: int, cursor: str | None) -> tuple[list[Progress], str | None]:
    """The latest report of each agent of the workspace, by agent name: one Query."""
    ws = access.workspace_id
    scope = f"agent-progress-latest:{ws}"
    page = get_store().query(
        keys.agent_latest_progress_pk(ws), limit=limit, start_key=decode_cursor(cursor, scope, {}), filter=_unexpired()
    )
    return [to_progress(item) for item in page.items], encode_cursor(page.last_key, scope, {})


# --- context --------------------------------------------------------------------------------------


def _agent_tasks(ws: str, name: str) -> list[Item]:
    """The agent's open tasks (assignee or owner), work in progress first; bounded reads of the
    status index."""
    mine = Expr("#assignee = :me OR #owner = :me", {"#assignee": "assignee", "#owner": "owner"}, {":me": name})
    found: list[Item] = []
    for status in CONTEXT_TASK_STATUSES:
        start: dict[str, Any] | None = None
        read = 0
        while read < CONTEXT_TASK_READ_BUDGET and len(found) < CONTEXT_MAX_TASKS:
            page = get_store().query(
                keys.task_status_gsi(ws, status.value), index=keys.GSI1, limit=_PAGE, start_key=start, filter=mine
            )
            read += _PAGE
            found += page.items
            start = page.last_key
            if not start:
                break
    return found[:CONTEXT_MAX_TASKS]


def _active_sprint(ws: str) -> Item | None:
    counter = get_store().get(keys.sprint_counter_key(ws), consistent=False) or {}
    number = counter.get("active_number")
    if number is None:
        return None
    return get_store().get(keys.sprint_key(ws, int(number)), consistent=False)


def _context_parts(access: Access, agent: Item) -> ContextParts:
    ws = access.workspace_id
    workspace = get_store().get(keys.workspace_key(ws), consistent=False) or {}
    sprint = _active_sprint(ws)
    rules, _ = knowledge.list_rules(
        access,
        scope=None,
        agent=agent["name"],
        category=None,
        permanent=None,
        limit=CONTEXT_MAX_RULES,
        cursor=None,
    )
    return ContextParts(
        workspace={
            "id": ws,
            "name": workspace.get("name", ""),
            "description": workspace.get("description", ""),
            "spec": workspace.get("spec", ""),
        },
        sprint=(
            {k: sprint.get(k) for k in ("number", "name", "goal", "status", "deadline") if sprint.get(k) is not None}
            if sprint
            else None
        ),
        tasks=[ContextTask.model_validate(task) for task in _agent_tasks(ws, agent["name"])],
        adrs=knowledge.adr_prompt(access, include_proposed=False).prompt,
        rules=[rule.content for rule in rules],
        memories=[ContextMemory.model_validate(m) for m in memories.memories_for_context(ws, agent["name"])],
    )


def _clip(text: str, limit: int | None) -> str:
    text = text.strip()
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def _render(agent: Item, parts: ContextParts, *, compact: bool) -> str:
    """The context as the agent's prompt receives it (compact: shorter texts, fewer items)."""
    clip = COMPACT_TEXT if compact else None
    role = agent.get("role") or agent["name"]
    lines = [f"# You are {agent.get('display_name') or agent['name']} (agent `{agent['name']}`, role: {role})"]
    if agent.get("description"):
        lines += ["", _clip(str(agent["description"]), clip)]
    workspace = parts.workspace
    lines += ["", f"## Workspace: {workspace.get('name') or workspace['id']}"]
    if workspace.get("description"):
        lines += [_clip(str(workspace["description"]), clip)]
    if workspace.get("spec"):
        lines += ["", "### Spec", _clip(str(workspace["spec"]), clip)]
    lines += ["", "## Current sprint"]
    if parts.sprint:
        sprint = parts.sprint
        title = f"Sprint {sprint['number']}" + (f" — {sprint['name']}" if sprint.get("name") else "")
        lines += [f"{title} ({sprint.get('status')})"]
        if sprint.get("goal"):
            lines += [f"Goal: {_clip(str(sprint['goal']), clip)}"]
    else:
        lines += ["No sprint is active."]
    lines += ["", "## Your tasks"]
    tasks = parts.tasks[:COMPACT_TASKS] if compact else parts.tasks
    if not tasks:
        lines += ["No open tasks are assigned to you."]
    for task in tasks:
        lines += [f"- [{task.status}] {task.id} ({task.priority or 'p1'}): {task.title}"]
        if task.description:
            lines += [f"  {_clip(task.description, clip)}"]
    lines += [parts.adrs.rstrip("\n")]
    lines += ["", "## Rules"]
    lines += [f"- {_clip(rule, clip)}" for rule in parts.rules] or ["No rules are recorded yet."]
    lines += ["", "## Memories"]
    remembered = parts.memories[:COMPACT_MEMORIES] if compact else parts.memories
    if not remembered:
        lines += ["Nothing remembered yet."]
    for memory in remembered:
        whose = "" if memory.agent_name == agent["name"] else f" (shared by {memory.agent_name})"
        lines += [f"- [{memory.type}] {memory.key}{whose}: {_clip(memory.content, clip)}"]
    return "\n".join(lines) + "\n"


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def agent_context(access: Access, name: str) -> AgentContext:
    """The context injected into the agent's system prompt: workspace, active sprint, its tasks,
    accepted ADRs, rules and memories."""
    agent = _load(access.workspace_id, name)
    parts = _context_parts(access, agent)
    text = _render(agent, parts, compact=False)
    return AgentContext(agent_name=name, context=text, parts=parts, length=len(text), token_estimate=_tokens(text))


def prompt_preview(access: Access, name: str, mode: PromptMode) -> PromptPreview:
    """The full prompt the agent would be sent: its system prompt, then its context."""
    agent = _load(access.workspace_id, name)
    parts = _context_parts(access, agent)
    prompt = _render(agent, parts, compact=mode == PromptMode.compact)
    if agent.get("system_prompt"):
        prompt = f"{str(agent['system_prompt']).strip()}\n\n{prompt}"
    return PromptPreview(
        agent_name=name,
        role=str(agent.get("role") or name),
        mode=mode,
        prompt=prompt,
        length=len(prompt),
        token_estimate=_tokens(prompt),
    )


# --- templates ------------------------------------------------------------------------------------


def to_template(item: Item) -> AgentTemplate:
    return AgentTemplate.model_validate(item)


def _slugify(name: str) -> str:
    slug = _SLUG_CHARS.sub("-", name.lower()).strip("-")[:64].strip("-")
    return slug or "template"


def _check_config(config: dict[str, Any] | None) -> None:
    if config is not None and len(json.dumps(config, default=str)) > MAX_TEMPLATE_CONFIG_BYTES:
        raise Unprocessable(
            f"config holds at most {MAX_TEMPLATE_CONFIG_BYTES} bytes of JSON",
            errors=[{"field": "config", "message": "too large"}],
        )


def _load_template(ws: str, template_id: str, field: str | None = None) -> Item:
    item = get_store().get(keys.agent_template_key(ws, template_id))
    if item is None or item.get("deleted_at"):
        if field:
            raise Unprocessable(
                f"unknown agent template {template_id}", errors=[{"field": field, "message": "no such template"}]
            )
        raise NotFound(f"agent template {template_id} not found")
    return item


def _slug_guard(ws: str, slug: str, template_id: str) -> Item:
    return {
        **keys.agent_template_slug_key(ws, slug),
        keys.ENTITY: TEMPLATE_SLUG_ENTITY,
        "workspace_id": ws,
        "template_id": template_id,
    }


def create_template(access: Access, body: AgentTemplateCreate, request_id: str = "") -> AgentTemplate:
    ws = access.workspace_id
    _check_config(body.config)
    template_id = new_id("atpl")
    slug = body.slug or _slugify(body.name)
    at = iso()
    item: Item = {
        **keys.agent_template_key(ws, template_id),
        keys.ENTITY: TEMPLATE_ENTITY,
        keys.GSI1PK: keys.agent_template_list_gsi(ws),
        keys.GSI1SK: template_id,
        **body.model_dump(exclude_none=True),
        "slug": slug,
        "id": template_id,
        "workspace_id": ws,
        "created_by": access.actor_id,
        "created_at": at,
        "updated_at": at,
        "version": 1,
    }
    tx = access.transaction()
    tx.put(item, not_exists())
    guard_index = len(tx.operations)
    tx.put(_slug_guard(ws, slug, template_id), not_exists())
    audit.record(
        tx, ws, access.actor_id, "agent_template.created", "agent_template", template_id, request_id, {"slug": slug}
    )
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed_index() == guard_index:
            raise Conflict(f"an agent template with slug {slug} already exists") from failure
        raise
    return to_template(item)


def get_template(access: Access, template_id: str) -> AgentTemplate:
    return to_template(_load_template(access.workspace_id, template_id))


def list_templates(
    access: Access, *, category: str | None, featured: bool | None, limit: int, cursor: str | None
) -> tuple[list[AgentTemplate], str | None]:
    """Live templates in creation order."""
    ws = access.workspace_id
    query = {"category": category, "featured": featured}
    scope = f"agent-templates:{ws}"
    condition: Expr | None = None
    for name, value in (("category", category), ("is_featured", featured)):
        if value is not None:
            expr = attr_eq(name, value)
            condition = expr if condition is None else condition & expr
    page = _fill(
        keys.agent_template_list_gsi(ws),
        index=keys.GSI1,
        filter=condition,
        limit=limit,
        start=decode_cursor(cursor, scope, query),
    )
    return [to_template(item) for item in page.items], encode_cursor(page.last_key, scope, query)


def update_template(
    access: Access, template_id: str, body: AgentTemplateUpdate, if_match: int | None = None, request_id: str = ""
) -> AgentTemplate:
    ws = access.workspace_id
    current = _load_template(ws, template_id)
    expected = body.version or if_match
    if expected is not None and expected != current["version"]:
        raise PreconditionFailed(
            f"agent template {template_id} is at version {current['version']}, not {expected}",
            current_version=current["version"],
        )
    _check_config(body.config)
    changes = body.model_dump(exclude_none=True, exclude={"version"})
    remove = [
        f for f in _TEMPLATE_CLEARABLE if f in body.model_fields_set and getattr(body, f) is None and f in current
    ]
    if not changes and not remove:
        return to_template(current)
    at = iso()
    changes.update({"updated_at": at, "version": current["version"] + 1})
    tx = access.transaction()
    tx.update(
        keys.agent_template_key(ws, template_id),
        Update(set=changes, remove=remove),
        exists() & attr_eq("version", current["version"]) & Expr("attribute_not_exists(deleted_at)"),
    )
    guard_index = -1
    new_slug = changes.get("slug")
    if new_slug and new_slug != current["slug"]:
        tx.delete(keys.agent_template_slug_key(ws, current["slug"]))
        guard_index = len(tx.operations)
        tx.put(_slug_guard(ws, new_slug, template_id), not_exists())
    audit.record(
        tx,
        ws,
        access.actor_id,
        "agent_template.updated",
        "agent_template",
        template_id,
        request_id,
        {"fields": sorted({*changes, *remove} - {"updated_at", "version"})},
    )
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if guard_index >= 0 and failure.failed_index() == guard_index:
            raise Conflict(f"an agent template with slug {new_slug} already exists") from failure
        raise PreconditionFailed(
            f"agent template {template_id} changed while it was being updated; reload and retry"
        ) from failure
    return to_template({k: v for k, v in {**current, **changes}.items() if k not in remove})


def delete_template(access: Access, template_id: str, request_id: str = "") -> None:
    """Soft delete: it leaves the list and its slug is free again; the audit trail remains."""
    ws = access.workspace_id
    current = _load_template(ws, template_id)
    tx = access.transaction()
    tx.update(
        keys.agent_template_key(ws, template_id),
        Update(set={"deleted_at": iso()}, remove=[keys.GSI1PK, keys.GSI1SK]),
        exists() & Expr("attribute_not_exists(deleted_at)"),
    )
    tx.delete(keys.agent_template_slug_key(ws, current["slug"]))
    audit.record(tx, ws, access.actor_id, "agent_template.deleted", "agent_template", template_id, request_id)
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise NotFound(f"agent template {template_id} not found") from failure

"""The registry (Toban): create, report and heartbeat, read, list, update, configure, start, stop,
restart and delete agents, and the agent definitions a workspace export carries.

Every write reads the agent and decides what changes; the write goes through only at the
revision it read (the entity guards it), and one that lost to another write of the same agent
reads again and decides again. Every change is audited in its own transaction, except the
telemetry agents send all the time: heartbeats that change only last_seen_at, activity, ws_port
or current_task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from agentplane import crypto, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.agents import (
    AgentItem,
    LatestProgressItem,
    agent_from_item,
    agents_of_workspace,
    every_agent,
    listed_agents,
)
from agentplane.entities.tasks import open_tasks_of_agent
from agentplane.errors import Conflict, InvalidTransition, NotFound, PreconditionFailed, Unprocessable
from agentplane.ids import iso, new_id
from agentplane.logic import known_secrets
from agentplane.logic.agents.templates import load_template
from agentplane.models.agents import (
    ACTIVE_STATUSES,
    MANAGER_AGENT,
    RESERVED_AGENT_NAMES,
    Agent,
    AgentConfig,
    AgentCreate,
    AgentDefinition,
    AgentStatus,
    AgentUpdate,
    AgentUpsert,
    DesiredState,
)
from agentplane.models.tasks import TaskStatus
from agentplane.redact import redact_text
from agentplane.store import Item, Transaction, TransactionFailed, get_store, retrying

# The stored attribute of the sealed engine API key (the agent answers only `has_api_key`).
API_KEY_ATTR = AgentItem.api_key_sealed.attr_name
# A write that lost to another write of the same agent reads again and retries this often.
_WRITE_ATTEMPTS = 25
# Before deleting an agent: the open tasks read at most (over the status index's open statuses),
# in Query pages of _HELD_TASKS_PAGE, and the ones the refusal names.
OPEN_TASK_STATUSES = tuple(status for status in TaskStatus if status != TaskStatus.done)
HELD_TASKS_READ_BUDGET = 4000
HELD_TASKS_SHOWN = 10
_HELD_TASKS_PAGE = 200
# Fields of an agent that only report what it is doing: writing them alone is a heartbeat.
_TELEMETRY = frozenset({"last_seen_at", "activity", "ws_port", "current_task"})
_CLEARABLE = ("display_name", "model", "emoji", "color", "activity", "current_task", "parent_agent", "interval_sec")
_CONFIG_CLEARABLE = ("engine", "model", "execution_mode", "system_prompt")
_FROM_TEMPLATE = ("role", "description", "model", "engine", "execution_mode", "system_prompt", "interval_sec")
# What a workspace export carries of an agent: its definition, never its keys, config or state.
DEFINITION_FIELDS = tuple(name for name in AgentDefinition.model_fields if name != "name")


def _lost_race(failure: Exception) -> bool:
    return isinstance(failure, TransactionFailed)


def load_agent(ws: str, name: str) -> AgentItem:
    return get_store().read_or_404(AgentItem, keys.agent_key(ws, name), f"agent {name} not found")


def _check_name(name: str) -> None:
    if name in RESERVED_AGENT_NAMES:
        raise Unprocessable(
            f"'{name}' is reserved by the agents routes; choose another name",
            errors=[{"field": "name", "message": "reserved name"}],
        )


def _redact_activity(ws: str, fields: Item) -> Item:
    """An agent's activity line is its own words: redacted with the workspace's secrets (one read,
    only when it reports one)."""
    if fields.get("activity"):
        fields["activity"] = redact_text(fields["activity"], known_secrets.read(ws))
    return fields


def _new_agent(access: Access, name: str, fields: Item, at: str) -> AgentItem:
    defaults: Item = {"role": name, "description": "", "desired_state": DesiredState.running.value}
    return AgentItem(
        workspace_id=access.workspace_id,
        id=new_id("agt"),
        name=name,
        **{**defaults, **{k: v for k, v in fields.items() if v is not None}},
        created_by=access.actor_id,
        created_at=at,
        updated_at=at,
        version=1,
    )


def _keep_key_copy(tx: Transaction, ws: str, name: str, sealed: dict[str, Any] | None) -> None:
    """Keep the copy of the agent's sealed key beside the workspace's other secrets in step (set,
    or removed when None). That item holds one attribute per agent, so it stays a plain item."""
    known_secrets.keep_agent_key(tx, ws, name, sealed)


@dataclass
class _Change:
    """What one write does to an agent: a whole new agent (`new`), or fields to set (None clears)."""

    fields: Item = field(default_factory=dict)
    new: AgentItem | None = None
    action: str | None = None  # audited when set
    details: dict[str, Any] = field(default_factory=dict)
    bump_version: bool = True
    # Writes of other items that go in the same transaction.
    also: list[Callable[[Transaction], None]] = field(default_factory=list)


def _write(access: Access, name: str, decide: Callable[[AgentItem | None], _Change | None], at: str) -> AgentItem:
    """Read the agent, let `decide` say what changes (None: nothing), and write that at the
    revision read (or as a new agent); a lost race reads again and decides again."""
    key = keys.agent_key(access.workspace_id, name)

    def attempt() -> AgentItem:
        current = get_store().read(AgentItem, key)
        change = decide(current)
        if change is None:
            assert current is not None
            return current
        tx = access.transaction()
        if change.new is not None:
            agent = change.new
            tx.create(agent)
        else:
            assert current is not None
            agent = current
            fields = dict(change.fields)
            if change.bump_version:
                fields.update(version=agent.version + 1, updated_at=at)
            tx.change(agent, agent.assign(**fields))
        for write in change.also:
            write(tx)
        if change.action:
            access.audit(tx, change.action, "agent", agent.id, change.details)
        access.commit(tx)
        return agent

    try:
        return retrying(attempt, retry_if=_lost_race, attempts=_WRITE_ATTEMPTS, base_delay=0.003, max_delay=0.03)
    except TransactionFailed as failure:
        raise Conflict(f"agent {name} kept changing while this request was applied; retry") from failure


def _precondition(agent: AgentItem, name: str, expected: int | None) -> None:
    if expected is not None and expected != agent.version:
        raise PreconditionFailed(
            f"agent {name} is at version {agent.version}, not {expected}", current_version=agent.version
        )


# --- creating and reporting -------------------------------------------------------------------------


def create_agent(access: Access, body: AgentCreate) -> Agent:
    ws = access.workspace_id
    _check_name(body.name)
    fields = body.model_dump(exclude_none=True, exclude={"name"})
    if body.template_id:
        template = load_template(ws, body.template_id, field="template_id")
        for copied in _FROM_TEMPLATE:
            value = getattr(template, copied)
            if copied not in fields and value not in (None, ""):
                fields[copied] = value
    agent = _new_agent(access, body.name, fields, iso())
    # No read first: the create's condition is the uniqueness check.
    tx = access.transaction()
    tx.create(agent, name="agent")
    access.audit(tx, "agent.created", "agent", agent.id, {"name": body.name, "status": body.status.value})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        # Taken, or being created by a concurrent request that collided with this one.
        if failure.reason("agent") == "ConditionalCheckFailed" or get_store().read(AgentItem, agent.key):
            raise Conflict(f"agent {body.name} already exists") from failure
        raise
    return agent.to_model()


def upsert_agent(access: Access, body: AgentUpsert) -> Agent:
    """The CLI's report and heartbeat: creates the agent when new, records last_seen_at, and answers
    the agent with its `desired_state`. Every reported field (status, activity, parent, ws_port,
    current task) is applied, whatever the order requests land in; only last_seen_at keeps the
    later of the stored and the reported time, so it never moves backwards."""
    _check_name(body.name)
    at = iso()
    reported = _redact_activity(access.workspace_id, body.model_dump(exclude_none=True, exclude={"name"}))

    def decide(current: AgentItem | None) -> _Change:
        if current is None:
            status = body.status or AgentStatus.active
            new = _new_agent(access, body.name, {**reported, "status": status.value, "last_seen_at": at}, at)
            return _Change(new=new, action="agent.registered", details={"name": body.name, "status": status.value})
        old = current.status
        status = body.status or (AgentStatus.active if old == AgentStatus.stalled else AgentStatus(old))
        # A request that waited behind a later heartbeat still reports its fields; its older time
        # does not replace the stored one.
        seen = max(str(current.last_seen_at or ""), at)
        changes: Item = {**reported, "status": status.value, "last_seen_at": seen}
        if current.desired_state == DesiredState.restart and status == AgentStatus.starting:
            changes["desired_state"] = DesiredState.running.value  # the restart was carried out
        changed = sorted(k for k, v in changes.items() if k not in _TELEMETRY and getattr(current, k) != v)
        if not changed:
            return _Change(changes, bump_version=False)
        details: dict[str, Any] = {"fields": changed}
        if status != old:
            details.update({"from": old, "to": status.value})
        return _Change(changes, action="agent.reported", details=details)

    return _write(access, body.name, decide, at).to_model()


# --- reading ----------------------------------------------------------------------------------------


def get_agent(access: Access, name: str) -> Agent:
    return load_agent(access.workspace_id, name).to_model()


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
    start = decode_cursor(cursor, scope, query)
    read = agents_of_workspace if include_all else listed_agents
    page = read(ws, statuses=wanted, role=role, limit=limit, start=start)
    return [agent.to_model() for agent in page.items], encode_cursor(page.last_key, scope, query)


# --- changing ---------------------------------------------------------------------------------------


def update_agent(access: Access, name: str, body: AgentUpdate, if_match: int | None = None) -> Agent:
    expected = body.version or if_match
    changes = _redact_activity(access.workspace_id, body.model_dump(exclude_none=True, exclude={"version"}))
    cleared = [f for f in _CLEARABLE if f in body.model_fields_set and getattr(body, f) is None]
    at = iso()

    def decide(current: AgentItem | None) -> _Change | None:
        if current is None:
            raise NotFound(f"agent {name} not found")
        _precondition(current, name, expected)
        remove = [f for f in cleared if getattr(current, f) is not None]
        if not changes and not remove:
            return None
        details: dict[str, Any] = {"fields": sorted({*changes, *remove})}
        if "status" in changes and changes["status"] != current.status:
            details.update({"from": current.status, "to": changes["status"]})
        return _Change({**changes, **dict.fromkeys(remove)}, action="agent.updated", details=details)

    return _write(access, name, decide, at).to_model()


def configure_agent(access: Access, name: str, body: AgentConfig, if_match: int | None = None) -> Agent:
    """Engine configuration. An API key is sealed with the workspace's envelope key before anything
    is written; only the fact that one is set ever leaves (`has_api_key`), never the key. A copy of
    the sealed key goes beside the workspace's other secrets, so redaction masks it wherever an
    agent's text repeats it."""
    ws = access.workspace_id
    expected = body.version or if_match
    changes = body.model_dump(exclude_none=True, exclude={"version", "api_key"})
    cleared = [f for f in _CONFIG_CLEARABLE if f in body.model_fields_set and getattr(body, f) is None]
    clear_key = "api_key" in body.model_fields_set and body.api_key is None
    sealed = crypto.seal(body.api_key.get_secret_value(), ws) if body.api_key is not None else None
    at = iso()

    def decide(current: AgentItem | None) -> _Change | None:
        if current is None:
            raise NotFound(f"agent {name} not found")
        _precondition(current, name, expected)
        fields: Item = {**changes, **dict.fromkeys(f for f in cleared if getattr(current, f) is not None)}
        named = set(fields)
        also: list[Callable[[Transaction], None]] = []
        if sealed is not None or (clear_key and current.api_key_sealed is not None):
            fields["api_key_sealed"] = sealed
            named.add("api_key")
            also.append(lambda tx: _keep_key_copy(tx, ws, name, sealed))
        if not fields:
            return None
        return _Change(fields, action="agent.configured", details={"fields": sorted(named)}, also=also)

    return _write(access, name, decide, at).to_model()


def control_agent(access: Access, name: str, desired: DesiredState, note: str | None = None) -> Agent:
    """start / stop / restart: records what the agent should be; the agent reads it back on its
    next heartbeat (`PUT …/agents` answers the agent with `desired_state`) and acts on it."""
    at = iso()
    verb = {DesiredState.running: "start", DesiredState.stopped: "stop", DesiredState.restart: "restart"}[desired]

    def decide(current: AgentItem | None) -> _Change:
        if current is None:
            raise NotFound(f"agent {name} not found")
        fields: Item = {"desired_state": desired.value, "desired_state_at": at, "desired_state_by": access.actor_id}
        if note or current.desired_state_note is not None:
            fields["desired_state_note"] = note or None
        details = {"from": current.desired_state or DesiredState.running.value, "to": desired.value}
        return _Change(fields, action=f"agent.{verb}_requested", details=details)

    return _write(access, name, decide, at).to_model()


# --- deleting ---------------------------------------------------------------------------------------


def _held_tasks(ws: str, name: str) -> tuple[list[str], bool]:
    """Up to HELD_TASKS_SHOWN open tasks (every status but done) the agent is assignee or owner
    of: bounded, filtered reads of the status index. Also whether every open task was read (False
    when the read budget ran out first, so the answer is not known)."""
    held: list[str] = []
    read = 0
    for status in OPEN_TASK_STATUSES:
        start: dict[str, Any] | None = None
        while len(held) < HELD_TASKS_SHOWN:
            if read >= HELD_TASKS_READ_BUDGET:
                return held, False
            tasks, start = open_tasks_of_agent(ws, name, status.value, limit=_HELD_TASKS_PAGE, start=start)
            read += _HELD_TASKS_PAGE
            held += [str(task["id"]) for task in tasks]
            if not start:
                break
        if len(held) >= HELD_TASKS_SHOWN:
            break
    return held[:HELD_TASKS_SHOWN], True


def delete_agent(access: Access, name: str) -> None:
    """Refused (409) for the manager, an agent at work, or one with open tasks (assignee or owner
    of a task in any status but done)."""
    ws = access.workspace_id

    def attempt() -> None:
        agent = load_agent(ws, name)
        if name == MANAGER_AGENT or agent.role == MANAGER_AGENT:
            raise Conflict("the manager agent cannot be deleted")
        if agent.status in ACTIVE_STATUSES:
            raise InvalidTransition(
                f"agent {name} is {agent.status}; stop it before deleting it", current_status=agent.status
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
        tx.remove(agent)
        tx.discard(LatestProgressItem, keys.agent_latest_progress_key(ws, name))
        if agent.api_key_sealed is not None:
            _keep_key_copy(tx, ws, name, None)
        access.audit(tx, "agent.deleted", "agent", agent.id, {"name": name})
        access.commit(tx)

    try:
        retrying(attempt, retry_if=_lost_race, attempts=_WRITE_ATTEMPTS, base_delay=0.003, max_delay=0.03)
    except TransactionFailed as failure:
        raise Conflict(f"agent {name} kept changing while it was being deleted; retry") from failure


# --- export and import ------------------------------------------------------------------------------


def definitions(ws: str) -> Iterator[Item]:
    """Every agent of the workspace as an export entry, by name."""
    for agent in every_agent(ws):
        stated = {f: getattr(agent, f) for f in DEFINITION_FIELDS if getattr(agent, f) not in (None, "")}
        yield {"name": agent.name, **stated}


def add_definition_writes(tx: Transaction, access: Access, definition: Item, current: Item | None, at: str) -> str:
    """Create the agent a document defines, or set the fields it states on the one that exists
    (its keys, config and live state untouched); answers "created", "updated" or "unchanged"."""
    name = str(definition["name"])
    _check_name(name)
    fields = {k: v for k, v in definition.items() if k != "name" and v is not None}
    if current is None:
        tx.create(_new_agent(access, name, {"status": AgentStatus.idle.value, **fields}, at))
        return "created"
    agent = agent_from_item(current)
    changes = {k: v for k, v in fields.items() if getattr(agent, k) != v}
    if not changes:
        return "unchanged"
    tx.change(agent, agent.assign(**changes, updated_at=at, version=agent.version + 1))  # a new parent may unlist it
    return "updated"

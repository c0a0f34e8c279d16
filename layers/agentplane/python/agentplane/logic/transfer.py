"""Workspace export and import (Toban's workspace export/import, extended to teams and tasks).

Export (`GET …/export`) is one JSON document: the workspace's settings, its members (for
reference), its teams with their members, its live tasks, its agents' definitions (never their
keys or configuration) and its task templates, in Toban's shape (`agents`, `task_templates`).
Every read is a bounded Query; a document that would pass the size bounds stops that kind early
and names it in `truncated`. Common env values are secrets and are never exported.

Import (`POST …/import`) takes the same document:
- `merge` (default) adds teams and tasks whose `id` is new and updates those that exist (fields
  left out of a task keep their value; a team's listed members are added or re-roled);
- `replace` first removes the kinds the document carries (`teams`: every team not in it, and
  members not listed; `tasks`: every live task not in it, soft deleted), then writes the
  document's. A kind the document leaves out (null) is not touched.
- `workspace` settings, when present, are applied; `members` is ignored (memberships come from
  invites and `…/members`, never from a document).
- `agents` are matched by name: new ones are created, existing ones get the fields the document
  states (their keys, configuration and live state untouched). `replace` removes no agent: that
  would revoke keys, which a document never does.
- `task_templates` are matched by title (case aside); `replace` removes the templates not in it.

The whole document is validated (shape, duplicate ids, references to members, tasks and stories)
before anything is written. The writes then go out as transactions of at most 100 items, each
with the caller's guards and its own audit row. Each transaction is atomic, the import as a whole
is not: if one fails (a concurrent change), the ones before it stay applied and the 409 says how
many; importing the same document again converges, because every write is keyed by id.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

from agentplane import keys, raw_items
from agentplane.access import Access
from agentplane.entities.teams import TeamItem, TeamMemberItem, all_teams, every_member_of_team
from agentplane.entities.workspaces import (
    MemberItem,
    TaskTemplateItem,
    WorkspaceItem,
    every_member,
    every_task_template,
)
from agentplane.errors import Unprocessable
from agentplane.ids import iso
from agentplane.logic import agents, task_indexes, tasks
from agentplane.logic.workspaces import commit_in_parts, load_workspace, rename_memberships, scratch
from agentplane.models.agents import AgentDefinition
from agentplane.models.tasks import TaskStatus
from agentplane.models.transfer import (
    ExportedTask,
    ExportedTaskTemplate,
    ExportedTeam,
    ImportMode,
    ImportResult,
    WorkspaceDocument,
    WorkspaceExport,
)
from agentplane.raw_items import Expr, Update, attr_eq, deserialize, exists, not_exists, tx_delete, tx_put, tx_update
from agentplane.store import Transaction, get_store

# Bounds of one export: it is a single Lambda response (at most 6 MB).
MAX_EXPORT_BYTES = 4_500_000
MAX_EXPORT_MEMBERS = 5000
MAX_EXPORT_TEAMS = 200
MAX_EXPORT_TEAM_MEMBERS = 500
MAX_EXPORT_TASKS = 1000
MAX_EXPORT_AGENTS = 200
MAX_EXPORT_TEMPLATES = 500
_TEMPLATE_FIELDS = tuple(ExportedTaskTemplate.model_fields)

_SETTINGS_FIELDS = ("name", "description", "language", "workflow", "spec", "auto_push")
_INDEX_ATTRS = (keys.GSI1PK, keys.GSI1SK, keys.GSI2PK, keys.GSI2SK, keys.GSI3PK, keys.GSI3SK)
# What the document says about a task: everything a client may set, keyed as the task stores it.
_TASK_FIELDS = tuple(name for name in ExportedTask.model_fields if name not in ("id", "workspace_id", "version"))
_CLIENT_TASK_FIELDS = tuple(f for f in _TASK_FIELDS if f not in ("created_by", "created_at", "updated_at"))


def _not_deleted() -> Expr:
    return Expr("attribute_not_exists(deleted_at)")


class _Budget:
    def __init__(self, limit: int) -> None:
        self.left = limit

    def take(self, entry: Any) -> bool:
        size = len(json.dumps(entry, default=str))
        if size > self.left:
            return False
        self.left -= size
        return True


def _collect(
    pages: Any, cap: int, budget: _Budget, shape: Any, kind: str, truncated: list[str]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in pages:
        entry = shape(item)
        if len(out) >= cap or not budget.take(entry):
            truncated.append(kind)
            break
        out.append(entry)
    return out


def _live_tasks(ws_id: str) -> Any:
    start: dict[str, Any] | None = None
    while True:
        page = raw_items.query(keys.task_list_gsi(ws_id), index=keys.GSI2, limit=200, start_key=start)
        yield from page.items
        if page.last_key is None:
            return
        start = page.last_key


def _template_entry(template: TaskTemplateItem | None) -> dict[str, Any]:
    if template is None:
        return {}
    return {f: getattr(template, f) for f in _TEMPLATE_FIELDS if getattr(template, f) is not None}


def template_id(title: str) -> str:
    """A template's id follows from its title, so importing a document twice converges."""
    return "ttpl_" + hashlib.sha256(title.casefold().encode()).hexdigest()[:26]


def _task_entry(item: dict[str, Any]) -> dict[str, Any]:
    return {"id": item["id"], **{f: item[f] for f in _TASK_FIELDS if item.get(f) is not None}}


def export_workspace(access: Access) -> WorkspaceExport:
    access.require("tasks:read")
    ws = access.workspace_id
    workspace = load_workspace(ws)
    budget = _Budget(MAX_EXPORT_BYTES)
    truncated: list[str] = []
    settings = {f: getattr(workspace, f) for f in _SETTINGS_FIELDS if getattr(workspace, f) is not None}
    budget.take(settings)
    members = _collect(
        every_member(ws),
        MAX_EXPORT_MEMBERS,
        budget,
        lambda m: {"user_id": m.user_id, "role": m.role, "joined_at": m.joined_at},
        "members",
        truncated,
    )

    def team_entry(team: TeamItem) -> dict[str, Any]:
        entries = []
        for index, member in enumerate(every_member_of_team(ws, team.id)):
            if index >= MAX_EXPORT_TEAM_MEMBERS:
                if "teams" not in truncated:
                    truncated.append("teams")
                break
            entries.append({"user_id": member.user_id, "role": member.role})
        return {"id": team.id, "name": team.name, "description": team.description or "", "members": entries}

    teams = _collect(all_teams(ws), MAX_EXPORT_TEAMS, budget, team_entry, "teams", truncated)
    task_entries = _collect(_live_tasks(ws), MAX_EXPORT_TASKS, budget, _task_entry, "tasks", truncated)
    agent_entries = _collect(agents.definitions(ws), MAX_EXPORT_AGENTS, budget, dict, "agents", truncated)
    templates = _collect(
        every_task_template(ws), MAX_EXPORT_TEMPLATES, budget, _template_entry, "task_templates", truncated
    )
    return WorkspaceExport(
        exported_at=iso(),
        workspace_id=ws,
        workspace=settings,
        members=members,
        teams=teams,
        tasks=task_entries,
        agents=agent_entries,
        task_templates=templates,
        truncated=sorted(set(truncated)),
    )


# --- import ----------------------------------------------------------------------------------


def _invalid(errors: list[dict[str, str]]) -> Unprocessable:
    return Unprocessable("the document refers to things that do not exist here; nothing was imported", errors=errors)


def _get_many(found_keys: list[keys.Key]) -> list[dict[str, Any] | None]:
    items: list[dict[str, Any] | None] = []
    for start in range(0, len(found_keys), 100):
        items += raw_items.get_many(found_keys[start : start + 100])
    return items


def _validate_teams(ws: str, teams: list[ExportedTeam]) -> None:
    users = sorted({m.user_id for team in teams for m in team.members})
    present: list[MemberItem | None] = []
    for start in range(0, len(users), 100):
        present += get_store().read_many(MemberItem, [keys.member_key(ws, u) for u in users[start : start + 100]])
    missing = {u for u, item in zip(users, present, strict=True) if item is None}
    errors = [
        {"field": f"teams.{t}.members.{m}.user_id", "message": f"{member.user_id} is not a member of this workspace"}
        for t, team in enumerate(teams)
        for m, member in enumerate(team.members)
        if member.user_id in missing
    ]
    if errors:
        raise _invalid(errors)


def _validate_tasks(ws: str, doc_tasks: list[ExportedTask], mode: ImportMode) -> None:
    """Every task reference must name a task that will exist after the import, every story one
    that exists now."""
    doc_ids = {t.id for t in doc_tasks}
    referenced = {ref for t in doc_tasks for ref in [*t.blocked_by, *t.blocks, t.parent_task] if ref}
    outside = sorted(referenced - doc_ids)
    survivors: set[str] = set()
    if outside and mode == "merge":
        survivors = set(tasks.get_tasks(ws, outside))
    story_ids = sorted({t.story_id for t in doc_tasks if t.story_id})
    stories = dict(zip(story_ids, _get_many([keys.story_key(ws, s) for s in story_ids]), strict=True))
    errors: list[dict[str, str]] = []
    for index, task in enumerate(doc_tasks):
        refs = [("blocked_by", r) for r in task.blocked_by] + [("blocks", r) for r in task.blocks]
        if task.parent_task:
            refs.append(("parent_task", task.parent_task))
        for field, ref in refs:
            if ref == task.id:
                errors.append({"field": f"tasks.{index}.{field}", "message": "a task cannot refer to itself"})
            elif ref not in doc_ids and ref not in survivors:
                errors.append({"field": f"tasks.{index}.{field}", "message": f"no task {ref} in the document or here"})
        if task.story_id and stories.get(task.story_id) is None:
            errors.append({"field": f"tasks.{index}.story_id", "message": f"no story {task.story_id} here"})
    if errors:
        raise _invalid(errors)


def _key_of(operation: dict[str, Any]) -> tuple[str, str]:
    body = next(iter(operation.values()))
    raw = body.get("Key") or {k: body["Item"][k] for k in (keys.PK, keys.SK)}
    key = deserialize(raw) or {}
    return key[keys.PK], key[keys.SK]


def _task_link_keys(ws: str, item: dict[str, Any]) -> set[tuple[str, str]]:
    """The link items the tasks family keeps for `item` (its blockers, its story)."""
    links = [keys.task_dependency_key(ws, blocker, item["id"]) for blocker in item.get("blocked_by") or []]
    if item.get("story_id"):
        links.append(keys.story_task_key(ws, item["story_id"], item["id"]))
    return {(k["PK"], k["SK"]) for k in links}


def _rekeyed(ws: str, item: dict[str, Any], task_id: str) -> dict[str, Any]:
    """`tasks.new_task_item` mints an id; a document's task keeps its own."""
    minted = item["id"]
    rekeyed = {k: (task_id if k in _INDEX_ATTRS and v == minted else v) for k, v in item.items()}
    rekeyed.update(keys.task_key(ws, task_id))
    rekeyed["id"] = task_id
    return rekeyed


def _task_item(
    access: Access, task: ExportedTask, current: dict[str, Any] | None, mode: ImportMode, at: str
) -> dict[str, Any]:
    fields = task.model_dump(include=set(_CLIENT_TASK_FIELDS), exclude_none=True)
    if current is not None and mode == "merge":
        # Merge is a patch: only what the document states changes; defaults do not overwrite.
        stated = task.model_dump(include=set(_CLIENT_TASK_FIELDS), exclude_none=True, exclude_unset=True)
        fields = {**{f: current[f] for f in _CLIENT_TASK_FIELDS if current.get(f) is not None}, **stated}
    item = _rekeyed(access.workspace_id, tasks.new_task_item(access, fields, at), task.id)
    if current is None:
        return item
    # An update keeps what the document does not describe (review state, timestamps, author).
    for name, value in current.items():
        if name not in item and name not in _INDEX_ATTRS and name not in fields and name != "deleted_at":
            if name in _CLIENT_TASK_FIELDS:
                continue  # replace mode: a field the document leaves out is cleared
            item[name] = value
    for name in ("created_by", "created_at", "started_at"):
        if current.get(name):
            item[name] = current[name]
    if item["status"] == TaskStatus.done and current.get("status") == TaskStatus.done and current.get("completed_at"):
        item["completed_at"] = current["completed_at"]
    elif item["status"] != TaskStatus.done:
        item.pop("completed_at", None)
    item["version"] = int(current.get("version", 0)) + 1
    return item


def _task_ops(
    access: Access,
    doc_tasks: list[ExportedTask],
    existing: dict[str, dict[str, Any]],
    mode: ImportMode,
    at: str,
    stats: Counter[str],
) -> list[dict[str, Any]]:
    ws = access.workspace_id
    ops: list[dict[str, Any]] = []
    doc_ids = {t.id for t in doc_tasks}
    # Every task change moves the sprint/day counters; they are summed and written once each below.
    changes: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = []
    if mode == "replace":
        for live in _live_tasks(ws):
            if live["id"] in doc_ids:
                continue
            tx = scratch()
            tx_update(
                tx,
                keys.task_key(ws, live["id"]),
                Update(set={"deleted_at": at}, remove=list(_INDEX_ATTRS)),
                exists() & _not_deleted() & attr_eq("version", live["version"]),
            )
            for pk, sk in sorted(_task_link_keys(ws, live)):
                tx_delete(tx, keys.key(pk, sk))
            task_indexes.add_link_writes(tx, ws, live, None)
            changes.append((live, None))
            ops += tx.operations
            stats["tasks_removed"] += 1
    for task in doc_tasks:
        current = existing.get(task.id)
        item = _task_item(access, task, current, mode, at)
        tx = scratch()
        tasks.add_task_writes(tx, ws, item, check_story=False)
        writes = tx.operations[1:]  # the link items; the task's own put gets the right condition below
        new_links = {_key_of(op) for op in writes}
        guard = not_exists() if current is None else attr_eq("version", current["version"])
        task_tx = scratch()
        tx_put(task_tx, item, guard)
        if current is not None and not current.get("deleted_at"):
            for pk, sk in sorted(_task_link_keys(ws, current) - new_links):
                tx_delete(task_tx, keys.key(pk, sk))
        task_indexes.add_link_writes(task_tx, ws, current, item)
        changes.append((current, item))
        ops += task_tx.operations + writes
        stats["tasks_created" if current is None else "tasks_updated"] += 1
    counters = scratch()
    task_indexes.add_summed_counter_writes(counters, ws, changes)
    return ops + counters.operations


def _team_ops(
    access: Access, doc_teams: list[ExportedTeam], mode: ImportMode, at: str, stats: Counter[str]
) -> list[dict[str, Any]]:
    ws = access.workspace_id
    actor = access.actor_id
    existing = {team.id: team for team in all_teams(ws)}
    doc_ids = {t.id for t in doc_teams}
    tx = scratch()
    if mode == "replace":
        for team_id, team in existing.items():
            if team_id in doc_ids:
                continue
            for member in every_member_of_team(ws, team_id):
                tx.discard(TeamMemberItem, member.key)
                stats["team_members_removed"] += 1
            tx.remove(team)
            stats["teams_removed"] += 1
    for doc_team in doc_teams:
        current = existing.get(doc_team.id)
        members = {m.user_id: m for m in every_member_of_team(ws, doc_team.id)} if current else {}
        wanted = {m.user_id: m.role.value for m in doc_team.members}
        if mode == "replace":
            for user_id in sorted(set(members) - set(wanted)):
                tx.discard(TeamMemberItem, keys.team_member_key(ws, doc_team.id, user_id))
                stats["team_members_removed"] += 1
        for user_id, role in wanted.items():
            previous = members.get(user_id)
            if previous is not None and previous.role == role:
                continue
            member = TeamMemberItem(
                workspace_id=ws,
                team_id=doc_team.id,
                user_id=user_id,
                role=role,
                added_by=previous.added_by if previous is not None else actor,
                added_at=previous.added_at if previous is not None else at,
            )
            tx.save(member)
            stats["team_members_added" if previous is None else "team_members_updated"] += 1
        final = set(wanted) if mode == "replace" else set(members) | set(wanted)
        team = current or TeamItem(workspace_id=ws, id=doc_team.id, created_by=actor, created_at=at)
        team.name, team.description = doc_team.name, doc_team.description
        team.member_count, team.updated_at = len(final), at
        # A new team only if there is none; a known one only at the version read.
        tx.save(team, TeamItem.absent() if current is None else None)
        stats["teams_created" if current is None else "teams_updated"] += 1
    return tx.operations


def _agent_ops(access: Access, doc_agents: list[AgentDefinition], at: str, stats: Counter[str]) -> list[dict[str, Any]]:
    ws = access.workspace_id
    current = _get_many([keys.agent_key(ws, agent.name) for agent in doc_agents])
    tx = scratch()
    for agent, item in zip(doc_agents, current, strict=True):
        outcome = agents.add_definition_writes(tx, access, agent.model_dump(exclude_unset=True), item, at)
        stats[f"agents_{outcome}"] += 1
        if outcome != "unchanged":
            stats["agents_imported"] += 1
    return tx.operations


def _template_ops(
    ws: str, doc_templates: list[ExportedTaskTemplate], mode: ImportMode, at: str, stats: Counter[str]
) -> list[dict[str, Any]]:
    tx = scratch()
    wanted = {template_id(t.title): t for t in doc_templates}
    existing = {template.id: template for template in every_task_template(ws)}
    if mode == "replace":
        for stale in sorted(set(existing) - set(wanted)):
            tx.discard(TaskTemplateItem, keys.task_template_key(ws, stale))
            stats["templates_removed"] += 1
    for tid, template in wanted.items():
        fields = template.model_dump(exclude_none=True)
        current = existing.get(tid)
        if _template_entry(current) == fields:
            continue
        created_at = current.created_at if current is not None else at
        tx.save(TaskTemplateItem(id=tid, workspace_id=ws, **fields, created_at=created_at, updated_at=at))
        stats["templates_imported"] += 1
    return tx.operations


def _settings_ops(ws: str, doc: WorkspaceDocument, workspace: WorkspaceItem, at: str) -> list[dict[str, Any]]:
    if doc.workspace is None:
        return []
    changes: dict[str, Any] = doc.workspace.model_dump(exclude_none=True)
    changes = {k: v for k, v in changes.items() if getattr(workspace, k) != v}
    if not changes:
        return []
    tx = scratch()
    tx.change(workspace, workspace.assign(**changes, updated_at=at), WorkspaceItem.deleted_at.does_not_exist())
    return tx.operations


def import_workspace(access: Access, doc: WorkspaceDocument) -> ImportResult:
    ws = access.workspace_id
    if doc.tasks is not None or doc.task_templates is not None:
        access.require("tasks:write")
    if doc.agents is not None:
        access.require("agents:write")
    workspace = load_workspace(ws)
    old_name = workspace.name
    at = iso()
    stats: Counter[str] = Counter()

    # Validate everything first: nothing is written unless the whole document can be.
    existing_tasks: dict[str, dict[str, Any]] = {}
    if doc.teams:
        _validate_teams(ws, doc.teams)
    if doc.tasks:
        ids = [t.id for t in doc.tasks]
        existing_tasks = {
            i: item for i, item in zip(ids, _get_many([keys.task_key(ws, i) for i in ids]), strict=True) if item
        }
        _validate_tasks(ws, doc.tasks, doc.mode)

    operations = _settings_ops(ws, doc, workspace, at)
    if operations:
        stats["settings_updated"] = 1
    if doc.teams is not None:
        operations += _team_ops(access, doc.teams, doc.mode, at, stats)
    if doc.tasks is not None:
        operations += _task_ops(access, doc.tasks, existing_tasks, doc.mode, at, stats)
    if doc.agents is not None:
        operations += _agent_ops(access, doc.agents, at, stats)
    if doc.task_templates is not None:
        operations += _template_ops(ws, doc.task_templates, doc.mode, at, stats)

    summary = {"mode": doc.mode, **dict(sorted(stats.items()))}

    def audit_row(tx: Transaction, part: int, parts: int) -> None:
        access.audit(tx, "workspace.imported", "workspace", ws, {**summary, "part": part + 1, "parts": parts})

    transactions = commit_in_parts(access, operations, audit_row)
    if doc.workspace and doc.workspace.name and doc.workspace.name != old_name:
        rename_memberships(ws, doc.workspace.name)
    return ImportResult(mode=doc.mode, stats=dict(stats), transactions=transactions)

"""Projects: create, list, get, patch and soft delete; maintenance run requests; the changelog.

A project's name is unique in its workspace (case-insensitive), held by a guard item written in
the same transaction as the project. Every change also writes a changelog entry under the project
and an audit event, both in the transaction of the change itself.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from email.utils import format_datetime
from typing import Any

from agentplane import keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.projects import (
    ChangelogItem,
    ProjectItem,
    ProjectNameItem,
    changelog_of_project,
    projects_of_workspace,
)
from agentplane.entities.runs import run_from_item
from agentplane.errors import Conflict, NotFound, PreconditionFailed
from agentplane.ids import iso, new_id, parse_iso
from agentplane.logic.billing import limits
from agentplane.models.projects import (
    PROJECT_FIELDS,
    MaintenanceAction,
    MaintenanceRun,
    Project,
    ProjectChangelogEntry,
    ProjectCreate,
    ProjectUpdate,
)
from agentplane.models.runs import RunCreate, RunKind
from agentplane.store import Transaction, TransactionFailed, get_store

PROJECT_ID = re.compile(r"^prj_[0-9a-z]{26}$")
# Characters XML 1.0 cannot carry at all, even escaped.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# The name of the operation that takes a new name's guard (failing there: the name is taken).
NAME_GUARD = "name_guard"


def load_live_project(ws: str, project_id: str) -> ProjectItem:
    project = get_store().read(ProjectItem, keys.project_key(ws, project_id)) if PROJECT_ID.match(project_id) else None
    if project is None or project.deleted_at:
        raise NotFound(f"project {project_id} not found")
    return project


def project_is_live(ws: str, project_id: str) -> bool:
    project = get_store().read(ProjectItem, keys.project_key(ws, project_id))
    return project is not None and not project.deleted_at


def changelog_entry(
    ws: str,
    project_id: str,
    event: str,
    title: str,
    actor_id: str,
    subject: tuple[str, str],
    description: str = "",
    entry_id: str | None = None,
) -> ChangelogItem:
    """One changelog entry; written in the transaction of the change it describes."""
    return ChangelogItem(
        workspace_id=ws,
        project_id=project_id,
        id=entry_id or new_id("chg"),
        event=event,
        title=title,
        description=description,
        subject_type=subject[0],
        subject_id=subject[1],
        actor_id=actor_id,
        created_at=iso(),
    )


def create_project(access: Access, body: ProjectCreate) -> Project:
    ws = access.workspace_id
    at = iso()
    project = ProjectItem(
        workspace_id=ws,
        id=new_id("prj"),
        **body.model_dump(),
        doc_count=0,
        created_by=access.actor_id,
        created_at=at,
        updated_at=at,
    )
    tx = access.transaction()
    tx.create(project)
    tx.create(ProjectNameItem(workspace_id=ws, project_id=project.id, name=body.name), name=NAME_GUARD)
    limits.take_project(tx, ws)
    tx.save(
        changelog_entry(
            ws, project.id, "project.created", f"Project {body.name} created", access.actor_id, ("project", project.id)
        )
    )
    access.audit(tx, "project.created", "project", project.id, {"name": body.name})
    try:
        limits.commit_counted(tx, ws, access.commit)
    except TransactionFailed as failure:
        if failure.failed == NAME_GUARD:
            raise Conflict(f"a project named '{body.name}' already exists in this workspace") from failure
        raise Conflict("the project could not be created; retry") from failure
    return project.to_model()


def get_project(access: Access, project_id: str) -> Project:
    return load_live_project(access.workspace_id, project_id).to_model()


def list_projects(access: Access, *, limit: int, cursor: str | None) -> tuple[list[Project], str | None]:
    ws = access.workspace_id
    scope = f"projects:{ws}"
    page = projects_of_workspace(ws, limit=limit, start=decode_cursor(cursor, scope, {}))
    return [project.to_model() for project in page.items], encode_cursor(page.last_key, scope, {})


def check_version(kind: str, ident: str, current: int, expected: int | None) -> None:
    if expected is not None and expected != current:
        raise PreconditionFailed(f"{kind} {ident} is at version {current}, not {expected}", current_version=current)


def update_project(access: Access, project_id: str, body: ProjectUpdate, if_match: int | None = None) -> Project:
    ws = access.workspace_id
    project = load_live_project(ws, project_id)
    check_version("project", project_id, project.version, body.version or if_match)
    changes = {
        name: value
        for name, value in body.model_dump(exclude_none=True, exclude={"version"}).items()
        if getattr(project, name) != value
    }
    if not changes:
        return project.to_model()
    fields = sorted(changes)
    old_name = project.name
    tx = access.transaction()
    tx.change(project, project.assign(**changes, updated_at=iso()), ProjectItem.undeleted())
    swap_name_guard(tx, ws, project_id, old_name, changes.get("name"))
    tx.save(
        changelog_entry(
            ws,
            project_id,
            "project.updated",
            f"Project {project.name} updated",
            access.actor_id,
            ("project", project_id),
            f"Changed {', '.join(fields)}",
        )
    )
    access.audit(tx, "project.updated", "project", project_id, {"fields": fields})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed == NAME_GUARD:
            raise Conflict(f"a project named '{changes['name']}' already exists in this workspace") from failure
        if not project_is_live(ws, project_id):
            raise NotFound(f"project {project_id} not found") from failure
        raise PreconditionFailed(
            f"project {project_id} changed while it was being updated; reload and retry"
        ) from failure
    return project.to_model()


def swap_name_guard(tx: Transaction, ws: str, project_id: str, old: str, new: str | None) -> None:
    """Move the name guard when a rename changes the name's unique form; the new guard's
    operation is named NAME_GUARD (a failure there means the name is taken)."""
    if new is None or keys.project_name_key(ws, new) == keys.project_name_key(ws, old):
        return
    tx.drop(ProjectNameItem, keys.project_name_key(ws, old), ProjectNameItem.held_by(project_id))
    tx.create(ProjectNameItem(workspace_id=ws, project_id=project_id, name=new), name=NAME_GUARD)


def delete_project(access: Access, project_id: str) -> None:
    ws = access.workspace_id
    project = load_live_project(ws, project_id)
    tx = access.transaction()
    # Soft delete: the project stays for its audit trail but leaves the list, and frees its name.
    tx.adjust(ProjectItem, project.key, project.soft_delete(iso()), ProjectItem.undeleted())
    tx.drop(ProjectNameItem, keys.project_name_key(ws, project.name), ProjectNameItem.held_by(project_id))
    limits.free_project(tx, ws)
    access.audit(tx, "project.deleted", "project", project_id)
    try:
        limits.commit_counted(tx, ws, access.commit)
    except TransactionFailed as failure:
        raise NotFound(f"project {project_id} not found") from failure


_RUN_TITLES = {
    MaintenanceAction.clone: "Clone {name}",
    MaintenanceAction.pull: "Pull {branch} into {name}",
    MaintenanceAction.reindex: "Re-index {name}",
    MaintenanceAction.regenerate_docs: "Regenerate the docs of {name}",
}


def maintenance_run_item(access: Access, project: ProjectItem, action: MaintenanceAction) -> dict[str, Any]:
    """A maintenance run, a draft of the runs family's own shape, written in the request's own
    transaction (with its changelog entry and audit row); `queue_maintenance_run` then starts it
    through the runs lifecycle, which takes an active-run slot and starts the execution that keeps
    its timers."""
    from agentplane.logic import runs

    title = _RUN_TITLES[action].format(name=project.name, branch=project.default_branch)
    source = project.repository_url or project.name
    draft = RunCreate(
        project_id=project.id,
        title=title,
        prompt=f"{title} ({source}, default branch {project.default_branch})",
        kind=RunKind.maintenance,
    )
    run = runs.new_run_item(access.workspace_id, draft, access.actor_id)
    run.update({"action": action.value, "maintenance_action": action.value, "version": 1})
    return run


def request_maintenance(access: Access, project_id: str, action: MaintenanceAction) -> MaintenanceRun:
    """Clone, pull or index: queue a maintenance run of the project.

    The run is written already queued, in the request's one transaction, the way `start` queues a
    draft: at the workspace's active-run cap the request is a 429 and writes nothing."""
    from agentplane.logic import runs

    ws = access.workspace_id
    project = load_live_project(ws, project_id)
    run = maintenance_run_item(access, project, action)
    tx = access.transaction()
    tx.require(ProjectItem, project.key, ProjectItem.live(), name="project")
    runs.queue_new_run(tx, run)
    tx.save(
        changelog_entry(
            ws, project_id, "maintenance.requested", run["title"] + " requested", access.actor_id, ("run", run["id"])
        )
    )
    access.audit(
        tx, "project.maintenance_requested", "project", project_id, {"action": action.value, "run_id": run["id"]}
    )
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed == runs.RUN_SLOT:
            raise runs.slot_refused(ws, failure) from failure
        raise NotFound(f"project {project_id} not found") from failure
    runs.start_execution(run)
    return MaintenanceRun.model_validate(run)


def add_draft_run(tx: Transaction, run: dict[str, Any]) -> None:
    """Put a drafted maintenance run in `tx` (a run is the runs family's item, written whole)."""
    tx.create(run_from_item(run))


def queue_maintenance_run(access: Access, run: dict[str, Any]) -> MaintenanceRun:
    """Start the drafted maintenance run: from here it is an ordinary run (queued, claimed by an
    agent, timed by its execution). If the workspace has no free run slot it stays a draft."""
    from agentplane.logic import runs

    started = runs.start_run(access, run["id"])
    return MaintenanceRun.model_validate({**run, "status": started.status.value, "updated_at": started.updated_at})


def list_changelog(
    access: Access, project_id: str, *, limit: int, cursor: str | None
) -> tuple[list[ProjectChangelogEntry], str | None]:
    ws = access.workspace_id
    load_live_project(ws, project_id)
    scope = f"changelog:{ws}:{project_id}"
    page = changelog_of_project(ws, project_id, limit=limit, start=decode_cursor(cursor, scope, {}))
    return [entry.to_model() for entry in page.items], encode_cursor(page.last_key, scope, {})


def _text(value: str) -> str:
    return _XML_INVALID.sub("", value)


def _rfc822(timestamp: str) -> str:
    return format_datetime(parse_iso(timestamp), usegmt=True)


def changelog_rss(access: Access, project_id: str, *, limit: int, feed_url: str) -> str:
    """The newest `limit` changelog entries as an RSS 2.0 document."""
    ws = access.workspace_id
    project = load_live_project(ws, project_id)
    entries = changelog_of_project(ws, project_id, limit=limit, start=None).items
    rss = ET.Element("rss", {"version": "2.0"})
    channel = ET.SubElement(rss, "channel")
    ET.SubElement(channel, "title").text = _text(f"{project.name} changelog")
    ET.SubElement(channel, "link").text = _text(feed_url)
    ET.SubElement(channel, "description").text = _text(project.description or f"Changes to the project {project.name}")
    if entries:
        ET.SubElement(channel, "lastBuildDate").text = _rfc822(entries[0].created_at)
    for entry in entries:
        node = ET.SubElement(channel, "item")
        ET.SubElement(node, "title").text = _text(entry.title)
        ET.SubElement(node, "link").text = _text(f"{feed_url}#{entry.id}")
        ET.SubElement(node, "description").text = _text(entry.description or entry.title)
        ET.SubElement(node, "category").text = entry.event
        ET.SubElement(node, "pubDate").text = _rfc822(entry.created_at)
        ET.SubElement(node, "guid", {"isPermaLink": "false"}).text = entry.id
    return ET.tostring(rss, encoding="unicode", xml_declaration=True)


def project_fields(project: ProjectItem) -> dict[str, Any]:
    """The project fields a snapshot captures."""
    return {name: getattr(project, name) for name in PROJECT_FIELDS}

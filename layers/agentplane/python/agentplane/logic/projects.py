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

from agentplane import audit, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.errors import Conflict, NotFound, PreconditionFailed
from agentplane.ids import iso, new_id, parse_iso
from agentplane.models.projects import (
    PROJECT_FIELDS,
    MaintenanceAction,
    MaintenanceRun,
    Project,
    ProjectChangelogEntry,
    ProjectCreate,
    ProjectUpdate,
)
from agentplane.store import Expr, Item, Transaction, TransactionFailed, Update, attr_eq, exists, get_store, not_exists

PROJECT_ID = re.compile(r"^prj_[0-9a-z]{26}$")
# Characters XML 1.0 cannot carry at all, even escaped.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def live() -> Expr:
    """The item exists and is not soft-deleted."""
    return exists() & Expr("attribute_not_exists(#deleted)", {"#deleted": "deleted_at"})


def load_live_project(ws: str, project_id: str) -> Item:
    item = get_store().get(keys.project_key(ws, project_id)) if PROJECT_ID.match(project_id) else None
    if item is None or item.get("deleted_at"):
        raise NotFound(f"project {project_id} not found")
    return item


def project_is_live(ws: str, project_id: str) -> bool:
    item = get_store().get(keys.project_key(ws, project_id))
    return item is not None and not item.get("deleted_at")


def to_project(item: Item) -> Project:
    return Project.model_validate(item)


def changelog_item(
    ws: str,
    project_id: str,
    event: str,
    title: str,
    actor_id: str,
    subject: tuple[str, str],
    description: str = "",
    entry_id: str | None = None,
) -> Item:
    """One changelog entry; written in the transaction of the change it describes."""
    entry_id = entry_id or new_id("chg")
    return {
        **keys.changelog_key(ws, project_id, entry_id),
        keys.ENTITY: "changelog",
        "id": entry_id,
        "workspace_id": ws,
        "project_id": project_id,
        "event": event,
        "title": title,
        "description": description,
        "subject_type": subject[0],
        "subject_id": subject[1],
        "actor_id": actor_id,
        "created_at": iso(),
    }


def _name_guard(ws: str, name: str, project_id: str) -> Item:
    return {
        **keys.project_name_key(ws, name),
        keys.ENTITY: "project_name",
        "workspace_id": ws,
        "project_id": project_id,
    }


def create_project(access: Access, body: ProjectCreate, request_id: str = "") -> Project:
    ws = access.workspace_id
    project_id = new_id("prj")
    at = iso()
    item = {
        **keys.project_key(ws, project_id),
        keys.GSI1PK: keys.project_list_gsi(ws),
        keys.GSI1SK: project_id,
        keys.ENTITY: "project",
        **body.model_dump(),
        "id": project_id,
        "workspace_id": ws,
        "doc_count": 0,
        "created_by": access.actor_id,
        "created_at": at,
        "updated_at": at,
        "version": 1,
    }
    tx = access.transaction()
    tx.put(item, not_exists())
    guard_index = len(tx.operations)
    tx.put(_name_guard(ws, body.name, project_id), not_exists())
    tx.put(
        changelog_item(
            ws, project_id, "project.created", f"Project {body.name} created", access.actor_id, ("project", project_id)
        )
    )
    audit.record(tx, ws, access.actor_id, "project.created", "project", project_id, request_id, {"name": body.name})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed_index() == guard_index:
            raise Conflict(f"a project named '{body.name}' already exists in this workspace") from failure
        raise Conflict("the project could not be created; retry") from failure
    return to_project(item)


def get_project(access: Access, project_id: str) -> Project:
    return to_project(load_live_project(access.workspace_id, project_id))


def list_projects(access: Access, *, limit: int, cursor: str | None) -> tuple[list[Project], str | None]:
    ws = access.workspace_id
    scope = f"projects:{ws}"
    start = decode_cursor(cursor, scope, {})
    page = get_store().query(keys.project_list_gsi(ws), index=keys.GSI1, limit=limit, start_key=start)
    return [to_project(item) for item in page.items], encode_cursor(page.last_key, scope, {})


def check_version(kind: str, ident: str, current: int, expected: int | None) -> None:
    if expected is not None and expected != current:
        raise PreconditionFailed(f"{kind} {ident} is at version {current}, not {expected}", current_version=current)


def update_project(
    access: Access, project_id: str, body: ProjectUpdate, if_match: int | None = None, request_id: str = ""
) -> Project:
    ws = access.workspace_id
    current = load_live_project(ws, project_id)
    check_version("project", project_id, current["version"], body.version or if_match)
    changes = {
        name: value
        for name, value in body.model_dump(exclude_none=True, exclude={"version"}).items()
        if current.get(name) != value
    }
    if not changes:
        return to_project(current)
    fields = sorted(changes)
    changes["updated_at"] = iso()
    changes["version"] = current["version"] + 1
    tx = access.transaction()
    tx.update(keys.project_key(ws, project_id), Update(set=changes), live() & attr_eq("version", current["version"]))
    guard_index = swap_name_guard(tx, ws, project_id, current["name"], changes.get("name"))
    tx.put(
        changelog_item(
            ws,
            project_id,
            "project.updated",
            f"Project {changes.get('name', current['name'])} updated",
            access.actor_id,
            ("project", project_id),
            f"Changed {', '.join(fields)}",
        )
    )
    audit.record(tx, ws, access.actor_id, "project.updated", "project", project_id, request_id, {"fields": fields})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if guard_index is not None and failure.failed_index() == guard_index:
            raise Conflict(f"a project named '{changes['name']}' already exists in this workspace") from failure
        if not project_is_live(ws, project_id):
            raise NotFound(f"project {project_id} not found") from failure
        raise PreconditionFailed(
            f"project {project_id} changed while it was being updated; reload and retry"
        ) from failure
    return to_project({**current, **changes})


def swap_name_guard(tx: Transaction, ws: str, project_id: str, old: str, new: str | None) -> int | None:
    """Move the name guard when a rename changes the name's unique form; returns the new guard's
    operation index (a failure there means the name is taken)."""
    if new is None or keys.project_name_key(ws, new) == keys.project_name_key(ws, old):
        return None
    tx.delete(keys.project_name_key(ws, old), attr_eq("project_id", project_id))
    index = len(tx.operations)
    tx.put(_name_guard(ws, new, project_id), not_exists())
    return index


def delete_project(access: Access, project_id: str, request_id: str = "") -> None:
    ws = access.workspace_id
    current = load_live_project(ws, project_id)
    tx = access.transaction()
    # Soft delete: the project stays for its audit trail but leaves the list, and frees its name.
    tx.update(
        keys.project_key(ws, project_id),
        Update(set={"deleted_at": iso()}, remove=[keys.GSI1PK, keys.GSI1SK]),
        live(),
    )
    tx.delete(keys.project_name_key(ws, current["name"]), attr_eq("project_id", project_id))
    audit.record(tx, ws, access.actor_id, "project.deleted", "project", project_id, request_id)
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise NotFound(f"project {project_id} not found") from failure


_RUN_TITLES = {
    MaintenanceAction.clone: "Clone {name}",
    MaintenanceAction.pull: "Pull {branch} into {name}",
    MaintenanceAction.reindex: "Re-index {name}",
    MaintenanceAction.regenerate_docs: "Regenerate the docs of {name}",
}


def maintenance_run_item(access: Access, project: Item, action: MaintenanceAction) -> Item:
    """A maintenance run, written as a draft in the request's own transaction (with its changelog
    entry and audit row); `queue_maintenance_run` then starts it through the runs lifecycle, which
    takes an active-run slot and starts the execution that keeps its timers."""
    ws = access.workspace_id
    run_id = new_id("run")
    at = iso()
    title = _RUN_TITLES[action].format(name=project["name"], branch=project["default_branch"])
    source = project.get("repository_url") or project["name"]
    return {
        **keys.run_key(ws, run_id),
        keys.GSI1PK: keys.run_list_gsi(ws),
        keys.GSI1SK: run_id,
        keys.GSI2PK: keys.run_project_gsi(ws, project["id"]),
        keys.GSI2SK: run_id,
        keys.ENTITY: "run",
        "id": run_id,
        "workspace_id": ws,
        "project_id": project["id"],
        "kind": "maintenance",
        "action": action.value,
        "maintenance_action": action.value,
        "status": "draft",
        "title": title,
        "prompt": f"{title} ({source}, default branch {project['default_branch']})",
        "branch": f"agentplane/{run_id}",
        "desired_state": "run",
        "last_event_id": 0,
        "created_by": access.actor_id,
        "created_at": at,
        "updated_at": at,
        "version": 1,
    }


def request_maintenance(
    access: Access, project_id: str, action: MaintenanceAction, request_id: str = ""
) -> MaintenanceRun:
    """Clone, pull or index: queue a maintenance run of the project.

    The run is written already queued, in the request's one transaction, the way `start` queues a
    draft: at the workspace's active-run cap the request is a 429 and writes nothing."""
    from agentplane.logic import runs

    ws = access.workspace_id
    project = load_live_project(ws, project_id)
    run = maintenance_run_item(access, project, action)
    tx = access.transaction()
    tx.check(keys.project_key(ws, project_id), live())
    runs.queue_new_run(tx, run)
    tx.put(
        changelog_item(
            ws, project_id, "maintenance.requested", run["title"] + " requested", access.actor_id, ("run", run["id"])
        )
    )
    audit.record(
        tx,
        ws,
        access.actor_id,
        "project.maintenance_requested",
        "project",
        project_id,
        request_id,
        {"action": action.value, "run_id": run["id"]},
    )
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed == runs.RUN_SLOT:
            raise runs.too_many_active() from failure
        raise NotFound(f"project {project_id} not found") from failure
    runs.start_execution(run)
    return MaintenanceRun.model_validate(run)


def queue_maintenance_run(access: Access, run: Item, request_id: str = "") -> MaintenanceRun:
    """Start the drafted maintenance run: from here it is an ordinary run (queued, claimed by an
    agent, timed by its execution). If the workspace has no free run slot it stays a draft."""
    from agentplane.logic import runs

    started = runs.start_run(access, run["id"])
    return MaintenanceRun.model_validate({**run, "status": started.status.value, "updated_at": started.updated_at})


def _changelog_page(ws: str, project_id: str, limit: int, start: dict[str, Any] | None) -> tuple[list[Item], Any]:
    page = get_store().query(
        keys.project_pk(ws, project_id),
        sk_prefix=keys.CHANGELOG_PREFIX,
        limit=limit,
        start_key=start,
        newest_first=True,
    )
    return page.items, page.last_key


def list_changelog(
    access: Access, project_id: str, *, limit: int, cursor: str | None
) -> tuple[list[ProjectChangelogEntry], str | None]:
    ws = access.workspace_id
    load_live_project(ws, project_id)
    scope = f"changelog:{ws}:{project_id}"
    items, last_key = _changelog_page(ws, project_id, limit, decode_cursor(cursor, scope, {}))
    return [ProjectChangelogEntry.model_validate(item) for item in items], encode_cursor(last_key, scope, {})


def _text(value: str) -> str:
    return _XML_INVALID.sub("", value)


def _rfc822(timestamp: str) -> str:
    return format_datetime(parse_iso(timestamp), usegmt=True)


def changelog_rss(access: Access, project_id: str, *, limit: int, feed_url: str) -> str:
    """The newest `limit` changelog entries as an RSS 2.0 document."""
    ws = access.workspace_id
    project = load_live_project(ws, project_id)
    items, _ = _changelog_page(ws, project_id, limit, None)
    rss = ET.Element("rss", {"version": "2.0"})
    channel = ET.SubElement(rss, "channel")
    ET.SubElement(channel, "title").text = _text(f"{project['name']} changelog")
    ET.SubElement(channel, "link").text = _text(feed_url)
    ET.SubElement(channel, "description").text = _text(
        project.get("description") or f"Changes to the project {project['name']}"
    )
    if items:
        ET.SubElement(channel, "lastBuildDate").text = _rfc822(items[0]["created_at"])
    for entry in items:
        node = ET.SubElement(channel, "item")
        ET.SubElement(node, "title").text = _text(entry["title"])
        ET.SubElement(node, "link").text = _text(f"{feed_url}#{entry['id']}")
        ET.SubElement(node, "description").text = _text(entry.get("description") or entry["title"])
        ET.SubElement(node, "category").text = entry["event"]
        ET.SubElement(node, "pubDate").text = _rfc822(entry["created_at"])
        ET.SubElement(node, "guid", {"isPermaLink": "false"}).text = entry["id"]
    return ET.tostring(rss, encoding="unicode", xml_declaration=True)


def project_fields(item: Item) -> dict[str, Any]:
    """The project fields a snapshot captures."""
    return {name: item.get(name) for name in PROJECT_FIELDS}

"""Projects family: /api/v1/workspaces/{ws}/projects (with docs, changelog, maintenance runs and
snapshots) and /api/v1/workspaces/{ws}/snapshots."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from agentplane.access import workspace_access
from agentplane.http import (
    PROBLEM_RESPONSES,
    Cursor,
    IfMatch,
    Limit,
    create_app,
    created,
    lambda_entry,
    limit_group,
    no_content,
    ok,
    page,
    request_id,
    request_principal,
)
from agentplane.logic import docs, projects, runs, snapshots
from agentplane.models.envelope import Data, DataList
from agentplane.models.projects import (
    MaintenanceAction,
    MaintenanceRun,
    Project,
    ProjectChangelogEntry,
    ProjectChangelogFormat,
    ProjectCreate,
    ProjectDoc,
    ProjectDocPut,
    ProjectDocSummary,
    ProjectSnapshot,
    ProjectSnapshotCompare,
    ProjectSnapshotCreate,
    ProjectSnapshotDiff,
    ProjectSnapshotSummary,
    ProjectUpdate,
    SnapshotRestoreResult,
)

REQUIRED_SETTINGS = runs.STARTS_RUNS  # clone, pull, index and docs runs have timers
app = create_app(requires=REQUIRED_SETTINGS)
BASE = "/api/v1/workspaces/<ws>/projects"
PROJECT = f"{BASE}/<project_id>"
SNAPSHOT = "/api/v1/workspaces/<ws>/snapshots/<snapshot_id>"
RSS = "application/rss+xml"
ACCEPTED = {202: {"description": "Maintenance run queued"}, **PROBLEM_RESPONSES}


def accepted(data: Any) -> Response[Any]:
    return Response(status_code=202, content_type="application/json", body={"data": data})


@app.post(BASE, responses={201: {"description": "Created"}, **PROBLEM_RESPONSES})
def create_project(ws: str, body: ProjectCreate) -> Response[Data[Project]]:
    access = workspace_access(request_principal(app), ws, "projects:write")
    return created(projects.create_project(access, body, request_id(app)))


@app.get(BASE, responses=PROBLEM_RESPONSES)
def list_projects(ws: str, limit: Limit = 50, cursor: Cursor = None) -> DataList[Project]:
    access = workspace_access(request_principal(app), ws, "projects:read")
    items, next_cursor = projects.list_projects(access, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.get(PROJECT, responses=PROBLEM_RESPONSES)
def get_project(ws: str, project_id: str) -> Data[Project]:
    access = workspace_access(request_principal(app), ws, "projects:read")
    return ok(projects.get_project(access, project_id))


@app.patch(PROJECT, responses=PROBLEM_RESPONSES)
def update_project(ws: str, project_id: str, body: ProjectUpdate, if_match: IfMatch = None) -> Data[Project]:
    access = workspace_access(request_principal(app), ws, "projects:write")
    return ok(projects.update_project(access, project_id, body, if_match, request_id(app)))


@app.delete(PROJECT, responses={204: {"description": "Deleted"}, **PROBLEM_RESPONSES})
def delete_project(ws: str, project_id: str) -> Response[Any]:
    access = workspace_access(request_principal(app), ws, "projects:write")
    projects.delete_project(access, project_id, request_id(app))
    return no_content()


# A maintenance run is started work like any run: it counts against the same 6-per-minute limit.
run_start_limit = [limit_group("run-start")]


@app.post(f"{PROJECT}/clone", middlewares=run_start_limit, responses=ACCEPTED)
def clone_project(ws: str, project_id: str) -> Response[Data[MaintenanceRun]]:
    access = workspace_access(request_principal(app), ws, "projects:write")
    return accepted(projects.request_maintenance(access, project_id, MaintenanceAction.clone, request_id(app)))


@app.post(f"{PROJECT}/pull", middlewares=run_start_limit, responses=ACCEPTED)
def pull_project(ws: str, project_id: str) -> Response[Data[MaintenanceRun]]:
    access = workspace_access(request_principal(app), ws, "projects:write")
    return accepted(projects.request_maintenance(access, project_id, MaintenanceAction.pull, request_id(app)))


@app.post(f"{PROJECT}/index", middlewares=run_start_limit, responses=ACCEPTED)
def index_project(ws: str, project_id: str) -> Response[Data[MaintenanceRun]]:
    access = workspace_access(request_principal(app), ws, "projects:write")
    return accepted(projects.request_maintenance(access, project_id, MaintenanceAction.reindex, request_id(app)))


@app.get(f"{PROJECT}/docs", responses=PROBLEM_RESPONSES)
def list_docs(ws: str, project_id: str, limit: Limit = 50, cursor: Cursor = None) -> DataList[ProjectDocSummary]:
    access = workspace_access(request_principal(app), ws, "projects:read")
    items, next_cursor = docs.list_docs(access, project_id, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.post(f"{PROJECT}/docs/regenerate", responses=ACCEPTED)
def regenerate_docs(ws: str, project_id: str) -> Response[Data[MaintenanceRun]]:
    access = workspace_access(request_principal(app), ws, "projects:write")
    return accepted(docs.regenerate_docs(access, project_id, request_id(app)))


@app.get(f"{PROJECT}/docs/<slug>", responses=PROBLEM_RESPONSES)
def get_doc(ws: str, project_id: str, slug: str) -> Data[ProjectDoc]:
    access = workspace_access(request_principal(app), ws, "projects:read")
    return ok(docs.get_doc(access, project_id, slug))


@app.put(
    f"{PROJECT}/docs/<slug>",
    responses={200: {"description": "Replaced"}, 201: {"description": "Created"}, **PROBLEM_RESPONSES},
)
def put_doc(
    ws: str, project_id: str, slug: str, body: ProjectDocPut, if_match: IfMatch = None
) -> Response[Data[ProjectDoc]]:
    access = workspace_access(request_principal(app), ws, "projects:write")
    doc, was_created = docs.put_doc(access, project_id, slug, body, if_match, request_id(app))
    return created(doc) if was_created else Response(200, "application/json", body={"data": doc})


@app.get(
    f"{PROJECT}/changelog",
    responses={
        200: {
            "description": "Changelog entries, newest first: JSON, or RSS 2.0 with format=rss",
            "content": {
                "application/json": {"model": DataList[ProjectChangelogEntry]},
                RSS: {"schema": {"type": "string"}},
            },
        },
        **PROBLEM_RESPONSES,
    },
)
def get_changelog(
    ws: str,
    project_id: str,
    format: Annotated[ProjectChangelogFormat, Query()] = ProjectChangelogFormat.json,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response[Any]:
    access = workspace_access(request_principal(app), ws, "projects:read")
    if format is ProjectChangelogFormat.rss:
        feed = projects.changelog_rss(access, project_id, limit=limit, feed_url=_feed_url())
        return Response(200, RSS, body=feed)
    items, next_cursor = projects.list_changelog(access, project_id, limit=limit, cursor=cursor)
    return Response(200, "application/json", body=page(items, next_cursor, limit))


def _feed_url() -> str:
    """The changelog's own address, as the caller reached it (the RSS channel's link)."""
    event = app.current_event
    headers = event.headers or {}
    scheme = headers.get("x-forwarded-proto") or "https"
    return f"{scheme}://{headers.get('host') or 'localhost'}{event.path}"


@app.get(f"{PROJECT}/snapshots", responses=PROBLEM_RESPONSES)
def list_snapshots(
    ws: str, project_id: str, limit: Limit = 50, cursor: Cursor = None
) -> DataList[ProjectSnapshotSummary]:
    access = workspace_access(request_principal(app), ws, "projects:read")
    items, next_cursor = snapshots.list_snapshots(access, project_id, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.post(f"{PROJECT}/snapshots", responses={201: {"description": "Created"}, **PROBLEM_RESPONSES})
def create_snapshot(ws: str, project_id: str, body: ProjectSnapshotCreate) -> Response[Data[ProjectSnapshot]]:
    access = workspace_access(request_principal(app), ws, "projects:write")
    return created(snapshots.create_snapshot(access, project_id, body, request_id(app)))


@app.get(SNAPSHOT, responses=PROBLEM_RESPONSES)
def get_snapshot(
    ws: str,
    snapshot_id: str,
    include_content: Annotated[bool, Query(description="Inline each doc's content")] = False,
) -> Data[ProjectSnapshot]:
    access = workspace_access(request_principal(app), ws, "projects:read")
    return ok(snapshots.get_snapshot(access, snapshot_id, include_content))


@app.post(f"{SNAPSHOT}/restore", responses=PROBLEM_RESPONSES)
def restore_snapshot(ws: str, snapshot_id: str) -> Data[SnapshotRestoreResult]:
    access = workspace_access(request_principal(app), ws, "projects:write")
    return ok(snapshots.restore_snapshot(access, snapshot_id, request_id(app)))


@app.post(f"{SNAPSHOT}/compare", responses=PROBLEM_RESPONSES)
def compare_snapshot(
    ws: str, snapshot_id: str, body: ProjectSnapshotCompare | None = None
) -> Data[ProjectSnapshotDiff]:
    access = workspace_access(request_principal(app), ws, "projects:read")
    return ok(snapshots.compare_snapshot(access, snapshot_id, body or ProjectSnapshotCompare()))


lambda_handler = lambda_entry(app)

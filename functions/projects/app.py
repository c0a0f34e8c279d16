"""Projects family: /api/v1/workspaces/{ws}/projects (with docs, changelog, maintenance runs and
snapshots) and /api/v1/workspaces/{ws}/snapshots."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from agentplane.access import Access
from agentplane.http import (
    PROBLEM_RESPONSES,
    IfMatch,
    answers,
    create_app,
    created,
    lambda_entry,
    limit_group,
    no_content,
    ok,
    page,
    stored,
    workspace_scope,
)
from agentplane.logic import docs, projects, runs, snapshots
from agentplane.models.common import ListQuery
from agentplane.models.envelope import Data, DataList
from agentplane.models.projects import (
    ChangelogQuery,
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
ACCEPTED = answers(202, "Maintenance run queued")
ReadProjects = Annotated[Access, workspace_scope("projects:read")]
WriteProjects = Annotated[Access, workspace_scope("projects:write")]


def accepted(data: Any) -> Response[Any]:
    return Response(status_code=202, content_type="application/json", body={"data": data})


@app.post(BASE, responses={201: {"description": "Created"}, **PROBLEM_RESPONSES})
def create_project(ws: str, access: WriteProjects, body: ProjectCreate) -> Response[Data[Project]]:
    return created(projects.create_project(access, body))


@app.get(BASE, responses=PROBLEM_RESPONSES)
def list_projects(ws: str, access: ReadProjects, query: Annotated[ListQuery, Query()]) -> DataList[Project]:
    items, next_cursor = projects.list_projects(access, limit=query.limit, cursor=query.cursor)
    return page(items, next_cursor, query.limit)


@app.get(PROJECT, responses=PROBLEM_RESPONSES)
def get_project(ws: str, project_id: str, access: ReadProjects) -> Data[Project]:
    return ok(projects.get_project(access, project_id))


@app.patch(PROJECT, responses=PROBLEM_RESPONSES)
def update_project(
    ws: str, project_id: str, access: WriteProjects, body: ProjectUpdate, if_match: IfMatch = None
) -> Data[Project]:
    return ok(projects.update_project(access, project_id, body, if_match))


@app.delete(PROJECT, responses={204: {"description": "Deleted"}, **PROBLEM_RESPONSES})
def delete_project(ws: str, project_id: str, access: WriteProjects) -> Response[Any]:
    projects.delete_project(access, project_id)
    return no_content()


# A maintenance run is started work like any run: it counts against the same 6-per-minute limit.
run_start_limit = [limit_group("run-start")]


@app.post(f"{PROJECT}/clone", middlewares=run_start_limit, responses=ACCEPTED)
def clone_project(ws: str, project_id: str, access: WriteProjects) -> Response[Data[MaintenanceRun]]:
    return accepted(projects.request_maintenance(access, project_id, MaintenanceAction.clone))


@app.post(f"{PROJECT}/pull", middlewares=run_start_limit, responses=ACCEPTED)
def pull_project(ws: str, project_id: str, access: WriteProjects) -> Response[Data[MaintenanceRun]]:
    return accepted(projects.request_maintenance(access, project_id, MaintenanceAction.pull))


@app.post(f"{PROJECT}/index", middlewares=run_start_limit, responses=ACCEPTED)
def index_project(ws: str, project_id: str, access: WriteProjects) -> Response[Data[MaintenanceRun]]:
    return accepted(projects.request_maintenance(access, project_id, MaintenanceAction.reindex))


@app.get(f"{PROJECT}/docs", responses=PROBLEM_RESPONSES)
def list_docs(
    ws: str, project_id: str, access: ReadProjects, query: Annotated[ListQuery, Query()]
) -> DataList[ProjectDocSummary]:
    items, next_cursor = docs.list_docs(access, project_id, limit=query.limit, cursor=query.cursor)
    return page(items, next_cursor, query.limit)


@app.post(f"{PROJECT}/docs/regenerate", responses=ACCEPTED)
def regenerate_docs(ws: str, project_id: str, access: WriteProjects) -> Response[Data[MaintenanceRun]]:
    return accepted(docs.regenerate_docs(access, project_id))


@app.get(f"{PROJECT}/docs/<slug>", responses=PROBLEM_RESPONSES)
def get_doc(ws: str, project_id: str, slug: str, access: ReadProjects) -> Data[ProjectDoc]:
    return ok(docs.get_doc(access, project_id, slug))


@app.put(
    f"{PROJECT}/docs/<slug>",
    responses={200: {"description": "Replaced"}, 201: {"description": "Created"}, **PROBLEM_RESPONSES},
)
def put_doc(
    ws: str, project_id: str, slug: str, access: WriteProjects, body: ProjectDocPut, if_match: IfMatch = None
) -> Response[Data[ProjectDoc]]:
    doc, was_created = docs.put_doc(access, project_id, slug, body, if_match)
    return stored(doc, was_created)


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
    ws: str, project_id: str, access: ReadProjects, query: Annotated[ChangelogQuery, Query()]
) -> Response[Any]:
    if query.format is ProjectChangelogFormat.rss:
        feed = projects.changelog_rss(access, project_id, limit=query.limit, feed_url=_feed_url())
        return Response(200, RSS, body=feed)
    items, next_cursor = projects.list_changelog(access, project_id, limit=query.limit, cursor=query.cursor)
    return Response(200, "application/json", body=page(items, next_cursor, query.limit))


def _feed_url() -> str:
    """The changelog's own address, as the caller reached it (the RSS channel's link)."""
    event = app.current_event
    headers = event.headers or {}
    scheme = headers.get("x-forwarded-proto") or "https"
    return f"{scheme}://{headers.get('host') or 'localhost'}{event.path}"


@app.get(f"{PROJECT}/snapshots", responses=PROBLEM_RESPONSES)
def list_snapshots(
    ws: str, project_id: str, access: ReadProjects, query: Annotated[ListQuery, Query()]
) -> DataList[ProjectSnapshotSummary]:
    items, next_cursor = snapshots.list_snapshots(access, project_id, limit=query.limit, cursor=query.cursor)
    return page(items, next_cursor, query.limit)


@app.post(f"{PROJECT}/snapshots", responses={201: {"description": "Created"}, **PROBLEM_RESPONSES})
def create_snapshot(
    ws: str, project_id: str, access: WriteProjects, body: ProjectSnapshotCreate
) -> Response[Data[ProjectSnapshot]]:
    return created(snapshots.create_snapshot(access, project_id, body))


@app.get(SNAPSHOT, responses=PROBLEM_RESPONSES)
def get_snapshot(
    ws: str,
    snapshot_id: str,
    access: ReadProjects,
    include_content: Annotated[bool, Query(description="Inline each doc's content")] = False,
) -> Data[ProjectSnapshot]:
    return ok(snapshots.get_snapshot(access, snapshot_id, include_content))


@app.post(f"{SNAPSHOT}/restore", responses=PROBLEM_RESPONSES)
def restore_snapshot(ws: str, snapshot_id: str, access: WriteProjects) -> Data[SnapshotRestoreResult]:
    return ok(snapshots.restore_snapshot(access, snapshot_id))


@app.post(f"{SNAPSHOT}/compare", responses=PROBLEM_RESPONSES)
def compare_snapshot(
    ws: str, snapshot_id: str, access: ReadProjects, body: ProjectSnapshotCompare | None = None
) -> Data[ProjectSnapshotDiff]:
    return ok(snapshots.compare_snapshot(access, snapshot_id, body or ProjectSnapshotCompare()))


lambda_handler = lambda_entry(app)

"""Run telemetry family: /api/v1/workspaces/{ws}/runs/{run_id}/events (append, backfill, SSE), the
files, diff, commands and snapshots the events materialize, the summary and artifact uploads; and
the caller's notification stream, which shares the SSE mechanics."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Header, Query

from agentplane.access import workspace_access
from agentplane.http import (
    PROBLEM_RESPONSES,
    Cursor,
    Limit,
    create_app,
    created,
    lambda_entry,
    ok,
    page,
    request_id,
    request_principal,
)
from agentplane.logic import run_telemetry, sse
from agentplane.models.envelope import Data, DataList
from agentplane.models.run_telemetry import (
    Artifact,
    ArtifactCreate,
    EventsAppended,
    RunCommand,
    RunCommandDetail,
    RunDiff,
    RunEvent,
    RunEventsAppend,
    RunFile,
    RunFileDetail,
    RunSnapshot,
    RunSummary,
    RunSummaryPut,
)

# Files, diffs and artifacts live in the artifacts bucket.
REQUIRED_SETTINGS = ("artifacts_bucket",)
app = create_app(requires=REQUIRED_SETTINGS)
RUN = "/api/v1/workspaces/<ws>/runs/<run_id>"
CREATED = {201: {"description": "Created"}, **PROBLEM_RESPONSES}
STREAM = {
    200: {"description": "Server-sent events", "content": {sse.CONTENT_TYPE: {"schema": {"type": "string"}}}},
    **PROBLEM_RESPONSES,
}
EventId = Annotated[int, Query(ge=0, description="Only events with a greater id")]
LastEventId = Annotated[int | None, Header(alias="last-event-id", ge=0, description="Resume after this event id")]


def _event_stream(body: str) -> Response[str]:
    return Response(status_code=200, content_type=sse.CONTENT_TYPE, body=body, headers=dict(sse.HEADERS))


@app.post(f"{RUN}/events", responses=CREATED)
def append_events(ws: str, run_id: str, body: RunEventsAppend) -> Response[Data[EventsAppended]]:
    access = workspace_access(request_principal(app), ws, "runs:control")
    return created(run_telemetry.append_events(access, run_id, body))


@app.get(f"{RUN}/events", responses=PROBLEM_RESPONSES)
def list_events(
    ws: str,
    run_id: str,
    since: EventId = 0,
    event_types: Annotated[str | None, Query(max_length=1000, description="Comma-separated event types")] = None,
    severity: Annotated[str | None, Query(max_length=100, description="Comma-separated severities")] = None,
    path: Annotated[str | None, Query(max_length=1024, description="Only events whose path starts so")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DataList[RunEvent]:
    access = workspace_access(request_principal(app), ws, "runs:read")
    items, next_cursor = run_telemetry.list_events(
        access, run_id, since=since, event_types=event_types, severity=severity, path=path, limit=limit, cursor=cursor
    )
    return page(items, next_cursor, limit)


@app.get(f"{RUN}/events/stream", responses=STREAM)
def stream_events(ws: str, run_id: str, since: EventId = 0, last_event_id: LastEventId = None) -> Response[str]:
    access = workspace_access(request_principal(app), ws, "runs:read")
    after = last_event_id if last_event_id is not None else since
    return _event_stream(run_telemetry.stream_events(access, run_id, after, sse.wait_budget(app.lambda_context)))


@app.get(f"{RUN}/files", responses=PROBLEM_RESPONSES)
def list_files(ws: str, run_id: str, limit: Limit = 50, cursor: Cursor = None) -> DataList[RunFile]:
    access = workspace_access(request_principal(app), ws, "runs:read")
    items, next_cursor = run_telemetry.list_files(access, run_id, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.get(f"{RUN}/files/<file_id>", responses=PROBLEM_RESPONSES)
def get_file(ws: str, run_id: str, file_id: str) -> Data[RunFileDetail]:
    access = workspace_access(request_principal(app), ws, "runs:read")
    return ok(run_telemetry.get_file(access, run_id, file_id))


@app.get(f"{RUN}/diff", responses=PROBLEM_RESPONSES)
def get_diff(ws: str, run_id: str, limit: Limit = 50, cursor: Cursor = None) -> Data[RunDiff]:
    access = workspace_access(request_principal(app), ws, "runs:read")
    return ok(run_telemetry.run_diff(access, run_id, limit=limit, cursor=cursor))


@app.get(f"{RUN}/snapshots", responses=PROBLEM_RESPONSES)
def list_snapshots(ws: str, run_id: str, limit: Limit = 50, cursor: Cursor = None) -> DataList[RunSnapshot]:
    access = workspace_access(request_principal(app), ws, "runs:read")
    items, next_cursor = run_telemetry.list_snapshots(access, run_id, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.get(f"{RUN}/commands", responses=PROBLEM_RESPONSES)
def list_commands(ws: str, run_id: str, limit: Limit = 50, cursor: Cursor = None) -> DataList[RunCommand]:
    access = workspace_access(request_principal(app), ws, "runs:read")
    items, next_cursor = run_telemetry.list_commands(access, run_id, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.get(f"{RUN}/commands/<command_id>", responses=PROBLEM_RESPONSES)
def get_command(ws: str, run_id: str, command_id: str) -> Data[RunCommandDetail]:
    access = workspace_access(request_principal(app), ws, "runs:read")
    return ok(run_telemetry.get_command(access, run_id, command_id))


@app.get(f"{RUN}/summary", responses=PROBLEM_RESPONSES)
def get_summary(ws: str, run_id: str) -> Data[RunSummary]:
    access = workspace_access(request_principal(app), ws, "runs:read")
    return ok(run_telemetry.get_summary(access, run_id))


@app.put(f"{RUN}/summary", responses=PROBLEM_RESPONSES)
def put_summary(ws: str, run_id: str, body: RunSummaryPut) -> Data[RunSummary]:
    access = workspace_access(request_principal(app), ws, "runs:control")
    return ok(run_telemetry.put_summary(access, run_id, body, request_id(app)))


@app.post(f"{RUN}/artifacts", responses=CREATED)
def create_artifact(ws: str, run_id: str, body: ArtifactCreate) -> Response[Data[Artifact]]:
    access = workspace_access(request_principal(app), ws, "runs:control")
    return created(run_telemetry.create_artifact(access, run_id, body, request_id(app)))


@app.get("/api/v1/workspaces/<ws>/notifications/stream", responses=STREAM)
def stream_notifications(
    ws: str,
    last_event_id: Annotated[
        str | None, Header(alias="last-event-id", max_length=40, description="Resume after this notification id")
    ] = None,
) -> Response[Any]:
    access = workspace_access(request_principal(app), ws)
    return _event_stream(sse.stream_notifications(access, last_event_id, sse.wait_budget(app.lambda_context)))


lambda_handler = lambda_entry(app)

"""Run telemetry family: /api/v1/workspaces/{ws}/runs/{run_id}/events (append, backfill, SSE), the
files, diff, commands and snapshots the events materialize, the summary and artifact uploads; and
the caller's notification stream, which shares the SSE mechanics."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Header, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from agentplane.access import Access
from agentplane.http import (
    CREATED,
    PROBLEM_RESPONSES,
    create_app,
    created,
    lambda_entry,
    ok,
    page,
    workspace_scope,
)
from agentplane.logic import run_telemetry, sse
from agentplane.models.common import ListQuery
from agentplane.models.envelope import Data, DataList
from agentplane.models.run_telemetry import (
    Artifact,
    ArtifactCreate,
    EventsAppended,
    RunCommand,
    RunCommandDetail,
    RunDiff,
    RunEvent,
    RunEventQuery,
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
STREAM: dict[int, OpenAPIResponse] = {
    200: {"description": "Server-sent events", "content": {sse.CONTENT_TYPE: {"schema": {"type": "string"}}}},
    **PROBLEM_RESPONSES,
}
EventId = Annotated[int, Query(ge=0, description="Only events with a greater id")]
LastEventId = Annotated[int | None, Header(alias="last-event-id", ge=0, description="Resume after this event id")]
ReadRuns = Annotated[Access, workspace_scope("runs:read")]
ControlRuns = Annotated[Access, workspace_scope("runs:control")]
# A member's own notifications: any role of the workspace.
Member = Annotated[Access, workspace_scope("")]
Page = Annotated[ListQuery, Query()]


def _event_stream(body: str) -> Response[str]:
    return Response(status_code=200, content_type=sse.CONTENT_TYPE, body=body, headers=dict(sse.HEADERS))


@app.post(f"{RUN}/events", responses=CREATED)
def append_events(ws: str, run_id: str, access: ControlRuns, body: RunEventsAppend) -> Response[Data[EventsAppended]]:
    return created(run_telemetry.append_events(access, run_id, body))


@app.get(f"{RUN}/events", responses=PROBLEM_RESPONSES)
def list_events(ws: str, run_id: str, access: ReadRuns, query: Annotated[RunEventQuery, Query()]) -> DataList[RunEvent]:
    items, next_cursor = run_telemetry.list_events(
        access,
        run_id,
        since=query.since,
        event_types=query.event_types,
        severity=query.severity,
        path=query.path,
        limit=query.limit,
        cursor=query.cursor,
    )
    return page(items, next_cursor, query.limit)


@app.get(f"{RUN}/events/stream", responses=STREAM)
def stream_events(
    ws: str, run_id: str, access: ReadRuns, since: EventId = 0, last_event_id: LastEventId = None
) -> Response[str]:
    after = last_event_id if last_event_id is not None else since
    return _event_stream(run_telemetry.stream_events(access, run_id, after, sse.wait_budget(app.lambda_context)))


@app.get(f"{RUN}/files", responses=PROBLEM_RESPONSES)
def list_files(ws: str, run_id: str, access: ReadRuns, query: Page) -> DataList[RunFile]:
    items, next_cursor = run_telemetry.list_files(access, run_id, limit=query.limit, cursor=query.cursor)
    return page(items, next_cursor, query.limit)


@app.get(f"{RUN}/files/<file_id>", responses=PROBLEM_RESPONSES)
def get_file(ws: str, run_id: str, file_id: str, access: ReadRuns) -> Data[RunFileDetail]:
    return ok(run_telemetry.get_file(access, run_id, file_id))


@app.get(f"{RUN}/diff", responses=PROBLEM_RESPONSES)
def get_diff(ws: str, run_id: str, access: ReadRuns, query: Page) -> Data[RunDiff]:
    return ok(run_telemetry.run_diff(access, run_id, limit=query.limit, cursor=query.cursor))


@app.get(f"{RUN}/snapshots", responses=PROBLEM_RESPONSES)
def list_snapshots(ws: str, run_id: str, access: ReadRuns, query: Page) -> DataList[RunSnapshot]:
    items, next_cursor = run_telemetry.list_snapshots(access, run_id, limit=query.limit, cursor=query.cursor)
    return page(items, next_cursor, query.limit)


@app.get(f"{RUN}/commands", responses=PROBLEM_RESPONSES)
def list_commands(ws: str, run_id: str, access: ReadRuns, query: Page) -> DataList[RunCommand]:
    items, next_cursor = run_telemetry.list_commands(access, run_id, limit=query.limit, cursor=query.cursor)
    return page(items, next_cursor, query.limit)


@app.get(f"{RUN}/commands/<command_id>", responses=PROBLEM_RESPONSES)
def get_command(ws: str, run_id: str, command_id: str, access: ReadRuns) -> Data[RunCommandDetail]:
    return ok(run_telemetry.get_command(access, run_id, command_id))


@app.get(f"{RUN}/summary", responses=PROBLEM_RESPONSES)
def get_summary(ws: str, run_id: str, access: ReadRuns) -> Data[RunSummary]:
    return ok(run_telemetry.get_summary(access, run_id))


@app.put(f"{RUN}/summary", responses=PROBLEM_RESPONSES)
def put_summary(ws: str, run_id: str, access: ControlRuns, body: RunSummaryPut) -> Data[RunSummary]:
    return ok(run_telemetry.put_summary(access, run_id, body))


@app.post(f"{RUN}/artifacts", responses=CREATED)
def create_artifact(ws: str, run_id: str, access: ControlRuns, body: ArtifactCreate) -> Response[Data[Artifact]]:
    return created(run_telemetry.create_artifact(access, run_id, body))


@app.get("/api/v1/workspaces/<ws>/notifications/stream", responses=STREAM)
def stream_notifications(
    ws: str,
    access: Member,
    last_event_id: Annotated[
        str | None, Header(alias="last-event-id", max_length=40, description="Resume after this notification id")
    ] = None,
) -> Response[Any]:
    return _event_stream(sse.stream_notifications(access, last_event_id, sse.wait_budget(app.lambda_context)))


lambda_handler = lambda_entry(app)

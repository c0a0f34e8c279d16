"""Runs family: /api/v1/workspaces/{ws}/runs — drafts, lifecycle actions, approvals, git gates and
the agent side (claim, heartbeat, complete, fail)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from agentplane.access import workspace_access
from agentplane.http import (
    PROBLEM_RESPONSES,
    Cursor,
    Limit,
    create_app,
    created,
    lambda_entry,
    limit_group,
    ok,
    page,
    request_id,
    request_principal,
)
from agentplane.logic import runs
from agentplane.models.envelope import Data, DataList
from agentplane.models.runs import (
    AgentDirective,
    ApproveRequest,
    CommitRequest,
    Run,
    RunClaim,
    RunComplete,
    RunCreate,
    RunFail,
    RunHeartbeat,
    RunNotes,
    RunStatus,
)

REQUIRED_SETTINGS = runs.STARTS_RUNS
app = create_app(requires=REQUIRED_SETTINGS)
BASE = "/api/v1/workspaces/<ws>/runs"
RUN = f"{BASE}/<run_id>"
# Starting work is the expensive call: 6 per minute per user (429 with Retry-After beyond).
run_start_limit = [limit_group("run-start")]


@app.post(BASE, responses={201: {"description": "Created"}, **PROBLEM_RESPONSES})
def create_run(ws: str, body: RunCreate) -> Response[Data[Run]]:
    access = workspace_access(request_principal(app), ws, "runs:start")
    return created(runs.create_run(access, body, request_id(app)))


@app.get(BASE, responses=PROBLEM_RESPONSES)
def list_runs(
    ws: str,
    status: Annotated[RunStatus | None, Query()] = None,
    project: Annotated[str | None, Query(max_length=100)] = None,
    agent: Annotated[str | None, Query(max_length=100)] = None,
    schedule_id: Annotated[str | None, Query(max_length=100)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DataList[Run]:
    access = workspace_access(request_principal(app), ws, "runs:read")
    items, next_cursor = runs.list_runs(
        access, status=status, project_id=project, agent=agent, schedule_id=schedule_id, limit=limit, cursor=cursor
    )
    return page(items, next_cursor, limit)


@app.get(RUN, responses=PROBLEM_RESPONSES)
def get_run(ws: str, run_id: str) -> Data[Run]:
    access = workspace_access(request_principal(app), ws, "runs:read")
    return ok(runs.get_run(access, run_id))


@app.post(f"{RUN}/start", middlewares=run_start_limit, responses=PROBLEM_RESPONSES)
def start_run(ws: str, run_id: str) -> Data[Run]:
    access = workspace_access(request_principal(app), ws, "runs:start")
    return ok(runs.start_run(access, run_id, request_id(app)))


@app.post(f"{RUN}/pause", responses=PROBLEM_RESPONSES)
def pause_run(ws: str, run_id: str) -> Data[Run]:
    access = workspace_access(request_principal(app), ws, "runs:control")
    return ok(runs.pause_run(access, run_id, request_id(app)))


@app.post(f"{RUN}/resume", responses=PROBLEM_RESPONSES)
def resume_run(ws: str, run_id: str) -> Data[Run]:
    access = workspace_access(request_principal(app), ws, "runs:control")
    return ok(runs.resume_run(access, run_id, request_id(app)))


@app.post(f"{RUN}/cancel", responses=PROBLEM_RESPONSES)
def cancel_run(ws: str, run_id: str) -> Data[Run]:
    access = workspace_access(request_principal(app), ws, "runs:control")
    return ok(runs.cancel_run(access, run_id, request_id(app)))


@app.post(f"{RUN}/retry", middlewares=run_start_limit, responses={201: {"description": "Created"}, **PROBLEM_RESPONSES})
def retry_run(ws: str, run_id: str) -> Response[Data[Run]]:
    access = workspace_access(request_principal(app), ws, "runs:start")
    return created(runs.retry_run(access, run_id, request_id(app)))


@app.post(f"{RUN}/approve", responses=PROBLEM_RESPONSES)
def approve_run(ws: str, run_id: str, body: ApproveRequest | None = None) -> Data[Run]:
    access = workspace_access(request_principal(app), ws, "runs:control")
    return ok(runs.approve_run(access, run_id, body or ApproveRequest(), request_id(app)))


@app.post(f"{RUN}/reject", responses=PROBLEM_RESPONSES)
def reject_run(ws: str, run_id: str, body: RunNotes | None = None) -> Data[Run]:
    access = workspace_access(request_principal(app), ws, "runs:control")
    return ok(runs.reject_run(access, run_id, (body or RunNotes()).notes, request_id(app)))


@app.post(f"{RUN}/commit", responses=PROBLEM_RESPONSES)
def commit_run(ws: str, run_id: str, body: CommitRequest | None = None) -> Data[Run]:
    access = workspace_access(request_principal(app), ws, "git:commit")
    return ok(runs.commit_run(access, run_id, body or CommitRequest(), request_id(app)))


@app.post(f"{RUN}/push", responses=PROBLEM_RESPONSES)
def push_run(ws: str, run_id: str) -> Data[Run]:
    access = workspace_access(request_principal(app), ws, "git:push")
    return ok(runs.push_run(access, run_id, request_id(app)))


@app.post(f"{RUN}/claim", responses=PROBLEM_RESPONSES)
def claim_run(ws: str, run_id: str, body: RunClaim) -> Data[AgentDirective]:
    access = workspace_access(request_principal(app), ws, "runs:control")
    return ok(runs.claim_run(access, run_id, body, request_id(app)))


@app.post(f"{RUN}/heartbeat", responses=PROBLEM_RESPONSES)
def heartbeat_run(ws: str, run_id: str, body: RunHeartbeat) -> Data[AgentDirective]:
    access = workspace_access(request_principal(app), ws, "runs:control")
    return ok(runs.heartbeat_run(access, run_id, body))


@app.post(f"{RUN}/complete", responses=PROBLEM_RESPONSES)
def complete_run(ws: str, run_id: str, body: RunComplete) -> Data[Run]:
    access = workspace_access(request_principal(app), ws, "runs:control")
    return ok(runs.complete_run(access, run_id, body, request_id(app)))


@app.post(f"{RUN}/fail", responses=PROBLEM_RESPONSES)
def fail_run(ws: str, run_id: str, body: RunFail) -> Data[Run]:
    access = workspace_access(request_principal(app), ws, "runs:control")
    return ok(runs.fail_run(access, run_id, body, request_id(app)))


lambda_handler = lambda_entry(app)

"""Runs family: /api/v1/workspaces/{ws}/runs — drafts, lifecycle actions, approvals, git gates,
the agent side (claim, heartbeat, complete, fail) and its questions to a person (input requests).

Creating, starting, cancelling and reviewing a run need the scope of its kind, which the run says:
`runs:start` / `runs:control` for agent and maintenance runs, `deploy:plan` for plans and
`deploy:apply` for applies, destroys and approving a plan (logic.runs checks them)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from agentplane.access import Access
from agentplane.http import (
    PROBLEM_RESPONSES,
    create_app,
    created,
    lambda_entry,
    limit_group,
    ok,
    page,
    workspace_scope,
)
from agentplane.logic import run_input, runs
from agentplane.models.envelope import Data, DataList
from agentplane.models.run_input import InputAnswer, InputRequest, InputRequestCreate, InputRequestQuery
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
    RunQuery,
)

REQUIRED_SETTINGS = runs.STARTS_RUNS
app = create_app(requires=REQUIRED_SETTINGS)
BASE = "/api/v1/workspaces/<ws>/runs"
RUN = f"{BASE}/<run_id>"
# Starting work is the expensive call: 6 per minute per user (429 with Retry-After beyond).
run_start_limit = [limit_group("run-start")]
ReadRuns = Annotated[Access, workspace_scope("runs:read")]
ControlRuns = Annotated[Access, workspace_scope("runs:control")]
# The scope depends on the run's kind (see above): the route checks membership, the logic the scope.
ActOnRuns = Annotated[Access, workspace_scope()]
CommitRuns = Annotated[Access, workspace_scope("git:commit")]
PushRuns = Annotated[Access, workspace_scope("git:push")]


@app.post(BASE, responses={201: {"description": "Created"}, **PROBLEM_RESPONSES})
def create_run(ws: str, access: ActOnRuns, body: RunCreate) -> Response[Data[Run]]:
    return created(runs.create_run(access, body))


@app.get(BASE, responses=PROBLEM_RESPONSES)
def list_runs(ws: str, access: ReadRuns, query: Annotated[RunQuery, Query()]) -> DataList[Run]:
    items, next_cursor = runs.list_runs(
        access,
        status=query.status,
        project_id=query.project,
        agent=query.agent,
        schedule_id=query.schedule_id,
        limit=query.limit,
        cursor=query.cursor,
    )
    return page(items, next_cursor, query.limit)


@app.get(RUN, responses=PROBLEM_RESPONSES)
def get_run(ws: str, run_id: str, access: ReadRuns) -> Data[Run]:
    return ok(runs.get_run(access, run_id))


@app.post(f"{RUN}/start", middlewares=run_start_limit, responses=PROBLEM_RESPONSES)
def start_run(ws: str, run_id: str, access: ActOnRuns) -> Data[Run]:
    return ok(runs.start_run(access, run_id))


@app.post(f"{RUN}/pause", responses=PROBLEM_RESPONSES)
def pause_run(ws: str, run_id: str, access: ControlRuns) -> Data[Run]:
    return ok(runs.pause_run(access, run_id))


@app.post(f"{RUN}/resume", responses=PROBLEM_RESPONSES)
def resume_run(ws: str, run_id: str, access: ControlRuns) -> Data[Run]:
    return ok(runs.resume_run(access, run_id))


@app.post(f"{RUN}/cancel", responses=PROBLEM_RESPONSES)
def cancel_run(ws: str, run_id: str, access: ActOnRuns) -> Data[Run]:
    return ok(runs.cancel_run(access, run_id))


@app.post(f"{RUN}/force-cancel", responses=PROBLEM_RESPONSES)
def force_cancel_run(ws: str, run_id: str, access: ActOnRuns) -> Data[Run]:
    return ok(runs.force_cancel_run(access, run_id))


@app.post(f"{RUN}/discard", responses=PROBLEM_RESPONSES)
def discard_run(ws: str, run_id: str, access: ActOnRuns) -> Data[Run]:
    return ok(runs.discard_run(access, run_id))


@app.post(f"{RUN}/retry", middlewares=run_start_limit, responses={201: {"description": "Created"}, **PROBLEM_RESPONSES})
def retry_run(ws: str, run_id: str, access: ActOnRuns) -> Response[Data[Run]]:
    return created(runs.retry_run(access, run_id))


@app.post(f"{RUN}/approve", responses=PROBLEM_RESPONSES)
def approve_run(ws: str, run_id: str, access: ActOnRuns, body: ApproveRequest | None = None) -> Data[Run]:
    return ok(runs.approve_run(access, run_id, body or ApproveRequest()))


@app.post(f"{RUN}/reject", responses=PROBLEM_RESPONSES)
def reject_run(ws: str, run_id: str, access: ActOnRuns, body: RunNotes | None = None) -> Data[Run]:
    return ok(runs.reject_run(access, run_id, (body or RunNotes()).notes))


@app.post(f"{RUN}/commit", responses=PROBLEM_RESPONSES)
def commit_run(ws: str, run_id: str, access: CommitRuns, body: CommitRequest | None = None) -> Data[Run]:
    return ok(runs.commit_run(access, run_id, body or CommitRequest()))


@app.post(f"{RUN}/push", responses=PROBLEM_RESPONSES)
def push_run(ws: str, run_id: str, access: PushRuns) -> Data[Run]:
    return ok(runs.push_run(access, run_id))


@app.post(f"{RUN}/claim", responses=PROBLEM_RESPONSES)
def claim_run(ws: str, run_id: str, access: ControlRuns, body: RunClaim) -> Data[AgentDirective]:
    return ok(runs.claim_run(access, run_id, body))


@app.post(f"{RUN}/heartbeat", responses=PROBLEM_RESPONSES)
def heartbeat_run(ws: str, run_id: str, access: ControlRuns, body: RunHeartbeat) -> Data[AgentDirective]:
    return ok(runs.heartbeat_run(access, run_id, body))


@app.post(f"{RUN}/complete", responses=PROBLEM_RESPONSES)
def complete_run(ws: str, run_id: str, access: ControlRuns, body: RunComplete) -> Data[Run]:
    return ok(runs.complete_run(access, run_id, body))


@app.post(f"{RUN}/fail", responses=PROBLEM_RESPONSES)
def fail_run(ws: str, run_id: str, access: ControlRuns, body: RunFail) -> Data[Run]:
    return ok(runs.fail_run(access, run_id, body))


@app.post(f"{RUN}/input-requests", responses={201: {"description": "Created"}, **PROBLEM_RESPONSES})
def ask_input(ws: str, run_id: str, access: ControlRuns, body: InputRequestCreate) -> Response[Data[InputRequest]]:
    return created(run_input.ask_input(access, run_id, body))


@app.get(f"{RUN}/input-requests", responses=PROBLEM_RESPONSES)
def list_input_requests(
    ws: str, run_id: str, access: ReadRuns, query: Annotated[InputRequestQuery, Query()]
) -> DataList[InputRequest]:
    items, next_cursor = run_input.list_input_requests(access, run_id, limit=query.limit, cursor=query.cursor)
    return page(items, next_cursor, query.limit)


@app.get(f"{RUN}/input-requests/<request_id>", responses=PROBLEM_RESPONSES)
def get_input_request(ws: str, run_id: str, request_id: str, access: ReadRuns) -> Data[InputRequest]:
    return ok(run_input.get_input_request(access, run_id, request_id))


@app.post(f"{RUN}/input-requests/<request_id>/answer", responses=PROBLEM_RESPONSES)
def answer_input(ws: str, run_id: str, request_id: str, access: ControlRuns, body: InputAnswer) -> Data[InputRequest]:
    return ok(run_input.answer_input(access, run_id, request_id, body))


lambda_handler = lambda_entry(app)

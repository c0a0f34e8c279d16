"""Queue family: /api/v1/workspaces/{ws}/queue — submit, list, claim, complete, fail, stats."""

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
    ok,
    page,
    request_id,
    request_principal,
)
from agentplane.logic import queue
from agentplane.models.envelope import Data, DataList
from agentplane.models.queue import (
    JobClaim,
    JobClaimResult,
    JobComplete,
    JobFail,
    JobStatus,
    JobSubmit,
    QueueJob,
    QueueStats,
    TaskType,
)

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)
BASE = "/api/v1/workspaces/<ws>/queue"
SUBMITTED = {
    201: {"description": "Submitted"},
    200: {"description": "The job an earlier submit with the same idempotency_key created"},
    **PROBLEM_RESPONSES,
}


@app.post(f"{BASE}/jobs", responses=SUBMITTED)
def submit_job(ws: str, body: JobSubmit) -> Response[Data[QueueJob]]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    job, is_new = queue.submit_job(access, body, request_id(app))
    if is_new:
        return created(job)
    return Response(status_code=200, content_type="application/json", body=ok(job))


@app.get(f"{BASE}/jobs", responses=PROBLEM_RESPONSES)
def list_jobs(
    ws: str,
    status: Annotated[JobStatus | None, Query()] = None,
    task_type: Annotated[TaskType | None, Query()] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DataList[QueueJob]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    items, next_cursor = queue.list_jobs(access, status=status, task_type=task_type, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.get(f"{BASE}/jobs/<job_id>", responses=PROBLEM_RESPONSES)
def get_job(ws: str, job_id: str) -> Data[QueueJob]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    return ok(queue.get_job(access, job_id))


@app.post(f"{BASE}/claim", responses=PROBLEM_RESPONSES)
def claim_jobs(ws: str, body: JobClaim) -> Data[JobClaimResult]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return ok(queue.claim_jobs(access, body, request_id(app)))


@app.post(f"{BASE}/jobs/<job_id>/complete", responses=PROBLEM_RESPONSES)
def complete_job(ws: str, job_id: str, body: JobComplete) -> Data[QueueJob]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return ok(queue.complete_job(access, job_id, body, request_id(app)))


@app.post(f"{BASE}/jobs/<job_id>/fail", responses=PROBLEM_RESPONSES)
def fail_job(ws: str, job_id: str, body: JobFail) -> Data[QueueJob]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return ok(queue.fail_job(access, job_id, body, request_id(app)))


@app.get(f"{BASE}/stats", responses=PROBLEM_RESPONSES)
def queue_stats(ws: str) -> Data[QueueStats]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    return ok(queue.queue_stats(access))


lambda_handler = lambda_entry(app)

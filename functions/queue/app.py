"""Queue family: /api/v1/workspaces/{ws}/queue — submit, list, claim, complete, fail, stats."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from agentplane.access import Access
from agentplane.http import (
    PROBLEM_RESPONSES,
    create_app,
    created,
    lambda_entry,
    ok,
    page,
    workspace_scope,
)
from agentplane.logic import queue
from agentplane.models.envelope import Data, DataList
from agentplane.models.queue import (
    JobClaim,
    JobClaimResult,
    JobComplete,
    JobFail,
    JobQuery,
    JobSubmit,
    QueueJob,
    QueueStats,
)

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)
BASE = "/api/v1/workspaces/<ws>/queue"
SUBMITTED: dict[int, OpenAPIResponse] = {
    201: {"description": "Submitted"},
    200: {"description": "The job an earlier submit with the same idempotency_key created"},
    **PROBLEM_RESPONSES,
}
ReadTasks = Annotated[Access, workspace_scope("tasks:read")]
WriteTasks = Annotated[Access, workspace_scope("tasks:write")]


@app.post(f"{BASE}/jobs", responses=SUBMITTED)
def submit_job(ws: str, access: WriteTasks, body: JobSubmit) -> Response[Data[QueueJob]]:
    job, is_new = queue.submit_job(access, body)
    if is_new:
        return created(job)
    return Response(status_code=200, content_type="application/json", body=ok(job))


@app.get(f"{BASE}/jobs", responses=PROBLEM_RESPONSES)
def list_jobs(ws: str, access: ReadTasks, query: Annotated[JobQuery, Query()]) -> DataList[QueueJob]:
    items, next_cursor = queue.list_jobs(
        access, status=query.status, task_type=query.task_type, limit=query.limit, cursor=query.cursor
    )
    return page(items, next_cursor, query.limit)


@app.get(f"{BASE}/jobs/<job_id>", responses=PROBLEM_RESPONSES)
def get_job(ws: str, job_id: str, access: ReadTasks) -> Data[QueueJob]:
    return ok(queue.get_job(access, job_id))


@app.post(f"{BASE}/claim", responses=PROBLEM_RESPONSES)
def claim_jobs(ws: str, access: WriteTasks, body: JobClaim) -> Data[JobClaimResult]:
    return ok(queue.claim_jobs(access, body))


@app.post(f"{BASE}/jobs/<job_id>/complete", responses=PROBLEM_RESPONSES)
def complete_job(ws: str, job_id: str, access: WriteTasks, body: JobComplete) -> Data[QueueJob]:
    return ok(queue.complete_job(access, job_id, body))


@app.post(f"{BASE}/jobs/<job_id>/fail", responses=PROBLEM_RESPONSES)
def fail_job(ws: str, job_id: str, access: WriteTasks, body: JobFail) -> Data[QueueJob]:
    return ok(queue.fail_job(access, job_id, body))


@app.get(f"{BASE}/stats", responses=PROBLEM_RESPONSES)
def queue_stats(ws: str, access: ReadTasks) -> Data[QueueStats]:
    return ok(queue.queue_stats(access))


lambda_handler = lambda_entry(app)

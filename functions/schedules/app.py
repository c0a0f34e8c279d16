"""Schedules family: /api/v1/workspaces/{ws}/schedules — cron or rate schedules, backed by
EventBridge Scheduler, that submit a queue job or create a run draft when they fire."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from agentplane.access import Access
from agentplane.http import (
    CREATED,
    DELETED,
    PROBLEM_RESPONSES,
    IfMatch,
    create_app,
    created,
    lambda_entry,
    no_content,
    ok,
    page,
    workspace_scope,
)
from agentplane.logic import schedules
from agentplane.models.envelope import Data, DataList
from agentplane.models.schedules import Schedule, ScheduleCreate, ScheduleFiring, ScheduleQuery, ScheduleUpdate

# Scheduler fires each schedule at that function, assuming that role.
REQUIRED_SETTINGS = ("schedule_fired_function_arn", "scheduler_role_arn")
app = create_app(requires=REQUIRED_SETTINGS)
BASE = "/api/v1/workspaces/<ws>/schedules"
ReadRuns = Annotated[Access, workspace_scope("runs:read")]
StartRuns = Annotated[Access, workspace_scope("runs:start")]


@app.post(BASE, responses=CREATED)
def create_schedule(ws: str, access: StartRuns, body: ScheduleCreate) -> Response[Data[Schedule]]:
    return created(schedules.create_schedule(access, body))


@app.get(BASE, responses=PROBLEM_RESPONSES)
def list_schedules(ws: str, access: ReadRuns, query: Annotated[ScheduleQuery, Query()]) -> DataList[Schedule]:
    items, next_cursor = schedules.list_schedules(access, enabled=query.enabled, limit=query.limit, cursor=query.cursor)
    return page(items, next_cursor, query.limit)


@app.get(f"{BASE}/<schedule_id>", responses=PROBLEM_RESPONSES)
def get_schedule(ws: str, schedule_id: str, access: ReadRuns) -> Data[Schedule]:
    return ok(schedules.get_schedule(access, schedule_id))


@app.patch(f"{BASE}/<schedule_id>", responses=PROBLEM_RESPONSES)
def update_schedule(
    ws: str, schedule_id: str, access: StartRuns, body: ScheduleUpdate, if_match: IfMatch = None
) -> Data[Schedule]:
    return ok(schedules.update_schedule(access, schedule_id, body, if_match))


@app.delete(f"{BASE}/<schedule_id>", responses=DELETED)
def delete_schedule(ws: str, schedule_id: str, access: StartRuns) -> Response[Any]:
    schedules.delete_schedule(access, schedule_id)
    return no_content()


@app.post(f"{BASE}/<schedule_id>/run", responses=PROBLEM_RESPONSES)
def run_schedule(ws: str, schedule_id: str, access: StartRuns) -> Data[ScheduleFiring]:
    return ok(schedules.run_schedule(access, schedule_id))


lambda_handler = lambda_entry(app)

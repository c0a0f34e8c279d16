"""Schedules family: /api/v1/workspaces/{ws}/schedules — cron or rate schedules, backed by
EventBridge Scheduler, that submit a queue job or create a run draft when they fire."""

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
    no_content,
    ok,
    page,
    request_id,
    request_principal,
)
from agentplane.logic import schedules
from agentplane.models.envelope import Data, DataList
from agentplane.models.schedules import Schedule, ScheduleCreate, ScheduleFiring, ScheduleUpdate

# Scheduler fires each schedule at that function, assuming that role.
REQUIRED_SETTINGS = ("schedule_fired_function_arn", "scheduler_role_arn")
app = create_app(requires=REQUIRED_SETTINGS)
BASE = "/api/v1/workspaces/<ws>/schedules"
CREATED = {201: {"description": "Created"}, **PROBLEM_RESPONSES}
DELETED = {204: {"description": "Deleted"}, **PROBLEM_RESPONSES}


@app.post(BASE, responses=CREATED)
def create_schedule(ws: str, body: ScheduleCreate) -> Response[Data[Schedule]]:
    access = workspace_access(request_principal(app), ws, "runs:start")
    return created(schedules.create_schedule(access, body, request_id(app)))


@app.get(BASE, responses=PROBLEM_RESPONSES)
def list_schedules(
    ws: str,
    enabled: Annotated[bool | None, Query()] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DataList[Schedule]:
    access = workspace_access(request_principal(app), ws, "runs:read")
    items, next_cursor = schedules.list_schedules(access, enabled=enabled, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.get(f"{BASE}/<schedule_id>", responses=PROBLEM_RESPONSES)
def get_schedule(ws: str, schedule_id: str) -> Data[Schedule]:
    access = workspace_access(request_principal(app), ws, "runs:read")
    return ok(schedules.get_schedule(access, schedule_id))


@app.patch(f"{BASE}/<schedule_id>", responses=PROBLEM_RESPONSES)
def update_schedule(ws: str, schedule_id: str, body: ScheduleUpdate, if_match: IfMatch = None) -> Data[Schedule]:
    access = workspace_access(request_principal(app), ws, "runs:start")
    return ok(schedules.update_schedule(access, schedule_id, body, if_match, request_id(app)))


@app.delete(f"{BASE}/<schedule_id>", responses=DELETED)
def delete_schedule(ws: str, schedule_id: str) -> Response[Any]:
    access = workspace_access(request_principal(app), ws, "runs:start")
    schedules.delete_schedule(access, schedule_id, request_id(app))
    return no_content()


@app.post(f"{BASE}/<schedule_id>/run", responses=PROBLEM_RESPONSES)
def run_schedule(ws: str, schedule_id: str) -> Data[ScheduleFiring]:
    access = workspace_access(request_principal(app), ws, "runs:start")
    return ok(schedules.run_schedule(access, schedule_id, request_id(app)))


lambda_handler = lambda_entry(app)

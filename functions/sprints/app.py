"""Sprints family: /api/v1/workspaces/{ws}/sprints, retrospectives and sprint analytics."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from agentplane.access import workspace_access
from agentplane.http import (
    PROBLEM_RESPONSES,
    Cursor,
    IfMatch,
    Limit,
    create_app,
    created,
    lambda_entry,
    ok,
    page,
    request_id,
    request_principal,
)
from agentplane.logic import sprints
from agentplane.models.envelope import Data, DataList, PageMeta
from agentplane.models.sprints import (
    MAX_SPRINT_NUMBER,
    DailyAnalytics,
    RetroComment,
    RetroCreate,
    Sprint,
    SprintAnalytics,
    SprintBoardPage,
    SprintCreate,
    SprintReview,
    SprintStart,
    SprintStatus,
    SprintUpdate,
    Velocity,
)

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)
WS = "/api/v1/workspaces/<ws>"
BASE = f"{WS}/sprints"
SprintNumber = Annotated[int, Path(ge=0, le=MAX_SPRINT_NUMBER, description="Sprint number")]
VelocityLimit = Annotated[int, Query(ge=1, le=50, description="Completed sprints to include (default 10)")]
Days = Annotated[int, Query(ge=1, le=90, description="Days in the window, ending on `date` (default 7)")]
Day = Annotated[date | None, Query(description="Last day of the window, YYYY-MM-DD (default today, UTC)")]


@app.post(BASE, responses={201: {"description": "Created"}, **PROBLEM_RESPONSES})
def create_sprint(ws: str, body: SprintCreate) -> Response[Data[Sprint]]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return created(sprints.create_sprint(access, body, request_id(app)))


@app.get(BASE, responses=PROBLEM_RESPONSES)
def list_sprints(
    ws: str,
    status: Annotated[SprintStatus | None, Query()] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DataList[Sprint]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    items, next_cursor = sprints.list_sprints(access, status=status, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.get(f"{BASE}/current", responses=PROBLEM_RESPONSES)
def get_current_sprint(ws: str) -> Data[Sprint]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    return ok(sprints.get_current_sprint(access))


@app.post(f"{BASE}/current/start", responses=PROBLEM_RESPONSES)
def start_current_sprint(ws: str) -> Data[SprintStart]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return ok(sprints.start_current_sprint(access, request_id(app)))


@app.get(f"{BASE}/current/tasks", responses=PROBLEM_RESPONSES)
def current_sprint_board(
    ws: str,
    sprint: Annotated[int | None, Query(ge=0, le=MAX_SPRINT_NUMBER, description="Another sprint's number")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> SprintBoardPage:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    board, next_cursor = sprints.sprint_board(access, sprint, limit, cursor)
    return SprintBoardPage(data=board, meta=PageMeta(next_cursor=next_cursor, limit=limit))


@app.get(f"{BASE}/analytics/velocity", responses=PROBLEM_RESPONSES)
@app.get(f"{WS}/analytics/velocity", responses=PROBLEM_RESPONSES)
def sprint_velocity(ws: str, limit: VelocityLimit = 10) -> Data[Velocity]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    return ok(sprints.velocity(access, limit))


@app.get(f"{BASE}/analytics/daily", responses=PROBLEM_RESPONSES)
@app.get(f"{WS}/analytics/daily", responses=PROBLEM_RESPONSES)
def daily_analytics(ws: str, date: Day = None, days: Days = 7) -> Data[DailyAnalytics]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    return ok(sprints.daily_analytics(access, date, days))


@app.get(f"{BASE}/<number>", responses=PROBLEM_RESPONSES)
def get_sprint(ws: str, number: SprintNumber) -> Data[Sprint]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    return ok(sprints.get_sprint(access, number))


@app.patch(f"{BASE}/<number>", responses=PROBLEM_RESPONSES)
def update_sprint(
    ws: str,
    number: SprintNumber,
    body: SprintUpdate,
    if_match: IfMatch = None,
) -> Data[Sprint]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return ok(sprints.update_sprint(access, number, body, if_match, request_id(app)))


@app.get(f"{BASE}/<number>/review", responses=PROBLEM_RESPONSES)
def sprint_review(ws: str, number: SprintNumber) -> Data[SprintReview]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    return ok(sprints.sprint_review(access, number))


@app.get(f"{BASE}/<number>/retro", responses=PROBLEM_RESPONSES)
def list_retro_comments(
    ws: str, number: SprintNumber, limit: Limit = 50, cursor: Cursor = None
) -> DataList[RetroComment]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    items, next_cursor = sprints.list_retro_comments(access, number, limit, cursor)
    return page(items, next_cursor, limit)


@app.post(f"{BASE}/<number>/retro", responses={201: {"description": "Created"}, **PROBLEM_RESPONSES})
def add_retro_comment(ws: str, number: SprintNumber, body: RetroCreate) -> Response[Data[RetroComment]]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return created(sprints.add_retro_comment(access, number, body, request_id(app)))


@app.get(f"{BASE}/<number>/analytics", responses=PROBLEM_RESPONSES)
def sprint_analytics(ws: str, number: SprintNumber) -> Data[SprintAnalytics]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    return ok(sprints.sprint_analytics(access, number))


lambda_handler = lambda_entry(app)

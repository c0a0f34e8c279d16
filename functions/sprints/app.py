"""Sprints family: /api/v1/workspaces/{ws}/sprints, retrospectives and sprint analytics."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from agentplane.access import Access
from agentplane.http import (
    PROBLEM_RESPONSES,
    IfMatch,
    create_app,
    created,
    lambda_entry,
    ok,
    page,
    workspace_scope,
)
from agentplane.logic import sprints
from agentplane.models.common import ListQuery
from agentplane.models.envelope import Data, DataList, PageMeta
from agentplane.models.sprints import (
    MAX_SPRINT_NUMBER,
    DailyAnalytics,
    RetroComment,
    RetroCreate,
    Sprint,
    SprintAnalytics,
    SprintBoardPage,
    SprintBoardQuery,
    SprintCreate,
    SprintQuery,
    SprintReview,
    SprintStart,
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
ReadTasks = Annotated[Access, workspace_scope("tasks:read")]
WriteTasks = Annotated[Access, workspace_scope("tasks:write")]


@app.post(BASE, responses={201: {"description": "Created"}, **PROBLEM_RESPONSES})
def create_sprint(ws: str, access: WriteTasks, body: SprintCreate) -> Response[Data[Sprint]]:
    return created(sprints.create_sprint(access, body))


@app.get(BASE, responses=PROBLEM_RESPONSES)
def list_sprints(ws: str, access: ReadTasks, query: Annotated[SprintQuery, Query()]) -> DataList[Sprint]:
    items, next_cursor = sprints.list_sprints(access, status=query.status, limit=query.limit, cursor=query.cursor)
    return page(items, next_cursor, query.limit)


@app.get(f"{BASE}/current", responses=PROBLEM_RESPONSES)
def get_current_sprint(ws: str, access: ReadTasks) -> Data[Sprint]:
    return ok(sprints.get_current_sprint(access))


@app.post(f"{BASE}/current/start", responses=PROBLEM_RESPONSES)
def start_current_sprint(ws: str, access: WriteTasks) -> Data[SprintStart]:
    return ok(sprints.start_current_sprint(access))


@app.get(f"{BASE}/current/tasks", responses=PROBLEM_RESPONSES)
def current_sprint_board(ws: str, access: ReadTasks, query: Annotated[SprintBoardQuery, Query()]) -> SprintBoardPage:
    board, next_cursor = sprints.sprint_board(access, query.sprint, query.limit, query.cursor)
    return SprintBoardPage(data=board, meta=PageMeta(next_cursor=next_cursor, limit=query.limit))


@app.get(f"{BASE}/analytics/velocity", responses=PROBLEM_RESPONSES)
@app.get(f"{WS}/analytics/velocity", responses=PROBLEM_RESPONSES)
def sprint_velocity(ws: str, access: ReadTasks, limit: VelocityLimit = 10) -> Data[Velocity]:
    return ok(sprints.velocity(access, limit))


@app.get(f"{BASE}/analytics/daily", responses=PROBLEM_RESPONSES)
@app.get(f"{WS}/analytics/daily", responses=PROBLEM_RESPONSES)
def daily_analytics(ws: str, access: ReadTasks, date: Day = None, days: Days = 7) -> Data[DailyAnalytics]:
    return ok(sprints.daily_analytics(access, date, days))


@app.get(f"{BASE}/<number>", responses=PROBLEM_RESPONSES)
def get_sprint(ws: str, number: SprintNumber, access: ReadTasks) -> Data[Sprint]:
    return ok(sprints.get_sprint(access, number))


@app.patch(f"{BASE}/<number>", responses=PROBLEM_RESPONSES)
def update_sprint(
    ws: str, number: SprintNumber, access: WriteTasks, body: SprintUpdate, if_match: IfMatch = None
) -> Data[Sprint]:
    return ok(sprints.update_sprint(access, number, body, if_match))


@app.get(f"{BASE}/<number>/review", responses=PROBLEM_RESPONSES)
def sprint_review(ws: str, number: SprintNumber, access: ReadTasks) -> Data[SprintReview]:
    return ok(sprints.sprint_review(access, number))


@app.get(f"{BASE}/<number>/retro", responses=PROBLEM_RESPONSES)
def list_retro_comments(
    ws: str, number: SprintNumber, access: ReadTasks, query: Annotated[ListQuery, Query()]
) -> DataList[RetroComment]:
    items, next_cursor = sprints.list_retro_comments(access, number, query.limit, query.cursor)
    return page(items, next_cursor, query.limit)


@app.post(f"{BASE}/<number>/retro", responses={201: {"description": "Created"}, **PROBLEM_RESPONSES})
def add_retro_comment(
    ws: str, number: SprintNumber, access: WriteTasks, body: RetroCreate
) -> Response[Data[RetroComment]]:
    return created(sprints.add_retro_comment(access, number, body))


@app.get(f"{BASE}/<number>/analytics", responses=PROBLEM_RESPONSES)
def sprint_analytics(ws: str, number: SprintNumber, access: ReadTasks) -> Data[SprintAnalytics]:
    return ok(sprints.sprint_analytics(access, number))


lambda_handler = lambda_entry(app)

"""Tasks family: /api/v1/workspaces/{ws}/tasks."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Header, Query

from agentplane.access import workspace_access
from agentplane.http import (
    PROBLEM_RESPONSES,
    Cursor,
    Data,
    DataList,
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
from agentplane.logic import tasks
from agentplane.models.tasks import Task, TaskCreate, TaskPriority, TaskStatus, TaskUpdate

app = create_app()
BASE = "/api/v1/workspaces/<ws>/tasks"


@app.post(BASE, responses={201: {"description": "Created"}, **PROBLEM_RESPONSES})
def create_task(ws: str, body: TaskCreate) -> Response[Data[Task]]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return created(tasks.create_task(access, body, request_id(app)))


@app.get(BASE, responses=PROBLEM_RESPONSES)
def list_tasks(
    ws: str,
    status: Annotated[TaskStatus | None, Query()] = None,
    sprint: Annotated[int | None, Query(ge=0)] = None,
    owner: Annotated[str | None, Query(max_length=100)] = None,
    priority: Annotated[TaskPriority | None, Query()] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DataList[Task]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    items, next_cursor = tasks.list_tasks(
        access, status=status, sprint=sprint, owner=owner, priority=priority, limit=limit, cursor=cursor
    )
    return page(items, next_cursor, limit)


@app.get(f"{BASE}/<task_id>", responses=PROBLEM_RESPONSES)
def get_task(ws: str, task_id: str) -> Data[Task]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    return ok(tasks.get_task(access, task_id))


@app.patch(f"{BASE}/<task_id>", responses=PROBLEM_RESPONSES)
def update_task(
    ws: str,
    task_id: str,
    body: TaskUpdate,
    if_match: Annotated[int | None, Header(alias="if-match")] = None,
) -> Data[Task]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return ok(tasks.update_task(access, task_id, body, if_match, request_id(app)))


@app.delete(f"{BASE}/<task_id>", responses={204: {"description": "Deleted"}, **PROBLEM_RESPONSES})
def delete_task(ws: str, task_id: str) -> Response[Any]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    tasks.delete_task(access, task_id, request_id(app))
    return no_content()


lambda_handler = lambda_entry(app)

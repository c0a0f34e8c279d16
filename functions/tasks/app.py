"""Tasks family: /api/v1/workspaces/{ws}/tasks, the review workflow, stories and user tasks."""

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
from agentplane.logic import stories, tasks, user_tasks
from agentplane.models.envelope import Data, DataList
from agentplane.models.tasks import (
    MAX_SPRINT,
    ReviewAction,
    ReviewActionResult,
    ReviewReportCreate,
    Story,
    StoryCreate,
    StoryStatus,
    StoryUpdate,
    Task,
    TaskCreate,
    TaskPriority,
    TaskReject,
    TaskStatus,
    TaskUpdate,
    UserTask,
    UserTaskBlocker,
    UserTaskCreate,
    UserTaskStatus,
    UserTaskUpdate,
)

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)
BASE = "/api/v1/workspaces/<ws>/tasks"
STORIES = "/api/v1/workspaces/<ws>/stories"
USER_TASKS = "/api/v1/workspaces/<ws>/user-tasks"
CREATED = {201: {"description": "Created"}, **PROBLEM_RESPONSES}
DELETED = {204: {"description": "Deleted"}, **PROBLEM_RESPONSES}


@app.post(BASE, responses=CREATED)
def create_task(ws: str, body: TaskCreate) -> Response[Data[Task]]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return created(tasks.create_task(access, body, request_id(app)))


@app.get(BASE, responses=PROBLEM_RESPONSES)
def list_tasks(
    ws: str,
    status: Annotated[TaskStatus | None, Query()] = None,
    sprint: Annotated[int | None, Query(ge=0, le=MAX_SPRINT)] = None,
    owner: Annotated[str | None, Query(max_length=100)] = None,
    assignee: Annotated[str | None, Query(max_length=100, description="An assignee, or `me` for the caller")] = None,
    priority: Annotated[TaskPriority | None, Query()] = None,
    q: Annotated[str | None, Query(max_length=200, description="Text in the title or description")] = None,
    next: Annotated[
        bool, Query(description="Answer only the assignee's (default: the caller's) next todo task")
    ] = False,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DataList[Task]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    items, next_cursor = tasks.list_tasks(
        access,
        status=status,
        sprint=sprint,
        owner=owner,
        priority=priority,
        limit=limit,
        cursor=cursor,
        assignee=assignee,
        q=q,
        next_for_assignee=next,
    )
    return page(items, next_cursor, limit)


@app.get(f"{BASE}/<task_id>", responses=PROBLEM_RESPONSES)
def get_task(ws: str, task_id: str) -> Data[Task]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    return ok(tasks.get_task(access, task_id))


@app.patch(f"{BASE}/<task_id>", responses=PROBLEM_RESPONSES)
def update_task(ws: str, task_id: str, body: TaskUpdate, if_match: IfMatch = None) -> Data[Task]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return ok(tasks.update_task(access, task_id, body, if_match, request_id(app)))


@app.delete(f"{BASE}/<task_id>", responses=DELETED)
def delete_task(ws: str, task_id: str) -> Response[Any]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    tasks.delete_task(access, task_id, request_id(app))
    return no_content()


@app.post(f"{BASE}/<task_id>/review-report", responses=PROBLEM_RESPONSES)
def submit_review_report(ws: str, task_id: str, body: ReviewReportCreate) -> Data[Task]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return ok(tasks.submit_review_report(access, task_id, body, request_id(app)))


@app.post(f"{BASE}/<task_id>/approve", responses=PROBLEM_RESPONSES)
def approve_task(ws: str, task_id: str) -> Data[Task]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return ok(tasks.approve_task(access, task_id, request_id(app)))


@app.post(f"{BASE}/<task_id>/reject", responses=PROBLEM_RESPONSES)
def reject_task(ws: str, task_id: str, body: TaskReject) -> Data[Task]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return ok(tasks.reject_task(access, task_id, body.reason, request_id(app)))


@app.post(f"{BASE}/<task_id>/review-action", responses=PROBLEM_RESPONSES)
def review_action(ws: str, task_id: str, body: ReviewAction) -> Data[ReviewActionResult]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return ok(tasks.review_action(access, task_id, body, request_id(app)))


@app.post(STORIES, responses=CREATED)
def create_story(ws: str, body: StoryCreate) -> Response[Data[Story]]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return created(stories.create_story(access, body, request_id(app)))


@app.get(STORIES, responses=PROBLEM_RESPONSES)
def list_stories(
    ws: str,
    status: Annotated[StoryStatus | None, Query()] = None,
    sprint: Annotated[int | None, Query(ge=0, le=MAX_SPRINT)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DataList[Story]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    items, next_cursor = stories.list_stories(access, status=status, sprint=sprint, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.get(f"{STORIES}/<story_id>", responses=PROBLEM_RESPONSES)
def get_story(ws: str, story_id: str) -> Data[Story]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    return ok(stories.get_story(access, story_id))


@app.patch(f"{STORIES}/<story_id>", responses=PROBLEM_RESPONSES)
def update_story(ws: str, story_id: str, body: StoryUpdate, if_match: IfMatch = None) -> Data[Story]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return ok(stories.update_story(access, story_id, body, if_match, request_id(app)))


@app.delete(f"{STORIES}/<story_id>", responses=DELETED)
def delete_story(ws: str, story_id: str) -> Response[Any]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    stories.delete_story(access, story_id, request_id(app))
    return no_content()


@app.get(f"{STORIES}/<story_id>/tasks", responses=PROBLEM_RESPONSES)
def list_story_tasks(ws: str, story_id: str, limit: Limit = 50, cursor: Cursor = None) -> DataList[Task]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    items, next_cursor = stories.list_story_tasks(access, story_id, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.post(USER_TASKS, responses=CREATED)
def create_user_task(ws: str, body: UserTaskCreate) -> Response[Data[UserTask]]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return created(user_tasks.create_user_task(access, body, request_id(app)))


@app.get(USER_TASKS, responses=PROBLEM_RESPONSES)
def list_user_tasks(
    ws: str,
    status: Annotated[UserTaskStatus | None, Query()] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DataList[UserTask]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    items, next_cursor = user_tasks.list_user_tasks(access, status=status, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.get(f"{USER_TASKS}/blockers", responses=PROBLEM_RESPONSES)
def list_user_task_blockers(
    ws: str,
    sprint: Annotated[
        int | None, Query(ge=0, le=MAX_SPRINT, description="Sprint whose tasks count (default: the active sprint)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=50, description="User tasks read per page (default 20, max 50)")] = 20,
    cursor: Cursor = None,
) -> DataList[UserTaskBlocker]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    items, next_cursor = user_tasks.list_blockers(access, sprint=sprint, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.put(f"{USER_TASKS}/<user_task_id>", responses=PROBLEM_RESPONSES)
def update_user_task(ws: str, user_task_id: str, body: UserTaskUpdate, if_match: IfMatch = None) -> Data[UserTask]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return ok(user_tasks.update_user_task(access, user_task_id, body, if_match, request_id(app)))


@app.delete(f"{USER_TASKS}/<user_task_id>", responses=DELETED)
def delete_user_task(ws: str, user_task_id: str) -> Response[Any]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    user_tasks.delete_user_task(access, user_task_id, request_id(app))
    return no_content()


lambda_handler = lambda_entry(app)

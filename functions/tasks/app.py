"""Tasks family: /api/v1/workspaces/{ws}/tasks, the review workflow, stories and user tasks."""

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
from agentplane.logic import stories, tasks, user_tasks
from agentplane.models.common import ListQuery
from agentplane.models.envelope import Data, DataList
from agentplane.models.tasks import (
    ReviewAction,
    ReviewActionResult,
    ReviewReportCreate,
    Story,
    StoryCreate,
    StoryQuery,
    StoryUpdate,
    Task,
    TaskCreate,
    TaskQuery,
    TaskReject,
    TaskUpdate,
    UserTask,
    UserTaskBlocker,
    UserTaskBlockerQuery,
    UserTaskCreate,
    UserTaskQuery,
    UserTaskUpdate,
)

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)
BASE = "/api/v1/workspaces/<ws>/tasks"
STORIES = "/api/v1/workspaces/<ws>/stories"
USER_TASKS = "/api/v1/workspaces/<ws>/user-tasks"
ReadTasks = Annotated[Access, workspace_scope("tasks:read")]
WriteTasks = Annotated[Access, workspace_scope("tasks:write")]


@app.post(BASE, responses=CREATED)
def create_task(ws: str, access: WriteTasks, body: TaskCreate) -> Response[Data[Task]]:
    return created(tasks.create_task(access, body))


@app.get(BASE, responses=PROBLEM_RESPONSES)
def list_tasks(ws: str, access: ReadTasks, query: Annotated[TaskQuery, Query()]) -> DataList[Task]:
    items, next_cursor = tasks.list_tasks(
        access,
        status=query.status,
        sprint=query.sprint,
        owner=query.owner,
        priority=query.priority,
        limit=query.limit,
        cursor=query.cursor,
        assignee=query.assignee,
        q=query.q,
        next_for_assignee=query.next,
    )
    return page(items, next_cursor, query.limit)


@app.get(f"{BASE}/<task_id>", responses=PROBLEM_RESPONSES)
def get_task(ws: str, task_id: str, access: ReadTasks) -> Data[Task]:
    return ok(tasks.get_task(access, task_id))


@app.patch(f"{BASE}/<task_id>", responses=PROBLEM_RESPONSES)
def update_task(ws: str, task_id: str, access: WriteTasks, body: TaskUpdate, if_match: IfMatch = None) -> Data[Task]:
    return ok(tasks.update_task(access, task_id, body, if_match))


@app.delete(f"{BASE}/<task_id>", responses=DELETED)
def delete_task(ws: str, task_id: str, access: WriteTasks) -> Response[Any]:
    tasks.delete_task(access, task_id)
    return no_content()


@app.post(f"{BASE}/<task_id>/review-report", responses=PROBLEM_RESPONSES)
def submit_review_report(ws: str, task_id: str, access: WriteTasks, body: ReviewReportCreate) -> Data[Task]:
    return ok(tasks.submit_review_report(access, task_id, body))


@app.post(f"{BASE}/<task_id>/approve", responses=PROBLEM_RESPONSES)
def approve_task(ws: str, task_id: str, access: WriteTasks) -> Data[Task]:
    return ok(tasks.approve_task(access, task_id))


@app.post(f"{BASE}/<task_id>/reject", responses=PROBLEM_RESPONSES)
def reject_task(ws: str, task_id: str, access: WriteTasks, body: TaskReject) -> Data[Task]:
    return ok(tasks.reject_task(access, task_id, body.reason))


@app.post(f"{BASE}/<task_id>/review-action", responses=PROBLEM_RESPONSES)
def review_action(ws: str, task_id: str, access: WriteTasks, body: ReviewAction) -> Data[ReviewActionResult]:
    return ok(tasks.review_action(access, task_id, body))


@app.post(STORIES, responses=CREATED)
def create_story(ws: str, access: WriteTasks, body: StoryCreate) -> Response[Data[Story]]:
    return created(stories.create_story(access, body))


@app.get(STORIES, responses=PROBLEM_RESPONSES)
def list_stories(ws: str, access: ReadTasks, query: Annotated[StoryQuery, Query()]) -> DataList[Story]:
    items, next_cursor = stories.list_stories(
        access, status=query.status, sprint=query.sprint, limit=query.limit, cursor=query.cursor
    )
    return page(items, next_cursor, query.limit)


@app.get(f"{STORIES}/<story_id>", responses=PROBLEM_RESPONSES)
def get_story(ws: str, story_id: str, access: ReadTasks) -> Data[Story]:
    return ok(stories.get_story(access, story_id))


@app.patch(f"{STORIES}/<story_id>", responses=PROBLEM_RESPONSES)
def update_story(
    ws: str, story_id: str, access: WriteTasks, body: StoryUpdate, if_match: IfMatch = None
) -> Data[Story]:
    return ok(stories.update_story(access, story_id, body, if_match))


@app.delete(f"{STORIES}/<story_id>", responses=DELETED)
def delete_story(ws: str, story_id: str, access: WriteTasks) -> Response[Any]:
    stories.delete_story(access, story_id)
    return no_content()


@app.get(f"{STORIES}/<story_id>/tasks", responses=PROBLEM_RESPONSES)
def list_story_tasks(ws: str, story_id: str, access: ReadTasks, query: Annotated[ListQuery, Query()]) -> DataList[Task]:
    items, next_cursor = stories.list_story_tasks(access, story_id, limit=query.limit, cursor=query.cursor)
    return page(items, next_cursor, query.limit)


@app.post(USER_TASKS, responses=CREATED)
def create_user_task(ws: str, access: WriteTasks, body: UserTaskCreate) -> Response[Data[UserTask]]:
    return created(user_tasks.create_user_task(access, body))


@app.get(USER_TASKS, responses=PROBLEM_RESPONSES)
def list_user_tasks(ws: str, access: ReadTasks, query: Annotated[UserTaskQuery, Query()]) -> DataList[UserTask]:
    items, next_cursor = user_tasks.list_user_tasks(access, status=query.status, limit=query.limit, cursor=query.cursor)
    return page(items, next_cursor, query.limit)


@app.get(f"{USER_TASKS}/blockers", responses=PROBLEM_RESPONSES)
def list_user_task_blockers(
    ws: str, access: ReadTasks, query: Annotated[UserTaskBlockerQuery, Query()]
) -> DataList[UserTaskBlocker]:
    items, next_cursor = user_tasks.list_blockers(access, sprint=query.sprint, limit=query.limit, cursor=query.cursor)
    return page(items, next_cursor, query.limit)


@app.put(f"{USER_TASKS}/<user_task_id>", responses=PROBLEM_RESPONSES)
def update_user_task(
    ws: str, user_task_id: str, access: WriteTasks, body: UserTaskUpdate, if_match: IfMatch = None
) -> Data[UserTask]:
    return ok(user_tasks.update_user_task(access, user_task_id, body, if_match))


@app.delete(f"{USER_TASKS}/<user_task_id>", responses=DELETED)
def delete_user_task(ws: str, user_task_id: str, access: WriteTasks) -> Response[Any]:
    user_tasks.delete_user_task(access, user_task_id)
    return no_content()


lambda_handler = lambda_entry(app)

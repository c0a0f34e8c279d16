"""User tasks: work for the humans of a workspace, kept apart from the agents' tasks (Toban). A user
task's `related_tasks` are agent tasks it holds up until it is done; `blockers` lists the open user
tasks holding up open tasks of the active sprint (or of the sprint asked for)."""

from __future__ import annotations

import re
from typing import Any

from agentplane import keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.tasks import UserTaskItem, user_tasks_of_workspace
from agentplane.errors import NotFound, PreconditionFailed
from agentplane.ids import iso, new_id
from agentplane.logic import tasks
from agentplane.models.tasks import (
    USER_TASK_ID_PATTERN,
    TaskStatus,
    UserTask,
    UserTaskBlocker,
    UserTaskCreate,
    UserTaskStatus,
    UserTaskUpdate,
)
from agentplane.store import TransactionFailed, get_store

USER_TASK_ID = re.compile(USER_TASK_ID_PATTERN)


def _load(ws: str, user_task_id: str) -> UserTaskItem:
    # An id that could never have been minted is not looked up (nor sent to DynamoDB as a key).
    key = keys.user_task_key(ws, user_task_id)
    found = get_store().read(UserTaskItem, key) if USER_TASK_ID.match(user_task_id) else None
    if found is None:
        raise NotFound(f"user task {user_task_id} not found")
    return found


def create_user_task(access: Access, body: UserTaskCreate) -> UserTask:
    ws = access.workspace_id
    tasks.require_tasks(ws, "related_tasks", body.related_tasks)
    at = iso()
    user_task = UserTaskItem(
        workspace_id=ws,
        id=new_id("utask"),
        **body.model_dump(mode="json", exclude={"related_tasks"}),
        related_tasks=list(dict.fromkeys(body.related_tasks)),
        created_by=access.actor_id,
        created_at=at,
        updated_at=at,
        completed_at=at if body.status == UserTaskStatus.done else None,
    )
    tx = access.transaction()
    tx.create(user_task)
    access.audit(tx, "user_task.created", "user_task", user_task.id, {"title": body.title})
    access.commit(tx)
    return user_task.to_model()


def list_user_tasks(
    access: Access, *, status: UserTaskStatus | None, limit: int, cursor: str | None
) -> tuple[list[UserTask], str | None]:
    ws = access.workspace_id
    query = {"status": status}
    scope = f"user-tasks:{ws}"
    start = decode_cursor(cursor, scope, query)
    page = user_tasks_of_workspace(ws, status=status, limit=limit, start=start)
    return [user_task.to_model() for user_task in page.items], encode_cursor(page.last_key, scope, query)


def update_user_task(access: Access, user_task_id: str, body: UserTaskUpdate, if_match: int | None = None) -> UserTask:
    ws = access.workspace_id
    user_task = _load(ws, user_task_id)
    tasks.require_version(f"user task {user_task_id}", user_task.version, body.version or if_match)
    changes: dict[str, Any] = body.model_dump(mode="json", exclude_none=True, exclude={"version"})
    if "related_tasks" in changes:
        tasks.require_tasks(ws, "related_tasks", changes["related_tasks"])
        changes["related_tasks"] = list(dict.fromkeys(changes["related_tasks"]))
    at = iso()
    named = {*changes, "updated_at", "version"}
    new_status = changes.get("status")
    if new_status is not None and new_status != user_task.status:
        # completed_at while done: set on reaching it, removed on leaving it.
        if new_status == UserTaskStatus.done:
            changes["completed_at"] = at
            named.add("completed_at")
        elif user_task.completed_at is not None:
            changes["completed_at"] = None
            named.add("completed_at")
    tx = access.transaction()
    tx.change(user_task, user_task.assign(**changes, updated_at=at))
    access.audit(tx, "user_task.updated", "user_task", user_task_id, {"fields": sorted(named)})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise PreconditionFailed(
            f"user task {user_task_id} changed while it was being updated; reload and retry"
        ) from failure
    return user_task.to_model()


def delete_user_task(access: Access, user_task_id: str) -> None:
    ws = access.workspace_id
    _load(ws, user_task_id)
    tx = access.transaction()
    tx.drop(UserTaskItem, keys.user_task_key(ws, user_task_id), name="user_task")
    access.audit(tx, "user_task.deleted", "user_task", user_task_id)
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise NotFound(f"user task {user_task_id} not found") from failure


def list_blockers(
    access: Access, *, sprint: int | None, limit: int, cursor: str | None
) -> tuple[list[UserTaskBlocker], str | None]:
    """Open user tasks (not done) that hold up open agent tasks of the active sprint, or of
    `sprint` when given; with neither there is nothing to hold up.

    One page of user tasks is read per call; those holding up nothing are left out of it, so a
    page may be short and still carry a cursor."""
    ws = access.workspace_id
    from agentplane.logic import sprints  # only this route needs sprints (and what they import)

    number = sprint if sprint is not None else sprints.active_sprint_number(ws)
    if number is None:
        return [], None
    query = {"sprint": number}
    scope = f"user-task-blockers:{ws}"
    start = decode_cursor(cursor, scope, query)
    page = user_tasks_of_workspace(ws, not_status=UserTaskStatus.done.value, limit=limit, start=start)
    related = tasks.live_tasks_by_id(ws, [t for user_task in page.items for t in user_task.related_tasks or []])
    blockers: list[UserTaskBlocker] = []
    for user_task in page.items:
        held = [
            related[t].to_summary()
            for t in user_task.related_tasks or []
            if t in related and related[t].status != TaskStatus.done and related[t].sprint == number
        ]
        if held:
            blockers.append(UserTaskBlocker.model_validate({**user_task.fields(), "blocked_sprint_tasks": held}))
    return blockers, encode_cursor(page.last_key, scope, query)

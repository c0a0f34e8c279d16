"""User tasks: work for the humans of a workspace, kept apart from the agents' tasks (Toban). A user
task's `related_tasks` are agent tasks it holds up until it is done; `blockers` lists the open user
tasks holding up open tasks of the active sprint (or of the sprint asked for)."""

from __future__ import annotations

import re
from typing import Any

from agentplane import audit, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
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
from agentplane.store import Expr, TransactionFailed, Update, attr_eq, exists, get_store, not_exists

Item = dict[str, Any]
USER_TASK_ID = re.compile(USER_TASK_ID_PATTERN)


def _to_user_task(item: Item) -> UserTask:
    return UserTask.model_validate(item)


def _load(ws: str, user_task_id: str) -> Item:
    # An id that could never have been minted is not looked up (nor sent to DynamoDB as a key).
    item = get_store().get(keys.user_task_key(ws, user_task_id)) if USER_TASK_ID.match(user_task_id) else None
    if item is None:
        raise NotFound(f"user task {user_task_id} not found")
    return item


def create_user_task(access: Access, body: UserTaskCreate, request_id: str = "") -> UserTask:
    ws = access.workspace_id
    tasks.require_tasks(ws, "related_tasks", body.related_tasks)
    user_task_id = new_id("utask")
    at = iso()
    item: Item = {
        **keys.user_task_key(ws, user_task_id),
        keys.ENTITY: "user_task",
        **body.model_dump(),
        "related_tasks": list(dict.fromkeys(body.related_tasks)),
        "id": user_task_id,
        "workspace_id": ws,
        "created_by": access.actor_id,
        "created_at": at,
        "updated_at": at,
        "version": 1,
    }
    if body.status == UserTaskStatus.done:
        item["completed_at"] = at
    tx = access.transaction()
    tx.put(item, not_exists())
    audit.record(
        tx, ws, access.actor_id, "user_task.created", "user_task", user_task_id, request_id, {"title": body.title}
    )
    access.commit(tx)
    return _to_user_task(item)


def list_user_tasks(
    access: Access, *, status: UserTaskStatus | None, limit: int, cursor: str | None
) -> tuple[list[UserTask], str | None]:
    ws = access.workspace_id
    query = {"status": status}
    scope = f"user-tasks:{ws}"
    start = decode_cursor(cursor, scope, query)
    page = get_store().query(
        keys.ws_pk(ws),
        sk_prefix=keys.USER_TASK_PREFIX,
        limit=limit,
        start_key=start,
        filter=attr_eq("status", status) if status is not None else None,
    )
    return [_to_user_task(item) for item in page.items], encode_cursor(page.last_key, scope, query)


def update_user_task(
    access: Access, user_task_id: str, body: UserTaskUpdate, if_match: int | None = None, request_id: str = ""
) -> UserTask:
    ws = access.workspace_id
    current = _load(ws, user_task_id)
    expected = body.version or if_match
    if expected is not None and expected != current["version"]:
        raise PreconditionFailed(
            f"user task {user_task_id} is at version {current['version']}, not {expected}",
            current_version=current["version"],
        )
    changes = body.model_dump(exclude_none=True, exclude={"version"})
    if "related_tasks" in changes:
        tasks.require_tasks(ws, "related_tasks", changes["related_tasks"])
        changes["related_tasks"] = list(dict.fromkeys(changes["related_tasks"]))
    at = iso()
    remove: list[str] = []
    new_status = changes.get("status")
    if new_status is not None and new_status != current["status"]:
        if new_status == UserTaskStatus.done:
            changes["completed_at"] = at
        elif "completed_at" in current:
            remove.append("completed_at")
    changes["updated_at"] = at
    changes["version"] = current["version"] + 1
    tx = access.transaction()
    tx.update(
        keys.user_task_key(ws, user_task_id),
        Update(set=changes, remove=remove),
        exists() & attr_eq("version", current["version"]),
    )
    audit.record(
        tx,
        ws,
        access.actor_id,
        "user_task.updated",
        "user_task",
        user_task_id,
        request_id,
        {"fields": sorted(set(changes) | set(remove))},
    )
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise PreconditionFailed(
            f"user task {user_task_id} changed while it was being updated; reload and retry"
        ) from failure
    return _to_user_task({k: v for k, v in {**current, **changes}.items() if k not in remove})


def delete_user_task(access: Access, user_task_id: str, request_id: str = "") -> None:
    ws = access.workspace_id
    _load(ws, user_task_id)
    tx = access.transaction()
    tx.delete(keys.user_task_key(ws, user_task_id), exists())
    audit.record(tx, ws, access.actor_id, "user_task.deleted", "user_task", user_task_id, request_id)
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
    page = get_store().query(
        keys.ws_pk(ws),
        sk_prefix=keys.USER_TASK_PREFIX,
        limit=limit,
        start_key=start,
        filter=Expr(
            "#open_status <> :open_done", {"#open_status": "status"}, {":open_done": UserTaskStatus.done.value}
        ),
    )
    related = tasks.get_tasks(ws, [t for item in page.items for t in item.get("related_tasks") or []])
    blockers: list[UserTaskBlocker] = []
    for item in page.items:
        held = [
            tasks.summarize(related[t])
            for t in item.get("related_tasks") or []
            if t in related and related[t]["status"] != TaskStatus.done and related[t].get("sprint") == number
        ]
        if held:
            blockers.append(UserTaskBlocker.model_validate({**item, "blocked_sprint_tasks": held}))
    return blockers, encode_cursor(page.last_key, scope, query)

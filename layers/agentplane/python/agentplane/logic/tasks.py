"""Tasks: create, list, get, patch and soft delete, each change audited in its own transaction."""

from __future__ import annotations

import re
from typing import Any

from agentplane import audit, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.errors import NotFound, PreconditionFailed
from agentplane.ids import iso, new_id
from agentplane.models.tasks import Task, TaskCreate, TaskStatus, TaskType, TaskUpdate
from agentplane.store import Expr, TransactionFailed, Update, attr_eq, exists, get_store

_TYPE_HINTS: tuple[tuple[TaskType, re.Pattern[str]], ...] = (
    (TaskType.bug, re.compile(r"\b(bug|fix|crash|error|broken|regression)\b", re.I)),
    (TaskType.test, re.compile(r"\b(tests?|e2e|coverage)\b", re.I)),
    (TaskType.docs, re.compile(r"\b(docs?|documentation|readme)\b", re.I)),
    (TaskType.refactor, re.compile(r"\b(refactor|cleanup|clean up|simplify)\b", re.I)),
    (TaskType.research, re.compile(r"\b(research|investigate|spike|explore)\b", re.I)),
    (TaskType.chore, re.compile(r"\b(chore|bump|upgrade|ci|deps|dependency)\b", re.I)),
)


def infer_type(title: str, description: str) -> TaskType:
    """Toban infers a task's type from its words when the caller gives none."""
    text = f"{title} {description}"
    for task_type, pattern in _TYPE_HINTS:
        if pattern.search(text):
            return task_type
    return TaskType.feature


def _index_attrs(ws: str, status: str, task_id: str) -> dict[str, str]:
    return {
        keys.GSI1PK: keys.task_status_gsi(ws, status),
        keys.GSI1SK: task_id,
        keys.GSI2PK: keys.task_list_gsi(ws),
        keys.GSI2SK: task_id,
    }


def _to_task(item: dict[str, Any]) -> Task:
    return Task.model_validate(item)


def create_task(access: Access, body: TaskCreate, request_id: str = "") -> Task:
    ws = access.workspace_id
    task_id = new_id("task")
    at = iso()
    fields = body.model_dump(exclude_none=True)
    fields["type"] = body.type or infer_type(body.title, body.description)
    item = {
        **keys.task_key(ws, task_id),
        **_index_attrs(ws, body.status, task_id),
        keys.ENTITY: "task",
        **fields,
        "id": task_id,
        "workspace_id": ws,
        "created_by": access.actor_id,
        "created_at": at,
        "updated_at": at,
        "version": 1,
    }
    tx = access.transaction()
    tx.put(item, Expr("attribute_not_exists(PK)"))
    audit.record(tx, ws, access.actor_id, "task.created", "task", task_id, request_id, {"title": body.title})
    access.commit(tx)
    return _to_task(item)


def _load_live(ws: str, task_id: str) -> dict[str, Any]:
    item = get_store().get(keys.task_key(ws, task_id))
    if item is None or item.get("deleted_at"):
        raise NotFound(f"task {task_id} not found")
    return item


def get_task(access: Access, task_id: str) -> Task:
    return _to_task(_load_live(access.workspace_id, task_id))


def list_tasks(
    access: Access,
    *,
    status: TaskStatus | None,
    sprint: int | None,
    owner: str | None,
    priority: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Task], str | None]:
    ws = access.workspace_id
    query = {"status": status, "sprint": sprint, "owner": owner, "priority": priority}
    scope = f"tasks:{ws}"
    start = decode_cursor(cursor, scope, query)
    filters = [
        attr_eq(name, value)
        for name, value in (("sprint", sprint), ("owner", owner), ("priority", priority))
        if value is not None
    ]
    condition = None
    for expr in filters:
        condition = expr if condition is None else condition & expr
    if status is not None:
        page = get_store().query(
            keys.task_status_gsi(ws, status), index=keys.GSI1, limit=limit, start_key=start, filter=condition
        )
    else:
        page = get_store().query(
            keys.task_list_gsi(ws), index=keys.GSI2, limit=limit, start_key=start, filter=condition
        )
    return [_to_task(item) for item in page.items], encode_cursor(page.last_key, scope, query)


def update_task(
    access: Access, task_id: str, body: TaskUpdate, if_match: int | None = None, request_id: str = ""
) -> Task:
    ws = access.workspace_id
    current = _load_live(ws, task_id)
    expected = body.version or if_match
    if expected is not None and expected != current["version"]:
        raise PreconditionFailed(
            f"task {task_id} is at version {current['version']}, not {expected}", current_version=current["version"]
        )
    changes = body.model_dump(exclude_none=True, exclude={"version"})
    changes["updated_at"] = iso()
    changes["version"] = current["version"] + 1
    if "status" in changes:
        changes[keys.GSI1PK] = keys.task_status_gsi(ws, changes["status"])
    tx = access.transaction()
    tx.update(
        keys.task_key(ws, task_id),
        Update(set=changes),
        exists() & attr_eq("version", current["version"]) & Expr("attribute_not_exists(deleted_at)"),
    )
    audit.record(
        tx,
        ws,
        access.actor_id,
        "task.updated",
        "task",
        task_id,
        request_id,
        {"fields": sorted(k for k in changes if not k.startswith("GSI"))},
    )
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        # Someone else wrote between our read and our write: nothing of ours was applied.
        raise PreconditionFailed(f"task {task_id} changed while it was being updated; reload and retry") from failure
    return _to_task({**current, **changes})


def delete_task(access: Access, task_id: str, request_id: str = "") -> None:
    ws = access.workspace_id
    _load_live(ws, task_id)
    tx = access.transaction()
    # Soft delete: the item stays for its audit trail but leaves every list index.
    tx.update(
        keys.task_key(ws, task_id),
        Update(set={"deleted_at": iso()}, remove=[keys.GSI1PK, keys.GSI1SK, keys.GSI2PK, keys.GSI2SK]),
        exists() & Expr("attribute_not_exists(deleted_at)"),
    )
    audit.record(tx, ws, access.actor_id, "task.deleted", "task", task_id, request_id)
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise NotFound(f"task {task_id} not found") from failure

"""Creating, changing and deleting tasks. Reaching done goes through review: a PATCH may move a task
to `done` only from `review` (it then counts as the approval); from any other status it is a 409
with `current_status`."""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

from agentplane.access import Access
from agentplane.entities.tasks import TaskItem
from agentplane.errors import Conflict, InvalidTransition, PreconditionFailed, Unprocessable
from agentplane.ids import iso, new_id
from agentplane.logic.task_indexes import STORY_CHECK, keep_in_step
from agentplane.logic.tasks.commit import commit
from agentplane.logic.tasks.dependencies import unblock_children
from agentplane.logic.tasks.reads import load_live, require_story, require_tasks, require_version
from agentplane.logic.tasks.transition import status_effects
from agentplane.models.tasks import Task, TaskCreate, TaskStatus, TaskType, TaskUpdate
from agentplane.store import TransactionFailed, retrying

_TYPE_HINTS: tuple[tuple[TaskType, re.Pattern[str]], ...] = (
    (TaskType.bug, re.compile(r"\b(bug|fix|crash|error|broken|regression)\b", re.I)),
    (TaskType.test, re.compile(r"\b(tests?|e2e|coverage)\b", re.I)),
    (TaskType.docs, re.compile(r"\b(docs?|documentation|readme)\b", re.I)),
    (TaskType.refactor, re.compile(r"\b(refactor|cleanup|clean up|simplify)\b", re.I)),
    (TaskType.research, re.compile(r"\b(research|investigate|spike|explore)\b", re.I)),
    (TaskType.chore, re.compile(r"\b(chore|bump|upgrade|ci|deps|dependency)\b", re.I)),
)
# Fields an explicit null in a PATCH clears (the rest ignore null, as if left out).
_CLEARABLE = (
    "owner",
    "assignee",
    "sprint",
    "branch",
    "context_notes",
    "target_repo",
    "parent_task",
    "story_id",
    "story_points",
)
_LISTED = ("blocked_by", "blocks", "labels")
_DELETE_ATTEMPTS = 3


def infer_type(title: str, description: str) -> TaskType:
    """Toban infers a task's type from its words when the caller gives none."""
    text = f"{title} {description}"
    for task_type, pattern in _TYPE_HINTS:
        if pattern.search(text):
            return task_type
    return TaskType.feature


def _plain(fields: dict[str, Any]) -> dict[str, Any]:
    """Field values as stored: enums by value, lists without repeats."""
    plain = {name: value.value if isinstance(value, Enum) else value for name, value in fields.items()}
    for listed in _LISTED:
        if plain.get(listed) is not None:
            plain[listed] = list(dict.fromkeys(plain[listed]))
    return plain


def new_task(access: Access, fields: dict[str, Any], at: str) -> TaskItem:
    """A new task of the caller's workspace from validated create fields (no reference checks)."""
    fields = _plain(fields)
    fields["type"] = fields.get("type") or infer_type(fields["title"], fields.get("description", "")).value
    task = TaskItem(
        workspace_id=access.workspace_id,
        id=new_id("task"),
        **fields,
        created_by=access.actor_id,
        created_at=at,
        updated_at=at,
    )
    task.status = task.status or TaskStatus.todo.value
    if task.status == TaskStatus.in_progress:
        task.started_at = at
    if task.status == TaskStatus.done:
        task.completed_at = at
    task.stamp()
    return task


def new_task_item(access: Access, fields: dict[str, Any], at: str) -> dict[str, Any]:
    """The stored item of a new task from validated create fields (workspace import writes it)."""
    return {**new_task(access, fields, at).as_item(), "version": 1}


def create_task(access: Access, body: TaskCreate) -> Task:
    ws = access.workspace_id
    require_tasks(ws, "blocked_by", body.blocked_by)
    require_tasks(ws, "blocks", body.blocks)
    if body.parent_task:
        require_tasks(ws, "parent_task", [body.parent_task])
    if body.story_id:
        require_story(ws, body.story_id)
    task = new_task(access, body.model_dump(exclude_none=True), iso())
    tx = access.transaction()
    tx.create(task)
    keep_in_step(tx, [(None, task)])
    access.audit(tx, "task.created", "task", task.id, {"title": body.title})
    try:
        commit(access, tx)
    except TransactionFailed as failure:
        if failure.failed == STORY_CHECK:
            raise Unprocessable(f"story {body.story_id} was deleted") from failure
        raise Conflict("the task could not be created because of a concurrent change; retry") from failure
    return task.to_model()


def _requested(task: TaskItem, body: TaskUpdate) -> dict[str, Any]:
    """What the PATCH changes: the fields it gives, and None for each clearable field it nulls
    that the task has."""
    changes = _plain(body.model_dump(exclude_none=True, exclude={"version"}))
    for name in _CLEARABLE:
        if name in body.model_fields_set and getattr(body, name) is None and getattr(task, name) is not None:
            changes[name] = None
    return changes


def _check_references(ws: str, task: TaskItem, changes: dict[str, Any]) -> None:
    for field in ("blocked_by", "blocks"):
        if field in changes:
            require_tasks(ws, field, changes[field], self_id=task.id)
    if changes.get("parent_task"):
        require_tasks(ws, "parent_task", [changes["parent_task"]], self_id=task.id)
    story = changes.get("story_id")
    if story and story != task.story_id:
        require_story(ws, story)


def _status_rules(access: Access, task: TaskItem, new_status: str | None, at: str) -> dict[str, Any]:
    """What a change of status brings with it; done only from review, where it is the approval."""
    if new_status == TaskStatus.done and task.status != TaskStatus.done:
        if task.status != TaskStatus.review:
            raise InvalidTransition(
                f"task {task.id} is {task.status}: a task reaches done through review "
                "(send a review report, then approve)",
                current_status=task.status,
            )
        return {"reviewed_by": access.actor_id, "reviewed_at": at, **status_effects(task, new_status, at)}
    return status_effects(task, new_status, at)


def update_task(access: Access, task_id: str, body: TaskUpdate, if_match: int | None = None) -> Task:
    ws = access.workspace_id
    task = load_live(ws, task_id)
    require_version(f"task {task_id}", task.version, body.version or if_match)
    requested = _requested(task, body)
    _check_references(ws, task, requested)
    at = iso()
    effects = _status_rules(access, task, requested.get("status"), at)
    before = task.copy()
    tx = access.transaction()
    tx.change(task, task.assign(**requested, **effects, updated_at=at), TaskItem.live())
    keep_in_step(tx, [(before, task)])
    # The fields named: those given or cleared, and those the change set besides.
    named = set(requested) | {name for name, value in effects.items() if value is not None}
    details: dict[str, Any] = {"fields": sorted(named | {"updated_at", "version"})}
    if before.status != task.status:
        details.update({"from": before.status, "to": task.status})
    access.audit(tx, "task.updated", "task", task_id, details)
    try:
        commit(access, tx)
    except TransactionFailed as failure:
        if failure.failed == STORY_CHECK:
            raise Unprocessable(f"story {task.story_id} was deleted") from failure
        # Someone else wrote between our read and our write: nothing of ours was applied.
        raise PreconditionFailed(f"task {task_id} changed while it was being updated; reload and retry") from failure
    if before.status != task.status and task.status == TaskStatus.done:
        unblock_children(access, task)
    return task.to_model()


def delete_task(access: Access, task_id: str) -> None:
    """Soft delete: the item stays for its audit trail but leaves every list index, link and
    count. The version read guards the counts: they subtract exactly what is deleted."""
    ws = access.workspace_id

    def attempt() -> None:
        task = load_live(ws, task_id)
        before = task.copy()
        tx = access.transaction()
        tx.change(task, task.assign(deleted_at=iso()), TaskItem.live())
        keep_in_step(tx, [(before, task)])
        access.audit(tx, "task.deleted", "task", task_id)
        commit(access, tx)

    try:
        # Deleted meanwhile (404 on the re-read) or changed: read it again.
        retrying(attempt, retry_if=lambda failure: isinstance(failure, TransactionFailed), attempts=_DELETE_ATTEMPTS)
    except TransactionFailed as failure:
        raise Conflict(f"task {task_id} kept changing while it was being deleted; retry") from failure

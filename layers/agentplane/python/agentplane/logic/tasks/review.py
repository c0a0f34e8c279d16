"""The review workflow (Toban): an in_progress task goes to review with a report, and a reviewer
approves it (done), rejects it (back to in_progress, recorded as a failure of the task) or asks
for a fix (a sub-task, the reviewed task staying in review)."""

from __future__ import annotations

from typing import Any

from agentplane.access import Access
from agentplane.entities.tasks import TaskItem
from agentplane.errors import Conflict, InvalidTransition
from agentplane.ids import iso
from agentplane.logic import knowledge
from agentplane.logic.task_indexes import keep_in_step
from agentplane.logic.tasks.commit import commit
from agentplane.logic.tasks.dependencies import unblock_children
from agentplane.logic.tasks.editing import new_task
from agentplane.logic.tasks.reads import load_live
from agentplane.logic.tasks.transition import move_task
from agentplane.models.knowledge import FailureCreate
from agentplane.models.tasks import (
    ReviewAction,
    ReviewActionKind,
    ReviewActionResult,
    ReviewReportCreate,
    Task,
    TaskStatus,
    TaskType,
)
from agentplane.store import Transaction, TransactionFailed, get_store

# The name of the reviewed task's own write in a fix request's transaction.
_REVIEWED = "reviewed_task"


def submit_review_report(access: Access, task_id: str, body: ReviewReportCreate) -> Task:
    """An in_progress task moves to review with its report; a task already in review gets the new report."""
    report = {**body.model_dump(exclude_none=True), "submitted_by": access.actor_id, "submitted_at": iso()}
    extra: dict[str, Any] = {"review_report": report}
    if body.commits:
        extra["commits"] = body.commits
    task = move_task(
        access,
        task_id,
        verb="submit a review report for",
        allowed_from=(TaskStatus.in_progress, TaskStatus.review),
        to=TaskStatus.review,
        action="task.review_reported",
        extra=extra,
        redacted=True,
    )
    return task.to_model()


def approve_task(access: Access, task_id: str) -> Task:
    """review → done; the tasks that were waiting only on this one are unblocked."""
    task = _approve(access, task_id, None)
    unblock_children(access, task)
    return task.to_model()


def _approve(access: Access, task_id: str, comment: str | None) -> TaskItem:
    extra: dict[str, Any] = {"reviewed_by": access.actor_id, "reviewed_at": iso()}
    if comment:
        extra["review_comment"] = comment
    return move_task(
        access,
        task_id,
        verb="approve",
        allowed_from=(TaskStatus.review,),
        to=TaskStatus.done,
        action="task.approved",
        extra=extra,
    )


def reject_task(access: Access, task_id: str, reason: str) -> Task:
    """review → in_progress, keeping the reason for the assignee to act on. The rejection is also
    recorded as a failure of the task (Toban), in the same transaction."""

    def record_failure(tx: Transaction, task: TaskItem) -> None:
        failure = FailureCreate(
            title=f"Rejected in review: {task.title}"[:300], cause=reason, task_id=task_id, agent=task.agent
        )
        knowledge.add_failure_writes(tx, access, failure, request_id=access.request_id, source="review_rejection")

    task = move_task(
        access,
        task_id,
        verb="reject",
        allowed_from=(TaskStatus.review,),
        to=TaskStatus.in_progress,
        action="task.rejected",
        extra={"rejection_reason": reason, "reviewed_by": access.actor_id, "reviewed_at": iso()},
        details={"reason": reason[:500]},
        also=record_failure,
    )
    return task.to_model()


def review_action(access: Access, task_id: str, body: ReviewAction) -> ReviewActionResult:
    if body.action == ReviewActionKind.approve:
        task = _approve(access, task_id, body.comment)
        children = unblock_children(access, task)
        return ReviewActionResult(
            action=body.action, status=TaskStatus.done, task=task.to_model(), unblocked_children=children
        )
    original, fix = _request_fix(access, task_id, body)
    return ReviewActionResult(action=body.action, status=TaskStatus.review, task=original, fix_task=fix)


def _not_in_review(task_id: str, status: str) -> InvalidTransition:
    return InvalidTransition(
        f"cannot request a fix for task {task_id}: it is {status}, not review", current_status=status
    )


def _request_fix(access: Access, task_id: str, body: ReviewAction) -> tuple[Task, Task]:
    """A `Fix: <title>` sub-task for the original assignee; the reviewed task stays in review."""
    ws = access.workspace_id
    task = load_live(ws, task_id)
    if task.status != TaskStatus.review:
        raise _not_in_review(task_id, task.status)
    at = iso()
    fields: dict[str, Any] = {
        "title": f"Fix: {task.title}"[:300],
        "description": body.fix_description or body.comment or "",
        "priority": task.priority,
        "status": TaskStatus.todo,
        "type": TaskType.bug,
        "parent_task": task_id,
    }
    for inherited in ("owner", "assignee", "sprint", "story_id", "branch", "target_repo"):
        if getattr(task, inherited) is not None:
            fields[inherited] = getattr(task, inherited)
    fix = new_task(access, fields, at)
    reviewed: dict[str, Any] = {"reviewed_by": access.actor_id, "reviewed_at": at, "updated_at": at}
    if body.comment:
        reviewed["review_comment"] = body.comment
    tx = access.transaction()
    condition = (TaskItem.status == TaskStatus.review.value) & TaskItem.live()
    tx.change(task, task.assign(**reviewed), condition, name=_REVIEWED)
    tx.create(fix)
    keep_in_step(tx, [(None, fix)])
    access.audit(tx, "task.fix_requested", "task", task_id, {"fix_task": fix.id})
    access.audit(tx, "task.created", "task", fix.id, {"title": fix.title})
    try:
        commit(access, tx)
    except TransactionFailed as failure:
        if failure.failed == _REVIEWED:
            now = failure.current(_REVIEWED, TaskItem) or get_store().read(TaskItem, task.key)
            if now is not None and now.status != TaskStatus.review:
                raise _not_in_review(task_id, now.status) from failure
        raise Conflict(f"task {task_id} changed while the fix was being requested; retry") from failure
    return task.to_model(), fix.to_model()

"""Moving a task from one status to another: what every status change carries with it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from agentplane.access import Access
from agentplane.entities.tasks import TaskItem
from agentplane.errors import Conflict, InvalidTransition
from agentplane.ids import iso
from agentplane.logic.task_indexes import keep_in_step
from agentplane.logic.tasks.commit import commit
from agentplane.logic.tasks.reads import load_live, load_live_with_secrets
from agentplane.models.tasks import TaskStatus
from agentplane.redact import redact_value
from agentplane.store import Transaction, TransactionFailed, retrying

_TRANSITION_ATTEMPTS = 3


def status_effects(task: TaskItem, new_status: str | None, at: str) -> dict[str, Any]:
    """started_at on first entering in_progress; completed_at while done (burndown reads it;
    None: leaving done removes it)."""
    if new_status is None or new_status == task.status:
        return {}
    effects: dict[str, Any] = {}
    if new_status == TaskStatus.done:
        effects["completed_at"] = at
    elif task.status == TaskStatus.done and task.completed_at:
        effects["completed_at"] = None
    if new_status == TaskStatus.in_progress and not task.started_at:
        effects["started_at"] = at
    return effects


def move_task(
    access: Access,
    task_id: str,
    *,
    verb: str,
    allowed_from: Sequence[TaskStatus],
    to: TaskStatus,
    action: str,
    extra: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
    also: Callable[[Transaction, TaskItem], None] | None = None,
    redacted: bool = False,
) -> TaskItem:
    """Move a task between statuses with one conditional write (status and version unchanged since
    it was read) and its audit row in the same transaction; `also` adds writes that belong with the
    move (it gets the task as moved). A write that loses to another change of status is refused
    with `current_status`; one that loses only to an edit of other fields is retried on the fresh
    task. `redacted`: `extra` is an agent's text, redacted with the workspace's secrets (read with
    the task)."""
    ws = access.workspace_id

    def attempt() -> TaskItem:
        if redacted:
            task, known = load_live_with_secrets(ws, task_id)
            fields = redact_value(extra or {}, known)
        else:
            task, fields = load_live(ws, task_id), dict(extra or {})
        status = task.status
        if status not in allowed_from:
            allowed = " or ".join(s.value for s in allowed_from)
            raise InvalidTransition(
                f"cannot {verb} task {task_id}: it is {status}, not {allowed}", current_status=status
            )
        at = iso()
        before = task.copy()
        tx = access.transaction()
        changes = {**fields, "status": to.value, "updated_at": at, **status_effects(task, to, at)}
        tx.change(task, task.assign(**changes), (TaskItem.status == status) & TaskItem.live())
        keep_in_step(tx, [(before, task)])
        access.audit(tx, action, "task", task_id, {"from": status, "to": to, **(details or {})})
        if also is not None:
            also(tx, task)
        commit(access, tx)
        return task

    try:
        # A lost write is read again: a changed status is refused above, a changed version retried.
        return retrying(
            attempt, retry_if=lambda failure: isinstance(failure, TransactionFailed), attempts=_TRANSITION_ATTEMPTS
        )
    except TransactionFailed as failure:
        raise Conflict(f"task {task_id} kept changing while it was being updated; retry") from failure

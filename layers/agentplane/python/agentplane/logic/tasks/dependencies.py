"""Dependencies between tasks. `blocked_by` is the dependency that counts (for `next=true` and for
unblocking); `blocks` is kept as the caller wrote it and only adds candidates to unblock when the
task is done. A blocker that was deleted no longer blocks. However a task reaches done, the tasks
waiting only on it leave `blocked`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agentplane.access import Access
from agentplane.entities.tasks import TaskItem, tasks_waiting_on
from agentplane.errors import Conflict, InvalidTransition, NotFound
from agentplane.logic.task_indexes import link_references
from agentplane.logic.tasks.reads import live_tasks_by_id
from agentplane.logic.tasks.transition import move_task
from agentplane.models.tasks import TaskStatus, TaskSummary
from agentplane.store import Transaction

# Tasks waiting on one task that approving it looks at (link items read, oldest first).
MAX_CHILDREN = 1000


def blockers_done(task: TaskItem, blockers: dict[str, TaskItem], done_ids: Iterable[str] = ()) -> bool:
    """Every blocker is done (or gone: a deleted blocker no longer blocks)."""
    done = set(done_ids)
    for blocker_id in task.blocked_by or []:
        if blocker_id in done:
            continue
        blocker = blockers.get(blocker_id)
        if blocker is not None and blocker.status != TaskStatus.done:
            return False
    return True


def _waiting_on(ws: str, task: TaskItem) -> list[str]:
    """Ids of the tasks that list `task` in their blocked_by, then those it `blocks`."""
    return list(dict.fromkeys(tasks_waiting_on(ws, task.id, limit=MAX_CHILDREN) + list(task.blocks or [])))


def unblock_children(access: Access, task: TaskItem) -> list[TaskSummary]:
    """After `task` is done: the open tasks waiting on it whose blockers are now all done. Those in
    `blocked` move to todo, each with its own conditional write; one changed meanwhile is left alone."""
    ws = access.workspace_id
    children = [c for c in live_tasks_by_id(ws, _waiting_on(ws, task)).values() if c.status != TaskStatus.done]
    blockers = live_tasks_by_id(ws, [b for c in children for b in c.blocked_by or [] if b != task.id])
    unblocked: list[TaskSummary] = []
    for child in children:
        if not blockers_done(child, blockers, done_ids=[task.id]):
            continue
        if child.status == TaskStatus.blocked:
            try:
                child = move_task(
                    access,
                    child.id,
                    verb="unblock",
                    allowed_from=(TaskStatus.blocked,),
                    to=TaskStatus.todo,
                    action="task.unblocked",
                    details={"by": task.id},
                )
            except (InvalidTransition, Conflict, NotFound):
                fresh = live_tasks_by_id(ws, [child.id]).get(child.id)
                if fresh is None:
                    continue
                child = fresh
        unblocked.append(child.to_summary())
    return unblocked


def add_task_writes(tx: Transaction, ws: str, item: dict[str, Any], *, check_story: bool = True) -> None:
    """Put a new task given as a plain item, then the links of what it refers to (its blockers, its
    story; workspace import reads them back from `tx`)."""
    task = TaskItem.from_item({**item, "version": None})
    tx.create(task)
    link_references(tx, [(None, task)], check_story=check_story)

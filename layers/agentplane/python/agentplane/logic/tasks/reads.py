"""Reading tasks by id, and the checks that what a task refers to exists."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from agentplane import keys
from agentplane.entities.tasks import StoryItem, TaskItem
from agentplane.errors import NotFound, PreconditionFailed, Unprocessable
from agentplane.logic import known_secrets
from agentplane.models.tasks import TASK_ID_PATTERN
from agentplane.store import get_store

TASK_ID = re.compile(TASK_ID_PATTERN)


def load_live(ws: str, task_id: str) -> TaskItem:
    """The task, unless it is unknown or deleted (a 404)."""
    # An id that could never have been minted is not looked up (nor sent to DynamoDB as a key).
    task = get_store().read(TaskItem, keys.task_key(ws, task_id)) if TASK_ID.match(task_id) else None
    if task is None or not task.is_live:
        raise NotFound(f"task {task_id} not found")
    return task


def load_live_with_secrets(ws: str, task_id: str) -> tuple[TaskItem, tuple[str, ...]]:
    """`load_live`, with the workspace's secret values (to redact what an agent wrote) in the same read."""
    task, known = (
        known_secrets.read_with(TaskItem, keys.task_key(ws, task_id), ws) if TASK_ID.match(task_id) else (None, ())
    )
    if task is None or not task.is_live:
        raise NotFound(f"task {task_id} not found")
    return task, known


def live_tasks_by_id(ws: str, task_ids: Iterable[str]) -> dict[str, TaskItem]:
    """Live tasks by id, read in batches of 100; unknown or deleted ids are absent."""
    ids = list(dict.fromkeys(task_ids))
    tasks = get_store().read_many(TaskItem, [keys.task_key(ws, task_id) for task_id in ids])
    return {task.id: task for task in tasks if task is not None and task.is_live}


def get_tasks(ws: str, task_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Live tasks by id as the table holds them (workspace import); unknown or deleted ids are absent."""
    return {task_id: task.as_item() for task_id, task in live_tasks_by_id(ws, task_ids).items()}


def require_tasks(ws: str, field: str, task_ids: Sequence[str], self_id: str | None = None) -> None:
    """422 unless every id names a live task of this workspace (and none is the task itself)."""
    if self_id is not None and self_id in task_ids:
        raise Unprocessable(
            "a task cannot refer to itself", errors=[{"field": field, "message": "refers to the task itself"}]
        )
    found = live_tasks_by_id(ws, task_ids)
    missing = [t for t in dict.fromkeys(task_ids) if t not in found]
    if missing:
        raise Unprocessable(
            f"unknown task(s) in {field}: {', '.join(missing)}",
            errors=[{"field": field, "message": f"no task {t} in this workspace"} for t in missing],
        )


def require_story(ws: str, story_id: str) -> None:
    if get_store().read(StoryItem, keys.story_key(ws, story_id)) is None:
        raise Unprocessable(
            f"unknown story {story_id}", errors=[{"field": "story_id", "message": "no such story in this workspace"}]
        )


def require_version(what: str, current: int, expected: int | None) -> None:
    """412 unless the caller's expected version (body or If-Match) is the stored one (`what`: "task t_1")."""
    if expected is not None and expected != current:
        raise PreconditionFailed(f"{what} is at version {current}, not {expected}", current_version=current)

"""Stories group related tasks (Toban). A story's tasks are found through link items that each
task's own transaction writes and removes (see `entities.tasks`), so listing them is one Query
under the workspace partition; creating a story also creates its first task unless asked not to.
"""

from __future__ import annotations

import re
from typing import Any

from agentplane import keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.tasks import StoryItem, StoryTaskItem, TaskItem, stories_of_workspace, tasks_of_story
from agentplane.errors import Conflict, NotFound, PreconditionFailed
from agentplane.ids import iso, new_id
from agentplane.logic import tasks
from agentplane.logic.task_indexes import keep_in_step
from agentplane.models.tasks import STORY_ID_PATTERN, Story, StoryCreate, StoryStatus, StoryUpdate, Task, TaskStatus
from agentplane.store import TransactionFailed, get_store

# A story read on its own carries this many of its tasks; the rest are behind /stories/{id}/tasks.
EMBEDDED_TASKS = 100
# Deleting a story detaches its tasks in the same transaction, which bounds how many it may have.
MAX_TASKS_TO_DETACH = 40
STORY_ID = re.compile(STORY_ID_PATTERN)
# The name of the story's own deletion in its transaction.
_STORY = "story"


def _load(ws: str, story_id: str) -> StoryItem:
    # An id that could never have been minted is not looked up (nor sent to DynamoDB as a key).
    story = get_store().read(StoryItem, keys.story_key(ws, story_id)) if STORY_ID.match(story_id) else None
    if story is None:
        raise NotFound(f"story {story_id} not found")
    return story


def create_story(access: Access, body: StoryCreate) -> Story:
    ws = access.workspace_id
    at = iso()
    story = StoryItem(
        workspace_id=ws,
        id=new_id("story"),
        **body.model_dump(mode="json", exclude_none=True, exclude={"create_task", "task_owner"}),
        created_by=access.actor_id,
        created_at=at,
        updated_at=at,
    )
    tx = access.transaction()
    tx.create(story)
    access.audit(tx, "story.created", "story", story.id, {"title": body.title})
    first: TaskItem | None = None
    if body.create_task:
        fields: dict[str, Any] = {
            "title": body.title,
            "description": body.description,
            "priority": body.priority,
            "status": TaskStatus.todo,
            "story_id": story.id,
        }
        if body.sprint is not None:
            fields["sprint"] = body.sprint
        if body.task_owner:
            fields["owner"] = body.task_owner
        first = tasks.new_task(access, fields, at)
        tx.create(first)
        # The story is written in this same transaction, so there is nothing to check it against.
        keep_in_step(tx, [(None, first)], check_story=False)
        access.audit(tx, "task.created", "task", first.id, {"title": body.title})
    tasks.commit(access, tx)
    return story.to_model([first.to_model()] if first is not None else [])


def list_stories(
    access: Access, *, status: StoryStatus | None, sprint: int | None, limit: int, cursor: str | None
) -> tuple[list[Story], str | None]:
    ws = access.workspace_id
    query = {"status": status, "sprint": sprint}
    scope = f"stories:{ws}"
    start = decode_cursor(cursor, scope, query)
    page = stories_of_workspace(ws, status=status, sprint=sprint, limit=limit, start=start)
    return [story.to_model() for story in page.items], encode_cursor(page.last_key, scope, query)


def _story_task_page(
    ws: str, story_id: str, limit: int, start: dict[str, Any] | None
) -> tuple[list[Task], dict[str, Any] | None]:
    page = tasks_of_story(ws, story_id, limit=limit, start=start)
    found = tasks.live_tasks_by_id(ws, [link.task_id for link in page.items])
    return [found[link.task_id].to_model() for link in page.items if link.task_id in found], page.last_key


def get_story(access: Access, story_id: str) -> Story:
    ws = access.workspace_id
    story = _load(ws, story_id)
    story_tasks, _ = _story_task_page(ws, story_id, EMBEDDED_TASKS, None)
    return story.to_model(story_tasks)


def list_story_tasks(access: Access, story_id: str, *, limit: int, cursor: str | None) -> tuple[list[Task], str | None]:
    ws = access.workspace_id
    _load(ws, story_id)
    scope = f"story-tasks:{ws}:{story_id}"
    start = decode_cursor(cursor, scope, {})
    story_tasks, last_key = _story_task_page(ws, story_id, limit, start)
    return story_tasks, encode_cursor(last_key, scope, {})


def update_story(access: Access, story_id: str, body: StoryUpdate, if_match: int | None = None) -> Story:
    story = _load(access.workspace_id, story_id)
    tasks.require_version(f"story {story_id}", story.version, body.version or if_match)
    changes: dict[str, Any] = body.model_dump(mode="json", exclude_none=True, exclude={"version"})
    if "sprint" in body.model_fields_set and body.sprint is None and story.sprint is not None:
        changes["sprint"] = None  # an explicit null takes the story out of its sprint
    tx = access.transaction()
    tx.change(story, story.assign(**changes, updated_at=iso()))
    access.audit(tx, "story.updated", "story", story_id, {"fields": sorted({*changes, "updated_at", "version"})})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise PreconditionFailed(f"story {story_id} changed while it was being updated; reload and retry") from failure
    return story.to_model()


def delete_story(access: Access, story_id: str) -> None:
    """Delete the story and detach its tasks (they stay, without a story) in one transaction."""
    ws = access.workspace_id
    story = _load(ws, story_id)
    links = tasks_of_story(ws, story_id, limit=MAX_TASKS_TO_DETACH + 1, consistent=True).items
    if len(links) > MAX_TASKS_TO_DETACH:
        raise Conflict(f"story {story_id} has more than {MAX_TASKS_TO_DETACH} tasks; move some to another story first")
    at = iso()
    tx = access.transaction()
    tx.drop(StoryItem, story.key, name=_STORY)
    for link in links:
        tx.discard(StoryTaskItem, link.key)
        detach = [TaskItem.updated_at.set(at), TaskItem.story_id.remove(), TaskItem.version.add(1)]
        tx.adjust(TaskItem, keys.task_key(ws, link.task_id), detach, TaskItem.story_id == story_id)
    access.audit(tx, "story.deleted", "story", story_id, {"detached_tasks": len(links)})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed == _STORY:
            raise NotFound(f"story {story_id} not found") from failure
        raise Conflict(f"story {story_id} or one of its tasks changed while it was being deleted; retry") from failure

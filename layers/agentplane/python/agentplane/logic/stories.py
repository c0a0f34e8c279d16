"""Stories group related tasks (Toban). A story's tasks are found through link items
(`keys.story_task_key`) that each task's own transaction writes and removes, so listing them is one
Query under the workspace partition; creating a story also creates its first task unless asked not to.
"""

from __future__ import annotations

import re
from typing import Any

from agentplane import audit, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.errors import Conflict, NotFound, PreconditionFailed
from agentplane.ids import iso, new_id
from agentplane.logic import task_indexes, tasks
from agentplane.models.tasks import STORY_ID_PATTERN, Story, StoryCreate, StoryStatus, StoryUpdate, Task, TaskStatus
from agentplane.store import Expr, TransactionFailed, Update, attr_eq, exists, get_store, not_exists

Item = dict[str, Any]

# A story read on its own carries this many of its tasks; the rest are behind /stories/{id}/tasks.
EMBEDDED_TASKS = 100
# Deleting a story detaches its tasks in the same transaction, which bounds how many it may have.
MAX_TASKS_TO_DETACH = 40
STORY_ID = re.compile(STORY_ID_PATTERN)


def _to_story(item: Item, story_tasks: list[Task] | None = None) -> Story:
    return Story.model_validate({**item, "tasks": story_tasks})


def _load(ws: str, story_id: str) -> Item:
    # An id that could never have been minted is not looked up (nor sent to DynamoDB as a key).
    item = get_store().get(keys.story_key(ws, story_id)) if STORY_ID.match(story_id) else None
    if item is None:
        raise NotFound(f"story {story_id} not found")
    return item


def create_story(access: Access, body: StoryCreate, request_id: str = "") -> Story:
    ws = access.workspace_id
    story_id = new_id("story")
    at = iso()
    item: Item = {
        **keys.story_key(ws, story_id),
        keys.ENTITY: "story",
        **body.model_dump(exclude_none=True, exclude={"create_task", "task_owner"}),
        "id": story_id,
        "workspace_id": ws,
        "created_by": access.actor_id,
        "created_at": at,
        "updated_at": at,
        "version": 1,
    }
    tx = access.transaction()
    tx.put(item, not_exists())
    audit.record(tx, ws, access.actor_id, "story.created", "story", story_id, request_id, {"title": body.title})
    first_tasks: list[Task] = []
    if body.create_task:
        fields: dict[str, Any] = {
            "title": body.title,
            "description": body.description,
            "priority": body.priority,
            "status": TaskStatus.todo,
            "story_id": story_id,
        }
        if body.sprint is not None:
            fields["sprint"] = body.sprint
        if body.task_owner:
            fields["owner"] = body.task_owner
        task = tasks.new_task_item(access, fields, at)
        # The story is written in this same transaction, so there is nothing to check it against.
        tasks.add_task_writes(tx, ws, task, check_story=False)
        task_indexes.add_writes(tx, ws, None, task)
        audit.record(tx, ws, access.actor_id, "task.created", "task", task["id"], request_id, {"title": body.title})
        first_tasks.append(Task.model_validate(task))
    tasks.commit(access, tx)
    return _to_story(item, first_tasks)


def list_stories(
    access: Access, *, status: StoryStatus | None, sprint: int | None, limit: int, cursor: str | None
) -> tuple[list[Story], str | None]:
    ws = access.workspace_id
    query = {"status": status, "sprint": sprint}
    scope = f"stories:{ws}"
    start = decode_cursor(cursor, scope, query)
    condition: Expr | None = None
    for name, value in (("status", status), ("sprint", sprint)):
        if value is not None:
            expr = attr_eq(name, value)
            condition = expr if condition is None else condition & expr
    page = get_store().query(
        keys.ws_pk(ws), sk_prefix=keys.STORY_PREFIX, limit=limit, start_key=start, filter=condition
    )
    return [_to_story(item) for item in page.items], encode_cursor(page.last_key, scope, query)


def _story_task_page(
    ws: str, story_id: str, limit: int, start: dict[str, Any] | None
) -> tuple[list[Task], dict[str, Any] | None]:
    page = get_store().query(keys.ws_pk(ws), sk_prefix=keys.story_task_prefix(story_id), limit=limit, start_key=start)
    found = tasks.get_tasks(ws, [link["task_id"] for link in page.items])
    ordered = [found[link["task_id"]] for link in page.items if link["task_id"] in found]
    return [Task.model_validate(item) for item in ordered], page.last_key


def get_story(access: Access, story_id: str) -> Story:
    ws = access.workspace_id
    item = _load(ws, story_id)
    story_tasks, _ = _story_task_page(ws, story_id, EMBEDDED_TASKS, None)
    return _to_story(item, story_tasks)


def list_story_tasks(access: Access, story_id: str, *, limit: int, cursor: str | None) -> tuple[list[Task], str | None]:
    ws = access.workspace_id
    _load(ws, story_id)
    scope = f"story-tasks:{ws}:{story_id}"
    start = decode_cursor(cursor, scope, {})
    story_tasks, last_key = _story_task_page(ws, story_id, limit, start)
    return story_tasks, encode_cursor(last_key, scope, {})


def update_story(
    access: Access, story_id: str, body: StoryUpdate, if_match: int | None = None, request_id: str = ""
) -> Story:
    ws = access.workspace_id
    current = _load(ws, story_id)
    expected = body.version or if_match
    if expected is not None and expected != current["version"]:
        raise PreconditionFailed(
            f"story {story_id} is at version {current['version']}, not {expected}", current_version=current["version"]
        )
    changes = body.model_dump(exclude_none=True, exclude={"version"})
    remove = ["sprint"] if "sprint" in body.model_fields_set and body.sprint is None and "sprint" in current else []
    changes["updated_at"] = iso()
    changes["version"] = current["version"] + 1
    tx = access.transaction()
    tx.update(
        keys.story_key(ws, story_id),
        Update(set=changes, remove=remove),
        exists() & attr_eq("version", current["version"]),
    )
    audit.record(
        tx,
        ws,
        access.actor_id,
        "story.updated",
        "story",
        story_id,
        request_id,
        {"fields": sorted(set(changes) | set(remove))},
    )
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise PreconditionFailed(f"story {story_id} changed while it was being updated; reload and retry") from failure
    return _to_story({k: v for k, v in {**current, **changes}.items() if k not in remove})


def delete_story(access: Access, story_id: str, request_id: str = "") -> None:
    """Delete the story and detach its tasks (they stay, without a story) in one transaction."""
    ws = access.workspace_id
    _load(ws, story_id)
    links = (
        get_store()
        .query(
            keys.ws_pk(ws), sk_prefix=keys.story_task_prefix(story_id), limit=MAX_TASKS_TO_DETACH + 1, consistent=True
        )
        .items
    )
    if len(links) > MAX_TASKS_TO_DETACH:
        raise Conflict(f"story {story_id} has more than {MAX_TASKS_TO_DETACH} tasks; move some to another story first")
    at = iso()
    tx = access.transaction()
    story_index = len(tx.operations)
    tx.delete(keys.story_key(ws, story_id), exists())
    for link in links:
        tx.delete(keys.story_task_key(ws, story_id, link["task_id"]))
        tx.update(
            keys.task_key(ws, link["task_id"]),
            Update(set={"updated_at": at}, remove=["story_id"], add={"version": 1}),
            exists() & attr_eq("story_id", story_id),
        )
    audit.record(
        tx, ws, access.actor_id, "story.deleted", "story", story_id, request_id, {"detached_tasks": len(links)}
    )
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed_index() == story_index:
            raise NotFound(f"story {story_id} not found") from failure
        raise Conflict(f"story {story_id} or one of its tasks changed while it was being deleted; retry") from failure

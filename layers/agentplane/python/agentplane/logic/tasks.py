"""Tasks: CRUD, list filters, `next`, and the review workflow (Toban), each change audited in its
own transaction.

Besides the task item, a task's transaction maintains:
- GSI1 (tasks by status), GSI2 (all live tasks) and, while the task is in a sprint, GSI3 (tasks by
  sprint: `?sprint=` lists and the sprints family read it);
- a link item per blocker (`keys.task_dependency_key`), so approving a task finds the tasks waiting
  on it with one Query instead of a scan;
- a link item to its story (`keys.story_task_key`), so a story's tasks are one Query too;
- the counters and links of `logic/task_indexes.py`: sprint and daily figures, each agent's todo
  work in priority order (`next=true`), and done tasks by completion time.

`blocked_by` is the dependency that counts (for `next=true` and for unblocking); `blocks` is kept as
the caller wrote it and only adds candidates to unblock when the task is done. A blocker that was
deleted no longer blocks.

Reaching done goes through review: a PATCH may move a task to `done` only from `review` (it then
counts as the approval); from any other status it is a 409 with `current_status`. However a task
reaches done, the tasks waiting only on it leave `blocked`.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from botocore.exceptions import ClientError

from agentplane import audit, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.errors import BadRequest, Conflict, InvalidTransition, NotFound, PreconditionFailed, Unprocessable
from agentplane.ids import iso, new_id
from agentplane.logic import knowledge, known_secrets, task_indexes
from agentplane.logic.task_indexes import agent_of
from agentplane.models.knowledge import FailureCreate
from agentplane.models.tasks import (
    TASK_ID_PATTERN,
    ReviewAction,
    ReviewActionKind,
    ReviewActionResult,
    ReviewReportCreate,
    Task,
    TaskCreate,
    TaskStatus,
    TaskSummary,
    TaskType,
    TaskUpdate,
)
from agentplane.redact import redact_value
from agentplane.store import Expr, Page, Transaction, TransactionFailed, Update, attr_eq, exists, get_store

Item = dict[str, Any]

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
# Internal attribute holding lower-cased title and description for `q`.
SEARCH_TEXT = "search_text"
TASK_ID = re.compile(TASK_ID_PATTERN)
# `next=true` looks at most at this many of the agent's todo tasks, highest priority first.
NEXT_READ_BUDGET = 1000
_NEXT_PAGE = 50
# A filtered list reads on until its page is full or it has read this many tasks (then the cursor
# resumes where it stopped).
LIST_READ_BUDGET = 1000
_LIST_ROUND = 100
# Concurrent changes that touch the same counter item collide (TransactionConflict); the same
# transaction is sent again, as its conditions still decide who wins.
_CONFLICT_ATTEMPTS = 6
# Tasks waiting on one task that approving it looks at (link items read, oldest first).
MAX_CHILDREN = 1000
_TRANSITION_ATTEMPTS = 3
_BATCH = 100


def _only_conflicts(failure: TransactionFailed) -> bool:
    """Cancelled only because another transaction was writing one of the same items (a counter)."""
    return set(failure.reasons) - {"None", ""} == {"TransactionConflict"}


def commit(access: Access, tx: Transaction) -> None:
    """Commit; a task grown past the table's 400 KB item limit is the caller's input, so a 422."""
    too_large = "the task would exceed the maximum stored size; shorten its texts"
    for attempt in range(_CONFLICT_ATTEMPTS):
        try:
            access.commit(tx)
            return
        except TransactionFailed as failure:
            if "ValidationError" in failure.reasons:
                raise Unprocessable(too_large) from failure
            if _only_conflicts(failure) and attempt + 1 < _CONFLICT_ATTEMPTS:
                # Jitter only, so colliding writers spread out; not a security use of randomness.
                time.sleep(random.uniform(0, 0.005 * (attempt + 1)))  # noqa: S311
                continue
            raise
        except ClientError as error:
            problem = error.response.get("Error", {})
            if problem.get("Code") == "ValidationException" and "size" in str(problem.get("Message", "")).lower():
                raise Unprocessable(too_large) from error
            raise


def infer_type(title: str, description: str) -> TaskType:
    """Toban infers a task's type from its words when the caller gives none."""
    text = f"{title} {description}"
    for task_type, pattern in _TYPE_HINTS:
        if pattern.search(text):
            return task_type
    return TaskType.feature


def _search_text(title: str, description: str) -> str:
    return f"{title}\n{description}".lower()


def _index_attrs(ws: str, status: str, task_id: str, sprint: int | None = None) -> dict[str, str]:
    attrs = {
        keys.GSI1PK: keys.task_status_gsi(ws, status),
        keys.GSI1SK: task_id,
        keys.GSI2PK: keys.task_list_gsi(ws),
        keys.GSI2SK: task_id,
    }
    if sprint is not None:
        attrs[keys.GSI3PK] = keys.task_sprint_gsi(ws, sprint)
        attrs[keys.GSI3SK] = task_id
    return attrs


def _to_task(item: Item) -> Task:
    return Task.model_validate(item)


def summarize(item: Item) -> TaskSummary:
    return TaskSummary.model_validate(item)


def _live(item: Item | None) -> bool:
    return item is not None and not item.get("deleted_at")


def get_tasks(ws: str, task_ids: Iterable[str]) -> dict[str, Item]:
    """Live tasks by id, read with BatchGetItem in batches of 100; unknown or deleted ids are absent."""
    ids = list(dict.fromkeys(task_ids))
    found: dict[str, Item] = {}
    for start in range(0, len(ids), _BATCH):
        chunk = ids[start : start + _BATCH]
        for task_id, item in zip(chunk, get_store().get_many([keys.task_key(ws, t) for t in chunk]), strict=True):
            if item is not None and _live(item):
                found[task_id] = item
    return found


def require_tasks(ws: str, field: str, task_ids: Sequence[str], self_id: str | None = None) -> None:
    """422 unless every id names a live task of this workspace (and none is the task itself)."""
    if self_id is not None and self_id in task_ids:
        raise Unprocessable(
            "a task cannot refer to itself", errors=[{"field": field, "message": "refers to the task itself"}]
        )
    found = get_tasks(ws, task_ids)
    missing = [t for t in dict.fromkeys(task_ids) if t not in found]
    if missing:
        raise Unprocessable(
            f"unknown task(s) in {field}: {', '.join(missing)}",
            errors=[{"field": field, "message": f"no task {t} in this workspace"} for t in missing],
        )


def _require_story(ws: str, story_id: str) -> None:
    if get_store().get(keys.story_key(ws, story_id)) is None:
        raise Unprocessable(
            f"unknown story {story_id}", errors=[{"field": "story_id", "message": "no such story in this workspace"}]
        )


def _dependency_link(ws: str, blocker_id: str, task_id: str) -> Item:
    return {
        **keys.task_dependency_key(ws, blocker_id, task_id),
        keys.ENTITY: "task_dependency",
        "blocker_id": blocker_id,
        "task_id": task_id,
    }


def _story_link(ws: str, story_id: str, task_id: str) -> Item:
    return {
        **keys.story_task_key(ws, story_id, task_id),
        keys.ENTITY: "story_task",
        "story_id": story_id,
        "task_id": task_id,
    }


def new_task_item(access: Access, fields: dict[str, Any], at: str) -> Item:
    """The stored item of a new task from validated create fields (no reference checks)."""
    ws = access.workspace_id
    task_id = new_id("task")
    fields = dict(fields)
    for listed in ("blocked_by", "blocks", "labels"):
        if listed in fields:
            fields[listed] = list(dict.fromkeys(fields[listed]))
    fields["type"] = fields.get("type") or infer_type(fields["title"], fields.get("description", ""))
    status = fields.get("status", TaskStatus.todo)
    item: Item = {
        **keys.task_key(ws, task_id),
        **_index_attrs(ws, status, task_id, fields.get("sprint")),
        keys.ENTITY: "task",
        **fields,
        SEARCH_TEXT: _search_text(fields["title"], fields.get("description", "")),
        "id": task_id,
        "workspace_id": ws,
        "created_by": access.actor_id,
        "created_at": at,
        "updated_at": at,
        "version": 1,
    }
    if status == TaskStatus.in_progress:
        item["started_at"] = at
    if status == TaskStatus.done:
        item["completed_at"] = at
    return item


def add_task_writes(tx: Transaction, ws: str, item: Item, *, check_story: bool = True) -> int:
    """Put a new task and its link items; returns the index of the story check (-1 when none)."""
    tx.put(item, Expr("attribute_not_exists(PK)"))
    for blocker_id in item.get("blocked_by") or []:
        tx.put(_dependency_link(ws, blocker_id, item["id"]))
    story_check = -1
    if item.get("story_id"):
        tx.put(_story_link(ws, item["story_id"], item["id"]))
        if check_story:
            story_check = len(tx.operations)
            tx.check(keys.story_key(ws, item["story_id"]), exists())
    return story_check


def create_task(access: Access, body: TaskCreate, request_id: str = "") -> Task:
    ws = access.workspace_id
    require_tasks(ws, "blocked_by", body.blocked_by)
    require_tasks(ws, "blocks", body.blocks)
    if body.parent_task:
        require_tasks(ws, "parent_task", [body.parent_task])
    if body.story_id:
        _require_story(ws, body.story_id)
    item = new_task_item(access, body.model_dump(exclude_none=True), iso())
    tx = access.transaction()
    story_check = add_task_writes(tx, ws, item)
    task_indexes.add_writes(tx, ws, None, item)
    audit.record(tx, ws, access.actor_id, "task.created", "task", item["id"], request_id, {"title": body.title})
    try:
        commit(access, tx)
    except TransactionFailed as failure:
        if story_check >= 0 and failure.failed_index() == story_check:
            raise Unprocessable(f"story {body.story_id} was deleted") from failure
        raise Conflict("the task could not be created because of a concurrent change; retry") from failure
    return _to_task(item)


def load_live(ws: str, task_id: str) -> Item:
    # An id that could never have been minted is not looked up (nor sent to DynamoDB as a key).
    item = get_store().get(keys.task_key(ws, task_id)) if TASK_ID.match(task_id) else None
    if item is None or item.get("deleted_at"):
        raise NotFound(f"task {task_id} not found")
    return item


def _load_live_with_secrets(ws: str, task_id: str) -> tuple[Item, tuple[str, ...]]:
    """`load_live`, with the workspace's secret values (to redact what an agent wrote) in the same read."""
    item, known = known_secrets.read_with(keys.task_key(ws, task_id), ws) if TASK_ID.match(task_id) else (None, ())
    if item is None or item.get("deleted_at"):
        raise NotFound(f"task {task_id} not found")
    return item, known


def get_task(access: Access, task_id: str) -> Task:
    return _to_task(load_live(access.workspace_id, task_id))


def resolve_assignee(access: Access, assignee: str | None) -> str:
    """`me` (or nothing) is the caller: an agent key's agent name, else the person's username."""
    if assignee and assignee != "me":
        return assignee
    principal = access.principal
    if principal.agent_name:
        return principal.agent_name
    if principal.user_id:
        profile = get_store().get(keys.user_key(principal.user_id), consistent=False) or {}
        return str(profile.get("username") or principal.user_id)
    return principal.id


def _filters(**values: Any) -> Expr | None:
    condition: Expr | None = None
    for name, value in values.items():
        if value is None:
            continue
        if name == "q":
            expr = Expr("contains(#q_text, :q_text)", {"#q_text": SEARCH_TEXT}, {":q_text": str(value).lower()})
        else:
            expr = attr_eq(name, value)
        condition = expr if condition is None else condition & expr
    return condition


_INDEX_KEY_ATTRS = {
    keys.GSI1: (keys.GSI1PK, keys.GSI1SK),
    keys.GSI2: (keys.GSI2PK, keys.GSI2SK),
    keys.GSI3: (keys.GSI3PK, keys.GSI3SK),
}


def _filled_page(partition: str, index: str, *, limit: int, start: dict[str, Any] | None, filter: Expr | None) -> Page:
    """Up to `limit` tasks of one index partition. Unfiltered this is one Query; filtered, Query
    rounds go on until the page is full, the partition ends or LIST_READ_BUDGET tasks were read."""
    if filter is None:
        return get_store().query(partition, index=index, limit=limit, start_key=start)
    items: list[Item] = []
    last = start
    read = 0
    while read < LIST_READ_BUDGET:
        page = get_store().query(partition, index=index, limit=_LIST_ROUND, start_key=last, filter=filter)
        read += _LIST_ROUND
        items += page.items
        last = page.last_key
        if len(items) >= limit:
            if len(items) > limit:
                items = items[:limit]
                final = items[-1]
                last = {name: final[name] for name in (keys.PK, keys.SK, *_INDEX_KEY_ATTRS[index])}
            break
        if last is None:
            break
    return Page(items=items, last_key=last)


def list_tasks(
    access: Access,
    *,
    status: TaskStatus | None,
    sprint: int | None,
    owner: str | None,
    priority: str | None,
    limit: int,
    cursor: str | None,
    assignee: str | None = None,
    q: str | None = None,
    next_for_assignee: bool = False,
) -> tuple[list[Task], str | None]:
    """In creation order. The narrowest index partition answers: the sprint's (GSI3) when `sprint`
    is given, else the status's (GSI1), else all live tasks (GSI2); the other filters narrow it,
    reading on until the page is full (bounded; the cursor resumes)."""
    ws = access.workspace_id
    if next_for_assignee:
        if cursor:
            raise BadRequest("next=true answers one task and takes no cursor")
        if status not in (None, TaskStatus.todo):
            raise BadRequest("next=true picks among todo tasks; drop status or use status=todo")
        found = next_task(access, assignee, sprint=sprint, owner=owner, priority=priority, q=q)
        return ([found] if found else []), None
    if assignee == "me":
        assignee = resolve_assignee(access, assignee)
    q = q.strip() if q else None
    query = {
        "status": status,
        "sprint": sprint,
        "owner": owner,
        "priority": priority,
        "assignee": assignee,
        "q": q or None,
    }
    scope = f"tasks:{ws}"
    start = decode_cursor(cursor, scope, query)
    common = {"owner": owner, "priority": priority, "assignee": assignee, "q": q or None}
    if sprint is not None:
        partition, index = keys.task_sprint_gsi(ws, sprint), keys.GSI3
        condition = _filters(status=status, **common)
    elif status is not None:
        partition, index = keys.task_status_gsi(ws, status), keys.GSI1
        condition = _filters(**common)
    else:
        partition, index = keys.task_list_gsi(ws), keys.GSI2
        condition = _filters(**common)
    page = _filled_page(partition, index, limit=limit, start=start, filter=condition)
    return [_to_task(item) for item in page.items], encode_cursor(page.last_key, scope, query)


def _blockers_done(task: Item, blockers: dict[str, Item], done_ids: Iterable[str] = ()) -> bool:
    """Every blocker is done (or gone: a deleted blocker no longer blocks)."""
    done = set(done_ids)
    for blocker_id in task.get("blocked_by") or []:
        if blocker_id in done:
            continue
        blocker = blockers.get(blocker_id)
        if blocker is not None and blocker.get("status") != TaskStatus.done:
            return False
    return True


def next_task(
    access: Access,
    assignee: str | None,
    *,
    sprint: int | None = None,
    owner: str | None = None,
    priority: str | None = None,
    q: str | None = None,
) -> Task | None:
    """The agent's highest-priority (then oldest) todo task whose blockers are all done. A task is
    the agent's when the agent is its assignee, or its owner when it has no assignee.

    The agent's todo links are read in priority order, a page at a time; each page's tasks and
    their blockers are two BatchGetItems, and the first free task wins. At most NEXT_READ_BUDGET
    links are looked at."""
    ws = access.workspace_id
    who = resolve_assignee(access, assignee)
    text = q.strip().lower() if q and q.strip() else None
    start: dict[str, Any] | None = None
    read = 0
    while read < NEXT_READ_BUDGET:
        page = get_store().query(
            keys.agent_todo_pk(ws, who),
            sk_prefix=f"{priority}#" if priority else None,
            limit=_NEXT_PAGE,
            start_key=start,
            consistent=True,
        )
        read += _NEXT_PAGE
        found = get_tasks(ws, [link["task_id"] for link in page.items])
        candidates = [
            task
            for task in (found.get(link["task_id"]) for link in page.items)
            if task is not None
            and task["status"] == TaskStatus.todo
            and agent_of(task) == who
            and (sprint is None or task.get("sprint") == sprint)
            and (owner is None or task.get("owner") == owner)
            and (text is None or text in str(task.get(SEARCH_TEXT, "")))
        ]
        blockers = get_tasks(ws, [b for task in candidates for b in task.get("blocked_by") or []])
        for task in candidates:
            if _blockers_done(task, blockers):
                return _to_task(task)
        start = page.last_key
        if not start:
            break
    return None


def update_task(
    access: Access, task_id: str, body: TaskUpdate, if_match: int | None = None, request_id: str = ""
) -> Task:
    ws = access.workspace_id
    current = load_live(ws, task_id)
    expected = body.version or if_match
    if expected is not None and expected != current["version"]:
        raise PreconditionFailed(
            f"task {task_id} is at version {current['version']}, not {expected}", current_version=current["version"]
        )
    changes = body.model_dump(exclude_none=True, exclude={"version"})
    for listed in ("blocked_by", "blocks", "labels"):
        if listed in changes:
            changes[listed] = list(dict.fromkeys(changes[listed]))
    cleared = [f for f in _CLEARABLE if f in body.model_fields_set and getattr(body, f) is None and f in current]
    remove: list[str] = list(cleared)
    at = iso()
    if "blocked_by" in changes:
        require_tasks(ws, "blocked_by", changes["blocked_by"], self_id=task_id)
    if "blocks" in changes:
        require_tasks(ws, "blocks", changes["blocks"], self_id=task_id)
    if "parent_task" in changes:
        require_tasks(ws, "parent_task", [changes["parent_task"]], self_id=task_id)
    new_story = changes.get("story_id")
    if new_story and new_story != current.get("story_id"):
        _require_story(ws, new_story)
    status_moved = "status" in changes and changes["status"] != current["status"]
    if status_moved and changes["status"] == TaskStatus.done:
        if current["status"] != TaskStatus.review:
            raise InvalidTransition(
                f"task {task_id} is {current['status']}: a task reaches done through review "
                "(send a review report, then approve)",
                current_status=current["status"],
            )
        # Done from review is the approval, whichever route gives it.
        changes.setdefault("reviewed_by", access.actor_id)
        changes.setdefault("reviewed_at", at)
    changes.update(_status_side_effects(current, changes.get("status"), at, remove))
    if "status" in changes:
        changes[keys.GSI1PK] = keys.task_status_gsi(ws, changes["status"])
    if "sprint" in changes:
        changes[keys.GSI3PK] = keys.task_sprint_gsi(ws, changes["sprint"])
        changes[keys.GSI3SK] = task_id
    if "sprint" in cleared:
        remove += [keys.GSI3PK, keys.GSI3SK]
    if "title" in changes or "description" in changes:
        title = str(changes.get("title", current["title"]))
        description = str(changes.get("description", current.get("description", "")))
        changes[SEARCH_TEXT] = _search_text(title, description)
    changes["updated_at"] = at
    changes["version"] = current["version"] + 1
    result = {k: v for k, v in {**current, **changes}.items() if k not in remove}

    tx = access.transaction()
    tx.update(
        keys.task_key(ws, task_id),
        Update(set=changes, remove=remove),
        exists() & attr_eq("version", current["version"]) & Expr("attribute_not_exists(deleted_at)"),
    )
    task_indexes.add_writes(tx, ws, current, result)
    if "blocked_by" in changes:
        old = set(current.get("blocked_by") or [])
        new = set(changes["blocked_by"])
        for blocker_id in sorted(old - new):
            tx.delete(keys.task_dependency_key(ws, blocker_id, task_id))
        for blocker_id in sorted(new - old):
            tx.put(_dependency_link(ws, blocker_id, task_id))
    story_check = -1
    old_story = current.get("story_id")
    target_story = None if "story_id" in cleared else changes.get("story_id", old_story)
    if target_story != old_story:
        if old_story:
            tx.delete(keys.story_task_key(ws, old_story, task_id))
        if target_story:
            tx.put(_story_link(ws, target_story, task_id))
            story_check = len(tx.operations)
            tx.check(keys.story_key(ws, target_story), exists())
    details: dict[str, Any] = {
        "fields": sorted({k for k in changes if not k.startswith("GSI") and k != SEARCH_TEXT} | set(cleared))
    }
    if status_moved:
        details.update({"from": current["status"], "to": changes["status"]})
    audit.record(tx, ws, access.actor_id, "task.updated", "task", task_id, request_id, details)
    try:
        commit(access, tx)
    except TransactionFailed as failure:
        if story_check >= 0 and failure.failed_index() == story_check:
            raise Unprocessable(f"story {target_story} was deleted") from failure
        # Someone else wrote between our read and our write: nothing of ours was applied.
        raise PreconditionFailed(f"task {task_id} changed while it was being updated; reload and retry") from failure
    if status_moved and result["status"] == TaskStatus.done:
        unblock_children(access, result, request_id)
    return _to_task(result)


def _status_side_effects(current: Item, new_status: str | None, at: str, remove: list[str]) -> dict[str, Any]:
    """started_at on first entering in_progress; completed_at while done (burndown reads it)."""
    if new_status is None or new_status == current["status"]:
        return {}
    extra: dict[str, Any] = {}
    if new_status == TaskStatus.done:
        extra["completed_at"] = at
    elif current["status"] == TaskStatus.done and "completed_at" in current:
        remove.append("completed_at")
    if new_status == TaskStatus.in_progress and not current.get("started_at"):
        extra["started_at"] = at
    return extra


def delete_task(access: Access, task_id: str, request_id: str = "") -> None:
    ws = access.workspace_id
    for _attempt in range(_TRANSITION_ATTEMPTS):
        current = load_live(ws, task_id)
        tx = access.transaction()
        # Soft delete: the item stays for its audit trail but leaves every list index, link and
        # count. The version read guards the counts: they subtract exactly what is deleted.
        tx.update(
            keys.task_key(ws, task_id),
            Update(
                set={"deleted_at": iso()},
                remove=[keys.GSI1PK, keys.GSI1SK, keys.GSI2PK, keys.GSI2SK, keys.GSI3PK, keys.GSI3SK],
            ),
            exists() & Expr("attribute_not_exists(deleted_at)") & attr_eq("version", current["version"]),
        )
        for blocker_id in current.get("blocked_by") or []:
            tx.delete(keys.task_dependency_key(ws, blocker_id, task_id))
        if current.get("story_id"):
            tx.delete(keys.story_task_key(ws, current["story_id"], task_id))
        task_indexes.add_writes(tx, ws, current, None)
        audit.record(tx, ws, access.actor_id, "task.deleted", "task", task_id, request_id)
        try:
            commit(access, tx)
        except TransactionFailed:
            continue  # deleted meanwhile (404 on the re-read) or changed: read it again
        return
    raise Conflict(f"task {task_id} kept changing while it was being deleted; retry")


# --- review workflow ------------------------------------------------------------------------------
def _transition(
    access: Access,
    task_id: str,
    *,
    verb: str,
    allowed_from: Sequence[TaskStatus],
    to: TaskStatus,
    action: str,
    request_id: str,
    extra: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
    also: Callable[[Transaction, Item], None] | None = None,
    redacted: bool = False,
) -> Item:
    """Move a task between statuses with one conditional write (status and version unchanged since
    it was read) and its audit row in the same transaction; `also` adds writes that belong with the
    move (it gets the task as moved). A write that loses to another change of status is refused
    with `current_status`; one that loses only to an edit of other fields is retried on the fresh
    item. `redacted`: `extra` is an agent's text, redacted with the workspace's secrets (read with
    the task)."""
    ws = access.workspace_id
    for _attempt in range(_TRANSITION_ATTEMPTS):
        if redacted:
            current, known = _load_live_with_secrets(ws, task_id)
            extra = redact_value(extra or {}, known)
        else:
            current = load_live(ws, task_id)
        status = current["status"]
        if status not in allowed_from:
            allowed = " or ".join(s.value for s in allowed_from)
            raise InvalidTransition(
                f"cannot {verb} task {task_id}: it is {status}, not {allowed}", current_status=status
            )
        at = iso()
        remove: list[str] = []
        changes: dict[str, Any] = {**(extra or {}), "status": to, "updated_at": at, "version": current["version"] + 1}
        changes.update(_status_side_effects(current, to, at, remove))
        changes[keys.GSI1PK] = keys.task_status_gsi(ws, to)
        moved = {k: v for k, v in {**current, **changes}.items() if k not in remove}
        tx = access.transaction()
        tx.update(
            keys.task_key(ws, task_id),
            Update(set=changes, remove=remove),
            exists()
            & Expr("attribute_not_exists(deleted_at)")
            & attr_eq("status", status)
            & attr_eq("version", current["version"]),
        )
        task_indexes.add_writes(tx, ws, current, moved)
        audit.record(
            tx, ws, access.actor_id, action, "task", task_id, request_id, {"from": status, "to": to, **(details or {})}
        )
        if also is not None:
            also(tx, moved)
        try:
            commit(access, tx)
        except TransactionFailed:
            continue  # re-read: a changed status is refused above, a changed version is retried
        return moved
    raise Conflict(f"task {task_id} kept changing while it was being updated; retry")


def submit_review_report(access: Access, task_id: str, body: ReviewReportCreate, request_id: str = "") -> Task:
    """An in_progress task moves to review with its report; a task already in review gets the new report."""
    report = {
        **body.model_dump(exclude_none=True),
        "submitted_by": access.actor_id,
        "submitted_at": iso(),
    }
    extra: dict[str, Any] = {"review_report": report}
    if body.commits:
        extra["commits"] = body.commits
    item = _transition(
        access,
        task_id,
        verb="submit a review report for",
        allowed_from=(TaskStatus.in_progress, TaskStatus.review),
        to=TaskStatus.review,
        action="task.review_reported",
        request_id=request_id,
        extra=extra,
        redacted=True,
    )
    return _to_task(item)


def approve_task(access: Access, task_id: str, request_id: str = "") -> Task:
    """review → done; the tasks that were waiting only on this one are unblocked."""
    item = _approve(access, task_id, None, request_id)
    unblock_children(access, item, request_id)
    return _to_task(item)


def _approve(access: Access, task_id: str, comment: str | None, request_id: str) -> Item:
    extra: dict[str, Any] = {"reviewed_by": access.actor_id, "reviewed_at": iso()}
    if comment:
        extra["review_comment"] = comment
    return _transition(
        access,
        task_id,
        verb="approve",
        allowed_from=(TaskStatus.review,),
        to=TaskStatus.done,
        action="task.approved",
        request_id=request_id,
        extra=extra,
    )


def reject_task(access: Access, task_id: str, reason: str, request_id: str = "") -> Task:
    """review → in_progress, keeping the reason for the assignee to act on. The rejection is also
    recorded as a failure of the task (Toban), in the same transaction."""

    def record_failure(tx: Transaction, task: Item) -> None:
        failure = FailureCreate(
            title=f"Rejected in review: {task['title']}"[:300],
            cause=reason,
            task_id=task_id,
            agent=agent_of(task),
        )
        knowledge.add_failure_writes(tx, access, failure, request_id, source="review_rejection")

    item = _transition(
        access,
        task_id,
        verb="reject",
        allowed_from=(TaskStatus.review,),
        to=TaskStatus.in_progress,
        action="task.rejected",
        request_id=request_id,
        extra={"rejection_reason": reason, "reviewed_by": access.actor_id, "reviewed_at": iso()},
        details={"reason": reason[:500]},
        also=record_failure,
    )
    return _to_task(item)


def review_action(access: Access, task_id: str, body: ReviewAction, request_id: str = "") -> ReviewActionResult:
    if body.action == ReviewActionKind.approve:
        item = _approve(access, task_id, body.comment, request_id)
        children = unblock_children(access, item, request_id)
        return ReviewActionResult(
            action=body.action, status=TaskStatus.done, task=_to_task(item), unblocked_children=children
        )
    original, fix = _request_fix(access, task_id, body, request_id)
    return ReviewActionResult(action=body.action, status=TaskStatus.review, task=original, fix_task=fix)


def _request_fix(access: Access, task_id: str, body: ReviewAction, request_id: str) -> tuple[Task, Task]:
    """A `Fix: <title>` sub-task for the original assignee; the reviewed task stays in review."""
    ws = access.workspace_id
    current = load_live(ws, task_id)
    if current["status"] != TaskStatus.review:
        raise InvalidTransition(
            f"cannot request a fix for task {task_id}: it is {current['status']}, not review",
            current_status=current["status"],
        )
    at = iso()
    fields: dict[str, Any] = {
        "title": f"Fix: {current['title']}"[:300],
        "description": body.fix_description or body.comment or "",
        "priority": current["priority"],
        "status": TaskStatus.todo,
        "type": TaskType.bug,
        "parent_task": task_id,
    }
    for inherited in ("owner", "assignee", "sprint", "story_id", "branch", "target_repo"):
        if current.get(inherited) is not None:
            fields[inherited] = current[inherited]
    fix = new_task_item(access, fields, at)
    changes: dict[str, Any] = {
        "reviewed_by": access.actor_id,
        "reviewed_at": at,
        "updated_at": at,
        "version": current["version"] + 1,
    }
    if body.comment:
        changes["review_comment"] = body.comment
    tx = access.transaction()
    task_index = len(tx.operations)
    tx.update(
        keys.task_key(ws, task_id),
        Update(set=changes),
        exists()
        & Expr("attribute_not_exists(deleted_at)")
        & attr_eq("status", TaskStatus.review.value)
        & attr_eq("version", current["version"]),
    )
    add_task_writes(tx, ws, fix)
    task_indexes.add_writes(tx, ws, None, fix)
    audit.record(tx, ws, access.actor_id, "task.fix_requested", "task", task_id, request_id, {"fix_task": fix["id"]})
    audit.record(tx, ws, access.actor_id, "task.created", "task", fix["id"], request_id, {"title": fix["title"]})
    try:
        commit(access, tx)
    except TransactionFailed as failure:
        now = get_store().get(keys.task_key(ws, task_id)) or {}
        if failure.failed_index() == task_index and now.get("status") not in (None, TaskStatus.review):
            raise InvalidTransition(
                f"cannot request a fix for task {task_id}: it is {now['status']}, not review",
                current_status=now["status"],
            ) from failure
        raise Conflict(f"task {task_id} changed while the fix was being requested; retry") from failure
    return _to_task({**current, **changes}), _to_task(fix)


def _waiting_on(ws: str, task: Item) -> list[str]:
    """Ids of the tasks that list `task` in their blocked_by (link items), then those it `blocks`."""
    ids: list[str] = []
    start: dict[str, Any] | None = None
    while len(ids) < MAX_CHILDREN:
        page = get_store().query(
            keys.ws_pk(ws),
            sk_prefix=keys.task_dependency_prefix(task["id"]),
            limit=min(_BATCH, MAX_CHILDREN - len(ids)),
            start_key=start,
            consistent=True,
        )
        ids += [link["task_id"] for link in page.items]
        start = page.last_key
        if not start:
            break
    return list(dict.fromkeys(ids + list(task.get("blocks") or [])))


def unblock_children(access: Access, task: Item, request_id: str = "") -> list[TaskSummary]:
    """After `task` is done: the open tasks waiting on it whose blockers are now all done. Those in
    `blocked` move to todo, each with its own conditional write; one changed meanwhile is left alone."""
    ws = access.workspace_id
    children = [c for c in get_tasks(ws, _waiting_on(ws, task)).values() if c["status"] != TaskStatus.done]
    blockers = get_tasks(ws, [b for c in children for b in c.get("blocked_by") or [] if b != task["id"]])
    unblocked: list[TaskSummary] = []
    for child in children:
        if not _blockers_done(child, blockers, done_ids=[task["id"]]):
            continue
        if child["status"] == TaskStatus.blocked:
            try:
                child = _transition(
                    access,
                    child["id"],
                    verb="unblock",
                    allowed_from=(TaskStatus.blocked,),
                    to=TaskStatus.todo,
                    action="task.unblocked",
                    request_id=request_id,
                    details={"by": task["id"]},
                )
            except (InvalidTransition, Conflict, NotFound):
                fresh = get_tasks(ws, [child["id"]]).get(child["id"])
                if fresh is None:
                    continue
                child = fresh
        unblocked.append(summarize(child))
    return unblocked

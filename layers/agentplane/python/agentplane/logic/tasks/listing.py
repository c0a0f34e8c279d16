"""Reading tasks: one task, the list with its filters, and `next` (an agent's next free task)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agentplane import keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.accounts import UserItem
from agentplane.entities.tasks import TaskFilter, live_tasks, tasks_in_status, tasks_of_sprint, todo_of_agent
from agentplane.errors import BadRequest
from agentplane.logic.tasks.dependencies import blockers_done
from agentplane.logic.tasks.reads import live_tasks_by_id, load_live
from agentplane.models.tasks import Task, TaskStatus
from agentplane.store import get_store

# `next=true` looks at most at this many of the agent's todo tasks, highest priority first.
NEXT_READ_BUDGET = 1000
_NEXT_PAGE = 50


def get_task(access: Access, task_id: str) -> Task:
    return load_live(access.workspace_id, task_id).to_model()


def resolve_assignee(access: Access, assignee: str | None) -> str:
    """`me` (or nothing) is the caller: an agent key's agent name, else the person's username."""
    if assignee and assignee != "me":
        return assignee
    principal = access.principal
    if principal.agent_name:
        return principal.agent_name
    if principal.user_id:
        profile = get_store().read(UserItem, keys.user_key(principal.user_id), consistent=False)
        return str((profile.username if profile else None) or principal.user_id)
    return principal.id


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
    """In creation order. The narrowest index partition answers: the sprint's when `sprint` is
    given, else the status's, else all live tasks; the other filters narrow it, reading on until
    the page is full (bounded; the cursor resumes)."""
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
    where = TaskFilter(owner=owner, assignee=assignee, priority=priority, text=q or None)
    if sprint is not None:
        page = tasks_of_sprint(ws, sprint, where=replace(where, status=status), limit=limit, start=start)
    elif status is not None:
        page = tasks_in_status(ws, status, where=where, limit=limit, start=start)
    else:
        page = live_tasks(ws, where=where, limit=limit, start=start)
    return [task.to_model() for task in page.items], encode_cursor(page.last_key, scope, query)


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
    their blockers are two batch reads, and the first free task wins. At most NEXT_READ_BUDGET
    links are looked at."""
    ws = access.workspace_id
    who = resolve_assignee(access, assignee)
    text = q.strip().lower() if q and q.strip() else None
    start: dict[str, Any] | None = None
    read = 0
    while read < NEXT_READ_BUDGET:
        page = todo_of_agent(ws, who, priority=priority, limit=_NEXT_PAGE, start=start)
        read += _NEXT_PAGE
        found = live_tasks_by_id(ws, [link.task_id for link in page.items])
        candidates = [
            task
            for task in (found.get(link.task_id) for link in page.items)
            if task is not None
            and task.status == TaskStatus.todo
            and task.agent == who
            and (sprint is None or task.sprint == sprint)
            and (owner is None or task.owner == owner)
            and (text is None or text in (task.search_text or ""))
        ]
        blockers = live_tasks_by_id(ws, [b for task in candidates for b in task.blocked_by or []])
        for task in candidates:
            if blockers_done(task, blockers):
                return task.to_model()
        start = page.last_key
        if not start:
            break
    return None

"""Tasks, what points at them, stories and user tasks.

A live task sits in three indexes: GSI1 by status, GSI2 all live tasks in creation order and,
while it is planned into a sprint, GSI3 by sprint; a deleted task keeps its item (for its audit
trail) and leaves them all. Besides its own item, a task implies items that only point at it,
written and removed in the task's own transaction (`links()`):
- a link per blocker (`TaskDependencyItem`): the tasks waiting on a task are one Query;
- a link to its story (`StoryTaskItem`): a story's tasks are one Query;
- while it is todo and has an agent, a link in that agent's todo queue, sorted by priority
  (`AgentTodoItem`): `next=true` reads an agent's work highest priority first;
- while it is done, a link by completion time (`TaskDoneItem`): one day's completed tasks;
and its share of the counters of `entities.task_counters` (`tallies()`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

from pynamodb.attributes import UnicodeAttribute, VersionAttribute

from agentplane import keys
from agentplane.entities.base import Entity, Keys, ListDocument, MapDocument, number, raw_item
from agentplane.entities.patterns import access_pattern
from agentplane.entities.task_counters import UNASSIGNED, CounterItem, SprintStatsItem, TaskDayItem, TaskTotalsItem
from agentplane.ids import parse_iso
from agentplane.models.tasks import Story, Task, TaskSummary, UserTask
from agentplane.store import EntityPage, Item, QuerySpec, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition

_TODO, _DONE = "todo", "done"


class TaskItem(Entity[Task], discriminator="task"):
    workspace_id = UnicodeAttribute()
    id = UnicodeAttribute()
    title = UnicodeAttribute()
    description = UnicodeAttribute(default="")
    owner = UnicodeAttribute(null=True)
    assignee = UnicodeAttribute(null=True)
    priority = UnicodeAttribute()
    status = UnicodeAttribute()
    type = UnicodeAttribute()
    sprint = number(null=True)
    branch = UnicodeAttribute(null=True)
    labels = ListDocument(null=True)
    blocks = ListDocument(null=True)
    blocked_by = ListDocument(null=True)
    context_notes = UnicodeAttribute(null=True)
    target_repo = UnicodeAttribute(null=True)
    parent_task = UnicodeAttribute(null=True)
    story_id = UnicodeAttribute(null=True)
    story_points = number(null=True)
    commits = UnicodeAttribute(null=True)
    review_comment = UnicodeAttribute(null=True)
    review_report = MapDocument(null=True)
    rejection_reason = UnicodeAttribute(null=True)
    reviewed_by = UnicodeAttribute(null=True)
    reviewed_at = UnicodeAttribute(null=True)
    started_at = UnicodeAttribute(null=True)
    completed_at = UnicodeAttribute(null=True)
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    deleted_at = UnicodeAttribute(null=True)  # soft delete: the item stays, out of every index
    search_text = UnicodeAttribute(null=True)  # lower-cased title and description, for `q`
    version = VersionAttribute()

    internal = frozenset({"search_text", "deleted_at"})

    def where(self) -> Keys:
        key = keys.task_key(self.workspace_id, self.id)
        if not self.is_live:
            return Keys(key)
        return Keys(
            key,
            gsi1=(keys.task_status_gsi(self.workspace_id, self.status), self.id),
            gsi2=(keys.task_list_gsi(self.workspace_id), self.id),
            gsi3=None if self.sprint is None else (keys.task_sprint_gsi(self.workspace_id, int(self.sprint)), self.id),
        )

    derived = ("search_text",)

    def derive(self) -> None:
        self.search_text = f"{self.title}\n{self.description or ''}".lower()

    @classmethod
    def live(cls) -> Condition:
        """The task has not been deleted (every change of a task is guarded by it)."""
        return cls.deleted_at.does_not_exist()

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> TaskItem:
        """A task from the plain item the table holds (code that still passes dicts)."""
        return cls.from_raw_data(raw_item(item))

    def copy(self) -> TaskItem:
        """This task as it is now, apart from later changes to it (the `before` of a change)."""
        return type(self).from_raw_data(self.serialize(null_check=False))

    def to_summary(self) -> TaskSummary:
        return TaskSummary.model_validate(self.fields())

    # --- what the task says -----------------------------------------------------------------
    @property
    def is_live(self) -> bool:
        return not self.deleted_at

    @property
    def agent(self) -> str | None:
        """Whose work the task is: its assignee, else its owner (Toban names the agent `owner`)."""
        return self.assignee or self.owner or None

    @property
    def points(self) -> int:
        return int(self.story_points or 0)

    @property
    def done_at(self) -> str | None:
        """When a done task was finished (its last update for tasks stored before completed_at)."""
        if self.status != _DONE:
            return None
        return self.completed_at or self.updated_at or None

    def reference_links(self) -> list[Entity]:
        """The links of what the task refers to: each blocker, its story."""
        if not self.is_live:
            return []
        ws = self.workspace_id
        links: list[Entity] = [
            TaskDependencyItem(workspace_id=ws, blocker_id=blocker, task_id=self.id)
            for blocker in self.blocked_by or []
        ]
        if self.story_id:
            links.append(StoryTaskItem(workspace_id=ws, story_id=self.story_id, task_id=self.id))
        return links

    def listing_links(self) -> list[Entity]:
        """The links that list the task: its agent's todo queue, the done tasks by time."""
        if not self.is_live:
            return []
        links: list[Entity] = []
        if self.status == _TODO and self.agent:
            links.append(
                AgentTodoItem(workspace_id=self.workspace_id, agent=self.agent, priority=self.priority, task_id=self.id)
            )
        if self.done_at:
            links.append(TaskDoneItem(workspace_id=self.workspace_id, completed_at=self.done_at, task_id=self.id))
        return links

    def tallies(self) -> dict[tuple[str, str], Tally]:
        """What this version of the task adds to each counter item (nothing once deleted)."""
        out: dict[tuple[str, str], Tally] = {}
        if not self.is_live:
            return out
        ws = self.workspace_id

        def tally(counter: CounterItem) -> Counter[str]:
            counter.stamp()
            return out.setdefault((counter.PK, counter.SK), Tally(counter, Counter())).counts

        points, status, agent, done_at = self.points, self.status, self.agent or UNASSIGNED, self.done_at
        if self.sprint is not None:
            stats = tally(SprintStatsItem(workspace_id=ws, sprint=int(self.sprint)))
            stats.update({"tasks": 1, "points": points, f"status#{status}#tasks": 1, f"status#{status}#points": points})
            stats.update({f"agent#{agent}#tasks": 1, f"agent#{agent}#points": points})
            stats.update({f"type#{self.type}": 1, f"priority#{self.priority}": 1})
            if done_at:
                day = _utc(done_at)[0]
                stats.update({f"agent#{agent}#done": 1, f"agent#{agent}#done_points": points})
                stats.update({f"day#{day}#done": 1, f"day#{day}#done_points": points})
        for moment, measure in ((self.created_at, "created"), (self.started_at, "started")):
            if moment:
                day, hour = _utc(moment)
                tally(TaskDayItem(workspace_id=ws, date=day)).update({measure: 1, f"hour#{hour:02d}#{measure}": 1})
        if done_at:
            day, hour = _utc(done_at)
            tally(TaskDayItem(workspace_id=ws, date=day)).update(
                {
                    "done": 1,
                    "done_points": points,
                    f"hour#{hour:02d}#done": 1,
                    f"type#{self.type}": 1,
                    f"agent#{agent}": 1,
                }
            )
            tally(TaskTotalsItem(workspace_id=ws))[f"done#{day[:7]}"] += 1
        return out


@dataclass
class Tally:
    """A counter item and how much one task adds to each of its counts."""

    counter: CounterItem
    counts: Counter[str]


def _utc(timestamp: str) -> tuple[str, int]:
    moment = parse_iso(timestamp).astimezone(UTC)
    return moment.date().isoformat(), moment.hour


class TaskDependencyItem(Entity, discriminator="task_dependency"):
    """`task_id` lists `blocker_id` in its blocked_by."""

    workspace_id = UnicodeAttribute()
    blocker_id = UnicodeAttribute()
    task_id = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(keys.task_dependency_key(self.workspace_id, self.blocker_id, self.task_id))


class StoryTaskItem(Entity, discriminator="story_task"):
    workspace_id = UnicodeAttribute()
    story_id = UnicodeAttribute()
    task_id = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(keys.story_task_key(self.workspace_id, self.story_id, self.task_id))


class AgentTodoItem(Entity, discriminator="agent_todo"):
    workspace_id = UnicodeAttribute()
    agent = UnicodeAttribute()
    priority = UnicodeAttribute()
    task_id = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(keys.agent_todo_key(self.workspace_id, self.agent, self.priority, self.task_id))


class TaskDoneItem(Entity, discriminator="task_done"):
    workspace_id = UnicodeAttribute()
    completed_at = UnicodeAttribute()
    task_id = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(keys.task_done_key(self.workspace_id, self.completed_at, self.task_id))


class StoryItem(Entity[Story], discriminator="story"):
    workspace_id = UnicodeAttribute()
    id = UnicodeAttribute()
    title = UnicodeAttribute()
    description = UnicodeAttribute(default="")
    sprint = number(null=True)
    priority = UnicodeAttribute()
    status = UnicodeAttribute()
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()

    def where(self) -> Keys:
        return Keys(keys.story_key(self.workspace_id, self.id))

    def to_model(self, tasks: list[Task] | None = None) -> Story:
        return Story.model_validate({**self.fields(), "tasks": tasks})


class UserTaskItem(Entity[UserTask], discriminator="user_task"):
    workspace_id = UnicodeAttribute()
    id = UnicodeAttribute()
    title = UnicodeAttribute()
    description = UnicodeAttribute(default="")
    status = UnicodeAttribute()
    related_tasks = ListDocument(null=True)
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    completed_at = UnicodeAttribute(null=True)
    version = VersionAttribute()

    def where(self) -> Keys:
        return Keys(keys.user_task_key(self.workspace_id, self.id))


# --- reading tasks --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskFilter:
    """What a list of tasks keeps of an index partition (None: any); `text` is looked for in the
    title and description, in any case."""

    status: str | None = None
    owner: str | None = None
    assignee: str | None = None
    priority: str | None = None
    text: str | None = None

    def condition(self) -> Condition | None:
        parts: list[Condition] = []
        for name in ("status", "owner", "assignee", "priority"):
            value = getattr(self, name)
            if value is not None:
                parts.append(getattr(TaskItem, name) == value)
        if self.text:
            parts.append(TaskItem.search_text.contains(self.text.lower()))
        return _all_of(parts)


def _all_of(parts: Iterable[Condition]) -> Condition | None:
    condition: Condition | None = None
    for part in parts:
        condition = part if condition is None else condition & part
    return condition


@access_pattern(TaskItem, partition=keys.task_list_gsi, index=keys.GSI2)
def live_tasks(ws_id: str, *, where: TaskFilter, limit: int, start: dict[str, Any] | None) -> EntityPage[TaskItem]:
    """A page of a workspace's live tasks in creation order, kept by `where` (a filtered page
    reads on until it is full, within the list read budget)."""
    spec = QuerySpec(keys.task_list_gsi(ws_id), index=keys.GSI2, filter=where.condition())
    return get_store().fill(TaskItem, spec, limit=limit, start=start)


@access_pattern(TaskItem, partition=keys.task_status_gsi, index=keys.GSI1)
def tasks_in_status(
    ws_id: str, status: str, *, where: TaskFilter, limit: int, start: dict[str, Any] | None
) -> EntityPage[TaskItem]:
    """A page of a workspace's live tasks in one status, in creation order, kept by `where`."""
    spec = QuerySpec(keys.task_status_gsi(ws_id, status), index=keys.GSI1, filter=where.condition())
    return get_store().fill(TaskItem, spec, limit=limit, start=start)


@access_pattern(TaskItem, partition=keys.task_sprint_gsi, index=keys.GSI3)
def tasks_of_sprint(
    ws_id: str, sprint: int, *, where: TaskFilter, limit: int, start: dict[str, Any] | None
) -> EntityPage[TaskItem]:
    """A page of the live tasks planned into one sprint, in creation order, kept by `where`."""
    spec = QuerySpec(keys.task_sprint_gsi(ws_id, sprint), index=keys.GSI3, filter=where.condition())
    return get_store().fill(TaskItem, spec, limit=limit, start=start)


# Tasks read per Query when a whole partition is read up to a budget.
_BULK_ROUND = 200


@access_pattern(TaskItem, partition=keys.task_status_gsi, index=keys.GSI1, sort="all, up to a budget")
def tasks_in_status_up_to(
    ws_id: str, status: str, *, budget: int, newest_first: bool = False, completed_since: str | None = None
) -> tuple[list[TaskItem], bool]:
    """The live tasks of one status, reading at most `budget` of them (newest first if asked;
    `completed_since`: only those completed since then), and whether the budget ran out first."""
    condition = None if completed_since is None else TaskItem.completed_at >= completed_since
    spec = QuerySpec(keys.task_status_gsi(ws_id, status), index=keys.GSI1, filter=condition, newest_first=newest_first)
    found: list[TaskItem] = []
    start: dict[str, Any] | None = None
    read = 0
    while read < budget:
        step = min(_BULK_ROUND, budget - read)
        page = get_store().select(TaskItem, spec, limit=step, start=start)
        found += page.items
        read += step
        start = page.last_key
        if start is None:
            return found, False
    return found, True


@access_pattern(TaskItem, partition=keys.task_sprint_gsi, index=keys.GSI3, sort="all, up to a cap")
def tasks_of_sprint_up_to(ws_id: str, sprint: int, *, cap: int, page: int) -> tuple[list[TaskItem], bool]:
    """The live tasks of one sprint, at most `cap` of them read `page` at a time, and whether
    more exist."""
    spec = QuerySpec(keys.task_sprint_gsi(ws_id, sprint), index=keys.GSI3)
    found: list[TaskItem] = []
    start: dict[str, Any] | None = None
    while True:
        listed = get_store().select(TaskItem, spec, limit=min(page, cap - len(found)), start=start)
        found += [task for task in listed.items if task.is_live]
        start = listed.last_key
        if start is None:
            return found, False
        if len(found) >= cap:
            return found, bool(get_store().select(TaskItem, spec, limit=1, start=start).items)


# Dependency links read per Query.
_LINKS_ROUND = 100


@access_pattern(TaskDependencyItem, partition=keys.ws_pk, sort="prefix TASKDEP#{blocker_id}#")
def tasks_waiting_on(ws_id: str, blocker_id: str, *, limit: int) -> list[str]:
    """The ids of the tasks that list a task in their blocked_by (at most `limit`, oldest link
    first), strongly consistent."""
    spec = QuerySpec(keys.ws_pk(ws_id), sk_prefix=keys.task_dependency_prefix(blocker_id), consistent=True)
    ids: list[str] = []
    start: dict[str, Any] | None = None
    while len(ids) < limit:
        page = get_store().select(TaskDependencyItem, spec, limit=min(_LINKS_ROUND, limit - len(ids)), start=start)
        ids += [link.task_id for link in page.items]
        start = page.last_key
        if not start:
            break
    return ids


@access_pattern(AgentTodoItem, partition=keys.agent_todo_pk, sort="prefix {priority}# when given")
def todo_of_agent(
    ws_id: str, agent: str, *, priority: str | None, limit: int, start: dict[str, Any] | None
) -> EntityPage[AgentTodoItem]:
    """A page of an agent's todo tasks, highest priority then oldest first (`priority`: only
    that one), strongly consistent."""
    prefix = keys.agent_todo_prefix(priority) if priority else None
    spec = QuerySpec(keys.agent_todo_pk(ws_id, agent), sk_prefix=prefix, consistent=True)
    return get_store().select(AgentTodoItem, spec, limit=limit, start=start)


@access_pattern(TaskDoneItem, partition=keys.task_done_pk, sort="prefix {YYYY-MM-DD}T")
def tasks_done_on(ws_id: str, day: str, *, limit: int) -> EntityPage[TaskDoneItem]:
    """The tasks completed on one UTC day, in the order they were done, strongly consistent."""
    spec = QuerySpec(keys.task_done_pk(ws_id), sk_prefix=keys.task_done_day_prefix(day), consistent=True)
    return get_store().select(TaskDoneItem, spec, limit=limit)


@access_pattern(StoryTaskItem, partition=keys.ws_pk, sort="prefix STORYTASK#{story_id}#")
def tasks_of_story(
    ws_id: str, story_id: str, *, limit: int, start: dict[str, Any] | None = None, consistent: bool = False
) -> EntityPage[StoryTaskItem]:
    """A page of a story's task links, in task creation order."""
    spec = QuerySpec(keys.ws_pk(ws_id), sk_prefix=keys.story_task_prefix(story_id), consistent=consistent)
    return get_store().select(StoryTaskItem, spec, limit=limit, start=start)


@access_pattern(StoryItem, partition=keys.ws_pk, sort="prefix STORY#")
def stories_of_workspace(
    ws_id: str, *, status: str | None, sprint: int | None, limit: int, start: dict[str, Any] | None
) -> EntityPage[StoryItem]:
    """One Query of a workspace's stories in creation order, kept by status and sprint when given
    (a filtered page may come back short, with a cursor)."""
    parts = [StoryItem.status == status] if status is not None else []
    if sprint is not None:
        parts.append(StoryItem.sprint == sprint)
    spec = QuerySpec(keys.ws_pk(ws_id), sk_prefix=keys.STORY_PREFIX, filter=_all_of(parts))
    return get_store().select(StoryItem, spec, limit=limit, start=start)


@access_pattern(UserTaskItem, partition=keys.ws_pk, sort="prefix USERTASK#")
def user_tasks_of_workspace(
    ws_id: str, *, status: str | None = None, not_status: str | None = None, limit: int, start: dict[str, Any] | None
) -> EntityPage[UserTaskItem]:
    """One Query of a workspace's user tasks in creation order: those in `status`, or not in
    `not_status`, when given (a filtered page may come back short, with a cursor)."""
    parts = [UserTaskItem.status == status] if status is not None else []
    if not_status is not None:
        parts.append(UserTaskItem.status != not_status)
    spec = QuerySpec(keys.ws_pk(ws_id), sk_prefix=keys.USER_TASK_PREFIX, filter=_all_of(parts))
    return get_store().select(UserTaskItem, spec, limit=limit, start=start)


@access_pattern(TaskItem, partition=keys.task_status_gsi, index=keys.GSI1, sort="all, the agent's own")
def open_tasks_of_agent(
    ws_id: str, name: str, status: str, *, limit: int, start: dict[str, Any] | None
) -> tuple[list[Item], dict[str, Any] | None]:
    """One page of a status's tasks of which the agent is the assignee or the owner (one Query
    of the tasks' status index, filtered)."""
    mine = (TaskItem.assignee == name) | (TaskItem.owner == name)
    spec = QuerySpec(keys.task_status_gsi(ws_id, status), index=keys.GSI1, filter=mine)
    page = get_store().select(TaskItem, spec, limit=limit, start=start)
    return [task.as_item() for task in page.items], page.last_key

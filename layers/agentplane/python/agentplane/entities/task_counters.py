"""The counters each task's own transaction moves (DynamoDB ADD, so concurrent changes of different
tasks add up), and what they say when read:

- per sprint (`SprintStatsItem`): tasks and points in all, per status, per agent (assignee, else
  owner, else `unassigned`), per type and per priority, and done tasks and points per completion
  day (UTC). Sprint analytics, the burndown, the review summary and velocity read it.
- per UTC day of the workspace (`TaskDayItem`): tasks created, started (first moved to
  in_progress) and done, done points, the same per hour, and the day's done tasks per type and
  per agent. Daily analytics reads a window of these.
- per workspace (`TaskTotalsItem`): done tasks per UTC month, so a running total of completions
  is one read.

A count's name is data (`status#todo#tasks`, `day#2026-12-01#done`, `agent#builder#points`), so
no attribute declares it: a counter item keeps every number its stored item holds beyond its
declared attributes (`counts`), and a write adds to counts by name.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pynamodb.attributes import UnicodeAttribute
from pynamodb.expressions.operand import Path

from agentplane import keys
from agentplane.entities.base import Entity, Keys, number
from agentplane.entities.patterns import access_pattern
from agentplane.store import QuerySpec, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.update import Action

UNASSIGNED = "unassigned"


class CounterItem(Entity):
    """An item of named counts: `counts` as read, `add_counts(deltas)` the actions adding to them (the
    item is created by its first count, see `Transaction.upsert`)."""

    workspace_id = UnicodeAttribute()

    @property
    def counts(self) -> dict[str, int]:
        return dict(getattr(self, "_counts", {}))

    def read_undeclared(self, raw: Mapping[str, Any]) -> None:
        declared = {attribute.attr_name for attribute in self.get_attributes().values()}
        self._counts = {name: int(value["N"]) for name, value in raw.items() if name not in declared and "N" in value}

    def add_counts(self, deltas: Mapping[str, int]) -> list[Action]:
        """Actions that set the item's own attributes and add `deltas` to its counts (a name with
        a dot is one name, not a path into a map)."""
        attributes = self.get_attributes()
        own = [attributes[name].set(value) for name, value in self.fields().items()]
        return [*own, *(Path([name]).add(delta) for name, delta in sorted(deltas.items()))]


class SprintStatsItem(CounterItem, discriminator="sprint_stats"):
    sprint = number()

    def where(self) -> Keys:
        return Keys(keys.sprint_stats_key(self.workspace_id, int(self.sprint)))


class TaskDayItem(CounterItem, discriminator="task_day_stats"):
    date = UnicodeAttribute()  # YYYY-MM-DD (UTC)

    def where(self) -> Keys:
        return Keys(keys.task_day_key(self.workspace_id, self.date))


class TaskTotalsItem(CounterItem, discriminator="task_totals"):
    def where(self) -> Keys:
        return Keys(keys.task_totals_key(self.workspace_id))


# --- reading the counters -------------------------------------------------------------------------


@dataclass
class AgentFigures:
    tasks: int = 0
    points: int = 0
    done: int = 0
    done_points: int = 0


@dataclass
class SprintFigures:
    """One sprint's counters, as the sprint stats item holds them (zero counts left out)."""

    tasks: int = 0
    points: int = 0
    status_tasks: dict[str, int] = field(default_factory=dict)
    status_points: dict[str, int] = field(default_factory=dict)
    agents: dict[str, AgentFigures] = field(default_factory=dict)
    types: dict[str, int] = field(default_factory=dict)
    priorities: dict[str, int] = field(default_factory=dict)
    done_by_day: dict[str, tuple[int, int]] = field(default_factory=dict)


def sprint_figures(item: SprintStatsItem | None) -> SprintFigures:
    figures = SprintFigures()
    if item is None:
        return figures
    days: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for name, value in item.counts.items():
        kind, _, rest = name.partition("#")
        if not rest:
            if name == "tasks":
                figures.tasks = value
            elif name == "points":
                figures.points = value
            continue
        if kind == "type" and value:
            figures.types[rest] = value
        elif kind == "priority" and value:
            figures.priorities[rest] = value
        elif kind in ("status", "agent", "day"):
            subject, _, measure = rest.rpartition("#")
            if kind == "status":
                (figures.status_tasks if measure == "tasks" else figures.status_points)[subject] = value
            elif kind == "agent":
                setattr(figures.agents.setdefault(subject, AgentFigures()), measure, value)
            else:
                days[subject][0 if measure == "done" else 1] = value
    figures.agents = {name: row for name, row in figures.agents.items() if row.tasks}
    figures.done_by_day = {day: (n, p) for day, (n, p) in days.items() if n or p}
    return figures


@dataclass
class DayFigures:
    """One UTC day's counters of a workspace (hours 0-23)."""

    created: int = 0
    started: int = 0
    done: int = 0
    done_points: int = 0
    hourly: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))
    types: dict[str, int] = field(default_factory=dict)
    agents: dict[str, int] = field(default_factory=dict)

    def hour(self, hour: int) -> tuple[int, int, int]:
        """(created, started, done) in that hour."""
        created, started, done = self.hourly.get(f"{hour:02d}", [0, 0, 0])
        return created, started, done


_HOURLY_SLOT = {"created": 0, "started": 1, "done": 2}


def day_figures(item: TaskDayItem | None) -> DayFigures:
    figures = DayFigures()
    if item is None:
        return figures
    for name, value in item.counts.items():
        kind, _, rest = name.partition("#")
        if not rest:
            if name in ("created", "started", "done", "done_points"):
                setattr(figures, name, value)
        elif kind == "hour":
            hour, _, measure = rest.partition("#")
            if measure in _HOURLY_SLOT:
                figures.hourly[hour][_HOURLY_SLOT[measure]] = value
        elif kind == "type" and value:
            figures.types[rest] = value
        elif kind == "agent" and value:
            figures.agents[rest] = value
    return figures


def done_by_month(item: TaskTotalsItem | None) -> dict[str, int]:
    """Done tasks per month (`YYYY-MM`) from the workspace's totals item."""
    counts = item.counts if item is not None else {}
    return {name.split("#", 1)[1]: value for name, value in counts.items() if name.startswith("done#")}


# Day counters read per round; a window is at most 90 days plus the days of its first month.
_DAYS_ROUND = 200


@access_pattern(TaskDayItem, partition=keys.task_day_pk, sort="range {first} … {last} (YYYY-MM-DD)")
def days_between(ws_id: str, first: str, last: str) -> dict[str, TaskDayItem]:
    """A workspace's day counters from one UTC day to another (dates as YYYY-MM-DD), by date,
    strongly consistent."""
    spec = QuerySpec(keys.task_day_pk(ws_id), sk_between=(first, last), consistent=True)
    found: dict[str, TaskDayItem] = {}
    start: dict[str, Any] | None = None
    for _ in range(3):
        page = get_store().select(TaskDayItem, spec, limit=_DAYS_ROUND, start=start)
        found.update({item.date: item for item in page.items})
        start = page.last_key
        if start is None:
            break
    return found

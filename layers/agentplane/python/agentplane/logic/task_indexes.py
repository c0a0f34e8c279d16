"""What a task's own transaction keeps in step with the task item, besides its GSIs and its blocker
and story links (see logic/tasks.py).

Counters (DynamoDB ADD, so concurrent changes of different tasks add up):
- per sprint, `keys.sprint_stats_key`: tasks and points in all, per status, per agent (assignee,
  else owner, else `unassigned`), per type and per priority, and done tasks and points per
  completion day (UTC). Sprint analytics, the burndown, the review summary and velocity read it.
- per UTC day of the workspace, `keys.task_day_key`: tasks created, started (first moved to
  in_progress) and done, done points, the same per hour, and the day's done tasks per type and
  per agent. Daily analytics reads a window of these.
- per UTC month, `keys.task_totals_key`: done tasks, so a running total of completions is one read.

Links (items that only point at the task):
- each todo task with an agent under that agent, sorted by priority (`keys.agent_todo_key`):
  `next=true` reads an agent's todo work highest priority first;
- each done task by completion time (`keys.task_done_key`): one day's completed tasks.

Every figure is what the live tasks say now. A change subtracts what the task's old version
contributed and adds what its new version contributes, so a task moved to another sprint, reopened,
re-pointed, reassigned or deleted takes its counts with it. A done task counts on the day of its
`completed_at`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from agentplane import keys
from agentplane.ids import parse_iso
from agentplane.store import Transaction, Update

Item = dict[str, Any]
UNASSIGNED = "unassigned"
_DONE = "done"
_TODO = "todo"
_KeyTuple = tuple[str, str]


def agent_of(item: Item) -> str | None:
    """Whose work a task is: its assignee, else its owner (Toban names the agent `owner`)."""
    value = item.get("assignee") or item.get("owner")
    return str(value) if value else None


def points_of(item: Item) -> int:
    return int(item.get("story_points") or 0)


def completed_at(item: Item) -> str | None:
    """When a done task was finished (its last update for tasks written before completed_at existed)."""
    if item.get("status") != _DONE:
        return None
    value = item.get("completed_at") or item.get("updated_at")
    return str(value) if value else None


def _live(item: Item | None) -> bool:
    return item is not None and not item.get("deleted_at")


def _utc(timestamp: str) -> tuple[str, int]:
    moment = parse_iso(timestamp).astimezone(UTC)
    return moment.date().isoformat(), moment.hour


def _pair(key: keys.Key) -> _KeyTuple:
    return key["PK"], key["SK"]


# --- counters -------------------------------------------------------------------------------------


def _contributions(ws: str, item: Item | None) -> dict[_KeyTuple, Counter[str]]:
    """What one version of a task adds to each counter item (nothing when deleted or absent)."""
    out: dict[_KeyTuple, Counter[str]] = defaultdict(Counter)
    if item is None or not _live(item):
        return out
    points = points_of(item)
    status = str(item["status"])
    agent = agent_of(item) or UNASSIGNED
    done_at = completed_at(item)
    sprint = item.get("sprint")
    if sprint is not None:
        stats = out[_pair(keys.sprint_stats_key(ws, int(sprint)))]
        stats["tasks"] += 1
        stats["points"] += points
        stats[f"status#{status}#tasks"] += 1
        stats[f"status#{status}#points"] += points
        stats[f"agent#{agent}#tasks"] += 1
        stats[f"agent#{agent}#points"] += points
        stats[f"type#{item.get('type')}"] += 1
        stats[f"priority#{item.get('priority')}"] += 1
        if done_at:
            stats[f"agent#{agent}#done"] += 1
            stats[f"agent#{agent}#done_points"] += points
            done_day = _utc(done_at)[0]
            stats[f"day#{done_day}#done"] += 1
            stats[f"day#{done_day}#done_points"] += points
    if item.get("created_at"):
        day, hour = _utc(str(item["created_at"]))
        created = out[_pair(keys.task_day_key(ws, day))]
        created["created"] += 1
        created[f"hour#{hour:02d}#created"] += 1
    if item.get("started_at"):
        day, hour = _utc(str(item["started_at"]))
        started = out[_pair(keys.task_day_key(ws, day))]
        started["started"] += 1
        started[f"hour#{hour:02d}#started"] += 1
    if done_at:
        day, hour = _utc(done_at)
        done = out[_pair(keys.task_day_key(ws, day))]
        done["done"] += 1
        done["done_points"] += points
        done[f"hour#{hour:02d}#done"] += 1
        done[f"type#{item.get('type')}"] += 1
        done[f"agent#{agent}"] += 1
        out[_pair(keys.task_totals_key(ws))][f"done#{day[:7]}"] += 1
    return out


def _counter_fields(ws: str, pk: str, sk: str) -> Item:
    """The plain attributes a counter item carries besides its counts."""
    if pk == keys.task_day_pk(ws):
        return {keys.ENTITY: "task_day_stats", "workspace_id": ws, "date": sk}
    if sk.startswith(keys.SPRINT_STATS_PREFIX):
        return {keys.ENTITY: "sprint_stats", "workspace_id": ws, "sprint": int(sk.split("#", 1)[1])}
    return {keys.ENTITY: "task_totals", "workspace_id": ws}


def counter_deltas(ws: str, old: Item | None, new: Item | None) -> dict[_KeyTuple, dict[str, int]]:
    """Per counter item, how much each count moves when a task goes from `old` to `new`."""
    before, after = _contributions(ws, old), _contributions(ws, new)
    deltas: dict[_KeyTuple, dict[str, int]] = {}
    for item_key in sorted(set(before) | set(after)):
        names = set(before.get(item_key, {})) | set(after.get(item_key, {}))
        moved = {n: after[item_key][n] - before[item_key][n] for n in sorted(names)}
        moved = {n: d for n, d in moved.items() if d}
        if moved:
            deltas[item_key] = moved
    return deltas


# --- links ----------------------------------------------------------------------------------------


def _todo_link(ws: str, item: Item | None) -> Item | None:
    if item is None or not _live(item) or item.get("status") != _TODO:
        return None
    agent = agent_of(item)
    if agent is None:
        return None
    return {
        **keys.agent_todo_key(ws, agent, str(item["priority"]), str(item["id"])),
        keys.ENTITY: "agent_todo",
        "workspace_id": ws,
        "task_id": item["id"],
    }


def _done_link(ws: str, item: Item | None) -> Item | None:
    done_at = completed_at(item) if item is not None and _live(item) else None
    if item is None or done_at is None:
        return None
    return {
        **keys.task_done_key(ws, done_at, str(item["id"])),
        keys.ENTITY: "task_done",
        "workspace_id": ws,
        "task_id": item["id"],
    }


def add_writes(tx: Transaction, ws: str, old: Item | None, new: Item | None) -> None:
    """Add to `tx` everything that follows a task from `old` to `new` (None: not there)."""
    add_counter_writes(tx, ws, old, new)
    add_link_writes(tx, ws, old, new)


def add_counter_writes(tx: Transaction, ws: str, old: Item | None, new: Item | None) -> None:
    """The counter updates. Counter items are shared by many tasks, and a transaction may touch an
    item only once: a transaction changing several tasks must add their deltas up first."""
    for (pk, sk), moved in counter_deltas(ws, old, new).items():
        tx.update(keys.key(pk, sk), Update(set=_counter_fields(ws, pk, sk), add=moved))


def add_summed_counter_writes(tx: Transaction, ws: str, changes: list[tuple[Item | None, Item | None]]) -> None:
    """The counter updates of several task changes (old, new) written together: one update per
    counter item, carrying the sum of every change's deltas."""
    summed: dict[_KeyTuple, Counter[str]] = defaultdict(Counter)
    for old, new in changes:
        for item_key, moved in counter_deltas(ws, old, new).items():
            summed[item_key].update(moved)
    for (pk, sk), moved_sum in sorted(summed.items()):
        nonzero = {name: delta for name, delta in sorted(moved_sum.items()) if delta}
        if nonzero:
            tx.update(keys.key(pk, sk), Update(set=_counter_fields(ws, pk, sk), add=nonzero))


def add_link_writes(tx: Transaction, ws: str, old: Item | None, new: Item | None) -> None:
    """The task's own link items (its agent's todo queue, the done tasks by time)."""
    for link in (_todo_link, _done_link):
        was, now = link(ws, old), link(ws, new)
        was_key = (was[keys.PK], was[keys.SK]) if was else None
        now_key = (now[keys.PK], now[keys.SK]) if now else None
        if was_key == now_key:
            continue
        if was_key:
            tx.delete(keys.key(*was_key))
        if now:
            tx.put(now)


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


def sprint_figures(item: Item | None) -> SprintFigures:
    figures = SprintFigures()
    if not item:
        return figures
    days: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for name, value in item.items():
        if not isinstance(value, int) or isinstance(value, bool):
            continue
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


def day_figures(item: Item | None) -> DayFigures:
    figures = DayFigures()
    if not item:
        return figures
    for name, value in item.items():
        if not isinstance(value, int) or isinstance(value, bool):
            continue
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


def done_by_month(item: Item | None) -> dict[str, int]:
    """Done tasks per month (`YYYY-MM`) from the workspace's totals item."""
    return {
        name.split("#", 1)[1]: value
        for name, value in (item or {}).items()
        if name.startswith("done#") and isinstance(value, int) and not isinstance(value, bool)
    }

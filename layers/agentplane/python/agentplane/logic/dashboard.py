"""The dashboard (Orkosi's `/dashboard/*`): read-only views over the other families' items.

Every number comes from maintained counters or a bounded number of Queries, never a Scan:
- queue: the queue's counters (one BatchGetItem), its oldest pending job (one Query of the pending
  index) and its claimed jobs (the claimed index, at most READ_BUDGET);
- tasks: the tasks by status, at most READ_BUDGET tasks per status;
- agents: the workspace's agent items (`AGENT_PREFIX` under ws_pk), at most READ_BUDGET;
- runs: the active-run counter (`run_counter_key`), and statuses of the newest RUN_WINDOW runs;
- projects: the live project index, at most READ_BUDGET.
A count that reached its budget is reported with `capped: true` ("at least this many").

Agent efficiency reads the done tasks (newest created first, at most EFFICIENCY_BUDGET) whose
completed_at falls in the window, the in-progress tasks, and the runs created in the window (a key
range of the run index, runs ids being time-ordered). A task belongs to its assignee, else its
owner. Orkosi also reports tokens and cost per agent; this API meters no tokens per agent, so the
run outcomes stand in for them.

Queue health per agent: its todo tasks (count and wait since they were created), its in-progress
tasks, and the queue jobs claimed with its name as worker_id (and how many of those claims have
expired).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from agentplane import keys
from agentplane.access import Access
from agentplane.entities.agents import AgentItem, agents_of_workspace
from agentplane.entities.base import Entity
from agentplane.entities.projects import projects_of_workspace
from agentplane.entities.runs import RunCounterItem, RunItem, runs_created_between, runs_of_workspace
from agentplane.entities.tasks import TaskItem, tasks_in_status_up_to
from agentplane.ids import id_range, iso, parse_iso
from agentplane.ids import now as _system_now
from agentplane.logic import queue
from agentplane.models.dashboard import (
    AgentEfficiency,
    AgentEfficiencyReport,
    AgentQueueHealth,
    AgentQueueHealthReport,
    Count,
    DashboardStats,
    QueueHealth,
    RunCounts,
    StatusCounts,
)
from agentplane.models.tasks import TaskStatus
from agentplane.store import EntityPage, get_store

Item = dict[str, Any]

# The clock the dashboard's ages and windows are measured against (tests move it).
clock: Callable[[], datetime] = _system_now

E = TypeVar("E", bound=Entity)
READ_BUDGET = 1000
RUN_WINDOW = 500
EFFICIENCY_BUDGET = 2000
_PAGE = 200
UNASSIGNED = "unassigned"


def _read(
    page_of: Callable[[int, dict[str, Any] | None], EntityPage[E]], budget: int | None = None
) -> tuple[list[E], bool]:
    """Up to `budget` (default READ_BUDGET) items of another family's access pattern (agents,
    runs, projects: only their statuses and names count here), read a page of at most _PAGE at a
    time, and whether the budget ran out first."""
    budget = READ_BUDGET if budget is None else budget
    items: list[E] = []
    start: dict[str, Any] | None = None
    read = 0
    while read < budget:
        step = min(_PAGE, budget - read)
        page = page_of(step, start)
        items += page.items
        read += step
        start = page.last_key
        if start is None:
            return items, False
    return items, True


def _status_counts(items: Iterable[AgentItem | RunItem], capped: bool) -> StatusCounts:
    counted = Counter(str(item.status) for item in items)
    return StatusCounts(by_status=dict(counted), total=sum(counted.values()), capped=capped)


# ---------------------------------------------------------------------------------------- stats


def _tasks(ws: str, status: TaskStatus) -> tuple[list[TaskItem], bool]:
    return tasks_in_status_up_to(ws, status.value, budget=READ_BUDGET)


def _task_counts(ws: str) -> StatusCounts:
    by_status: dict[str, int] = {}
    capped = False
    for status in TaskStatus:
        items, cut = _tasks(ws, status)
        by_status[status.value] = len(items)
        capped = capped or cut
    return StatusCounts(by_status=by_status, total=sum(by_status.values()), capped=capped)


def _agent_items(ws: str) -> tuple[list[AgentItem], bool]:
    return _read(lambda limit, start: agents_of_workspace(ws, statuses=(), role=None, limit=limit, start=start))


def _run_counts(ws: str) -> RunCounts:
    items, capped = _read(
        lambda limit, start: runs_of_workspace(ws, status=None, agent=None, schedule_id=None, limit=limit, start=start),
        budget=RUN_WINDOW,
    )
    counted = _status_counts(items, capped)
    counter = get_store().read(RunCounterItem, keys.run_counter_key(ws), consistent=False)
    active = (counter.active if counter else None) or 0
    return RunCounts(**counted.model_dump(), active=max(0, int(active)), window=RUN_WINDOW)


def dashboard_stats(access: Access) -> DashboardStats:
    ws = access.workspace_id
    stats = DashboardStats(generated_at=iso(clock()))
    stats.tasks = _task_counts(ws)
    stats.pending_review = stats.tasks.by_status.get(TaskStatus.review.value, 0)
    stats.queue = queue.stats(ws)
    if access.may("agents:read"):
        stats.agents = _status_counts(*_agent_items(ws))
    if access.may("runs:read"):
        stats.runs = _run_counts(ws)
    if access.may("projects:read"):
        projects, capped = _read(lambda limit, start: projects_of_workspace(ws, limit=limit, start=start))
        stats.projects = Count(total=len(projects), capped=capped)
    return stats


# ----------------------------------------------------------------------------------- efficiency


def _agent_of(task: TaskItem) -> str:
    return task.agent or UNASSIGNED


def _seconds(start: str, end: str) -> float:
    return (parse_iso(end) - parse_iso(start)).total_seconds()


def agent_efficiency(access: Access, days: int) -> AgentEfficiencyReport:
    import statistics  # only the averages need it; kept out of the function's cold start

    ws = access.workspace_id
    access.require("tasks:read")
    at = clock()
    since = at - timedelta(days=days)
    done, capped = tasks_in_status_up_to(
        ws, TaskStatus.done.value, budget=EFFICIENCY_BUDGET, newest_first=True, completed_since=iso(since)
    )
    working, working_capped = _tasks(ws, TaskStatus.in_progress)
    cycles: dict[str, list[float]] = defaultdict(list)
    tasks_done: Counter[str] = Counter()
    for task in done:
        agent = _agent_of(task)
        tasks_done[agent] += 1
        if task.started_at and task.completed_at:
            cycles[agent].append(max(0.0, _seconds(task.started_at, task.completed_at)))
    in_progress = Counter(_agent_of(task) for task in working)
    agents = set(tasks_done) | set(in_progress)
    run_outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    tokens_used: Counter[str] = Counter()
    runs_visible = access.may("runs:read")
    runs_capped = False
    if runs_visible:
        window = id_range("run", since, at)
        runs, runs_capped = _read(
            lambda limit, start: runs_created_between(ws, window, limit=limit, start=start), budget=EFFICIENCY_BUDGET
        )
        for run in runs:
            if run.agent:
                run_outcomes[str(run.agent)][str(run.status)] += 1
                tokens_used[str(run.agent)] += int(run.usage_tokens or 0)
        agents |= set(run_outcomes)
    if access.may("agents:read"):
        registered, _ = _agent_items(ws)
        agents |= {str(item.name) for item in registered if item.name}
    rows = []
    for agent in agents:
        spans = cycles.get(agent, [])
        row = AgentEfficiency(
            agent=agent,
            tasks_done=tasks_done[agent],
            avg_cycle_seconds=round(statistics.fmean(spans), 3) if spans else None,
            median_cycle_seconds=round(statistics.median(spans), 3) if spans else None,
            tasks_in_progress=in_progress[agent],
        )
        if runs_visible:
            outcomes = run_outcomes.get(agent, Counter())
            row.runs_completed, row.runs_failed = outcomes["completed"], outcomes["failed"]
            finished = row.runs_completed + row.runs_failed
            row.run_success_rate = round(row.runs_completed / finished, 4) if finished else None
            row.tokens_used = tokens_used[agent]
            row.tokens_per_task = round(row.tokens_used / row.tasks_done, 2) if row.tasks_done else None
        rows.append(row)
    rows.sort(key=lambda r: (-r.tasks_done, r.agent))
    return AgentEfficiencyReport(
        days=days, since=iso(since), agents=rows, capped=capped or working_capped or runs_capped
    )


# --------------------------------------------------------------------------------- queue health


def agent_queue_health(access: Access) -> AgentQueueHealthReport:
    import statistics  # only the averages need it; kept out of the function's cold start

    ws = access.workspace_id
    at = clock()
    counted = queue.stats(ws)
    oldest = queue.oldest_pending(ws)
    claimed, claimed_capped = queue.claimed_jobs(ws, READ_BUDGET)
    moment = iso(at)
    expired = [job for job in claimed if str(job.get("claim_expires_at", "")) <= moment]
    health = QueueHealth(
        pending=counted.pending,
        claimed=counted.claimed,
        completed=counted.completed,
        dead=counted.dead,
        oldest_pending_job_id=oldest["id"] if oldest else None,
        oldest_pending_age_seconds=round(max(0.0, _seconds(oldest["created_at"], moment)), 3) if oldest else None,
        expired_claims=len(expired),
        capped=claimed_capped,
    )
    todo, todo_capped = _tasks(ws, TaskStatus.todo)
    working, working_capped = _tasks(ws, TaskStatus.in_progress)
    waits: dict[str, list[float]] = defaultdict(list)
    for task in todo:
        waits[_agent_of(task)].append(max(0.0, _seconds(task.created_at, moment)))
    in_progress = Counter(_agent_of(task) for task in working)
    holding = Counter(str(job.get("worker_id")) for job in claimed)
    silent = Counter(str(job.get("worker_id")) for job in expired)
    names = set(waits) | set(in_progress) | set(holding)
    if access.may("agents:read"):
        registered, _ = _agent_items(ws)
        names |= {str(item.name) for item in registered if item.name}
    rows = [
        AgentQueueHealth(
            agent=name,
            queued_tasks=len(waits.get(name, [])),
            oldest_wait_seconds=round(max(waits[name]), 3) if waits.get(name) else None,
            avg_wait_seconds=round(statistics.fmean(waits[name]), 3) if waits.get(name) else None,
            in_progress_tasks=in_progress[name],
            claimed_jobs=holding[name],
            expired_claims=silent[name],
        )
        for name in names
    ]
    rows.sort(key=lambda r: (-(r.oldest_wait_seconds or 0.0), -r.queued_tasks, r.agent))
    return AgentQueueHealthReport(
        queue=health, agents=rows, capped=claimed_capped or todo_capped or working_capped, generated_at=moment
    )

"""Sprints (Toban): numbering, the phase flow, retrospectives and analytics.

Numbers: a per-workspace counter item holds the last number handed out and the number of the one
active sprint. Creating a sprint moves the counter with a conditional update and puts the sprint in
the same transaction, so concurrent creates never share a number; the loser reads again and retries.

Phase flow: planning -> active -> review -> retrospective -> completed, and review -> active. Each
transition is one conditional write on the sprint's status (plus the counter when the sprint enters
or leaves `active`, so at most one sprint is active), audited in the same transaction. The active
sprint is "the current sprint" of `sprints/current/...`.

Analytics read counters the tasks family moves in each task's own transaction
(`entities/task_counters.py`): a sprint's figures (summary, breakdowns, burndown) are one item,
velocity is one BatchGetItem of the latest sprints' items, and daily analytics is a window of day
items plus the month totals. Only the lists of tasks some answers carry are read from the tasks
themselves, with one bounded Query of the tasks by sprint.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, date, timedelta
from itertools import islice
from typing import Any

from agentplane import ids, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.base import Entity
from agentplane.entities.sprints import (
    SprintCounterItem,
    SprintItem,
    SprintRetroItem,
    retro_comments,
    sprints_newest_first,
    sprints_of_workspace,
)
from agentplane.entities.task_counters import (
    UNASSIGNED,
    SprintFigures,
    SprintStatsItem,
    TaskTotalsItem,
    day_figures,
    days_between,
    done_by_month,
    sprint_figures,
)
from agentplane.entities.tasks import TaskFilter, TaskItem, tasks_done_on, tasks_of_sprint, tasks_of_sprint_up_to
from agentplane.errors import Conflict, InvalidTransition, NotFound, PreconditionFailed
from agentplane.ids import iso, new_id, parse_iso
from agentplane.logic import projects
from agentplane.logic.tasks import live_tasks_by_id
from agentplane.models.agents import ACTIVE_STATUSES, AgentStatus, AgentUpdate, DesiredState
from agentplane.models.sprints import (
    SPRINT_TRANSITIONS,
    AgentBreakdown,
    BurndownDay,
    CumulativeDay,
    DailyAnalytics,
    DailyCount,
    DailyScorecard,
    HourlyActivity,
    RetroComment,
    RetroCreate,
    SkippedAgent,
    Sprint,
    SprintAnalytics,
    SprintBoard,
    SprintCreate,
    SprintReview,
    SprintStart,
    SprintStatus,
    SprintSummary,
    SprintTaskSummary,
    SprintUpdate,
    StartedAgent,
    Velocity,
    VelocityEntry,
)
from agentplane.store import TransactionFailed, get_store, retrying

# Attempts at a write that lost a race to another writer of the same counter or sprint.
_WRITE_ATTEMPTS = 8
# Tasks one analytics read covers (one Query of the tasks by sprint, paged) and its page size.
SPRINT_TASK_CAP = 1000
_TASK_PAGE = 500
# A burndown shows at most this many days (the last ones when a sprint ran longer).
MAX_BURNDOWN_DAYS = 366
# Tasks daily analytics lists (the day's completions, in the order they were done).
DAILY_TASKS_CAP = 200
# Retrospective comments a review includes.
REVIEW_RETRO_CAP = 200
# Agents `current/start` moves to starting (each its own conditional write), and what the board
# of `current/tasks` shows of agents, progress reports, sprints and projects.
START_AGENTS_CAP = 50
BOARD_AGENTS = 100
BOARD_SPRINTS = 20
BOARD_PROJECTS = 100
_DONE = "done"
# The names of a sprint write's operations on the sprint and on the counter.
_SPRINT, _COUNTER = "sprint", "counter"


def _lost(failure: Exception) -> bool:
    return isinstance(failure, TransactionFailed)


class _WriteLost(Exception):
    """A sprint write's transaction was cancelled; `step` says which of our operations lost."""

    def __init__(self, step: str) -> None:
        super().__init__(step)
        self.step = step


# --- reads ------------------------------------------------------------------------------------


def _load_sprint(ws: str, number: int) -> SprintItem:
    return get_store().read_or_404(SprintItem, keys.sprint_key(ws, number), f"sprint {number} not found")


def _read_counter(ws: str) -> SprintCounterItem | None:
    return get_store().read(SprintCounterItem, keys.sprint_counter_key(ws))


def _active_number(ws: str) -> int | None:
    counter = _read_counter(ws)
    value = counter.active_number if counter else None
    return int(value) if value is not None else None


def active_sprint_number(ws: str) -> int | None:
    """The number of the workspace's active sprint (the current sprint), if one is active."""
    return _active_number(ws)


def get_sprint(access: Access, number: int) -> Sprint:
    return _load_sprint(access.workspace_id, number).to_model()


def get_current_sprint(access: Access) -> Sprint:
    number = _active_number(access.workspace_id)
    if number is None:
        raise NotFound("no sprint is active")
    return get_sprint(access, number)


def list_sprints(
    access: Access, *, status: SprintStatus | None, limit: int, cursor: str | None
) -> tuple[list[Sprint], str | None]:
    ws = access.workspace_id
    query = {"status": status}
    scope = f"sprints:{ws}"
    start = decode_cursor(cursor, scope, query)
    page = sprints_of_workspace(ws, status=status.value if status else None, limit=limit, start=start)
    return [sprint.to_model() for sprint in page.items], encode_cursor(page.last_key, scope, query)


def _sprint_tasks(ws: str, number: int) -> tuple[list[TaskItem], bool]:
    """A sprint's live tasks (up to SPRINT_TASK_CAP) and whether more exist."""
    return tasks_of_sprint_up_to(ws, number, cap=SPRINT_TASK_CAP, page=_TASK_PAGE)


def sprint_board(access: Access, sprint: int | None, limit: int, cursor: str | None) -> tuple[SprintBoard, str | None]:
    """Toban's `sprints/current/tasks`: a page of the active sprint's tasks (or of the sprint number
    given: tasks may be planned into a sprint before it is created, so that number need not exist
    yet), with the workspace's agents and their latest progress, the latest sprints and the
    projects (Toban's repositories). Each part is one bounded read; the cursor pages the tasks."""
    ws = access.workspace_id
    number = sprint if sprint is not None else _active_number(ws)
    if number is None:
        raise NotFound("no sprint is active")
    query = {"sprint": number}
    scope = f"sprint-tasks:{ws}"
    start = decode_cursor(cursor, scope, query)
    page = tasks_of_sprint(ws, number, where=TaskFilter(), limit=limit, start=start)
    current = get_store().read(SprintItem, keys.sprint_key(ws, number))
    latest = list(islice(sprints_newest_first(ws, round_size=BOARD_SPRINTS), BOARD_SPRINTS))
    from agentplane.logic import agents  # the board and sprint start only: keeps the import light

    sees_agents = access.may("agents:read")
    listed_agents = (
        agents.list_agents(access, include_all=False, statuses=[], role=None, limit=BOARD_AGENTS, cursor=None)[0]
        if sees_agents
        else []
    )
    board = SprintBoard(
        sprint=current.to_model() if current else None,
        number=number,
        tasks=[task.to_model() for task in page.items if task.is_live],
        agents=listed_agents,
        progress=agents.latest_progress(access, BOARD_AGENTS, None)[0] if sees_agents else [],
        sprints=[listed.to_model() for listed in latest],
        projects=(
            projects.list_projects(access, limit=BOARD_PROJECTS, cursor=None)[0] if access.may("projects:read") else []
        ),
    )
    return board, encode_cursor(page.last_key, scope, query)


# --- create and move ----------------------------------------------------------------------------


def create_sprint(access: Access, body: SprintCreate) -> Sprint:
    ws = access.workspace_id
    activate = body.status == SprintStatus.active

    def attempt() -> SprintItem:
        counter = _read_counter(ws)
        last = int(counter.last_number) if counter else None
        active = counter.active_number if counter else None
        if activate and active is not None:
            raise Conflict(
                f"sprint {active} is active; move it on (or create this sprint as planning) first",
                active_sprint=int(active),
            )
        number = body.number if body.number is not None else (last or 0) + 1
        at = iso()
        sprint = SprintItem(
            workspace_id=ws,
            number=number,
            name=body.name,
            goal=body.goal,
            status=body.status.value,
            deadline=body.deadline.isoformat() if body.deadline else None,
            started_at=at if activate else None,
            created_by=access.actor_id,
            created_at=at,
            updated_at=at,
        )
        # The counter moves only from the state read (or is created), so concurrent creates
        # never share a number; activating also takes the one active place.
        numbered = [
            SprintCounterItem.workspace_id.set(ws),
            SprintCounterItem.last_number.set(number if last is None else max(last, number)),
        ]
        guard = SprintCounterItem.PK.does_not_exist() if counter is None else SprintCounterItem.last_number == last
        if activate:
            numbered.append(SprintCounterItem.active_number.set(number))
            guard = guard & SprintCounterItem.active_number.does_not_exist()
        tx = access.transaction()
        tx.upsert(SprintCounterItem, keys.sprint_counter_key(ws), numbered, guard, name=_COUNTER)
        tx.create(sprint, name=_SPRINT)
        access.audit(tx, "sprint.created", "sprint", str(number), {"status": body.status.value})
        try:
            access.commit(tx)
        except TransactionFailed as failure:
            if failure.failed == _SPRINT and body.number is not None:
                raise Conflict(f"sprint {number} already exists") from failure
            raise  # another create or transition moved the counter: read it again
        return sprint

    try:
        return retrying(attempt, retry_if=_lost, attempts=_WRITE_ATTEMPTS).to_model()
    except TransactionFailed as failure:
        raise Conflict("too many sprints are being created at once; retry") from failure


def _write_sprint(
    access: Access, sprint: SprintItem, fields: dict[str, Any], target: SprintStatus | None
) -> SprintItem:
    """One conditional write of a sprint (and of the counter when it enters or leaves `active`)."""
    ws = access.workspace_id
    number = int(sprint.number)
    status = SprintStatus(sprint.status)
    at = iso()
    changes: dict[str, Any] = {**fields, "updated_at": at}
    if target is not None:
        changes["status"] = target.value
        if target == SprintStatus.active and not sprint.started_at:
            changes["started_at"] = at
        if target == SprintStatus.completed:
            changes["completed_at"] = at
    tx = access.transaction()
    tx.change(sprint, sprint.assign(**changes), SprintItem.status == status.value, name=_SPRINT)
    counter = keys.sprint_counter_key(ws)
    active = SprintCounterItem.active_number
    if target == SprintStatus.active:
        tx.adjust(SprintCounterItem, counter, [active.set(number)], active.does_not_exist(), name=_COUNTER)
    elif target is not None and status == SprintStatus.active:
        # Clear the pointer only if it is ours (or already gone): never another sprint's.
        ours = active.does_not_exist() | (active == number)
        tx.adjust(SprintCounterItem, counter, [active.remove()], ours, name=_COUNTER)
    if target is not None:
        access.audit(tx, "sprint.status_changed", "sprint", str(number), {"from": status.value, "to": target.value})
    else:
        access.audit(tx, "sprint.updated", "sprint", str(number), {"fields": sorted(fields)})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise _WriteLost(_COUNTER if failure.failed == _COUNTER else _SPRINT) from failure
    return sprint


def _refuse(number: int, status: SprintStatus, target: SprintStatus) -> InvalidTransition:
    allowed = sorted(s.value for s in SPRINT_TRANSITIONS[status])
    return InvalidTransition(
        f"sprint {number} cannot move from {status.value} to {target.value}",
        current_status=status.value,
        allowed=allowed,
    )


def _other_active_conflict(ws: str, number: int) -> Conflict:
    active = _active_number(ws)
    return Conflict(
        f"sprint {active} is already active; move it on before activating sprint {number}", active_sprint=active
    )


def update_sprint(access: Access, number: int, body: SprintUpdate, if_match: int | None = None) -> Sprint:
    ws = access.workspace_id
    expected = body.version or if_match
    fields = body.model_dump(mode="json", exclude_none=True, exclude={"version", "status"})
    for _ in range(_WRITE_ATTEMPTS):
        sprint = _load_sprint(ws, number)
        if expected is not None and expected != sprint.version:
            raise PreconditionFailed(
                f"sprint {number} is at version {sprint.version}, not {expected}", current_version=sprint.version
            )
        status = SprintStatus(sprint.status)
        target = body.status if body.status is not None and body.status != status else None
        if target is not None and target not in SPRINT_TRANSITIONS[status]:
            raise _refuse(number, status, target)
        if target is None and not fields:
            return sprint.to_model()  # nothing to change
        try:
            return _write_sprint(access, sprint, fields, target).to_model()
        except _WriteLost as lost:
            if lost.step == _COUNTER:
                raise _other_active_conflict(ws, number) from lost
            now_status = _load_sprint(ws, number).status
            if target is not None and now_status != status.value:
                raise InvalidTransition(
                    f"sprint {number} moved to {now_status} while this request was in flight",
                    current_status=now_status,
                ) from lost
            if expected is not None:
                raise PreconditionFailed(f"sprint {number} changed while it was being updated") from lost
            # Only another edit of its fields got there first: apply ours on top of it.
    raise Conflict(f"sprint {number} is being changed by others; retry")


def start_current_sprint(access: Access) -> SprintStart:
    """Toban's CLI entry point: activate the current sprint (the latest one not completed), set its
    agents to `starting` and answer it with its agents and tasks. An already active sprint is
    answered as it is; its agents are still set to starting (the CLI calls this at every start)."""
    ws = access.workspace_id
    for _ in range(_WRITE_ATTEMPTS):
        active = _active_number(ws)
        if active is not None:
            return _start_answer(access, _load_sprint(ws, active), started=False)
        candidate = next(iter(sprints_newest_first(ws, open_only=True)), None)
        if candidate is None:
            raise NotFound("there is no sprint to start; create one first")
        status = SprintStatus(candidate.status)
        if SprintStatus.active not in SPRINT_TRANSITIONS[status]:
            raise _refuse(int(candidate.number), status, SprintStatus.active)
        try:
            started = _write_sprint(access, candidate, {}, SprintStatus.active)
        except _WriteLost:
            continue  # someone else started or moved it: look again
        return _start_answer(access, started, started=True)
    raise Conflict("the current sprint is being changed by others; retry")


def _start_answer(access: Access, sprint: SprintItem, *, started: bool) -> SprintStart:
    ws = access.workspace_id
    number = int(sprint.number)
    figures = sprint_figures(get_store().read(SprintStatsItem, keys.sprint_stats_key(ws, number)))
    names = sorted(name for name, row in figures.agents.items() if name != UNASSIGNED and row.tasks > row.done)
    moved, skipped = _start_agents(access, names[:START_AGENTS_CAP])
    items, truncated = _sprint_tasks(ws, number)
    return SprintStart(
        sprint=sprint.to_model(),
        started=started,
        agents=moved,
        skipped_agents=skipped,
        tasks=_task_summaries(items),
        truncated=truncated,
    )


def _start_agents(access: Access, names: list[str]) -> tuple[list[StartedAgent], list[SkippedAgent]]:
    """Toban sets the agents with open work in the sprint to `starting`, each with the agents
    family's own conditional, audited write. One already at work, asked to stop, or not
    registered is left as it is and listed as skipped, with the reason."""
    from agentplane.logic import agents

    if not names:
        return [], []
    if not access.may("agents:write"):
        return [], [SkippedAgent(name=name, reason="missing_scope") for name in names]
    moved: list[StartedAgent] = []
    skipped: list[SkippedAgent] = []
    for name in names:
        try:
            agent = agents.get_agent(access, name)
        except NotFound:
            skipped.append(SkippedAgent(name=name, reason="not_registered"))
            continue
        if agent.desired_state == DesiredState.stopped:
            skipped.append(SkippedAgent(name=name, reason="stopped"))
            continue
        if agent.status in ACTIVE_STATUSES - {AgentStatus.starting}:
            skipped.append(SkippedAgent(name=name, reason="already_running"))
            continue
        if agent.status != AgentStatus.starting:
            try:
                agent = agents.update_agent(access, name, AgentUpdate(status=AgentStatus.starting))
            except NotFound:  # removed since it was read
                skipped.append(SkippedAgent(name=name, reason="not_registered"))
                continue
        moved.append(StartedAgent.model_validate(agent.model_dump()))
    return moved, skipped


# --- retrospectives -------------------------------------------------------------------------------


def add_retro_comment(access: Access, number: int, body: RetroCreate) -> RetroComment:
    ws = access.workspace_id
    comment = SprintRetroItem(
        workspace_id=ws,
        sprint=number,
        id=new_id("rtr"),
        author=body.agent_name or access.principal.agent_name or access.actor_id,
        agent_name=body.agent_name or access.principal.agent_name,
        actor_id=access.actor_id,
        went_well=body.went_well,
        to_improve=body.to_improve,
        action_item=body.action_item,
        suggested_tasks=[task.model_dump(mode="json") for task in body.suggested_tasks],
        created_at=iso(),
    )
    tx = access.transaction()
    tx.require(SprintItem, keys.sprint_key(ws, number), SprintItem.present(), name=_SPRINT)
    tx.create(comment)
    access.audit(tx, "sprint.retro_added", "sprint", str(number), {"comment_id": comment.id})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed == _SPRINT:
            raise NotFound(f"sprint {number} not found") from failure
        raise
    return comment.to_model()


def list_retro_comments(
    access: Access, number: int, limit: int, cursor: str | None
) -> tuple[list[RetroComment], str | None]:
    ws = access.workspace_id
    _load_sprint(ws, number)
    query = {"sprint": number}
    scope = f"sprint-retro:{ws}"
    page = retro_comments(ws, number, limit=limit, start=decode_cursor(cursor, scope, query))
    return [comment.to_model() for comment in page.items], encode_cursor(page.last_key, scope, query)


# --- analytics ------------------------------------------------------------------------------------


def _task_summaries(tasks: Iterable[TaskItem]) -> list[SprintTaskSummary]:
    return [SprintTaskSummary.model_validate({**task.fields(), "completed_at": task.done_at}) for task in tasks]


def _percent(part: int, whole: int) -> int:
    """Whole per cent, rounded half up (6 of 10 -> 60, 1 of 8 -> 13)."""
    return (part * 200 + whole) // (2 * whole) if whole else 0


def _summary(figures: SprintFigures) -> SprintSummary:
    statuses = figures.status_tasks
    done = statuses.get(_DONE, 0)
    return SprintSummary(
        total=figures.tasks,
        done=done,
        review=statuses.get("review", 0),
        in_progress=statuses.get("in_progress", 0),
        todo=statuses.get("todo", 0),
        blocked=statuses.get("blocked", 0),
        completion_rate=_percent(done, figures.tasks),
        total_points=figures.points,
        done_points=figures.status_points.get(_DONE, 0),
    )


def _day(value: str) -> date:
    return parse_iso(value).astimezone(UTC).date()


def _sprint_and_figures(ws: str, number: int) -> tuple[SprintItem, SprintFigures]:
    """The sprint and its counters, in one BatchGetItem."""
    sprint, stats = get_store().read_many(Entity, [keys.sprint_key(ws, number), keys.sprint_stats_key(ws, number)])
    if not isinstance(sprint, SprintItem):
        raise NotFound(f"sprint {number} not found")
    return sprint, sprint_figures(stats if isinstance(stats, SprintStatsItem) else None)


def _burndown(sprint: SprintItem, figures: SprintFigures, today: date) -> list[BurndownDay]:
    """Tasks and points still open at the end of each day, from the sprint's start to its end
    (completion) or today. A task finished before the sprint started counts as done on day one."""
    start = _day(sprint.started_at or sprint.created_at)
    end = _day(sprint.completed_at) if sprint.completed_at else today
    end = max(end, start)
    first = max(start, end - timedelta(days=MAX_BURNDOWN_DAYS - 1))
    done_on: Counter[date] = Counter()
    points_on: Counter[date] = Counter()
    for day_text, (count, points) in figures.done_by_day.items():
        day = max(date.fromisoformat(day_text), start)
        done_on[day] += count
        points_on[day] += points
    done_so_far = sum(count for day, count in done_on.items() if day < first)
    points_so_far = sum(points for day, points in points_on.items() if day < first)
    days: list[BurndownDay] = []
    day = first
    while day <= end:
        done_so_far += done_on[day]
        points_so_far += points_on[day]
        days.append(
            BurndownDay(
                date=day.isoformat(),
                remaining=figures.tasks - done_so_far,
                remaining_points=figures.points - points_so_far,
                done=done_on[day],
            )
        )
        day += timedelta(days=1)
    return days


def sprint_analytics(access: Access, number: int) -> SprintAnalytics:
    ws = access.workspace_id
    sprint, figures = _sprint_and_figures(ws, number)
    tasks, truncated = _sprint_tasks(ws, number)
    return SprintAnalytics(
        sprint=sprint.to_model(),
        summary=_summary(figures),
        by_agent={
            name: AgentBreakdown(total=row.tasks, done=row.done, points=row.points, done_points=row.done_points)
            for name, row in sorted(figures.agents.items())
        },
        by_type=dict(sorted(figures.types.items())),
        by_priority=dict(sorted(figures.priorities.items())),
        burndown=_burndown(sprint, figures, ids.now().date()),
        tasks=_task_summaries(tasks),
        truncated=truncated,
    )


def sprint_review(access: Access, number: int) -> SprintReview:
    ws = access.workspace_id
    sprint, figures = _sprint_and_figures(ws, number)
    tasks, truncated = _sprint_tasks(ws, number)
    by_owner: dict[str, list[SprintTaskSummary]] = defaultdict(list)
    for task, summary in zip(tasks, _task_summaries(tasks), strict=True):
        by_owner[task.agent or UNASSIGNED].append(summary)
    retro = retro_comments(ws, number, limit=REVIEW_RETRO_CAP)
    return SprintReview(
        sprint=sprint.to_model(),
        summary=_summary(figures),
        by_owner=dict(sorted(by_owner.items())),
        retro=[comment.to_model() for comment in retro.items],
        truncated=truncated or retro.last_key is not None,
    )


def velocity(access: Access, limit: int) -> Velocity:
    """Tasks and points of each of the last `limit` sprints of any status (the active one too, as
    Toban lists them), oldest first, each with its status: their counters in one BatchGetItem. The
    average is over the completed ones, which an unfinished sprint would drag down."""
    ws = access.workspace_id
    latest = list(islice(sprints_newest_first(ws), limit))
    latest.reverse()
    stats = get_store().read_many(SprintStatsItem, [keys.sprint_stats_key(ws, int(s.number)) for s in latest])
    entries = []
    for sprint, counters in zip(latest, stats, strict=True):
        summary = _summary(sprint_figures(counters))
        entries.append(
            VelocityEntry(
                sprint=int(sprint.number),
                status=SprintStatus(sprint.status),
                total=summary.total,
                done=summary.done,
                total_points=summary.total_points,
                done_points=summary.done_points,
                completed_at=sprint.completed_at,
            )
        )
    completed = [e.done_points for e in entries if e.status == SprintStatus.completed]
    average = round(sum(completed) / len(completed), 2) if completed else 0.0
    return Velocity(velocity=entries, average_done_points=average)


def daily_analytics(access: Access, day: date | None, days: int) -> DailyAnalytics:
    """Tasks created, started and completed per day over `days` days ending on `day` (default
    today), with Toban's scorecard, hourly view and task list of that last day.

    Figures come from counters: the window's day items (one Query, from the first of the window's
    first month) and the month totals (one GetItem), which make `cumulative.total` a running total
    of every task done since the workspace began. The day's tasks are one Query on the done tasks
    by completion time, then one BatchGetItem.
    """
    ws = access.workspace_id
    last = day or ids.now().date()
    first = last - timedelta(days=days - 1)
    month_start = first.replace(day=1)
    months = done_by_month(get_store().read(TaskTotalsItem, keys.task_totals_key(ws)))
    stored = {
        name: day_figures(item) for name, item in days_between(ws, month_start.isoformat(), last.isoformat()).items()
    }
    running = sum(count for month, count in months.items() if month < month_start.isoformat()[:7])
    running += sum(figures.done for name, figures in stored.items() if name < first.isoformat())

    daily, cumulative = [], []
    for offset in range(days):
        current = (first + timedelta(days=offset)).isoformat()
        figures = stored.get(current) or day_figures(None)
        running += figures.done
        daily.append(
            DailyCount(
                date=current,
                created=figures.created,
                started=figures.started,
                completed=figures.done,
                points=figures.done_points,
            )
        )
        cumulative.append(CumulativeDay(date=current, total=running, daily=figures.done))

    today = stored.get(last.isoformat()) or day_figures(None)
    hourly, done_so_far = [], 0
    for hour in range(24):
        created, started, done = today.hour(hour)
        done_so_far += done
        hourly.append(HourlyActivity(hour=hour, done=done, started=started, total=done_so_far, created=created))

    links = tasks_done_on(ws, last.isoformat(), limit=DAILY_TASKS_CAP)
    found = live_tasks_by_id(ws, [link.task_id for link in links.items])
    done_tasks = [found[link.task_id] for link in links.items if link.task_id in found]
    return DailyAnalytics(
        date=last.isoformat(),
        days=days,
        scorecard=DailyScorecard(
            tasks_done=today.done,
            points=today.done_points,
            agents_active=len([name for name in today.agents if name != UNASSIGNED]),
            types=dict(sorted(today.types.items())),
        ),
        hourly=hourly,
        daily=daily,
        cumulative=cumulative,
        tasks=_task_summaries(done_tasks),
        truncated=links.last_key is not None,
    )

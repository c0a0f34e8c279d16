"""Sprints (Toban): numbering, the phase flow, retrospectives and analytics.

Numbers: a per-workspace counter item holds the last number handed out and the number of the one
active sprint. Creating a sprint moves the counter with a conditional update and puts the sprint in
the same transaction, so concurrent creates never share a number; the loser reads again and retries.

Phase flow: planning -> active -> review -> retrospective -> completed, and review -> active. Each
transition is one conditional write on the sprint's status (plus the counter when the sprint enters
or leaves `active`, so at most one sprint is active), audited in the same transaction. The active
sprint is "the current sprint" of `sprints/current/...`.

Analytics read counters the tasks family moves in each task's own transaction
(`logic/task_indexes.py`): a sprint's figures (summary, breakdowns, burndown) are one item, velocity
is one BatchGetItem of the completed sprints' items, and daily analytics is a window of day items
plus the month totals. Only the lists of tasks some answers carry are read from the tasks
themselves, with one bounded Query on GSI3 (tasks by sprint).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, date, timedelta
from typing import Any

from agentplane import audit, ids, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.errors import Conflict, InvalidTransition, NotFound, PreconditionFailed
from agentplane.ids import iso, new_id, parse_iso
from agentplane.logic import projects, task_indexes
from agentplane.logic.activity import query_filled
from agentplane.logic.task_indexes import SprintFigures, agent_of, completed_at, day_figures, sprint_figures
from agentplane.logic.tasks import get_tasks
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
from agentplane.models.tasks import Task
from agentplane.store import Expr, TransactionFailed, Update, attr_eq, attr_in, exists, get_store, not_exists

Item = dict[str, Any]

# Attempts at a write that lost a race to another writer of the same counter or sprint.
_WRITE_ATTEMPTS = 8
# Tasks one analytics read covers (one Query on GSI3, paged) and the page size it reads with.
SPRINT_TASK_CAP = 1000
_TASK_PAGE = 500
# A burndown shows at most this many days (the last ones when a sprint ran longer).
MAX_BURNDOWN_DAYS = 366
# Sprint items read while looking for the current or completed sprints (newest first).
_SPRINT_READ_BUDGET = 1000
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


class _WriteLost(Exception):
    """A sprint write's transaction was cancelled; `step` says which of our operations lost."""

    def __init__(self, step: str) -> None:
        super().__init__(step)
        self.step = step


# --- reads ------------------------------------------------------------------------------------


def _to_sprint(item: Item) -> Sprint:
    return Sprint.model_validate({**item, "id": item["number"]})


def _load_sprint(ws: str, number: int) -> Item:
    item = get_store().get(keys.sprint_key(ws, number))
    if item is None:
        raise NotFound(f"sprint {number} not found")
    return item


def _read_counter(ws: str) -> Item | None:
    return get_store().get(keys.sprint_counter_key(ws))


def _active_number(ws: str) -> int | None:
    counter = _read_counter(ws)
    value = counter.get("active_number") if counter else None
    return int(value) if value is not None else None


def active_sprint_number(ws: str) -> int | None:
    """The number of the workspace's active sprint (the current sprint), if one is active."""
    return _active_number(ws)


def get_sprint(access: Access, number: int) -> Sprint:
    return _to_sprint(_load_sprint(access.workspace_id, number))


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
    page = query_filled(
        keys.ws_pk(ws),
        sk_prefix=keys.SPRINT_PREFIX,
        limit=limit,
        start=decode_cursor(cursor, scope, query),
        filter=attr_eq("status", status.value) if status is not None else None,
    )
    return [_to_sprint(item) for item in page.items], encode_cursor(page.last_key, scope, query)


def _sprints_newest_first(ws: str, condition: Expr) -> Iterable[Item]:
    """Sprint items matching `condition`, highest number first, reading at most a bounded number."""
    start: dict[str, Any] | None = None
    read = 0
    while read < _SPRINT_READ_BUDGET:
        page = get_store().query(
            keys.ws_pk(ws),
            sk_prefix=keys.SPRINT_PREFIX,
            limit=100,
            start_key=start,
            filter=condition,
            newest_first=True,
        )
        read += 100
        yield from page.items
        start = page.last_key
        if start is None:
            return


def _sprint_task_items(ws: str, number: int) -> tuple[list[Item], bool]:
    """A sprint's live tasks (one Query on GSI3, paged up to SPRINT_TASK_CAP) and whether more exist."""
    items: list[Item] = []
    start: dict[str, Any] | None = None
    partition = keys.task_sprint_gsi(ws, number)
    while True:
        page = get_store().query(
            partition, index=keys.GSI3, limit=min(_TASK_PAGE, SPRINT_TASK_CAP - len(items)), start_key=start
        )
        items += [item for item in page.items if not item.get("deleted_at")]
        start = page.last_key
        if start is None:
            return items, False
        if len(items) >= SPRINT_TASK_CAP:
            probe = get_store().query(partition, index=keys.GSI3, limit=1, start_key=start)
            return items, bool(probe.items)


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
    page = get_store().query(
        keys.task_sprint_gsi(ws, number),
        index=keys.GSI3,
        limit=limit,
        start_key=decode_cursor(cursor, scope, query),
    )
    item = get_store().get(keys.sprint_key(ws, number))
    latest = get_store().query(keys.ws_pk(ws), sk_prefix=keys.SPRINT_PREFIX, limit=BOARD_SPRINTS, newest_first=True)
    from agentplane.logic import agents  # the board and sprint start only: keeps the import light

    sees_agents = access.may("agents:read")
    listed_agents = (
        agents.list_agents(access, include_all=False, statuses=[], role=None, limit=BOARD_AGENTS, cursor=None)[0]
        if sees_agents
        else []
    )
    board = SprintBoard(
        sprint=_to_sprint(item) if item else None,
        number=number,
        tasks=[Task.model_validate(task) for task in page.items if not task.get("deleted_at")],
        agents=listed_agents,
        progress=agents.latest_progress(access, BOARD_AGENTS, None)[0] if sees_agents else [],
        sprints=[_to_sprint(listed) for listed in latest.items],
        projects=(
            projects.list_projects(access, limit=BOARD_PROJECTS, cursor=None)[0] if access.may("projects:read") else []
        ),
    )
    return board, encode_cursor(page.last_key, scope, query)


# --- create and move ----------------------------------------------------------------------------


def create_sprint(access: Access, body: SprintCreate, request_id: str = "") -> Sprint:
    ws = access.workspace_id
    activate = body.status == SprintStatus.active
    for _ in range(_WRITE_ATTEMPTS):
        counter = _read_counter(ws)
        last = int(counter["last_number"]) if counter else None
        active = counter.get("active_number") if counter else None
        if activate and active is not None:
            raise Conflict(
                f"sprint {active} is active; move it on (or create this sprint as planning) first",
                active_sprint=int(active),
            )
        number = body.number if body.number is not None else (last or 0) + 1
        at = iso()
        item: Item = {
            **keys.sprint_key(ws, number),
            keys.ENTITY: "sprint",
            "number": number,
            "workspace_id": ws,
            "name": body.name,
            "goal": body.goal,
            "status": body.status.value,
            "deadline": body.deadline.isoformat() if body.deadline else None,
            "started_at": at if activate else None,
            "created_by": access.actor_id,
            "created_at": at,
            "updated_at": at,
            "version": 1,
        }
        counter_set: dict[str, Any] = {
            keys.ENTITY: "sprint_counter",
            "workspace_id": ws,
            "last_number": number if last is None else max(last, number),
        }
        guard = not_exists() if counter is None else attr_eq("last_number", last)
        if activate:
            counter_set["active_number"] = number
            guard = guard & Expr("attribute_not_exists(#active)", {"#active": "active_number"})
        tx = access.transaction()
        counter_step = len(tx.operations)
        tx.update(keys.sprint_counter_key(ws), Update(set=counter_set), guard)
        tx.put(item, not_exists())
        audit.record(
            tx, ws, access.actor_id, "sprint.created", "sprint", str(number), request_id, {"status": body.status.value}
        )
        try:
            access.commit(tx)
        except TransactionFailed as failure:
            if failure.failed_index() == counter_step + 1 and body.number is not None:
                raise Conflict(f"sprint {number} already exists") from failure
            continue  # another create or transition moved the counter: read it again
        return _to_sprint(item)
    raise Conflict("too many sprints are being created at once; retry")


def _write_sprint(
    access: Access, current: Item, fields: dict[str, Any], target: SprintStatus | None, request_id: str
) -> Item:
    """One conditional write of a sprint (and of the counter when it enters or leaves `active`)."""
    ws = access.workspace_id
    number = int(current["number"])
    status = SprintStatus(current["status"])
    at = iso()
    changes: dict[str, Any] = {**fields, "updated_at": at, "version": int(current["version"]) + 1}
    if target is not None:
        changes["status"] = target.value
        if target == SprintStatus.active and not current.get("started_at"):
            changes["started_at"] = at
        if target == SprintStatus.completed:
            changes["completed_at"] = at
    tx = access.transaction()
    sprint_step = len(tx.operations)
    tx.update(
        keys.sprint_key(ws, number),
        Update(set=changes),
        exists() & attr_eq("status", status.value) & attr_eq("version", current["version"]),
    )
    if target == SprintStatus.active:
        tx.update(
            keys.sprint_counter_key(ws),
            Update(set={"active_number": number}),
            exists() & Expr("attribute_not_exists(#active)", {"#active": "active_number"}),
        )
    elif target is not None and status == SprintStatus.active:
        # Clear the pointer only if it is ours (or already gone): never another sprint's.
        tx.update(
            keys.sprint_counter_key(ws),
            Update(remove=["active_number"]),
            exists()
            & Expr(
                "attribute_not_exists(#active) OR #active = :number", {"#active": "active_number"}, {":number": number}
            ),
        )
    details: dict[str, Any]
    if target is not None:
        action, details = "sprint.status_changed", {"from": status.value, "to": target.value}
    else:
        action, details = "sprint.updated", {"fields": sorted(fields)}
    audit.record(tx, ws, access.actor_id, action, "sprint", str(number), request_id, details)
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        failed = failure.failed_index()
        raise _WriteLost("counter" if failed == sprint_step + 1 else "sprint") from failure
    return {**current, **changes}


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


def update_sprint(
    access: Access, number: int, body: SprintUpdate, if_match: int | None = None, request_id: str = ""
) -> Sprint:
    ws = access.workspace_id
    expected = body.version or if_match
    fields = body.model_dump(mode="json", exclude_none=True, exclude={"version", "status"})
    for _ in range(_WRITE_ATTEMPTS):
        current = _load_sprint(ws, number)
        if expected is not None and expected != current["version"]:
            raise PreconditionFailed(
                f"sprint {number} is at version {current['version']}, not {expected}",
                current_version=current["version"],
            )
        status = SprintStatus(current["status"])
        target = body.status if body.status is not None and body.status != status else None
        if target is not None and target not in SPRINT_TRANSITIONS[status]:
            raise _refuse(number, status, target)
        if target is None and not fields:
            return _to_sprint(current)  # nothing to change
        try:
            return _to_sprint(_write_sprint(access, current, fields, target, request_id))
        except _WriteLost as lost:
            if lost.step == "counter":
                raise _other_active_conflict(ws, number) from lost
            now_status = _load_sprint(ws, number)["status"]
            if target is not None and now_status != status.value:
                raise InvalidTransition(
                    f"sprint {number} moved to {now_status} while this request was in flight",
                    current_status=now_status,
                ) from lost
            if expected is not None:
                raise PreconditionFailed(f"sprint {number} changed while it was being updated") from lost
            # Only another edit of its fields got there first: apply ours on top of it.
    raise Conflict(f"sprint {number} is being changed by others; retry")


def start_current_sprint(access: Access, request_id: str = "") -> SprintStart:
    """Toban's CLI entry point: activate the current sprint (the latest one not completed), set its
    agents to `starting` and answer it with its agents and tasks. An already active sprint is
    answered as it is; its agents are still set to starting (the CLI calls this at every start)."""
    ws = access.workspace_id
    for _ in range(_WRITE_ATTEMPTS):
        active = _active_number(ws)
        if active is not None:
            return _start_answer(access, _load_sprint(ws, active), started=False, request_id=request_id)
        candidate = next(
            iter(_sprints_newest_first(ws, Expr("#st <> :done", {"#st": "status"}, {":done": "completed"}))), None
        )
        if candidate is None:
            raise NotFound("there is no sprint to start; create one first")
        status = SprintStatus(candidate["status"])
        if SprintStatus.active not in SPRINT_TRANSITIONS[status]:
            raise _refuse(int(candidate["number"]), status, SprintStatus.active)
        try:
            started = _write_sprint(access, candidate, {}, SprintStatus.active, request_id)
        except _WriteLost:
            continue  # someone else started or moved it: look again
        return _start_answer(access, started, started=True, request_id=request_id)
    raise Conflict("the current sprint is being changed by others; retry")


def _start_answer(access: Access, sprint: Item, *, started: bool, request_id: str) -> SprintStart:
    ws = access.workspace_id
    number = int(sprint["number"])
    figures = sprint_figures(get_store().get(keys.sprint_stats_key(ws, number)))
    names = sorted(
        name for name, row in figures.agents.items() if name != task_indexes.UNASSIGNED and row.tasks > row.done
    )[:START_AGENTS_CAP]
    moved, skipped = _start_agents(access, names, request_id)
    items, truncated = _sprint_task_items(ws, number)
    return SprintStart(
        sprint=_to_sprint(sprint),
        started=started,
        agents=moved,
        skipped_agents=skipped,
        tasks=_task_summaries(items),
        truncated=truncated,
    )


def _start_agents(access: Access, names: list[str], request_id: str) -> tuple[list[StartedAgent], list[SkippedAgent]]:
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


def add_retro_comment(access: Access, number: int, body: RetroCreate, request_id: str = "") -> RetroComment:
    ws = access.workspace_id
    comment_id = new_id("rtr")
    item: Item = {
        **keys.sprint_retro_key(ws, number, comment_id),
        keys.ENTITY: "sprint_retro",
        "id": comment_id,
        "workspace_id": ws,
        "sprint": number,
        "author": body.agent_name or access.principal.agent_name or access.actor_id,
        "agent_name": body.agent_name or access.principal.agent_name,
        "actor_id": access.actor_id,
        "went_well": body.went_well,
        "to_improve": body.to_improve,
        "action_item": body.action_item,
        "suggested_tasks": [task.model_dump(mode="json") for task in body.suggested_tasks],
        "created_at": iso(),
    }
    tx = access.transaction()
    sprint_step = len(tx.operations)
    tx.check(keys.sprint_key(ws, number), exists())
    tx.put(item, not_exists())
    audit.record(
        tx, ws, access.actor_id, "sprint.retro_added", "sprint", str(number), request_id, {"comment_id": comment_id}
    )
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed_index() == sprint_step:
            raise NotFound(f"sprint {number} not found") from failure
        raise
    return RetroComment.model_validate(item)


def list_retro_comments(
    access: Access, number: int, limit: int, cursor: str | None
) -> tuple[list[RetroComment], str | None]:
    ws = access.workspace_id
    _load_sprint(ws, number)
    query = {"sprint": number}
    scope = f"sprint-retro:{ws}"
    page = get_store().query(
        keys.sprint_retro_pk(ws, number), limit=limit, start_key=decode_cursor(cursor, scope, query)
    )
    return [RetroComment.model_validate(item) for item in page.items], encode_cursor(page.last_key, scope, query)


# --- analytics ------------------------------------------------------------------------------------


def _task_summaries(items: Iterable[Item]) -> list[SprintTaskSummary]:
    return [SprintTaskSummary.model_validate({**item, "completed_at": completed_at(item)}) for item in items]


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


def _sprint_and_figures(ws: str, number: int) -> tuple[Item, SprintFigures]:
    """The sprint and its counters, in one BatchGetItem."""
    sprint, stats = get_store().get_many([keys.sprint_key(ws, number), keys.sprint_stats_key(ws, number)])
    if sprint is None:
        raise NotFound(f"sprint {number} not found")
    return sprint, sprint_figures(stats)


def _burndown(sprint: Item, figures: SprintFigures, today: date) -> list[BurndownDay]:
    """Tasks and points still open at the end of each day, from the sprint's start to its end
    (completion) or today. A task finished before the sprint started counts as done on day one."""
    start = _day(sprint.get("started_at") or sprint["created_at"])
    end = _day(sprint["completed_at"]) if sprint.get("completed_at") else today
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
    items, truncated = _sprint_task_items(ws, number)
    return SprintAnalytics(
        sprint=_to_sprint(sprint),
        summary=_summary(figures),
        by_agent={
            name: AgentBreakdown(total=row.tasks, done=row.done, points=row.points, done_points=row.done_points)
            for name, row in sorted(figures.agents.items())
        },
        by_type=dict(sorted(figures.types.items())),
        by_priority=dict(sorted(figures.priorities.items())),
        burndown=_burndown(sprint, figures, ids.now().date()),
        tasks=_task_summaries(items),
        truncated=truncated,
    )


def sprint_review(access: Access, number: int) -> SprintReview:
    ws = access.workspace_id
    sprint, figures = _sprint_and_figures(ws, number)
    items, truncated = _sprint_task_items(ws, number)
    by_owner: dict[str, list[SprintTaskSummary]] = defaultdict(list)
    for item, summary in zip(items, _task_summaries(items), strict=True):
        by_owner[agent_of(item) or task_indexes.UNASSIGNED].append(summary)
    retro = get_store().query(keys.sprint_retro_pk(ws, number), limit=REVIEW_RETRO_CAP)
    return SprintReview(
        sprint=_to_sprint(sprint),
        summary=_summary(figures),
        by_owner=dict(sorted(by_owner.items())),
        retro=[RetroComment.model_validate(item) for item in retro.items],
        truncated=truncated or retro.last_key is not None,
    )


def velocity(access: Access, limit: int) -> Velocity:
    """Tasks and points of each of the last `limit` sprints of any status (the active one too, as
    Toban lists them), oldest first, each with its status: their counters in one BatchGetItem. The
    average is over the completed ones, which an unfinished sprint would drag down."""
    ws = access.workspace_id
    latest: list[Item] = []
    for sprint in _sprints_newest_first(ws, attr_in("status", [status.value for status in SprintStatus])):
        latest.append(sprint)
        if len(latest) >= limit:
            break
    latest.reverse()
    stats = get_store().get_many([keys.sprint_stats_key(ws, int(sprint["number"])) for sprint in latest])
    entries = []
    for sprint, counters in zip(latest, stats, strict=True):
        summary = _summary(sprint_figures(counters))
        entries.append(
            VelocityEntry(
                sprint=int(sprint["number"]),
                status=SprintStatus(sprint["status"]),
                total=summary.total,
                done=summary.done,
                total_points=summary.total_points,
                done_points=summary.done_points,
                completed_at=sprint.get("completed_at"),
            )
        )
    completed = [e.done_points for e in entries if e.status == SprintStatus.completed]
    average = round(sum(completed) / len(completed), 2) if completed else 0.0
    return Velocity(velocity=entries, average_done_points=average)


def _day_items(ws: str, first: date, last: date) -> dict[str, Item]:
    """The workspace's day counters from `first` to `last` (at most 90 + 31 days: one Query)."""
    found: dict[str, Item] = {}
    start: dict[str, Any] | None = None
    for _ in range(3):
        page = get_store().query(
            keys.task_day_pk(ws),
            sk_between=(first.isoformat(), last.isoformat()),
            limit=200,
            start_key=start,
            consistent=True,
        )
        found.update({str(item[keys.SK]): item for item in page.items})
        start = page.last_key
        if start is None:
            break
    return found


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
    months = task_indexes.done_by_month(get_store().get(keys.task_totals_key(ws)))
    stored = {name: day_figures(item) for name, item in _day_items(ws, month_start, last).items()}
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

    links = get_store().query(
        keys.task_done_pk(ws), sk_prefix=f"{last.isoformat()}T", limit=DAILY_TASKS_CAP, consistent=True
    )
    found = get_tasks(ws, [link["task_id"] for link in links.items])
    done_tasks = [found[link["task_id"]] for link in links.items if link["task_id"] in found]
    return DailyAnalytics(
        date=last.isoformat(),
        days=days,
        scorecard=DailyScorecard(
            tasks_done=today.done,
            points=today.done_points,
            agents_active=len([name for name in today.agents if name != task_indexes.UNASSIGNED]),
            types=dict(sorted(today.types.items())),
        ),
        hourly=hourly,
        daily=daily,
        cumulative=cumulative,
        tasks=_task_summaries(done_tasks),
        truncated=links.last_key is not None,
    )

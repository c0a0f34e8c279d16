"""Sprints (Toban): numbering, the phase flow, retrospectives and analytics.

Numbers: a per-workspace counter item holds the last number handed out and the number of the one
active sprint. Creating a sprint moves the counter with a conditional update and puts the sprint in
the same transaction, so concurrent creates never share a number; the loser reads again and retries.

Phase flow: planning -> active -> review -> retrospective -> completed, and review -> active. Each
transition is one conditional write on the sprint's status (plus the counter when the sprint enters
or leaves `active`, so at most one sprint is active), audited in the same transaction. The active
sprint is "the current sprint" of `sprints/current/...`.

Analytics read a sprint's tasks with one bounded Query on GSI3 (tasks by sprint); velocity does that
once per completed sprint it reports.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from agentplane import audit, ids, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.errors import Conflict, InvalidTransition, NotFound, PreconditionFailed
from agentplane.ids import iso, new_id, parse_iso
from agentplane.logic.activity import query_filled
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
    Sprint,
    SprintAnalytics,
    SprintCreate,
    SprintReview,
    SprintStart,
    SprintStatus,
    SprintSummary,
    SprintTaskSummary,
    SprintUpdate,
    Velocity,
    VelocityEntry,
)
from agentplane.models.tasks import Task
from agentplane.store import Expr, TransactionFailed, Update, attr_eq, exists, get_store, not_exists

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
# Task items each side of the daily analytics reads at most.
DAILY_READ_CAP = 2000
# Retrospective comments a review includes.
REVIEW_RETRO_CAP = 200
_TASK_ID_PREFIX = "task"
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


def list_sprint_tasks(
    access: Access, sprint: int | None, limit: int, cursor: str | None
) -> tuple[list[Task], str | None]:
    """Tasks of the active sprint (`sprints/current/tasks`), or of the sprint number given: tasks
    may be planned into a sprint before it is created, so that number need not exist yet."""
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
    tasks = [Task.model_validate(item) for item in page.items if not item.get("deleted_at")]
    return tasks, encode_cursor(page.last_key, scope, query)


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
    """Toban's CLI entry point: activate the current sprint (the latest one not completed) and
    answer it with its tasks. An already active sprint is answered as it is."""
    ws = access.workspace_id
    for _ in range(_WRITE_ATTEMPTS):
        active = _active_number(ws)
        if active is not None:
            return _start_answer(ws, _load_sprint(ws, active), started=False)
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
        return _start_answer(ws, started, started=True)
    raise Conflict("the current sprint is being changed by others; retry")


def _start_answer(ws: str, sprint: Item, *, started: bool) -> SprintStart:
    items, truncated = _sprint_task_items(ws, int(sprint["number"]))
    return SprintStart(sprint=_to_sprint(sprint), started=started, tasks=_task_summaries(items), truncated=truncated)


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


def _points(item: Item) -> int:
    return int(item.get("story_points") or 0)


def _is_done(item: Item) -> bool:
    return bool(item.get("status") == _DONE)


def _completed_at(item: Item) -> str | None:
    """When a done task was finished (its last update for tasks written before completed_at existed)."""
    if not _is_done(item):
        return None
    value = item.get("completed_at") or item.get("updated_at")
    return str(value) if value else None


def _agent_of(item: Item) -> str:
    return str(item.get("assignee") or item.get("owner") or "unassigned")


def _task_summaries(items: Iterable[Item]) -> list[SprintTaskSummary]:
    return [SprintTaskSummary.model_validate({**item, "completed_at": _completed_at(item)}) for item in items]


def _percent(part: int, whole: int) -> int:
    """Whole per cent, rounded half up (6 of 10 -> 60, 1 of 8 -> 13)."""
    return (part * 200 + whole) // (2 * whole) if whole else 0


def _summary(items: list[Item]) -> SprintSummary:
    statuses = Counter(str(item.get("status")) for item in items)
    done = statuses[_DONE]
    return SprintSummary(
        total=len(items),
        done=done,
        review=statuses["review"],
        in_progress=statuses["in_progress"],
        todo=statuses["todo"],
        blocked=statuses["blocked"],
        completion_rate=_percent(done, len(items)),
        total_points=sum(_points(item) for item in items),
        done_points=sum(_points(item) for item in items if _is_done(item)),
    )


def _day(value: str) -> date:
    return parse_iso(value).astimezone(UTC).date()


def _burndown(sprint: Item, items: list[Item], today: date) -> list[BurndownDay]:
    """Tasks and points still open at the end of each day, from the sprint's start to its end
    (completion) or today. A task finished before the sprint started counts as done on day one."""
    start = _day(sprint.get("started_at") or sprint["created_at"])
    end = _day(sprint["completed_at"]) if sprint.get("completed_at") else today
    end = max(end, start)
    first = max(start, end - timedelta(days=MAX_BURNDOWN_DAYS - 1))
    done_on: Counter[date] = Counter()
    points_on: Counter[date] = Counter()
    for item in items:
        finished = _completed_at(item)
        if finished is None:
            continue
        day = max(_day(finished), start)
        done_on[day] += 1
        points_on[day] += _points(item)
    total, total_points = len(items), sum(_points(item) for item in items)
    done_before = sum(count for day, count in done_on.items() if day < first)
    points_before = sum(points for day, points in points_on.items() if day < first)
    days: list[BurndownDay] = []
    done_so_far, points_so_far = done_before, points_before
    day = first
    while day <= end:
        done_so_far += done_on[day]
        points_so_far += points_on[day]
        days.append(
            BurndownDay(
                date=day.isoformat(),
                remaining=total - done_so_far,
                remaining_points=total_points - points_so_far,
                done=done_on[day],
            )
        )
        day += timedelta(days=1)
    return days


def sprint_analytics(access: Access, number: int) -> SprintAnalytics:
    ws = access.workspace_id
    sprint = _load_sprint(ws, number)
    items, truncated = _sprint_task_items(ws, number)
    by_agent: dict[str, dict[str, int]] = defaultdict(lambda: {"total": 0, "done": 0, "points": 0, "done_points": 0})
    for item in items:
        row = by_agent[_agent_of(item)]
        row["total"] += 1
        row["points"] += _points(item)
        if _is_done(item):
            row["done"] += 1
            row["done_points"] += _points(item)
    return SprintAnalytics(
        sprint=_to_sprint(sprint),
        summary=_summary(items),
        by_agent={name: AgentBreakdown(**row) for name, row in sorted(by_agent.items())},
        by_type=dict(sorted(Counter(str(item.get("type")) for item in items).items())),
        by_priority=dict(sorted(Counter(str(item.get("priority")) for item in items).items())),
        burndown=_burndown(sprint, items, ids.now().date()),
        tasks=_task_summaries(items),
        truncated=truncated,
    )


def sprint_review(access: Access, number: int) -> SprintReview:
    ws = access.workspace_id
    sprint = _load_sprint(ws, number)
    items, truncated = _sprint_task_items(ws, number)
    by_owner: dict[str, list[SprintTaskSummary]] = defaultdict(list)
    for summary in _task_summaries(items):
        by_owner[summary.assignee or summary.owner or "unassigned"].append(summary)
    retro = get_store().query(keys.sprint_retro_pk(ws, number), limit=REVIEW_RETRO_CAP)
    return SprintReview(
        sprint=_to_sprint(sprint),
        summary=_summary(items),
        by_owner=dict(sorted(by_owner.items())),
        retro=[RetroComment.model_validate(item) for item in retro.items],
        truncated=truncated or retro.last_key is not None,
    )


def velocity(access: Access, limit: int) -> Velocity:
    """Done tasks and points of each of the last `limit` completed sprints, oldest first."""
    ws = access.workspace_id
    completed: list[Item] = []
    for sprint in _sprints_newest_first(ws, attr_eq("status", SprintStatus.completed.value)):
        completed.append(sprint)
        if len(completed) >= limit:
            break
    entries = []
    for sprint in reversed(completed):
        summary = _summary(_sprint_task_items(ws, int(sprint["number"]))[0])
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
    average = round(sum(e.done_points for e in entries) / len(entries), 2) if entries else 0.0
    return Velocity(velocity=entries, average_done_points=average)


def _read_capped(
    partition: str, index: str, *, sk_between: tuple[str, str] | None, filter: Expr | None
) -> tuple[list[Item], bool]:
    items: list[Item] = []
    start: dict[str, Any] | None = None
    read = 0
    while read < DAILY_READ_CAP:
        page = get_store().query(
            partition,
            index=index,
            sk_between=sk_between,
            limit=min(_TASK_PAGE, DAILY_READ_CAP - read),
            start_key=start,
            filter=filter,
            newest_first=True,
        )
        read += min(_TASK_PAGE, DAILY_READ_CAP - read)
        items += page.items
        start = page.last_key
        if start is None:
            return items, False
    return items, True


def daily_analytics(access: Access, day: date | None, days: int) -> DailyAnalytics:
    """Tasks created and completed per day over `days` days ending on `day` (default today), with
    Toban's scorecard and hourly view of that last day.

    Created: live tasks whose (time-ordered) ids fall in the window, one key-range Query on the
    workspace's task list. Completed: tasks now done whose completed_at falls in the window, read
    from the done-status index newest first. Each read stops after DAILY_READ_CAP items.
    """
    ws = access.workspace_id
    last = day or ids.now().date()
    first = last - timedelta(days=days - 1)
    window_start = datetime.combine(first, time.min, UTC)
    window_end = datetime.combine(last, time.max, UTC)
    created, created_cut = _read_capped(
        keys.task_list_gsi(ws),
        keys.GSI2,
        sk_between=ids.id_range(_TASK_ID_PREFIX, window_start, window_end),
        filter=None,
    )
    low, high = iso(window_start), iso(window_end)
    finished_in_window = Expr(
        "#c BETWEEN :lo AND :hi OR (attribute_not_exists(#c) AND #u BETWEEN :lo AND :hi)",
        {"#c": "completed_at", "#u": "updated_at"},
        {":lo": low, ":hi": high},
    )
    done, done_cut = _read_capped(
        keys.task_status_gsi(ws, _DONE), keys.GSI1, sk_between=None, filter=finished_in_window
    )

    created_on = Counter(_day(str(item["created_at"])) for item in created if item.get("created_at"))
    done_on: Counter[date] = Counter()
    points_on: Counter[date] = Counter()
    last_day_done: list[Item] = []
    for item in done:
        finished = _completed_at(item)
        if finished is None:
            continue
        finished_day = _day(finished)
        done_on[finished_day] += 1
        points_on[finished_day] += _points(item)
        if finished_day == last:
            last_day_done.append(item)

    daily, cumulative, running = [], [], 0
    for offset in range(days):
        current = first + timedelta(days=offset)
        running += done_on[current]
        daily.append(
            DailyCount(
                date=current.isoformat(),
                created=created_on[current],
                completed=done_on[current],
                points=points_on[current],
            )
        )
        cumulative.append(CumulativeDay(date=current.isoformat(), total=running, daily=done_on[current]))

    hourly_done = Counter(parse_iso(str(_completed_at(item))).astimezone(UTC).hour for item in last_day_done)
    hourly_created = Counter(
        parse_iso(str(item["created_at"])).astimezone(UTC).hour
        for item in created
        if item.get("created_at") and _day(str(item["created_at"])) == last
    )
    last_day_done.sort(key=lambda item: str(_completed_at(item)))
    return DailyAnalytics(
        date=last.isoformat(),
        days=days,
        scorecard=DailyScorecard(
            tasks_done=len(last_day_done),
            points=sum(_points(item) for item in last_day_done),
            agents_active=len({_agent_of(item) for item in last_day_done} - {"unassigned"}),
            types=dict(sorted(Counter(str(item.get("type")) for item in last_day_done).items())),
        ),
        hourly=[HourlyActivity(hour=h, done=hourly_done[h], created=hourly_created[h]) for h in range(24)],
        daily=daily,
        cumulative=cumulative,
        tasks=_task_summaries(last_day_done),
        truncated=created_cut or done_cut,
    )

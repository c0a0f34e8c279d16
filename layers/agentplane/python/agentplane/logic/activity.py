"""Reading the audit trail, and the activity timeline that agents and people write.

Audit rows and activity entries each live in one partition per workspace whose sort keys are
time-ordered ids, so a time window is a key range and every read here is one bounded Query;
the other filters narrow that Query.

The audit trail's rows are `AuditItem`s (read by `audit_trail`); activity entries are `ActivityItem`s.

`logs` (Orkosi's log lines, Takosumi's operation logs) is the activity timeline seen as log lines:
agents write them with `POST activity` (with a `level`), and `GET logs` filters by agent, minimum
level and text. The record of state-changing calls is the audit trail (`audit-logs`).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from agentplane import ids, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.activity import ActivityItem, activity_in_window, activity_log_lines, activity_timeline
from agentplane.entities.audit import audit_trail
from agentplane.errors import Unprocessable
from agentplane.ids import iso, new_id
from agentplane.logic import known_secrets
from agentplane.models.audit import (
    Activity,
    ActivityCreate,
    ActivityDay,
    ActivityLevel,
    ActivityStats,
    ActorType,
    AuditEvent,
    LogLine,
)
from agentplane.redact import redact_text, redact_value

Item = dict[str, Any]

# Activity entries one stats answer reads at most, and the page size it reads with.
STATS_READ_CAP = 5000
_STATS_PAGE = 1000
MAX_STATS_DAYS = 90
_LEVEL_ORDER = [ActivityLevel.debug, ActivityLevel.info, ActivityLevel.warn, ActivityLevel.error]


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _window(prefix: str, since: datetime | None, until: datetime | None) -> tuple[str, str] | None:
    """The sort-key range of ids minted in [since, until], or None for the whole partition."""
    if since is None and until is None:
        return None
    low = _utc(since) if since else datetime(1970, 1, 1, tzinfo=UTC)
    high = _utc(until) if until else ids.now() + timedelta(days=1)
    if low > high:
        raise Unprocessable(
            "'from' must not be later than 'to'", errors=[{"field": "from", "message": "later than 'to'"}]
        )
    return ids.id_range(prefix, low, high)


def _time_query(since: datetime | None, until: datetime | None) -> dict[str, str | None]:
    return {"from": iso(_utc(since)) if since else None, "to": iso(_utc(until)) if until else None}


# --- audit trail ----------------------------------------------------------------------------------


def list_audit_logs(
    access: Access,
    *,
    actor: str | None,
    action: str | None,
    target_type: str | None,
    target_id: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[AuditEvent], str | None]:
    """The workspace's audit events, newest first."""
    ws = access.workspace_id
    filters = {"actor_id": actor, "action": action, "target_type": target_type, "target_id": target_id}
    query = {**filters, **_time_query(since, until)}
    scope = f"audit:{ws}"
    page = audit_trail(
        ws,
        equal={name: value for name, value in filters.items() if value is not None},
        window=_window(keys.AUDIT_ID_PREFIX, since, until),
        limit=limit,
        start=decode_cursor(cursor, scope, query),
    )
    return [AuditEvent.model_validate(event.fields()) for event in page.items], encode_cursor(
        page.last_key, scope, query
    )


# --- activity timeline ------------------------------------------------------------------------------


def _actor_type(access: Access) -> ActorType:
    kind = access.principal.kind
    if kind == "agent_key":
        return ActorType.agent
    if kind == "api_key":
        return ActorType.key
    return ActorType.user


def record_activity(access: Access, body: ActivityCreate) -> Activity:
    """Agents' log lines repeat what they ran and saw: the message and metadata are stored redacted,
    with the workspace's secrets (one read before the transaction)."""
    ws = access.workspace_id
    known = known_secrets.read(ws)
    entry = ActivityItem(
        workspace_id=ws,
        id=new_id(keys.ACTIVITY_ID_PREFIX),
        type=body.type,
        message=redact_text(body.message, known),
        agent=body.agent or access.principal.agent_name,
        task_id=body.task_id,
        level=body.level.value,
        metadata=redact_value(body.metadata, known),
        actor_id=access.actor_id,
        actor_type=_actor_type(access).value,
        created_at=iso(),
    )
    tx = access.transaction()
    tx.create(entry)
    access.audit(tx, "activity.created", "activity", entry.id, {"type": body.type})
    access.commit(tx)
    return entry.to_model()


def list_activity(
    access: Access,
    *,
    type: str | None,
    agent: str | None,
    task_id: str | None,
    actor: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Activity], str | None]:
    """The activity timeline, newest first."""
    ws = access.workspace_id
    filters = {"type": type, "agent": agent, "task_id": task_id, "actor_id": actor}
    query = {**filters, **_time_query(since, until)}
    scope = f"activity:{ws}"
    page = activity_timeline(
        ws,
        window=_window(keys.ACTIVITY_ID_PREFIX, since, until),
        equal=filters,
        limit=limit,
        start=decode_cursor(cursor, scope, query),
    )
    return [entry.to_model() for entry in page.items], encode_cursor(page.last_key, scope, query)


def activity_stats(access: Access, *, since: datetime | None, until: datetime | None, days: int) -> ActivityStats:
    """Counts over a window (default: the last `days` days), from one bounded Query on its key range."""
    ws = access.workspace_id
    high = _utc(until) if until else ids.now()
    low = _utc(since) if since else high - timedelta(days=days)
    if low > high:
        raise Unprocessable(
            "'from' must not be later than 'to'", errors=[{"field": "from", "message": "later than 'to'"}]
        )
    if high - low > timedelta(days=MAX_STATS_DAYS):
        raise Unprocessable(
            f"the window may span at most {MAX_STATS_DAYS} days",
            errors=[{"field": "from", "message": f"window longer than {MAX_STATS_DAYS} days"}],
        )
    window = ids.id_range(keys.ACTIVITY_ID_PREFIX, low, high)
    entries, truncated = activity_in_window(ws, window, at_most=STATS_READ_CAP, round_size=_STATS_PAGE)
    per_day = Counter(entry.created_at[:10] for entry in entries)
    by_day = []
    day = low.date()
    while day <= high.date():
        by_day.append(ActivityDay(date=day.isoformat(), count=per_day[day.isoformat()]))
        day += timedelta(days=1)
    return ActivityStats(
        since=iso(low),
        until=iso(high),
        total=len(entries),
        by_type=dict(sorted(Counter(entry.type for entry in entries).items())),
        by_actor=dict(sorted(Counter(entry.actor_id for entry in entries).items())),
        by_agent=dict(sorted(Counter(entry.agent for entry in entries if entry.agent).items())),
        by_level=dict(sorted(Counter(entry.level for entry in entries).items())),
        by_day=by_day,
        truncated=truncated,
    )


# --- logs -----------------------------------------------------------------------------------------


def list_logs(
    access: Access,
    *,
    agent: str | None,
    level: ActivityLevel | None,
    q: str | None,
    since: datetime | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[LogLine], str | None]:
    """Activity as log lines, newest first: `level` is a minimum (warn gives warn and error), `q`
    matches message text regardless of case."""
    ws = access.workspace_id
    query = {"agent": agent, "level": level, "q": q, **_time_query(since, None)}
    scope = f"logs:{ws}"
    levels = [lv.value for lv in _LEVEL_ORDER[_LEVEL_ORDER.index(level) :]] if level is not None else None
    page = activity_log_lines(
        ws,
        window=_window(keys.ACTIVITY_ID_PREFIX, since, None),
        agent=agent,
        levels=levels,
        text=q,
        limit=limit,
        start=decode_cursor(cursor, scope, query),
    )
    lines = [
        LogLine(
            id=entry.id,
            at=entry.created_at,
            level=ActivityLevel(entry.level),
            source=entry.agent or entry.actor_id,
            type=entry.type,
            message=entry.message,
            task_id=entry.task_id,
            actor_id=entry.actor_id,
        )
        for entry in page.items
    ]
    return lines, encode_cursor(page.last_key, scope, query)

"""Audit family: /api/v1/workspaces/{ws}/audit-logs, activity timeline and stats, and logs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from agentplane.access import workspace_access
from agentplane.http import (
    PROBLEM_RESPONSES,
    Cursor,
    Data,
    DataList,
    Limit,
    create_app,
    created,
    lambda_entry,
    ok,
    page,
    request_id,
    request_principal,
)
from agentplane.logic import activity
from agentplane.models.audit import Activity, ActivityCreate, ActivityLevel, ActivityStats, AuditEvent, LogLine

app = create_app()
WS = "/api/v1/workspaces/<ws>"
Text = Annotated[str | None, Query(min_length=1, max_length=200)]
Since = Annotated[datetime | None, Query(alias="from", description="Earliest time, ISO-8601 (UTC if no offset)")]
Until = Annotated[datetime | None, Query(alias="to", description="Latest time, ISO-8601 (UTC if no offset)")]


@app.get(f"{WS}/audit-logs", responses=PROBLEM_RESPONSES)
def list_audit_logs(
    ws: str,
    actor: Text = None,
    action: Text = None,
    target_type: Text = None,
    target_id: Text = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DataList[AuditEvent]:
    access = workspace_access(request_principal(app), ws, "admin")
    items, next_cursor = activity.list_audit_logs(
        access,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    return page(items, next_cursor, limit)


@app.post(f"{WS}/activity", responses={201: {"description": "Created"}, **PROBLEM_RESPONSES})
def record_activity(ws: str, body: ActivityCreate) -> Response[Data[Activity]]:
    access = workspace_access(request_principal(app), ws, "agents:write", request_id=request_id(app))
    return created(activity.record_activity(access, body))


@app.get(f"{WS}/activity", responses=PROBLEM_RESPONSES)
def list_activity(
    ws: str,
    type: Text = None,
    agent: Text = None,
    task_id: Text = None,
    actor: Text = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DataList[Activity]:
    access = workspace_access(request_principal(app), ws, "agents:read")
    items, next_cursor = activity.list_activity(
        access,
        type=type,
        agent=agent,
        task_id=task_id,
        actor=actor,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    return page(items, next_cursor, limit)


@app.get(f"{WS}/activity/stats", responses=PROBLEM_RESPONSES)
def activity_stats(
    ws: str,
    since: Since = None,
    until: Until = None,
    days: Annotated[int, Query(ge=1, le=activity.MAX_STATS_DAYS, description="Window when no 'from' (default 7)")] = 7,
) -> Data[ActivityStats]:
    access = workspace_access(request_principal(app), ws, "agents:read")
    return ok(activity.activity_stats(access, since=since, until=until, days=days))


@app.get(f"{WS}/logs", responses=PROBLEM_RESPONSES)
def list_logs(
    ws: str,
    agent: Text = None,
    level: Annotated[ActivityLevel | None, Query(description="Minimum level")] = None,
    q: Text = None,
    since: Since = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DataList[LogLine]:
    access = workspace_access(request_principal(app), ws, "agents:read")
    items, next_cursor = activity.list_logs(
        access, agent=agent, level=level, q=q, since=since, limit=limit, cursor=cursor
    )
    return page(items, next_cursor, limit)


lambda_handler = lambda_entry(app)

"""Audit family: /api/v1/workspaces/{ws}/audit-logs, activity timeline and stats, and logs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from agentplane.access import Access
from agentplane.http import (
    PROBLEM_RESPONSES,
    create_app,
    created,
    lambda_entry,
    ok,
    page,
    workspace_scope,
)
from agentplane.logic import activity
from agentplane.models.audit import (
    SINCE,
    UNTIL,
    Activity,
    ActivityCreate,
    ActivityQuery,
    ActivityStats,
    AuditEvent,
    AuditQuery,
    LogLine,
    LogQuery,
)
from agentplane.models.envelope import Data, DataList

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)
WS = "/api/v1/workspaces/<ws>"
Since = Annotated[datetime | None, Query(alias="from", description=SINCE)]
Until = Annotated[datetime | None, Query(alias="to", description=UNTIL)]
ReadAudit = Annotated[Access, workspace_scope("admin")]
ReadActivity = Annotated[Access, workspace_scope("agents:read")]
WriteActivity = Annotated[Access, workspace_scope("agents:write")]


@app.get(f"{WS}/audit-logs", responses=PROBLEM_RESPONSES)
def list_audit_logs(ws: str, access: ReadAudit, query: Annotated[AuditQuery, Query()]) -> DataList[AuditEvent]:
    items, next_cursor = activity.list_audit_logs(
        access,
        actor=query.actor,
        action=query.action,
        target_type=query.target_type,
        target_id=query.target_id,
        since=query.since,
        until=query.until,
        limit=query.limit,
        cursor=query.cursor,
    )
    return page(items, next_cursor, query.limit)


@app.post(f"{WS}/activity", responses={201: {"description": "Created"}, **PROBLEM_RESPONSES})
def record_activity(ws: str, access: WriteActivity, body: ActivityCreate) -> Response[Data[Activity]]:
    return created(activity.record_activity(access, body))


@app.get(f"{WS}/activity", responses=PROBLEM_RESPONSES)
def list_activity(ws: str, access: ReadActivity, query: Annotated[ActivityQuery, Query()]) -> DataList[Activity]:
    items, next_cursor = activity.list_activity(
        access,
        type=query.type,
        agent=query.agent,
        task_id=query.task_id,
        actor=query.actor,
        since=query.since,
        until=query.until,
        limit=query.limit,
        cursor=query.cursor,
    )
    return page(items, next_cursor, query.limit)


@app.get(f"{WS}/activity/stats", responses=PROBLEM_RESPONSES)
def activity_stats(
    ws: str,
    access: ReadActivity,
    since: Since = None,
    until: Until = None,
    days: Annotated[int, Query(ge=1, le=activity.MAX_STATS_DAYS, description="Window when no 'from' (default 7)")] = 7,
) -> Data[ActivityStats]:
    return ok(activity.activity_stats(access, since=since, until=until, days=days))


@app.get(f"{WS}/logs", responses=PROBLEM_RESPONSES)
def list_logs(ws: str, access: ReadActivity, query: Annotated[LogQuery, Query()]) -> DataList[LogLine]:
    items, next_cursor = activity.list_logs(
        access,
        agent=query.agent,
        level=query.level,
        q=query.q,
        since=query.since,
        limit=query.limit,
        cursor=query.cursor,
    )
    return page(items, next_cursor, query.limit)


lambda_handler = lambda_entry(app)

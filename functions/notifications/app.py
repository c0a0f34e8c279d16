"""Notifications family: /api/v1/workspaces/{ws}/notifications (the caller's inbox)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from agentplane.access import workspace_access
from agentplane.http import (
    PROBLEM_RESPONSES,
    Cursor,
    Limit,
    create_app,
    created,
    lambda_entry,
    ok,
    page,
    request_id,
    request_principal,
)
from agentplane.logic import notifications
from agentplane.models.envelope import Data, DataList
from agentplane.models.notifications import (
    Notification,
    NotificationCreate,
    NotificationCreated,
    NotificationType,
    ReadAllResult,
    UnreadCount,
)

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)
BASE = "/api/v1/workspaces/<ws>/notifications"


@app.get(BASE, responses=PROBLEM_RESPONSES)
def list_notifications(
    ws: str,
    read: Annotated[bool | None, Query(description="true: only read ones; false: only unread ones")] = None,
    type: Annotated[NotificationType | None, Query()] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DataList[Notification]:
    access = workspace_access(request_principal(app), ws)
    items, next_cursor = notifications.list_notifications(access, read=read, type=type, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.post(BASE, responses={201: {"description": "Created"}, **PROBLEM_RESPONSES})
def create_notification(ws: str, body: NotificationCreate) -> Response[Data[NotificationCreated]]:
    access = workspace_access(request_principal(app), ws)
    return created(notifications.create_notification(access, body, request_id(app)))


@app.get(f"{BASE}/unread-count", responses=PROBLEM_RESPONSES)
def unread_count(ws: str) -> Data[UnreadCount]:
    access = workspace_access(request_principal(app), ws)
    return ok(notifications.unread_count(access))


@app.patch(f"{BASE}/read-all", responses=PROBLEM_RESPONSES)
def mark_all_read(ws: str) -> Data[ReadAllResult]:
    access = workspace_access(request_principal(app), ws)
    return ok(notifications.mark_all_read(access, request_id(app)))


@app.patch(f"{BASE}/<notification_id>/read", responses=PROBLEM_RESPONSES)
def mark_read(ws: str, notification_id: str) -> Data[Notification]:
    access = workspace_access(request_principal(app), ws)
    return ok(notifications.mark_read(access, notification_id, request_id(app)))


lambda_handler = lambda_entry(app)

"""Notifications family: /api/v1/workspaces/{ws}/notifications (the caller's inbox).

Every member has an inbox, so the routes need membership and no particular scope."""

from __future__ import annotations

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
from agentplane.logic import notifications
from agentplane.models.envelope import Data, DataList
from agentplane.models.notifications import (
    Notification,
    NotificationCreate,
    NotificationCreated,
    NotificationQuery,
    ReadAllResult,
    UnreadCount,
)

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)
BASE = "/api/v1/workspaces/<ws>/notifications"
Member = Annotated[Access, workspace_scope()]


@app.get(BASE, responses=PROBLEM_RESPONSES)
def list_notifications(ws: str, access: Member, query: Annotated[NotificationQuery, Query()]) -> DataList[Notification]:
    items, next_cursor = notifications.list_notifications(
        access, read=query.read, type=query.type, limit=query.limit, cursor=query.cursor
    )
    return page(items, next_cursor, query.limit)


@app.post(BASE, responses={201: {"description": "Created"}, **PROBLEM_RESPONSES})
def create_notification(ws: str, access: Member, body: NotificationCreate) -> Response[Data[NotificationCreated]]:
    return created(notifications.create_notification(access, body))


@app.get(f"{BASE}/unread-count", responses=PROBLEM_RESPONSES)
def unread_count(ws: str, access: Member) -> Data[UnreadCount]:
    return ok(notifications.unread_count(access))


@app.patch(f"{BASE}/read-all", responses=PROBLEM_RESPONSES)
def mark_all_read(ws: str, access: Member) -> Data[ReadAllResult]:
    return ok(notifications.mark_all_read(access))


@app.patch(f"{BASE}/<notification_id>/read", responses=PROBLEM_RESPONSES)
def mark_read(ws: str, notification_id: str, access: Member) -> Data[Notification]:
    return ok(notifications.mark_read(access, notification_id))


lambda_handler = lambda_entry(app)

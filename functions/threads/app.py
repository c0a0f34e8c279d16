"""Threads family: /api/v1/workspaces/{ws}/threads (messages, shares), team messages, and the
public read of a shared thread.

Reading threads and messages needs `tasks:read`, writing them `tasks:write` (what agents hold);
creating or revoking a public share needs `projects:write`, which agent keys do not hold, so only
people can publish a thread outside the workspace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from agentplane import ratelimit
from agentplane.access import workspace_access
from agentplane.http import (
    PROBLEM_RESPONSES,
    PUBLIC,
    Cursor,
    IfMatch,
    Limit,
    add_response_headers,
    create_app,
    created,
    lambda_entry,
    no_content,
    ok,
    page,
    request_id,
    request_principal,
    source_ip,
)
from agentplane.logic import threads
from agentplane.models.envelope import Data, DataList, PageMeta
from agentplane.models.threads import (
    CreatedThreadShare,
    MessageMode,
    SharedThreadPage,
    TeamMessage,
    TeamMessageCreate,
    Thread,
    ThreadCreate,
    ThreadMessage,
    ThreadMessageCreate,
    ThreadShare,
    ThreadShareCreate,
    ThreadStatus,
    ThreadUpdate,
)

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)
BASE = "/api/v1/workspaces/<ws>/threads"
CREATED = {201: {"description": "Created"}, **PROBLEM_RESPONSES}
DELETED = {204: {"description": "Deleted"}, **PROBLEM_RESPONSES}
# Reads of shared threads by anyone, counted per source IP.
PUBLIC_READS_PER_MINUTE = 120


def per_ip_public_reads(app: APIGatewayHttpResolver, next_middleware: Callable[..., Response[Any]]) -> Response[Any]:
    decision = ratelimit.hit_exact(f"public-share:{source_ip(app)}", PUBLIC_READS_PER_MINUTE)
    add_response_headers(decision.headers())
    return next_middleware(app)


@app.post(BASE, responses=CREATED)
def create_thread(ws: str, body: ThreadCreate) -> Response[Data[Thread]]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return created(threads.create_thread(access, body, request_id(app)))


@app.get(BASE, responses=PROBLEM_RESPONSES)
def list_threads(
    ws: str, status: Annotated[ThreadStatus | None, Query()] = None, limit: Limit = 50, cursor: Cursor = None
) -> DataList[Thread]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    items, next_cursor = threads.list_threads(access, status=status, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.get(f"{BASE}/<thread_id>", responses=PROBLEM_RESPONSES)
def get_thread(ws: str, thread_id: str) -> Data[Thread]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    return ok(threads.get_thread(access, thread_id))


@app.patch(f"{BASE}/<thread_id>", responses=PROBLEM_RESPONSES)
def update_thread(
    ws: str,
    thread_id: str,
    body: ThreadUpdate,
    if_match: IfMatch = None,
) -> Data[Thread]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return ok(threads.update_thread(access, thread_id, body, if_match, request_id(app)))


@app.delete(f"{BASE}/<thread_id>", responses=DELETED)
def delete_thread(ws: str, thread_id: str) -> Response[Any]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    threads.delete_thread(access, thread_id, request_id(app))
    return no_content()


@app.post(f"{BASE}/<thread_id>/messages", responses=CREATED)
def post_thread_message(ws: str, thread_id: str, body: ThreadMessageCreate) -> Response[Data[ThreadMessage]]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return created(threads.post_message(access, thread_id, body, request_id(app)))


@app.get(f"{BASE}/<thread_id>/messages", responses=PROBLEM_RESPONSES)
def list_thread_messages(ws: str, thread_id: str, limit: Limit = 50, cursor: Cursor = None) -> DataList[ThreadMessage]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    items, next_cursor = threads.list_messages(access, thread_id, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.post(f"{BASE}/<thread_id>/share", responses=CREATED)
def share_thread(ws: str, thread_id: str, body: ThreadShareCreate | None = None) -> Response[Data[CreatedThreadShare]]:
    access = workspace_access(request_principal(app), ws, "projects:write")
    return created(threads.create_share(access, thread_id, body or ThreadShareCreate(), request_id(app)))


@app.get(f"{BASE}/<thread_id>/shares", responses=PROBLEM_RESPONSES)
def list_thread_shares(ws: str, thread_id: str, limit: Limit = 50, cursor: Cursor = None) -> DataList[ThreadShare]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    items, next_cursor = threads.list_shares(access, thread_id, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.delete(f"{BASE}/<thread_id>/share/<share_id>", responses=DELETED)
def revoke_thread_share(ws: str, thread_id: str, share_id: str) -> Response[Any]:
    access = workspace_access(request_principal(app), ws, "projects:write")
    threads.revoke_share(access, thread_id, share_id, request_id(app))
    return no_content()


@app.get(
    "/api/v1/public/thread-shares/<token>",
    middlewares=[per_ip_public_reads],
    responses=PROBLEM_RESPONSES,
    security=PUBLIC,
)
def read_shared_thread(
    token: Annotated[str, Path(max_length=512)], limit: Limit = 50, cursor: Cursor = None
) -> SharedThreadPage:
    view, next_cursor = threads.read_shared_thread(token, limit=limit, cursor=cursor)
    return SharedThreadPage(data=view, meta=PageMeta(next_cursor=next_cursor, limit=limit))


@app.post("/api/v1/workspaces/<ws>/messages", responses=CREATED)
def post_team_message(ws: str, body: TeamMessageCreate) -> Response[Data[TeamMessage]]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return created(threads.post_team_message(access, body, request_id(app)))


@app.get("/api/v1/workspaces/<ws>/messages", responses=PROBLEM_RESPONSES)
def list_team_messages(
    ws: str,
    channel: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")] = None,
    mode: Annotated[MessageMode | None, Query()] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DataList[TeamMessage]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    items, next_cursor = threads.list_team_messages(access, channel=channel, mode=mode, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


lambda_handler = lambda_entry(app)

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
from agentplane.access import Access
from agentplane.http import (
    CREATED,
    DELETED,
    PROBLEM_RESPONSES,
    PUBLIC,
    IfMatch,
    add_response_headers,
    create_app,
    created,
    lambda_entry,
    no_content,
    ok,
    page,
    source_ip,
    workspace_scope,
)
from agentplane.logic import threads
from agentplane.models.common import ListQuery
from agentplane.models.envelope import Data, DataList, PageMeta
from agentplane.models.threads import (
    CreatedThreadShare,
    SharedThreadPage,
    TeamMessage,
    TeamMessageCreate,
    TeamMessageQuery,
    Thread,
    ThreadCreate,
    ThreadMessage,
    ThreadMessageCreate,
    ThreadQuery,
    ThreadShare,
    ThreadShareCreate,
    ThreadUpdate,
)

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)
BASE = "/api/v1/workspaces/<ws>/threads"
# Reads of shared threads by anyone, counted per source IP.
PUBLIC_READS_PER_MINUTE = 120
ReadThreads = Annotated[Access, workspace_scope("tasks:read")]
WriteThreads = Annotated[Access, workspace_scope("tasks:write")]
# Publishing a thread outside the workspace is for people only (agent keys lack projects:write).
ShareThreads = Annotated[Access, workspace_scope("projects:write")]


def per_ip_public_reads(app: APIGatewayHttpResolver, next_middleware: Callable[..., Response[Any]]) -> Response[Any]:
    decision = ratelimit.hit_exact(f"public-share:{source_ip(app)}", PUBLIC_READS_PER_MINUTE)
    add_response_headers(decision.headers())
    return next_middleware(app)


@app.post(BASE, responses=CREATED)
def create_thread(ws: str, access: WriteThreads, body: ThreadCreate) -> Response[Data[Thread]]:
    return created(threads.create_thread(access, body))


@app.get(BASE, responses=PROBLEM_RESPONSES)
def list_threads(ws: str, access: ReadThreads, query: Annotated[ThreadQuery, Query()]) -> DataList[Thread]:
    items, next_cursor = threads.list_threads(access, status=query.status, limit=query.limit, cursor=query.cursor)
    return page(items, next_cursor, query.limit)


@app.get(f"{BASE}/<thread_id>", responses=PROBLEM_RESPONSES)
def get_thread(ws: str, thread_id: str, access: ReadThreads) -> Data[Thread]:
    return ok(threads.get_thread(access, thread_id))


@app.patch(f"{BASE}/<thread_id>", responses=PROBLEM_RESPONSES)
def update_thread(
    ws: str, thread_id: str, access: WriteThreads, body: ThreadUpdate, if_match: IfMatch = None
) -> Data[Thread]:
    return ok(threads.update_thread(access, thread_id, body, if_match))


@app.delete(f"{BASE}/<thread_id>", responses=DELETED)
def delete_thread(ws: str, thread_id: str, access: WriteThreads) -> Response[Any]:
    threads.delete_thread(access, thread_id)
    return no_content()


@app.post(f"{BASE}/<thread_id>/messages", responses=CREATED)
def post_thread_message(
    ws: str, thread_id: str, access: WriteThreads, body: ThreadMessageCreate
) -> Response[Data[ThreadMessage]]:
    return created(threads.post_message(access, thread_id, body))


@app.get(f"{BASE}/<thread_id>/messages", responses=PROBLEM_RESPONSES)
def list_thread_messages(
    ws: str, thread_id: str, access: ReadThreads, query: Annotated[ListQuery, Query()]
) -> DataList[ThreadMessage]:
    items, next_cursor = threads.list_messages(access, thread_id, limit=query.limit, cursor=query.cursor)
    return page(items, next_cursor, query.limit)


@app.post(f"{BASE}/<thread_id>/share", responses=CREATED)
def share_thread(
    ws: str, thread_id: str, access: ShareThreads, body: ThreadShareCreate | None = None
) -> Response[Data[CreatedThreadShare]]:
    return created(threads.create_share(access, thread_id, body or ThreadShareCreate()))


@app.get(f"{BASE}/<thread_id>/shares", responses=PROBLEM_RESPONSES)
def list_thread_shares(
    ws: str, thread_id: str, access: ReadThreads, query: Annotated[ListQuery, Query()]
) -> DataList[ThreadShare]:
    items, next_cursor = threads.list_shares(access, thread_id, limit=query.limit, cursor=query.cursor)
    return page(items, next_cursor, query.limit)


@app.delete(f"{BASE}/<thread_id>/share/<share_id>", responses=DELETED)
def revoke_thread_share(ws: str, thread_id: str, share_id: str, access: ShareThreads) -> Response[Any]:
    threads.revoke_share(access, thread_id, share_id)
    return no_content()


@app.get(
    "/api/v1/public/thread-shares/<token>",
    middlewares=[per_ip_public_reads],
    responses=PROBLEM_RESPONSES,
    security=PUBLIC,
)
def read_shared_thread(
    token: Annotated[str, Path(max_length=512)], query: Annotated[ListQuery, Query()]
) -> SharedThreadPage:
    view, next_cursor = threads.read_shared_thread(token, limit=query.limit, cursor=query.cursor)
    return SharedThreadPage(data=view, meta=PageMeta(next_cursor=next_cursor, limit=query.limit))


@app.post("/api/v1/workspaces/<ws>/messages", responses=CREATED)
def post_team_message(ws: str, access: WriteThreads, body: TeamMessageCreate) -> Response[Data[TeamMessage]]:
    return created(threads.post_team_message(access, body))


@app.get("/api/v1/workspaces/<ws>/messages", responses=PROBLEM_RESPONSES)
def list_team_messages(
    ws: str, access: ReadThreads, query: Annotated[TeamMessageQuery, Query()]
) -> DataList[TeamMessage]:
    items, next_cursor = threads.list_team_messages(
        access, channel=query.channel, mode=query.mode, limit=query.limit, cursor=query.cursor
    )
    return page(items, next_cursor, query.limit)


lambda_handler = lambda_entry(app)

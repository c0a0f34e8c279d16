"""Search family: GET /api/v1/workspaces/{ws}/search, hits grouped by type."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query

from agentplane.access import workspace_access
from agentplane.http import PROBLEM_RESPONSES, create_app, lambda_entry, ok, request_principal
from agentplane.logic import search
from agentplane.models.envelope import Data
from agentplane.models.search import SearchResults

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)


@app.get("/api/v1/workspaces/<ws>/search", responses=PROBLEM_RESPONSES)
def search_workspace(
    ws: str,
    q: Annotated[str, Query(min_length=1, max_length=100, description="Words to find; every one must match")],
    types: Annotated[
        str | None,
        Query(max_length=200, description="Comma-separated groups (tasks, messages, threads, agents, projects, runs)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=50, description="Hits per group (default 10, max 50)")] = 10,
) -> Data[SearchResults]:
    access = workspace_access(request_principal(app), ws)
    return ok(search.search(access, q, search.parse_types(types), limit))


lambda_handler = lambda_entry(app)

"""Search family: GET /api/v1/workspaces/{ws}/search, hits grouped by type.

Any member may search; each group needs the scope that reads its kind (see logic.search)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query

from agentplane.access import Access
from agentplane.http import PROBLEM_RESPONSES, create_app, lambda_entry, ok, workspace_scope
from agentplane.logic import search
from agentplane.models.envelope import Data
from agentplane.models.search import SearchQuery, SearchResults

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)


@app.get("/api/v1/workspaces/<ws>/search", responses=PROBLEM_RESPONSES)
def search_workspace(
    ws: str, access: Annotated[Access, workspace_scope()], query: Annotated[SearchQuery, Query()]
) -> Data[SearchResults]:
    return ok(search.search(access, query.q, search.parse_types(query.types), query.limit))


lambda_handler = lambda_entry(app)

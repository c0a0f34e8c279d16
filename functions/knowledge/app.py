"""Knowledge family: ADRs, rules and failure records under /api/v1/workspaces/{ws}.

Reading needs `tasks:read` and writing `tasks:write`, the scopes agents hold, since agents both
follow this knowledge and add to it. Making a permanent rule deletable again needs `admin`.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from agentplane.access import workspace_access
from agentplane.http import (
    PROBLEM_RESPONSES,
    Cursor,
    IfMatch,
    Limit,
    create_app,
    created,
    lambda_entry,
    no_content,
    ok,
    page,
    request_id,
    request_principal,
)
from agentplane.logic import knowledge
from agentplane.models.envelope import Data, DataList
from agentplane.models.knowledge import (
    Adr,
    AdrCreate,
    AdrPrompt,
    AdrStatus,
    AdrUpdate,
    FailureCreate,
    FailureRecord,
    Rule,
    RuleCreate,
    RuleUpdate,
)

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)
WS = "/api/v1/workspaces/<ws>"
CREATED = {201: {"description": "Created"}, **PROBLEM_RESPONSES}
DELETED = {204: {"description": "Deleted"}, **PROBLEM_RESPONSES}
NameFilter = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]


@app.post(f"{WS}/adrs", responses=CREATED)
def create_adr(ws: str, body: AdrCreate) -> Response[Data[Adr]]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return created(knowledge.create_adr(access, body, request_id(app)))


@app.get(f"{WS}/adrs", responses=PROBLEM_RESPONSES)
def list_adrs(
    ws: str, status: Annotated[AdrStatus | None, Query()] = None, limit: Limit = 50, cursor: Cursor = None
) -> DataList[Adr]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    items, next_cursor = knowledge.list_adrs(access, status=status, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.get(f"{WS}/adrs/prompt", responses=PROBLEM_RESPONSES)
def adr_prompt(ws: str, include_proposed: Annotated[bool, Query()] = True) -> Data[AdrPrompt]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    return ok(knowledge.adr_prompt(access, include_proposed=include_proposed))


@app.get(f"{WS}/adrs/<adr_id>", responses=PROBLEM_RESPONSES)
def get_adr(ws: str, adr_id: str) -> Data[Adr]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    return ok(knowledge.get_adr(access, adr_id))


@app.patch(f"{WS}/adrs/<adr_id>", responses=PROBLEM_RESPONSES)
def update_adr(ws: str, adr_id: str, body: AdrUpdate, if_match: IfMatch = None) -> Data[Adr]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return ok(knowledge.update_adr(access, adr_id, body, if_match, request_id(app)))


@app.delete(f"{WS}/adrs/<adr_id>", responses=DELETED)
def delete_adr(ws: str, adr_id: str) -> Response[Any]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    knowledge.delete_adr(access, adr_id, request_id(app))
    return no_content()


@app.post(f"{WS}/rules", responses=CREATED)
def create_rule(ws: str, body: RuleCreate) -> Response[Data[Rule]]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return created(knowledge.create_rule(access, body, request_id(app)))


@app.get(f"{WS}/rules", responses=PROBLEM_RESPONSES)
def list_rules(
    ws: str,
    scope: NameFilter = None,
    agent: NameFilter = None,
    category: Annotated[str | None, Query(max_length=50)] = None,
    permanent: Annotated[bool | None, Query()] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DataList[Rule]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    items, next_cursor = knowledge.list_rules(
        access, scope=scope, agent=agent, category=category, permanent=permanent, limit=limit, cursor=cursor
    )
    return page(items, next_cursor, limit)


@app.patch(f"{WS}/rules/<rule_id>", responses=PROBLEM_RESPONSES)
def update_rule(ws: str, rule_id: str, body: RuleUpdate, if_match: IfMatch = None) -> Data[Rule]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return ok(knowledge.update_rule(access, rule_id, body, if_match, request_id(app)))


@app.delete(f"{WS}/rules/<rule_id>", responses=DELETED)
def delete_rule(ws: str, rule_id: str) -> Response[Any]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    knowledge.delete_rule(access, rule_id, request_id(app))
    return no_content()


@app.post(f"{WS}/failures", responses=CREATED)
def record_failure(ws: str, body: FailureCreate) -> Response[Data[FailureRecord]]:
    access = workspace_access(request_principal(app), ws, "tasks:write")
    return created(knowledge.record_failure(access, body, request_id(app)))


@app.get(f"{WS}/failures", responses=PROBLEM_RESPONSES)
def list_failures(
    ws: str,
    agent: Annotated[str | None, Query(max_length=100)] = None,
    task_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DataList[FailureRecord]:
    access = workspace_access(request_principal(app), ws, "tasks:read")
    items, next_cursor = knowledge.list_failures(access, agent=agent, task_id=task_id, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


lambda_handler = lambda_entry(app)

"""Knowledge family: ADRs, rules and failure records under /api/v1/workspaces/{ws}.

Reading needs `tasks:read` and writing `tasks:write`, the scopes agents hold, since agents both
follow this knowledge and add to it. Making a permanent rule deletable again needs `admin`.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from agentplane.access import Access
from agentplane.http import (
    CREATED,
    DELETED,
    PROBLEM_RESPONSES,
    IfMatch,
    create_app,
    created,
    lambda_entry,
    no_content,
    ok,
    page,
    workspace_scope,
)
from agentplane.logic import knowledge
from agentplane.models.envelope import Data, DataList
from agentplane.models.knowledge import (
    Adr,
    AdrCreate,
    AdrPrompt,
    AdrQuery,
    AdrUpdate,
    FailureCreate,
    FailureQuery,
    FailureRecord,
    Rule,
    RuleCreate,
    RuleQuery,
    RuleUpdate,
)

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)
WS = "/api/v1/workspaces/<ws>"
ReadKnowledge = Annotated[Access, workspace_scope("tasks:read")]
WriteKnowledge = Annotated[Access, workspace_scope("tasks:write")]


@app.post(f"{WS}/adrs", responses=CREATED)
def create_adr(ws: str, access: WriteKnowledge, body: AdrCreate) -> Response[Data[Adr]]:
    return created(knowledge.create_adr(access, body))


@app.get(f"{WS}/adrs", responses=PROBLEM_RESPONSES)
def list_adrs(ws: str, access: ReadKnowledge, query: Annotated[AdrQuery, Query()]) -> DataList[Adr]:
    items, next_cursor = knowledge.list_adrs(access, status=query.status, limit=query.limit, cursor=query.cursor)
    return page(items, next_cursor, query.limit)


@app.get(f"{WS}/adrs/prompt", responses=PROBLEM_RESPONSES)
def adr_prompt(ws: str, access: ReadKnowledge, include_proposed: Annotated[bool, Query()] = True) -> Data[AdrPrompt]:
    return ok(knowledge.adr_prompt(access, include_proposed=include_proposed))


@app.get(f"{WS}/adrs/<adr_id>", responses=PROBLEM_RESPONSES)
def get_adr(ws: str, adr_id: str, access: ReadKnowledge) -> Data[Adr]:
    return ok(knowledge.get_adr(access, adr_id))


@app.patch(f"{WS}/adrs/<adr_id>", responses=PROBLEM_RESPONSES)
def update_adr(ws: str, adr_id: str, access: WriteKnowledge, body: AdrUpdate, if_match: IfMatch = None) -> Data[Adr]:
    return ok(knowledge.update_adr(access, adr_id, body, if_match))


@app.delete(f"{WS}/adrs/<adr_id>", responses=DELETED)
def delete_adr(ws: str, adr_id: str, access: WriteKnowledge) -> Response[Any]:
    knowledge.delete_adr(access, adr_id)
    return no_content()


@app.post(f"{WS}/rules", responses=CREATED)
def create_rule(ws: str, access: WriteKnowledge, body: RuleCreate) -> Response[Data[Rule]]:
    return created(knowledge.create_rule(access, body))


@app.get(f"{WS}/rules", responses=PROBLEM_RESPONSES)
def list_rules(ws: str, access: ReadKnowledge, query: Annotated[RuleQuery, Query()]) -> DataList[Rule]:
    items, next_cursor = knowledge.list_rules(
        access,
        scope=query.scope,
        agent=query.agent,
        category=query.category,
        permanent=query.permanent,
        limit=query.limit,
        cursor=query.cursor,
    )
    return page(items, next_cursor, query.limit)


@app.patch(f"{WS}/rules/<rule_id>", responses=PROBLEM_RESPONSES)
def update_rule(
    ws: str, rule_id: str, access: WriteKnowledge, body: RuleUpdate, if_match: IfMatch = None
) -> Data[Rule]:
    return ok(knowledge.update_rule(access, rule_id, body, if_match))


@app.delete(f"{WS}/rules/<rule_id>", responses=DELETED)
def delete_rule(ws: str, rule_id: str, access: WriteKnowledge) -> Response[Any]:
    knowledge.delete_rule(access, rule_id)
    return no_content()


@app.post(f"{WS}/failures", responses=CREATED)
def record_failure(ws: str, access: WriteKnowledge, body: FailureCreate) -> Response[Data[FailureRecord]]:
    return created(knowledge.record_failure(access, body))


@app.get(f"{WS}/failures", responses=PROBLEM_RESPONSES)
def list_failures(ws: str, access: ReadKnowledge, query: Annotated[FailureQuery, Query()]) -> DataList[FailureRecord]:
    items, next_cursor = knowledge.list_failures(
        access, agent=query.agent, task_id=query.task_id, limit=query.limit, cursor=query.cursor
    )
    return page(items, next_cursor, query.limit)


lambda_handler = lambda_entry(app)

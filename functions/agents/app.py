"""Agents family: /api/v1/workspaces/{ws}/agents (registry, heartbeats, engine config, start/stop/
restart, stall checks, progress, context, prompt preview) and …/agent-templates."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

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
from agentplane.logic import agents
from agentplane.models.agents import (
    AGENT_NAME_PATTERN,
    Agent,
    AgentConfig,
    AgentContext,
    AgentControl,
    AgentCreate,
    AgentQuery,
    AgentTemplate,
    AgentTemplateCreate,
    AgentTemplateQuery,
    AgentTemplateUpdate,
    AgentUpdate,
    AgentUpsert,
    DesiredState,
    Progress,
    ProgressCreate,
    ProgressQuery,
    PromptMode,
    PromptPreview,
    StallCheck,
    StallCheckResult,
)
from agentplane.models.common import ListQuery
from agentplane.models.envelope import Data, DataList

# Engine API keys are sealed with the workspace secrets key.
REQUIRED_SETTINGS = ("kms_key_id",)
app = create_app(requires=REQUIRED_SETTINGS)
BASE = "/api/v1/workspaces/<ws>/agents"
AGENT = f"{BASE}/<name>"
TEMPLATES = "/api/v1/workspaces/<ws>/agent-templates"
AgentName = Annotated[str, Path(pattern=AGENT_NAME_PATTERN, description="The agent's name")]
TemplateId = Annotated[str, Path(max_length=64)]
ReadAgents = Annotated[Access, workspace_scope("agents:read")]
WriteAgents = Annotated[Access, workspace_scope("agents:write")]


@app.post(BASE, responses=CREATED)
def create_agent(ws: str, access: WriteAgents, body: AgentCreate) -> Response[Data[Agent]]:
    return created(agents.create_agent(access, body))


@app.put(BASE, responses=PROBLEM_RESPONSES)
def upsert_agent(ws: str, access: WriteAgents, body: AgentUpsert) -> Data[Agent]:
    return ok(agents.upsert_agent(access, body))


@app.get(BASE, responses=PROBLEM_RESPONSES)
def list_agents(ws: str, access: ReadAgents, query: Annotated[AgentQuery, Query()]) -> DataList[Agent]:
    statuses = agents.parse_statuses(query.status)
    items, next_cursor = agents.list_agents(
        access, include_all=query.all, statuses=statuses, role=query.role, limit=query.limit, cursor=query.cursor
    )
    return page(items, next_cursor, query.limit)


@app.post(f"{BASE}/check-stalls", responses=PROBLEM_RESPONSES)
def check_stalls(ws: str, access: WriteAgents, body: StallCheck | None = None) -> Data[StallCheckResult]:
    return ok(agents.check_stalls(access, body.timeout_seconds if body else None))


@app.post(f"{BASE}/progress", responses=CREATED)
def report_progress(ws: str, access: WriteAgents, body: ProgressCreate) -> Response[Data[Progress]]:
    return created(agents.report_progress(access, body))


@app.get(f"{BASE}/progress/latest", responses=PROBLEM_RESPONSES)
def latest_progress(ws: str, access: ReadAgents, query: Annotated[ListQuery, Query()]) -> DataList[Progress]:
    items, next_cursor = agents.latest_progress(access, query.limit, query.cursor)
    return page(items, next_cursor, query.limit)


@app.get(AGENT, responses=PROBLEM_RESPONSES)
def get_agent(ws: str, name: AgentName, access: ReadAgents) -> Data[Agent]:
    return ok(agents.get_agent(access, name))


@app.patch(AGENT, responses=PROBLEM_RESPONSES)
def update_agent(
    ws: str, name: AgentName, access: WriteAgents, body: AgentUpdate, if_match: IfMatch = None
) -> Data[Agent]:
    return ok(agents.update_agent(access, name, body, if_match))


@app.delete(AGENT, responses=DELETED)
def delete_agent(ws: str, name: AgentName, access: WriteAgents) -> Response[Any]:
    agents.delete_agent(access, name)
    return no_content()


@app.put(f"{AGENT}/config", responses=PROBLEM_RESPONSES)
def configure_agent(
    ws: str, name: AgentName, access: WriteAgents, body: AgentConfig, if_match: IfMatch = None
) -> Data[Agent]:
    return ok(agents.configure_agent(access, name, body, if_match))


@app.post(f"{AGENT}/start", responses=PROBLEM_RESPONSES)
def start_agent(ws: str, name: AgentName, access: WriteAgents, body: AgentControl | None = None) -> Data[Agent]:
    return ok(agents.control_agent(access, name, DesiredState.running, body.note if body else None))


@app.post(f"{AGENT}/stop", responses=PROBLEM_RESPONSES)
def stop_agent(ws: str, name: AgentName, access: WriteAgents, body: AgentControl | None = None) -> Data[Agent]:
    return ok(agents.control_agent(access, name, DesiredState.stopped, body.note if body else None))


@app.post(f"{AGENT}/restart", responses=PROBLEM_RESPONSES)
def restart_agent(ws: str, name: AgentName, access: WriteAgents, body: AgentControl | None = None) -> Data[Agent]:
    return ok(agents.control_agent(access, name, DesiredState.restart, body.note if body else None))


@app.get(f"{AGENT}/context", responses=PROBLEM_RESPONSES)
def agent_context(ws: str, name: AgentName, access: ReadAgents) -> Data[AgentContext]:
    return ok(agents.agent_context(access, name))


@app.get(f"{AGENT}/prompt-preview", responses=PROBLEM_RESPONSES)
def prompt_preview(
    ws: str, name: AgentName, access: ReadAgents, mode: Annotated[PromptMode, Query()] = PromptMode.compact
) -> Data[PromptPreview]:
    return ok(agents.prompt_preview(access, name, mode))


@app.get(f"{AGENT}/progress", responses=PROBLEM_RESPONSES)
def list_progress(
    ws: str, name: AgentName, access: ReadAgents, query: Annotated[ProgressQuery, Query()]
) -> DataList[Progress]:
    return page(agents.list_progress(access, name, query.limit), None, query.limit)


@app.post(TEMPLATES, responses=CREATED)
def create_template(ws: str, access: WriteAgents, body: AgentTemplateCreate) -> Response[Data[AgentTemplate]]:
    return created(agents.create_template(access, body))


@app.get(TEMPLATES, responses=PROBLEM_RESPONSES)
def list_templates(
    ws: str, access: ReadAgents, query: Annotated[AgentTemplateQuery, Query()]
) -> DataList[AgentTemplate]:
    items, next_cursor = agents.list_templates(
        access, category=query.category, featured=query.featured, limit=query.limit, cursor=query.cursor
    )
    return page(items, next_cursor, query.limit)


@app.get(f"{TEMPLATES}/<template_id>", responses=PROBLEM_RESPONSES)
def get_template(ws: str, template_id: TemplateId, access: ReadAgents) -> Data[AgentTemplate]:
    return ok(agents.get_template(access, template_id))


@app.patch(f"{TEMPLATES}/<template_id>", responses=PROBLEM_RESPONSES)
def update_template(
    ws: str, template_id: TemplateId, access: WriteAgents, body: AgentTemplateUpdate, if_match: IfMatch = None
) -> Data[AgentTemplate]:
    return ok(agents.update_template(access, template_id, body, if_match))


@app.delete(f"{TEMPLATES}/<template_id>", responses=DELETED)
def delete_template(ws: str, template_id: TemplateId, access: WriteAgents) -> Response[Any]:
    agents.delete_template(access, template_id)
    return no_content()


lambda_handler = lambda_entry(app)

"""Agents family: /api/v1/workspaces/{ws}/agents (registry, heartbeats, engine config, start/stop/
restart, stall checks, progress, context, prompt preview) and …/agent-templates."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

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
from agentplane.logic import agents
from agentplane.models.agents import (
    AGENT_NAME_PATTERN,
    PROGRESS_LIST_MAX,
    Agent,
    AgentConfig,
    AgentContext,
    AgentControl,
    AgentCreate,
    AgentTemplate,
    AgentTemplateCreate,
    AgentTemplateUpdate,
    AgentUpdate,
    AgentUpsert,
    DesiredState,
    Progress,
    ProgressCreate,
    PromptMode,
    PromptPreview,
    StallCheck,
    StallCheckResult,
)
from agentplane.models.envelope import Data, DataList

# Engine API keys are sealed with the workspace secrets key.
REQUIRED_SETTINGS = ("kms_key_id",)
app = create_app(requires=REQUIRED_SETTINGS)
BASE = "/api/v1/workspaces/<ws>/agents"
AGENT = f"{BASE}/<name>"
TEMPLATES = "/api/v1/workspaces/<ws>/agent-templates"
CREATED = {201: {"description": "Created"}, **PROBLEM_RESPONSES}
DELETED = {204: {"description": "Deleted"}, **PROBLEM_RESPONSES}
AgentName = Annotated[str, Path(pattern=AGENT_NAME_PATTERN, description="The agent's name")]
TemplateId = Annotated[str, Path(max_length=64)]


@app.post(BASE, responses=CREATED)
def create_agent(ws: str, body: AgentCreate) -> Response[Data[Agent]]:
    access = workspace_access(request_principal(app), ws, "agents:write")
    return created(agents.create_agent(access, body, request_id(app)))


@app.put(BASE, responses=PROBLEM_RESPONSES)
def upsert_agent(ws: str, body: AgentUpsert) -> Data[Agent]:
    access = workspace_access(request_principal(app), ws, "agents:write")
    return ok(agents.upsert_agent(access, body, request_id(app)))


@app.get(BASE, responses=PROBLEM_RESPONSES)
def list_agents(
    ws: str,
    all: Annotated[bool, Query(description="Include finished child agents")] = False,
    status: Annotated[
        str | None, Query(max_length=200, description="A status, or several comma-separated (any of them)")
    ] = None,
    role: Annotated[str | None, Query(max_length=50)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DataList[Agent]:
    access = workspace_access(request_principal(app), ws, "agents:read")
    statuses = agents.parse_statuses(status)
    items, next_cursor = agents.list_agents(
        access, include_all=all, statuses=statuses, role=role, limit=limit, cursor=cursor
    )
    return page(items, next_cursor, limit)


@app.post(f"{BASE}/check-stalls", responses=PROBLEM_RESPONSES)
def check_stalls(ws: str, body: StallCheck | None = None) -> Data[StallCheckResult]:
    access = workspace_access(request_principal(app), ws, "agents:write")
    timeout = body.timeout_seconds if body else None
    return ok(agents.check_stalls(access, timeout, request_id(app)))


@app.post(f"{BASE}/progress", responses=CREATED)
def report_progress(ws: str, body: ProgressCreate) -> Response[Data[Progress]]:
    access = workspace_access(request_principal(app), ws, "agents:write")
    return created(agents.report_progress(access, body, request_id(app)))


@app.get(f"{BASE}/progress/latest", responses=PROBLEM_RESPONSES)
def latest_progress(ws: str, limit: Limit = 50, cursor: Cursor = None) -> DataList[Progress]:
    access = workspace_access(request_principal(app), ws, "agents:read")
    items, next_cursor = agents.latest_progress(access, limit, cursor)
    return page(items, next_cursor, limit)


@app.get(AGENT, responses=PROBLEM_RESPONSES)
def get_agent(ws: str, name: AgentName) -> Data[Agent]:
    access = workspace_access(request_principal(app), ws, "agents:read")
    return ok(agents.get_agent(access, name))


@app.patch(AGENT, responses=PROBLEM_RESPONSES)
def update_agent(ws: str, name: AgentName, body: AgentUpdate, if_match: IfMatch = None) -> Data[Agent]:
    access = workspace_access(request_principal(app), ws, "agents:write")
    return ok(agents.update_agent(access, name, body, if_match, request_id(app)))


@app.delete(AGENT, responses=DELETED)
def delete_agent(ws: str, name: AgentName) -> Response[Any]:
    access = workspace_access(request_principal(app), ws, "agents:write")
    agents.delete_agent(access, name, request_id(app))
    return no_content()


@app.put(f"{AGENT}/config", responses=PROBLEM_RESPONSES)
def configure_agent(ws: str, name: AgentName, body: AgentConfig, if_match: IfMatch = None) -> Data[Agent]:
    access = workspace_access(request_principal(app), ws, "agents:write")
    return ok(agents.configure_agent(access, name, body, if_match, request_id(app)))


@app.post(f"{AGENT}/start", responses=PROBLEM_RESPONSES)
def start_agent(ws: str, name: AgentName, body: AgentControl | None = None) -> Data[Agent]:
    access = workspace_access(request_principal(app), ws, "agents:write")
    note = body.note if body else None
    return ok(agents.control_agent(access, name, DesiredState.running, note, request_id(app)))


@app.post(f"{AGENT}/stop", responses=PROBLEM_RESPONSES)
def stop_agent(ws: str, name: AgentName, body: AgentControl | None = None) -> Data[Agent]:
    access = workspace_access(request_principal(app), ws, "agents:write")
    note = body.note if body else None
    return ok(agents.control_agent(access, name, DesiredState.stopped, note, request_id(app)))


@app.post(f"{AGENT}/restart", responses=PROBLEM_RESPONSES)
def restart_agent(ws: str, name: AgentName, body: AgentControl | None = None) -> Data[Agent]:
    access = workspace_access(request_principal(app), ws, "agents:write")
    note = body.note if body else None
    return ok(agents.control_agent(access, name, DesiredState.restart, note, request_id(app)))


@app.get(f"{AGENT}/context", responses=PROBLEM_RESPONSES)
def agent_context(ws: str, name: AgentName) -> Data[AgentContext]:
    access = workspace_access(request_principal(app), ws, "agents:read")
    return ok(agents.agent_context(access, name))


@app.get(f"{AGENT}/prompt-preview", responses=PROBLEM_RESPONSES)
def prompt_preview(
    ws: str, name: AgentName, mode: Annotated[PromptMode, Query()] = PromptMode.compact
) -> Data[PromptPreview]:
    access = workspace_access(request_principal(app), ws, "agents:read")
    return ok(agents.prompt_preview(access, name, mode))


@app.get(f"{AGENT}/progress", responses=PROBLEM_RESPONSES)
def list_progress(
    ws: str,
    name: AgentName,
    limit: Annotated[int, Query(ge=1, le=PROGRESS_LIST_MAX, description="Reports (default and max 20)")] = 20,
) -> DataList[Progress]:
    access = workspace_access(request_principal(app), ws, "agents:read")
    return page(agents.list_progress(access, name, limit), None, limit)


@app.post(TEMPLATES, responses=CREATED)
def create_template(ws: str, body: AgentTemplateCreate) -> Response[Data[AgentTemplate]]:
    access = workspace_access(request_principal(app), ws, "agents:write")
    return created(agents.create_template(access, body, request_id(app)))


@app.get(TEMPLATES, responses=PROBLEM_RESPONSES)
def list_templates(
    ws: str,
    category: Annotated[str | None, Query(max_length=50)] = None,
    featured: Annotated[bool | None, Query(description="Only featured (true) or other (false) templates")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> DataList[AgentTemplate]:
    access = workspace_access(request_principal(app), ws, "agents:read")
    items, next_cursor = agents.list_templates(access, category=category, featured=featured, limit=limit, cursor=cursor)
    return page(items, next_cursor, limit)


@app.get(f"{TEMPLATES}/<template_id>", responses=PROBLEM_RESPONSES)
def get_template(ws: str, template_id: TemplateId) -> Data[AgentTemplate]:
    access = workspace_access(request_principal(app), ws, "agents:read")
    return ok(agents.get_template(access, template_id))


@app.patch(f"{TEMPLATES}/<template_id>", responses=PROBLEM_RESPONSES)
def update_template(
    ws: str, template_id: TemplateId, body: AgentTemplateUpdate, if_match: IfMatch = None
) -> Data[AgentTemplate]:
    access = workspace_access(request_principal(app), ws, "agents:write")
    return ok(agents.update_template(access, template_id, body, if_match, request_id(app)))


@app.delete(f"{TEMPLATES}/<template_id>", responses=DELETED)
def delete_template(ws: str, template_id: TemplateId) -> Response[Any]:
    access = workspace_access(request_principal(app), ws, "agents:write")
    agents.delete_template(access, template_id, request_id(app))
    return no_content()


lambda_handler = lambda_entry(app)

"""Agents: the registry (Toban), heartbeats and stall detection, start/stop/restart (Orkosi),
engine configuration, progress reports, the assembled context, and agent templates.

- `registry`: creating, reporting (heartbeats), reading, listing, changing and deleting agents,
  and the definitions a workspace export carries;
- `stalls`: marking silent agents, per workspace on request and across workspaces on a schedule;
- `progress`: progress reports and each agent's latest one;
- `prompt`: the context an agent's prompt receives, and the prompt preview;
- `templates`: the templates an agent can be created from.

Where agents, reports and templates live, and which indexes they appear in, is said by their
entities (`agentplane.entities.agents`).
"""

from agentplane.logic.agents.progress import latest_progress, list_progress, report_progress
from agentplane.logic.agents.prompt import agent_context, prompt_preview
from agentplane.logic.agents.registry import (
    API_KEY_ATTR,
    DEFINITION_FIELDS,
    add_definition_writes,
    configure_agent,
    control_agent,
    create_agent,
    definitions,
    delete_agent,
    get_agent,
    list_agents,
    load_agent,
    parse_statuses,
    update_agent,
    upsert_agent,
)
from agentplane.logic.agents.stalls import check_stalls, sweep_stalled_agents
from agentplane.logic.agents.templates import (
    create_template,
    delete_template,
    get_template,
    list_templates,
    update_template,
)

__all__ = [
    "API_KEY_ATTR",
    "DEFINITION_FIELDS",
    "add_definition_writes",
    "agent_context",
    "check_stalls",
    "configure_agent",
    "control_agent",
    "create_agent",
    "create_template",
    "definitions",
    "delete_agent",
    "delete_template",
    "get_agent",
    "get_template",
    "latest_progress",
    "list_agents",
    "list_progress",
    "list_templates",
    "load_agent",
    "parse_statuses",
    "prompt_preview",
    "report_progress",
    "sweep_stalled_agents",
    "update_agent",
    "update_template",
    "upsert_agent",
]

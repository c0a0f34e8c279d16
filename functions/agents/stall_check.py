"""The scheduled stall check: every minute (an EventBridge Scheduler schedule in template.yaml, fired
by `make dev` too), agents of every workspace silent for longer than AGENT_STALL_TIMEOUT_SECONDS
(the template's AgentStallTimeoutSeconds parameter) are marked stalled and their workspaces
notified. See agentplane.logic.agents.stalls for the index it reads (bounded Queries, no Scan). Sample
event: events/scheduled/agent-stall-check-every-minute.json.

Invoked by the scheduler only, never through the HTTP API.
"""

from __future__ import annotations

from typing import Any

from agentplane.logic import agents
from agentplane.observability import entry_point, logger
from agentplane.settings import require_settings

REQUIRED_SETTINGS: tuple[str, ...] = ()
require_settings(*REQUIRED_SETTINGS)


@entry_point()
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    result = agents.sweep_stalled_agents()
    if result["marked"]:
        logger.info("silent agents marked", extra=result)
    return result

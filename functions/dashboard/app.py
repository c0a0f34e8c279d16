"""Dashboard family: /api/v1/workspaces/{ws}/dashboard — overview counts, agent efficiency and
per-agent queue health (read-only)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query

from agentplane.access import Access
from agentplane.http import PROBLEM_RESPONSES, create_app, lambda_entry, ok, workspace_scope
from agentplane.logic import dashboard
from agentplane.models.dashboard import AgentEfficiencyReport, AgentQueueHealthReport, DashboardStats
from agentplane.models.envelope import Data

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)
BASE = "/api/v1/workspaces/<ws>/dashboard"
ReadTasks = Annotated[Access, workspace_scope("tasks:read")]
ReadAgents = Annotated[Access, workspace_scope("agents:read")]
Days = Annotated[int, Query(ge=1, le=90, description="Window in days (default 30)")]


@app.get(f"{BASE}/stats", responses=PROBLEM_RESPONSES)
def dashboard_stats(ws: str, access: ReadTasks) -> Data[DashboardStats]:
    return ok(dashboard.dashboard_stats(access))


@app.get(f"{BASE}/agent-efficiency", responses=PROBLEM_RESPONSES)
def agent_efficiency(ws: str, access: ReadAgents, days: Days = 30) -> Data[AgentEfficiencyReport]:
    return ok(dashboard.agent_efficiency(access, days))


@app.get(f"{BASE}/agent-queue-health", responses=PROBLEM_RESPONSES)
def agent_queue_health(ws: str, access: ReadTasks) -> Data[AgentQueueHealthReport]:
    return ok(dashboard.agent_queue_health(access))


lambda_handler = lambda_entry(app)

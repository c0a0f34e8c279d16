"""The workspace dashboard (Orkosi): overview counts, per-agent efficiency, per-agent queue health."""

from __future__ import annotations

from pydantic import Field

from agentplane.models.common import Output
from agentplane.models.queue import QueueStats

CAPPED = "true when counting stopped at the read budget: the real numbers are at least these"


class StatusCounts(Output):
    by_status: dict[str, int]
    total: int
    capped: bool = Field(default=False, description=CAPPED)


class RunCounts(StatusCounts):
    active: int = Field(description="Runs holding an active slot (queued, running, paused, awaiting approval)")
    window: int = Field(description="How many of the newest runs by_status counts at most")


class Count(Output):
    total: int
    capped: bool = Field(default=False, description=CAPPED)


class DashboardStats(Output):
    """Each section needs its read scope (tasks and queue: tasks:read; agents: agents:read; runs:
    runs:read; projects: projects:read); a section the caller may not read is null."""

    tasks: StatusCounts | None = None
    agents: StatusCounts | None = None
    runs: RunCounts | None = None
    projects: Count | None = None
    queue: QueueStats | None = None
    pending_review: int | None = Field(default=None, description="Tasks waiting in review")
    generated_at: str


class AgentEfficiency(Output):
    agent: str
    tasks_done: int = Field(description="Tasks completed within the window (assignee, else owner)")
    avg_cycle_seconds: float | None = Field(
        default=None, description="Mean time from started_at to completed_at of those tasks that have both"
    )
    median_cycle_seconds: float | None = None
    tasks_in_progress: int = 0
    runs_completed: int | None = Field(default=None, description="Runs of this agent created in the window (runs:read)")
    runs_failed: int | None = None
    run_success_rate: float | None = Field(default=None, description="completed / (completed + failed)")
    tokens_used: int | None = Field(default=None, description="Tokens its runs created in the window reported")
    tokens_per_task: float | None = Field(default=None, description="tokens_used / tasks_done")


class AgentEfficiencyReport(Output):
    days: int
    since: str
    agents: list[AgentEfficiency] = Field(description="Most tasks done first")
    capped: bool = Field(default=False, description=CAPPED)


class QueueHealth(Output):
    pending: int
    claimed: int
    completed: int
    dead: int
    oldest_pending_job_id: str | None = None
    oldest_pending_age_seconds: float | None = Field(
        default=None, description="Since the oldest pending job was submitted"
    )
    expired_claims: int = Field(description="Claimed jobs past their claim expiry (their worker went silent)")
    capped: bool = Field(default=False, description=CAPPED)


class AgentQueueHealth(Output):
    agent: str
    queued_tasks: int = Field(description="todo tasks assigned to the agent")
    oldest_wait_seconds: float | None = Field(default=None, description="Age of its oldest todo task")
    avg_wait_seconds: float | None = None
    in_progress_tasks: int = 0
    claimed_jobs: int = Field(default=0, description="Queue jobs claimed with this agent's name as worker_id")
    expired_claims: int = 0


class AgentQueueHealthReport(Output):
    queue: QueueHealth
    agents: list[AgentQueueHealth] = Field(description="Longest-waiting first")
    capped: bool = Field(default=False, description=CAPPED)
    generated_at: str

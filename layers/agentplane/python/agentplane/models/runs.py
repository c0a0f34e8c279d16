"""Runs: a draft that is started, claimed by an agent, and ends completed, failed or cancelled."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import AliasChoices, Field, StringConstraints

from agentplane.models.common import Input, ListQuery, LongText, Output

Title = Annotated[str, StringConstraints(min_length=1, max_length=300)]
Prompt = Annotated[str, StringConstraints(min_length=1, max_length=100_000)]
AgentName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
WorkerId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Notes = Annotated[str, StringConstraints(max_length=5000)]


class RunStatus(StrEnum):
    draft = "draft"
    queued = "queued"
    running = "running"
    paused = "paused"
    awaiting_approval = "awaiting_approval"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


TERMINAL = frozenset({RunStatus.completed, RunStatus.failed, RunStatus.cancelled})
# Statuses that hold one of the workspace's active-run slots.
ACTIVE = frozenset({RunStatus.queued, RunStatus.running, RunStatus.paused, RunStatus.awaiting_approval})


class RunKind(StrEnum):
    agent = "agent"
    plan = "plan"
    apply = "apply"
    destroy = "destroy"
    maintenance = "maintenance"


class RunDesiredState(StrEnum):
    """What the agent should be doing; answered on every heartbeat."""

    run = "run"
    pause = "pause"
    cancel = "cancel"
    stop = "stop"


class RunCreate(Input):
    project_id: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    title: Title
    prompt: Prompt
    agent: AgentName | None = None
    model: ModelName | None = None
    kind: RunKind = RunKind.agent
    rag_enabled: bool = False
    safe_mode: bool = True
    requires_approval: bool = False
    heartbeat_timeout_seconds: int = Field(default=300, ge=5, le=86_400)
    queue_timeout_seconds: int = Field(default=3600, ge=5, le=7 * 86_400)


class RunQuery(ListQuery):
    """The run list's query string: its page, and what narrows it."""

    status: RunStatus | None = None
    project: str | None = Field(default=None, max_length=100)
    agent: str | None = Field(default=None, max_length=100)
    schedule_id: str | None = Field(default=None, max_length=100)


class RunNotes(Input):
    notes: Notes | None = None


class ApproveRequest(Input):
    notes: Notes | None = None
    commit: bool = False


class RunClaim(Input):
    worker_id: WorkerId


class RunHeartbeat(Input):
    worker_id: WorkerId
    activity: Annotated[str, StringConstraints(max_length=500)] | None = None
    progress: int | None = Field(default=None, ge=0, le=100)


class RunComplete(Input):
    worker_id: WorkerId
    summary: LongText | None = None


class RunFail(Input):
    """`reason` (a code) and `detail` (what happened), as a queue job's failure takes them; `error`
    is accepted in place of `detail`."""

    worker_id: WorkerId
    reason: Annotated[str, StringConstraints(min_length=1, max_length=100)] = "agent_error"
    detail: LongText | None = Field(default=None, validation_alias=AliasChoices("detail", "error"))


class CommitRequest(Input):
    message: Annotated[str, StringConstraints(min_length=1, max_length=2000)] | None = None


class RunActions(Output):
    can_start: bool
    can_pause: bool
    can_resume: bool
    can_cancel: bool
    can_retry: bool
    can_approve: bool
    can_reject: bool
    can_commit: bool
    can_push: bool


class RunReview(Output):
    id: str
    decision: str
    notes: str | None = None
    reviewer_id: str
    created_at: str


class Run(Output):
    id: str
    workspace_id: str
    project_id: str | None = None
    title: str
    prompt: str
    agent: str | None = None
    model: str | None = None
    kind: RunKind
    rag_enabled: bool = False
    safe_mode: bool = True
    requires_approval: bool = False
    heartbeat_timeout_seconds: int = 300
    queue_timeout_seconds: int = 3600
    status: RunStatus
    failure_reason: str | None = None
    failure_detail: str | None = None
    desired_state: RunDesiredState = RunDesiredState.run
    worker_id: str | None = None
    last_heartbeat_at: str | None = None
    activity: str | None = None
    progress: int | None = None
    branch: str
    retry_of: str | None = None
    retried_by: str | None = None
    maintenance_action: str | None = None
    # The schedule whose firing created the run (None for runs created by hand).
    schedule_id: str | None = None
    review: RunReview | None = None
    committed_at: str | None = None
    pushed_at: str | None = None
    summary: str | None = None
    last_event_id: int = 0
    timestamps: dict[str, str] = {}
    actions: RunActions
    created_by: str
    created_at: str
    updated_at: str


class AgentDirective(Output):
    """The answer to an agent's claim or heartbeat: what it should do now."""

    run_id: str
    status: RunStatus
    desired_state: RunDesiredState
    heartbeat_interval_seconds: int
    run: dict[str, Any] | None = None

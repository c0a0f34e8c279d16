"""Runs: a draft that is started, claimed by an agent (or a deploy runner), and ends completed,
failed or cancelled; a deploy plan ends `planned`, and an apply or destroy of it `applied` or
`destroyed`."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import AliasChoices, Field, StringConstraints, model_validator

from agentplane.models.common import Input, ListQuery, LongText, Output
from agentplane.models.run_input import DeliveredAnswer

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
    # Deploy runs: a plan that is done and may be applied, or discarded; an apply or destroy done.
    planned = "planned"
    discarded = "discarded"
    applied = "applied"
    destroyed = "destroyed"


TERMINAL = frozenset(
    {
        RunStatus.completed,
        RunStatus.failed,
        RunStatus.cancelled,
        RunStatus.discarded,
        RunStatus.applied,
        RunStatus.destroyed,
    }
)
# Where a run's execution is over (its timers end and it is finalized): a planned run waits for
# nobody's heartbeat, though it may still be applied or discarded.
FINISHED = TERMINAL | {RunStatus.planned}
# Statuses that hold one of the workspace's active-run slots.
ACTIVE = frozenset({RunStatus.queued, RunStatus.running, RunStatus.paused, RunStatus.awaiting_approval})


class RunKind(StrEnum):
    agent = "agent"
    plan = "plan"
    apply = "apply"
    destroy = "destroy"
    maintenance = "maintenance"


DEPLOY_KINDS = frozenset({RunKind.plan, RunKind.apply, RunKind.destroy})
# What acting on a deploy run of each kind needs, beyond being a member.
DEPLOY_SCOPES = {RunKind.plan: "deploy:plan", RunKind.apply: "deploy:apply", RunKind.destroy: "deploy:apply"}


class RunDesiredState(StrEnum):
    """What the agent should be doing; answered on every heartbeat."""

    run = "run"
    pause = "pause"
    cancel = "cancel"
    stop = "stop"


class RunCreate(Input):
    """A draft run. An agent or maintenance run takes `title` and `prompt`; a deploy run takes
    `capsule_id` (a plan, `is_destroy` for a destroy plan) or `plan_run_id` (an apply or destroy of
    that plan), and its title defaults to what it does."""

    project_id: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    title: Title | None = None
    prompt: Prompt | None = None
    agent: AgentName | None = None
    model: ModelName | None = None
    kind: RunKind = RunKind.agent
    rag_enabled: bool = False
    safe_mode: bool = True
    requires_approval: bool = False
    heartbeat_timeout_seconds: int = Field(default=300, ge=5, le=86_400)
    queue_timeout_seconds: int = Field(default=3600, ge=5, le=7 * 86_400)
    # How long the run waits for a person's answer to its agent's question before it fails.
    input_timeout_seconds: int = Field(default=86_400, ge=5, le=7 * 86_400)
    capsule_id: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    plan_run_id: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    is_destroy: bool = False

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> RunCreate:
        if self.kind not in DEPLOY_KINDS:
            missing = [name for name in ("title", "prompt") if getattr(self, name) is None]
            if missing:
                raise ValueError(f"a {self.kind.value} run needs {' and '.join(missing)}")
            if self.capsule_id or self.plan_run_id or self.is_destroy:
                raise ValueError("capsule_id, plan_run_id and is_destroy are for plan, apply and destroy runs")
            return self
        if self.kind == RunKind.plan:
            if not self.capsule_id:
                raise ValueError("a plan run needs capsule_id")
            if self.plan_run_id:
                raise ValueError("a plan run takes no plan_run_id: apply or destroy it with a run of that kind")
        elif not self.plan_run_id:
            raise ValueError(f"an {self.kind.value} run needs plan_run_id, the planned run it carries out")
        elif self.is_destroy:
            raise ValueError("is_destroy is for plan runs: a destroy run carries out a destroy plan")
        if self.requires_approval:
            raise ValueError("deploy runs are gated by their plan's approval, not requires_approval")
        return self


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


class UsageReport(Input):
    """What the agent spent since its last report; charged to the workspace's token balance."""

    tokens: int = Field(ge=0, le=10**12)


class RunUsage(Output):
    tokens: int = Field(default=0, description="Every token the agent reported for this run")
    unbilled_tokens: int = Field(default=0, description="Reported when the balance could not cover it")


class RunHeartbeat(Input):
    worker_id: WorkerId
    activity: Annotated[str, StringConstraints(max_length=500)] | None = None
    progress: int | None = Field(default=None, ge=0, le=100)
    usage: UsageReport | None = None


class PlanResult(Input):
    add: int = Field(ge=0, le=1_000_000)
    change: int = Field(ge=0, le=1_000_000)
    destroy: int = Field(ge=0, le=1_000_000)


class OutputReport(Input):
    value: Any = None
    sensitive: bool = False


class StateReport(Input):
    """The state an apply or destroy leaves: its serial (the capsule's current one plus one), its
    lineage, and the state document itself (as the tool writes it)."""

    serial: int = Field(ge=1)
    lineage: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    body: dict[str, Any]


Digest = Annotated[str, StringConstraints(pattern=r"^(sha256:)?[0-9a-f]{64}$")]
Commit = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{7,64}$")]


class RunComplete(Input):
    worker_id: WorkerId
    summary: LongText | None = None
    usage: UsageReport | None = None
    # A deploy run's results (a plan: `plan` and the saved plan; an apply or destroy: `state` and `outputs`).
    plan: PlanResult | None = None
    plan_file: Annotated[str, StringConstraints(max_length=4_000_000)] | None = Field(
        default=None, description="The saved plan, base64 (a plan run)"
    )
    state: StateReport | None = None
    outputs: (
        dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")], OutputReport] | None
    ) = Field(default=None, max_length=500)
    source_commit: Commit | None = Field(default=None, description="The commit the runner checked out")
    provider_lock_digest: Digest | None = Field(default=None, description="sha256 of .terraform.lock.hcl")


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
    # Deploy runs: discard a planned run; apply (or destroy) it; force a requested cancel through.
    can_discard: bool = False
    can_apply: bool = False
    can_force_cancel: bool = False
    # Answer the question the run's agent waits on (`input_request_id`).
    can_answer: bool = False


class RunReview(Output):
    id: str
    decision: str
    notes: str | None = None
    reviewer_id: str
    created_at: str


class DeployRecord(Output):
    """What a deploy run ran and left: the evidence kept with it (never a credential value)."""

    capsule_id: str
    is_destroy: bool = False
    plan_run_id: str | None = None
    tool: str | None = None
    tool_version: str | None = None
    source: dict[str, Any] | None = None
    provider_lock_digest: str | None = None
    bindings: list[dict[str, Any]] = []
    injected_env: list[str] = []
    injected_files: list[str] = []
    base_serial: int | None = None
    state_serial: int | None = None
    plan: dict[str, int] | None = None
    plan_file_sha256: str | None = None
    applied_by: str | None = None


class Run(Output):
    id: str
    workspace_id: str
    project_id: str | None = None
    title: str
    prompt: str | None = None
    agent: str | None = None
    model: str | None = None
    kind: RunKind
    rag_enabled: bool = False
    safe_mode: bool = True
    requires_approval: bool = False
    heartbeat_timeout_seconds: int = 300
    queue_timeout_seconds: int = 3600
    input_timeout_seconds: int = 86_400
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
    # Why a run waits or stopped where it is (waiting_for_capsule, cancel_requested, …).
    status_detail: str | None = None
    usage: RunUsage = RunUsage()
    # The open question its agent waits on a person for (status_detail `needs_input`).
    input_request_id: str | None = None
    deploy: DeployRecord | None = None
    last_event_id: int = 0
    timestamps: dict[str, str] = {}
    actions: RunActions
    created_by: str
    created_at: str
    updated_at: str


class DeployAssignment(Output):
    """What a deploy runner runs, answered with its claim: the source to check out, the tool, the
    current state and (for an apply or destroy) the saved plan."""

    capsule_id: str
    operation: RunKind
    is_destroy: bool = False
    source: dict[str, Any]
    tool: str
    tool_version: str
    state: dict[str, Any] | None = None
    state_serial: int = 0
    state_lineage: str | None = None
    plan_file: str | None = None


class DeployCredentials(Output):
    """The resolved credential material for this run only: environment variables and files, as the
    connections' recipes say. Answered once, with the claim; never stored with the run."""

    env: dict[str, str] = {}
    files: dict[str, str] = {}


class AgentDirective(Output):
    """The answer to an agent's claim or heartbeat: what it should do now."""

    run_id: str
    status: RunStatus
    desired_state: RunDesiredState
    heartbeat_interval_seconds: int
    run: dict[str, Any] | None = None
    deploy: DeployAssignment | None = None
    credentials: DeployCredentials | None = None
    # Answers to the agent's questions given since its last heartbeat (each handed over once).
    answers: list[DeliveredAnswer] = []

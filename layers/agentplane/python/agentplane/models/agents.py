"""Agents: the registry (Toban's agents, Orkosi's lifecycle), their engine configuration, progress
reports, stall checks, assembled context and templates."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, StringConstraints

from agentplane.models.common import Input, ListQuery, Output

# An agent's name is its id in paths: lower-case, no '#' or '/', unique within the workspace.
AGENT_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
AgentName = Annotated[str, StringConstraints(pattern=AGENT_NAME_PATTERN)]
# Names the agents routes use as literal path segments; an agent cannot be called that.
RESERVED_AGENT_NAMES = frozenset({"progress", "check-stalls", "memories"})
# The agent every Toban workspace is set up with; it cannot be deleted.
MANAGER_AGENT = "manager"
DisplayName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Role = Annotated[str, StringConstraints(min_length=1, max_length=50)]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Description = Annotated[str, StringConstraints(max_length=2000)]
Activity = Annotated[str, StringConstraints(max_length=500)]
Emoji = Annotated[str, StringConstraints(max_length=16)]
Color = Annotated[str, StringConstraints(pattern=r"^#[0-9A-Fa-f]{6}$")]
SystemPrompt = Annotated[str, StringConstraints(max_length=20000)]
RefId = Annotated[str, StringConstraints(min_length=1, max_length=100)]
ProgressText = Annotated[str, StringConstraints(max_length=2000)]
ShortField = Annotated[str, StringConstraints(max_length=300)]
TemplateRef = Annotated[str, StringConstraints(pattern=r"^atpl_[0-9a-z]{26}$")]
TemplateSlug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=50)]
Note = Annotated[str, StringConstraints(max_length=500)]
PROGRESS_LIST_MAX = 20
IntervalSeconds = Annotated[int, Field(ge=1, le=7 * 24 * 3600)]


class AgentStatus(StrEnum):
    idle = "idle"
    starting = "starting"
    active = "active"
    working = "working"
    blocked = "blocked"
    paused = "paused"
    error = "error"
    stalled = "stalled"
    stopped = "stopped"
    offline = "offline"
    finished = "finished"
    done = "done"


# An agent in one of these is at work: it cannot be deleted.
ACTIVE_STATUSES = frozenset({AgentStatus.starting, AgentStatus.active, AgentStatus.working})
# A child agent (one with a parent) in one of these is over: plain lists leave it out.
FINISHED_STATUSES = frozenset({AgentStatus.finished, AgentStatus.done})
# Not expected to heartbeat, so never marked stalled.
RESTING_STATUSES = frozenset({AgentStatus.stalled, AgentStatus.stopped, AgentStatus.offline}) | FINISHED_STATUSES


class AgentEngine(StrEnum):
    claude_code = "claude-code"
    claude_api = "claude-api"
    gemini = "gemini"
    codex = "codex"
    custom = "custom"


class ExecutionMode(StrEnum):
    local = "local"
    byok = "byok"


class DesiredState(StrEnum):
    """What the agent is asked to be; it reads this back on every upsert (heartbeat) response.
    `restart` is a one-shot request: the agent's next upsert reporting `starting` turns it back into
    `running`."""

    running = "running"
    stopped = "stopped"
    restart = "restart"


class AgentCreate(Input):
    name: AgentName
    display_name: DisplayName | None = None
    role: Role | None = Field(default=None, description="Defaults to the name (Toban's roles are agent names)")
    description: Description = ""
    model: ModelName | None = None
    engine: AgentEngine | None = None
    execution_mode: ExecutionMode | None = None
    system_prompt: SystemPrompt | None = None
    emoji: Emoji | None = None
    color: Color | None = None
    status: AgentStatus = AgentStatus.idle
    parent_agent: AgentName | None = Field(default=None, description="The agent that spawned this one")
    interval_sec: IntervalSeconds | None = Field(default=None, description="How often the agent runs (Orkosi)")
    template_id: TemplateRef | None = Field(
        default=None, description="Fill role, description, model, engine, execution mode and prompt from a template"
    )


class AgentDefinition(Input):
    """An agent's definition as a workspace export carries it (Toban's shape, and ours): never its
    keys, its configuration (which may hold an API key) or its live state."""

    name: AgentName
    display_name: DisplayName | None = None
    role: Role | None = None
    description: Description | None = None
    model: ModelName | None = None
    engine: AgentEngine | None = None
    execution_mode: ExecutionMode | None = None
    system_prompt: SystemPrompt | None = None
    emoji: Emoji | None = None
    color: Color | None = None
    parent_agent: AgentName | None = None
    interval_sec: IntervalSeconds | None = None


class AgentUpsert(Input):
    """`PUT …/agents`: the CLI's status report and heartbeat. Creates the agent when it is new."""

    name: AgentName
    status: AgentStatus | None = Field(
        default=None, description="Left out: unchanged (a stalled agent that reports in is active again)"
    )
    activity: Activity | None = None
    parent_agent: AgentName | None = None
    ws_port: int | None = Field(default=None, ge=1, le=65535, description="The CLI's WebSocket server port")
    current_task: RefId | None = None


class AgentUpdate(Input):
    """Fields left out are unchanged; an explicit null clears the optional ones."""

    display_name: DisplayName | None = None
    role: Role | None = None
    description: Description | None = None
    model: ModelName | None = None
    emoji: Emoji | None = None
    color: Color | None = None
    status: AgentStatus | None = None
    activity: Activity | None = None
    current_task: RefId | None = None
    parent_agent: AgentName | None = None
    interval_sec: IntervalSeconds | None = None
    version: int | None = Field(default=None, ge=1, description="Expected current version (or send If-Match)")


class AgentConfig(Input):
    """Engine configuration. Fields left out are unchanged; null clears `system_prompt`, `model` or
    `api_key`. The API key is encrypted at rest and never returned: the agent shows `has_api_key`."""

    engine: AgentEngine | None = None
    model: ModelName | None = None
    execution_mode: ExecutionMode | None = None
    system_prompt: SystemPrompt | None = None
    api_key: SecretStr | None = Field(default=None, min_length=1, max_length=500)
    version: int | None = Field(default=None, ge=1, description="Expected current version (or send If-Match)")


class AgentControl(Input):
    note: Note | None = None


class Agent(Output):
    id: str
    workspace_id: str
    name: str
    display_name: str | None = None
    role: str
    description: str = ""
    model: str | None = None
    engine: AgentEngine | None = None
    execution_mode: ExecutionMode | None = None
    system_prompt: str | None = None
    has_api_key: bool = False
    emoji: str | None = None
    color: str | None = None
    status: AgentStatus
    activity: str | None = None
    current_task: str | None = None
    parent_agent: str | None = None
    interval_sec: int | None = None
    ws_port: int | None = None
    last_seen_at: str | None = None
    desired_state: DesiredState = DesiredState.running
    desired_state_at: str | None = None
    desired_state_by: str | None = None
    desired_state_note: str | None = None
    template_id: str | None = None
    created_by: str
    created_at: str
    updated_at: str
    version: int = Field(description="Moves on every change but heartbeats")


class AgentQuery(ListQuery):
    all: bool = Field(default=False, description="Include finished child agents")
    status: str | None = Field(
        default=None, max_length=200, description="A status, or several comma-separated (any of them)"
    )
    role: str | None = Field(default=None, max_length=50)


class StallCheck(Input):
    timeout_seconds: int | None = Field(
        default=None, ge=5, le=7 * 24 * 3600, description="Silence that counts as stalled (default: the server's)"
    )


class StalledAgent(Output):
    name: str
    last_seen: str = Field(description="The last heartbeat before the agent went silent")


class StallCheckResult(Output):
    stalled: list[StalledAgent]
    count: int
    timeout_seconds: int


class ProgressCreate(Input):
    agent_name: AgentName | None = Field(
        default=None,
        validation_alias=AliasChoices("agent_name", "agent"),
        description="The reporting agent (`agent` is accepted too); defaults to the calling agent key's",
    )
    message: ProgressText | None = None
    percent: int | None = Field(default=None, ge=0, le=100)
    task_id: RefId | None = None
    task_name: ShortField | None = None
    step: ShortField | None = None
    file: ShortField | None = None
    detail: ProgressText | None = None


class ProgressQuery(BaseModel):
    """The query string of an agent's progress list: how many of its latest reports."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    limit: int = Field(
        default=PROGRESS_LIST_MAX, ge=1, le=PROGRESS_LIST_MAX, description="Reports (default and max 20)"
    )


class Progress(Output):
    id: str
    workspace_id: str
    agent_name: str
    message: str | None = None
    percent: int | None = None
    task_id: str | None = None
    task_name: str | None = None
    step: str | None = None
    file: str | None = None
    detail: str | None = None
    reported_by: str
    created_at: str
    expires_at: str = Field(description="Progress is kept 24 hours")


class ContextTask(Output):
    id: str
    title: str
    status: str
    priority: str | None = None
    sprint: int | None = None
    description: str = ""


class ContextMemory(Output):
    id: str
    agent_name: str
    key: str
    type: str
    content: str
    shared: bool = False


class ContextParts(Output):
    workspace: dict[str, Any]
    sprint: dict[str, Any] | None = None
    tasks: list[ContextTask]
    adrs: str
    rules: list[str]
    memories: list[ContextMemory]


class AgentContext(Output):
    agent_name: str
    context: str
    parts: ContextParts
    length: int
    token_estimate: int = Field(description="About four characters per token")


class PromptMode(StrEnum):
    compact = "compact"
    full = "full"


class PromptPreview(Output):
    agent_name: str
    role: str
    mode: PromptMode
    prompt: str
    length: int
    token_estimate: int = Field(description="About four characters per token")


class AgentTemplateCreate(Input):
    name: DisplayName
    slug: TemplateSlug | None = Field(default=None, description="Unique in the workspace; derived from the name")
    description: Description = ""
    icon: Emoji | None = None
    category: Tag | None = None
    role: Role | None = None
    model: ModelName | None = None
    engine: AgentEngine | None = None
    execution_mode: ExecutionMode | None = None
    system_prompt: SystemPrompt | None = None
    identity: Description | None = None
    interval_sec: IntervalSeconds | None = None
    tools: list[Tag] = Field(default_factory=list, max_length=50)
    capabilities: list[Tag] = Field(default_factory=list, max_length=50)
    config: dict[str, Any] = Field(default_factory=dict, description="Free-form JSON, at most 8 KB")
    is_featured: bool = False
    sort_order: int = Field(default=0, ge=-1_000_000, le=1_000_000)


class AgentTemplateUpdate(Input):
    """Fields left out are unchanged; null clears the optional ones."""

    name: DisplayName | None = None
    slug: TemplateSlug | None = None
    description: Description | None = None
    icon: Emoji | None = None
    category: Tag | None = None
    role: Role | None = None
    model: ModelName | None = None
    engine: AgentEngine | None = None
    execution_mode: ExecutionMode | None = None
    system_prompt: SystemPrompt | None = None
    identity: Description | None = None
    interval_sec: IntervalSeconds | None = None
    tools: list[Tag] | None = Field(default=None, max_length=50)
    capabilities: list[Tag] | None = Field(default=None, max_length=50)
    config: dict[str, Any] | None = None
    is_featured: bool | None = None
    sort_order: int | None = Field(default=None, ge=-1_000_000, le=1_000_000)
    version: int | None = Field(default=None, ge=1, description="Expected current version (or send If-Match)")


class AgentTemplateQuery(ListQuery):
    category: str | None = Field(default=None, max_length=50)
    featured: bool | None = Field(default=None, description="Only featured (true) or other (false) templates")


class AgentTemplate(Output):
    id: str
    workspace_id: str
    name: str
    slug: str
    description: str = ""
    icon: str | None = None
    category: str | None = None
    role: str | None = None
    model: str | None = None
    engine: AgentEngine | None = None
    execution_mode: ExecutionMode | None = None
    system_prompt: str | None = None
    identity: str | None = None
    interval_sec: int | None = None
    tools: list[str] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    is_featured: bool = False
    sort_order: int = 0
    created_by: str
    created_at: str
    updated_at: str
    version: int

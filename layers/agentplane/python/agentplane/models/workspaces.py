"""Workspaces and everything they hold for their people: members, invites, teams, the
export/import document and the common environment of their agents."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, EmailStr, Field, StringConstraints, field_validator

from agentplane.auth.scopes import Role
from agentplane.models.agents import AgentDefinition
from agentplane.models.common import Input, ListQuery, LongText, Name, Output, ShortText
from agentplane.models.tasks import AgentName as TaskAgentName
from agentplane.models.tasks import Label, TaskCreate, TaskPriority, TaskRef, Title

Language = Annotated[str, StringConstraints(min_length=2, max_length=10)]
Workflow = Annotated[str, StringConstraints(min_length=1, max_length=30)]
UserRef = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
TeamRef = Annotated[str, StringConstraints(pattern=r"^team_[0-9a-z]{26}$")]

# Invites and team lists stay small enough to export and to clean up in a few transactions.
MAX_TEAM_MEMBERS = 500
MAX_IMPORT_TEAMS = 200
MAX_IMPORT_TASKS = 1000
MAX_IMPORT_AGENTS = 200
MAX_IMPORT_TEMPLATES = 500


class WorkspaceCreate(Input):
    name: Name
    description: ShortText = ""
    language: Language = "en"
    workflow: Workflow = "scrum"
    spec: LongText = ""


class WorkspaceUpdate(Input):
    """PATCH /workspaces/{ws}: fields left out are unchanged. `auto_push` gates `POST …/runs/{id}/push`."""

    name: Name | None = None
    description: ShortText | None = None
    language: Language | None = None
    workflow: Workflow | None = None
    spec: LongText | None = None
    auto_push: bool | None = None
    version: int | None = Field(default=None, ge=1, description="Expected current version (or send If-Match)")


class Workspace(Output):
    id: str
    name: str
    description: str = ""
    language: str = "en"
    workflow: str = "scrum"
    spec: str = ""
    auto_push: bool = False
    owner_id: str
    created_at: str
    updated_at: str
    version: int = 1


class Membership(Output):
    """One of the caller's workspaces, as `GET /workspaces` and `GET /me/workspaces` list them.
    A workspace key lists only its own workspace: an API key with the role of the person it acts
    for, an agent key (which acts for no person: `user_id` is null) as a member since its creation."""

    workspace_id: str
    workspace_name: str
    user_id: str | None
    role: Role
    joined_at: str


# --- members ---------------------------------------------------------------------------------


class MemberAdd(Input):
    user_id: UserRef
    role: Role = Role.member


class MemberUpdate(Input):
    role: Role


class Member(Output):
    """A person in the workspace, with the public parts of their profile."""

    user_id: str
    role: Role
    joined_at: str
    added_by: str | None = None
    username: str | None = None
    display_name: str | None = None
    avatar_url: str | None = None


# --- invites ---------------------------------------------------------------------------------


class InviteRole(StrEnum):
    """Orkosi's invite roles: ownership is granted to an existing member, never by invite."""

    admin = "admin"
    member = "member"
    viewer = "viewer"


class InviteStatus(StrEnum):
    pending = "pending"
    accepted = "accepted"
    revoked = "revoked"


class InviteCreate(Input):
    email: EmailStr
    role: InviteRole = InviteRole.member
    expires_in_days: int = Field(default=7, ge=1, le=30)


class Invite(Output):
    """An invite as lists show it: never its secret."""

    id: str
    workspace_id: str
    email: str
    role: InviteRole
    status: InviteStatus
    expires_at: str
    created_by: str
    created_at: str
    accepted_by: str | None = None
    accepted_at: str | None = None
    revoked_at: str | None = None


class InviteCreated(Invite):
    """Returned once, to the inviter: `token` is the secret the invitee accepts with."""

    token: str


# --- teams -----------------------------------------------------------------------------------


class TeamRole(StrEnum):
    owner = "owner"
    admin = "admin"
    member = "member"


class TeamCreate(Input):
    name: Name
    description: ShortText = ""


class TeamUpdate(Input):
    name: Name | None = None
    description: ShortText | None = None
    version: int | None = Field(default=None, ge=1, description="Expected current version (or send If-Match)")


class TeamQuery(ListQuery):
    name: str | None = Field(default=None, max_length=100, description="Teams whose name contains this")


class TeamMemberAdd(Input):
    user_id: UserRef
    role: TeamRole = TeamRole.member


class TeamMember(Output):
    team_id: str
    user_id: str
    role: TeamRole
    added_by: str | None = None
    added_at: str


class Team(Output):
    id: str
    workspace_id: str
    name: str
    description: str = ""
    member_count: int = 0
    created_by: str
    created_at: str
    updated_at: str
    version: int = 1


class TeamDetail(Team):
    """`GET …/teams/{id}`: the team with its first members (the rest via `…/members`)."""

    members: list[TeamMember] = []
    more_members: bool = False


# --- common env ------------------------------------------------------------------------------

EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
EnvValue = Annotated[str, StringConstraints(max_length=4096)]
MAX_COMMON_ENV = 100


class CommonEnvPut(Input):
    """`variables` are upserted; with `replace: true` every variable not listed is removed."""

    # Values are kept byte for byte: leading or trailing spaces may be part of a secret.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    variables: dict[EnvName, EnvValue] = Field(max_length=MAX_COMMON_ENV)
    replace: bool = False
    version: int | None = Field(default=None, ge=0, description="Expected current version (or send If-Match)")


class CommonEnvVar(Output):
    name: str
    value: str
    updated_at: str
    updated_by: str


class CommonEnv(Output):
    variables: list[CommonEnvVar]
    revealed: bool = False  # false: every value is masked (`••••` + at most its last four characters)
    version: int = 0
    updated_at: str | None = None


# --- export / import -------------------------------------------------------------------------


# `replace` as an enum member would shadow str.replace, so the mode is a literal.
ImportMode = Literal["merge", "replace"]


class WorkspaceSettings(Input):
    name: Name | None = None
    description: ShortText | None = None
    language: Language | None = None
    workflow: Workflow | None = None
    spec: LongText | None = None
    auto_push: bool | None = None


class ExportedMember(Input):
    user_id: UserRef
    role: Role
    joined_at: str | None = None
    username: str | None = None


class ExportedTeamMember(Input):
    user_id: UserRef
    role: TeamRole = TeamRole.member


class ExportedTeam(Input):
    id: TeamRef
    name: Name
    description: ShortText = ""
    members: list[ExportedTeamMember] = Field(default_factory=list, max_length=MAX_TEAM_MEMBERS)


class ExportedTask(TaskCreate):
    """A task as the document carries it: its id plus everything a client may set on it.
    Bookkeeping fields an export includes are accepted and ignored on import."""

    id: TaskRef
    review_comment: LongText | None = None
    workspace_id: str | None = None
    created_by: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    version: int | None = None


class ExportedTaskTemplate(Input):
    """A task template (Toban's `task_templates`): a task to create again, matched by its title.
    `labels` may come as a list or, as Toban writes it, as a JSON-encoded list."""

    title: Title
    description: LongText = ""
    priority: TaskPriority = TaskPriority.p1
    owner: TaskAgentName | None = None
    labels: list[Label] = Field(default_factory=list, max_length=20)

    @field_validator("labels", mode="before")
    @classmethod
    def labels_from_json_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else []
            except ValueError:
                raise ValueError("labels must be a list, or a JSON-encoded list") from None
        return value


ExportKind = Literal["members", "teams", "tasks", "agents", "task_templates"]


class WorkspaceDocument(Input):
    """The export document, and the body of `POST …/import` (send back what export gave).

    `members` is informational: memberships are granted by invites and `…/members`, never by a
    document, so import ignores it. Teams and tasks are matched by `id`.
    """

    version: Literal[1] = 1
    mode: ImportMode = "merge"
    exported_at: str | None = None
    workspace_id: str | None = Field(default=None, description="The exported workspace (informational)")
    workspace: WorkspaceSettings | None = None
    members: list[ExportedMember] | None = Field(default=None, max_length=5000)
    teams: list[ExportedTeam] | None = Field(default=None, max_length=MAX_IMPORT_TEAMS)
    tasks: list[ExportedTask] | None = Field(default=None, max_length=MAX_IMPORT_TASKS)
    agents: list[AgentDefinition] | None = Field(default=None, max_length=MAX_IMPORT_AGENTS)
    task_templates: list[ExportedTaskTemplate] | None = Field(default=None, max_length=MAX_IMPORT_TEMPLATES)
    truncated: list[ExportKind] = Field(default_factory=list, max_length=5)

    @field_validator("agents")
    @classmethod
    def agent_names_unique(cls, value: list[AgentDefinition] | None) -> list[AgentDefinition] | None:
        names = [agent.name for agent in value or []]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"agent {repeated[0]} appears more than once")
        return value

    @field_validator("task_templates")
    @classmethod
    def template_titles_unique(cls, value: list[ExportedTaskTemplate] | None) -> list[ExportedTaskTemplate] | None:
        titles = [template.title.casefold() for template in value or []]
        if len(titles) != len(set(titles)):
            raise ValueError("two task templates have the same title")
        return value

    @field_validator("teams", "tasks")
    @classmethod
    def ids_unique(cls, value: list[Any] | None) -> list[Any] | None:
        if value:
            seen: set[str] = set()
            for entry in value:
                if entry.id in seen:
                    raise ValueError(f"id {entry.id} appears more than once")
                seen.add(entry.id)
        return value

    @field_validator("teams")
    @classmethod
    def team_members_unique(cls, value: list[ExportedTeam] | None) -> list[ExportedTeam] | None:
        for team in value or []:
            users = [m.user_id for m in team.members]
            if len(users) != len(set(users)):
                raise ValueError(f"team {team.id} lists a member more than once")
        return value


class WorkspaceExport(Output):
    version: int = 1
    exported_at: str
    workspace_id: str
    workspace: dict[str, Any]
    members: list[dict[str, Any]]
    teams: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    agents: list[dict[str, Any]] = Field(default_factory=list, description="Definitions only: never keys or config")
    task_templates: list[dict[str, Any]] = Field(default_factory=list)
    truncated: list[str] = Field(
        default_factory=list, description="Kinds cut short by the export's size bounds: import them separately"
    )


class ImportResult(Output):
    mode: ImportMode
    stats: dict[str, int]
    transactions: int

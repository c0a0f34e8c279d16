"""The workspace export/import document: what export gives and import takes back. Apart from
agentplane.models.workspaces because it carries tasks and agent definitions, whose models only
the workspaces function needs."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, field_validator

from agentplane.auth.scopes import Role
from agentplane.models.agents import AgentDefinition
from agentplane.models.common import Input, LongText, Name, Output, ShortText
from agentplane.models.tasks import AgentName as TaskAgentName
from agentplane.models.tasks import Label, TaskCreate, TaskPriority, TaskRef, Title
from agentplane.models.workspaces import MAX_TEAM_MEMBERS, Language, TeamRef, TeamRole, UserRef, Workflow

MAX_IMPORT_TEAMS = 200
MAX_IMPORT_TASKS = 1000
MAX_IMPORT_AGENTS = 200
MAX_IMPORT_TEMPLATES = 500


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

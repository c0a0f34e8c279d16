"""Workspaces and everything they hold for their people: members, invites, teams and the common
environment of their agents (the export/import document is agentplane.models.transfer)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, EmailStr, Field, StringConstraints

from agentplane.auth.scopes import Role
from agentplane.models.common import Input, ListQuery, LongText, Name, Output, ShortText

Language = Annotated[str, StringConstraints(min_length=2, max_length=10)]
Workflow = Annotated[str, StringConstraints(min_length=1, max_length=30)]
UserRef = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
TeamRef = Annotated[str, StringConstraints(pattern=r"^team_[0-9a-z]{26}$")]

# Team lists stay small enough to export and to clean up in a few transactions.
MAX_TEAM_MEMBERS = 500


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

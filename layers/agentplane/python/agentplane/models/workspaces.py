"""Workspaces and their members."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from agentplane.auth.scopes import Role
from agentplane.models.common import Input, LongText, Name, Output, ShortText


class WorkspaceCreate(Input):
    name: Name
    description: ShortText = ""
    language: Annotated[str, StringConstraints(max_length=10)] = "en"
    workflow: Annotated[str, StringConstraints(max_length=30)] = "scrum"
    spec: LongText = ""


class WorkspaceUpdate(Input):
    name: Name | None = None
    description: ShortText | None = None
    language: Annotated[str, StringConstraints(max_length=10)] | None = None
    workflow: Annotated[str, StringConstraints(max_length=30)] | None = None
    spec: LongText | None = None
    auto_push: bool | None = None
    version: int | None = Field(default=None, ge=1)


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
    workspace_id: str
    workspace_name: str
    user_id: str
    role: Role
    joined_at: str

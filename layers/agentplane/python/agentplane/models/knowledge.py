"""Knowledge agents work from: ADRs (Toban), rules (Orkosi) and failure records (Toban)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AliasChoices, Field, StringConstraints, field_validator

from agentplane.models.common import Input, ListQuery, LongText, Output

KnowledgeTitle = Annotated[str, StringConstraints(min_length=1, max_length=300)]
RequiredText = Annotated[str, StringConstraints(min_length=1, max_length=20000)]
AgentRef = Annotated[str, StringConstraints(min_length=1, max_length=100)]
AdrRef = Annotated[str, StringConstraints(pattern=r"^adr_[0-9a-z]{26}$")]
# 'all' for rules every agent follows, or an agent's name.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
RuleScope = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Category = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,49}$")]
RefId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
UNIVERSAL_SCOPE = "all"


class AdrStatus(StrEnum):
    proposed = "proposed"
    accepted = "accepted"
    deprecated = "deprecated"
    superseded = "superseded"


class AdrCreate(Input):
    title: KnowledgeTitle
    context: RequiredText
    decision: RequiredText
    rationale: RequiredText
    consequences: LongText = ""
    author: AgentRef | None = Field(default=None, description="Defaults to the calling agent's name or user id")
    status: AdrStatus = Field(
        default=AdrStatus.proposed, description="'superseded' is set only by a newer ADR's `supersedes`"
    )
    supersedes: AdrRef | None = Field(
        default=None, description="An ADR this one replaces: it is marked superseded in the same write"
    )

    @field_validator("status")
    @classmethod
    def _not_born_superseded(cls, status: AdrStatus) -> AdrStatus:
        if status is AdrStatus.superseded:
            raise ValueError("a new ADR cannot start superseded; name it in a newer ADR's `supersedes`")
        return status


class AdrUpdate(Input):
    title: KnowledgeTitle | None = None
    status: AdrStatus | None = None
    context: RequiredText | None = None
    decision: RequiredText | None = None
    rationale: RequiredText | None = None
    consequences: LongText | None = None
    superseded_by: AdrRef | None = Field(
        default=None, description="The ADR that replaces this one; sets the status to superseded"
    )
    version: int | None = Field(default=None, ge=1, description="Expected current version (or send If-Match)")


class Adr(Output):
    id: str
    workspace_id: str
    number: int = Field(description="1, 2, 3… per workspace, never reused")
    title: str
    status: AdrStatus
    context: str
    decision: str
    rationale: str
    consequences: str = ""
    author: str
    supersedes: str | None = None
    superseded_by: str | None = None
    created_by: str
    created_at: str
    updated_at: str
    version: int


class AdrQuery(ListQuery):
    status: AdrStatus | None = None


class AdrPrompt(Output):
    prompt: str = Field(description="Accepted and proposed ADRs as a text block to put in an agent's prompt")
    count: int


class RuleCreate(Input):
    content: RequiredText = Field(
        validation_alias=AliasChoices("content", "rule"), description="Also accepted as `rule`"
    )
    scope: RuleScope = Field(default=UNIVERSAL_SCOPE, description="'all', or the agent the rule is for")
    category: Category = "general"
    permanent: bool = Field(default=False, description="Permanent rules cannot be deleted")


class RuleUpdate(Input):
    content: RequiredText | None = Field(default=None, validation_alias=AliasChoices("content", "rule"))
    scope: RuleScope | None = None
    category: Category | None = None
    permanent: bool | None = Field(default=None, description="Only an admin may make a permanent rule deletable")
    version: int | None = Field(default=None, ge=1, description="Expected current version (or send If-Match)")


class RuleQuery(ListQuery):
    scope: str | None = Field(default=None, pattern=NAME_PATTERN)
    agent: str | None = Field(default=None, pattern=NAME_PATTERN)
    category: str | None = Field(default=None, max_length=50)
    permanent: bool | None = None


class Rule(Output):
    id: str
    workspace_id: str
    content: str
    scope: str
    category: str
    permanent: bool
    created_by: str
    created_at: str
    updated_at: str
    version: int


class FailureCreate(Input):
    title: KnowledgeTitle = Field(description="What failed")
    cause: LongText = ""
    lesson: LongText = Field(default="", description="What to do differently next time")
    task_id: RefId | None = None
    agent: AgentRef | None = None
    run_id: RefId | None = None


class FailureQuery(ListQuery):
    agent: str | None = Field(default=None, max_length=100)
    task_id: str | None = Field(default=None, max_length=64)


class FailureRecord(Output):
    id: str
    workspace_id: str
    title: str
    cause: str = ""
    lesson: str = ""
    task_id: str | None = None
    agent: str | None = None
    run_id: str | None = None
    source: str = Field(
        default="reported", description="`reported` (POST failures) or `review_rejection` (a task rejected in review)"
    )
    created_by: str
    created_at: str

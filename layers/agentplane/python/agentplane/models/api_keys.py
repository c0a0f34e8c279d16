"""Workspace API keys (Orkosi's keys: scopes, rotate with grace, roll, revoke, usage)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from agentplane.models.common import Input, ListQuery, Name, Output, ShortText

ScopeName = Annotated[str, StringConstraints(min_length=1, max_length=50)]
Scopes = Annotated[list[ScopeName], Field(min_length=1, max_length=50)]

MAX_GRACE_HOURS = 168
DEFAULT_GRACE_HOURS = 24


class ApiKeyStatus(StrEnum):
    active = "active"
    inactive = "inactive"  # switched off with PATCH active=false; can be switched back on
    revoked = "revoked"  # for good
    expired = "expired"  # past expires_at (computed when read)


class ApiKeyCreate(Input):
    name: Name
    description: ShortText = ""
    scopes: Scopes | None = Field(default=None, description="Omitted or ['*']: everything the creator's role allows")
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)
    expires_at: datetime | None = Field(default=None, description="Alternative to expires_in_days (ISO-8601)")
    agent: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = Field(
        default=None,
        description="Makes an agent key: it acts as this agent inside the workspace, with the agent "
        "scopes only, and never expires (revoke, rotate or roll it instead)",
    )

    @model_validator(mode="after")
    def one_expiry_at_most(self) -> ApiKeyCreate:
        if self.expires_in_days is not None and self.expires_at is not None:
            raise ValueError("give expires_in_days or expires_at, not both")
        if self.agent is not None and (self.expires_in_days is not None or self.expires_at is not None):
            raise ValueError("agent keys do not expire; revoke, rotate or roll them instead")
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise ValueError("expires_at needs a time zone (for example a trailing Z)")
        return self


class ApiKeyUpdate(Input):
    name: Name | None = None
    description: ShortText | None = None
    scopes: Scopes | None = None
    active: bool | None = Field(default=None, description="false switches the key off, true back on")
    version: int | None = Field(default=None, ge=1, description="Expected current version (or send If-Match)")


class ApiKeyQuery(ListQuery):
    include_revoked: bool = Field(default=False, description="Also list revoked keys")


class ApiKeyRotate(Input):
    grace_hours: int = Field(
        default=DEFAULT_GRACE_HOURS,
        ge=0,
        le=MAX_GRACE_HOURS,
        description="How long the old secret keeps working (0 ends it at once)",
    )


class ApiKey(Output):
    """An API key as lists and reads show it: never the secret, only its first characters."""

    id: str
    workspace_id: str
    name: str
    description: str = ""
    scopes: list[str]
    key_prefix: str
    status: ApiKeyStatus
    agent: str | None = Field(default=None, description="Set on agent keys: the agent the key acts as")
    created_by: str
    created_at: str
    updated_at: str
    expires_at: str | None = None
    last_used_at: str | None = None
    rotated_at: str | None = None
    previous_key_expires_at: str | None = Field(
        default=None, description="When the secret replaced by the last rotation stops working"
    )
    revoked_at: str | None = None
    version: int


class ApiKeyWithSecret(ApiKey):
    """Returned by create, rotate and roll: the only time the secret is ever shown."""

    key: str


class ApiKeyUsageBucket(Output):
    minute: str = Field(description="Start of the UTC minute, ISO-8601")
    requests: int


class ApiKeyUsage(Output):
    key_id: str
    total_requests: int = Field(description="Every request the key has made")
    last_used_at: str | None = None
    buckets: list[ApiKeyUsageBucket] = Field(description="Requests per minute, newest first (kept 30 days)")


class UsagePageMeta(Output):
    next_cursor: str | None = None
    limit: int


class ApiKeyUsagePage(Output):
    """The usage log keeps the list envelope: buckets page with meta.next_cursor."""

    data: ApiKeyUsage
    meta: UsagePageMeta

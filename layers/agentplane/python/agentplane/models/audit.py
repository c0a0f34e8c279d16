"""Audit trail, activity timeline and operation logs (Toban, Orkosi, Takosumi)."""

from __future__ import annotations

import json
import math
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, StringConstraints, field_validator

from agentplane.models.common import Input, ListQuery, Output

ActivityType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.:-]{0,63}$")]
Message = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
AgentName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
EntityId = Annotated[str, StringConstraints(min_length=1, max_length=100)]

# Serialized size a piece of activity metadata may take.
MAX_METADATA_BYTES = 4096


# What a list's text filters accept.
FilterText = Annotated[str, StringConstraints(min_length=1, max_length=200)]
SINCE = "Earliest time, ISO-8601 (UTC if no offset)"
UNTIL = "Latest time, ISO-8601 (UTC if no offset)"


class AuditQuery(ListQuery):
    actor: FilterText | None = None
    action: FilterText | None = None
    target_type: FilterText | None = None
    target_id: FilterText | None = None
    since: datetime | None = Field(default=None, alias="from", description=SINCE)
    until: datetime | None = Field(default=None, alias="to", description=UNTIL)


class AuditEvent(Output):
    id: str
    workspace_id: str
    actor_id: str
    action: str
    target_type: str
    target_id: str
    request_id: str = ""
    details: dict[str, Any] = {}
    created_at: str


class ActivityLevel(StrEnum):
    debug = "debug"
    info = "info"
    warn = "warn"
    error = "error"


class ActorType(StrEnum):
    user = "user"
    agent = "agent"
    key = "key"


class ActivityQuery(ListQuery):
    type: FilterText | None = None
    agent: FilterText | None = None
    task_id: FilterText | None = None
    actor: FilterText | None = None
    since: datetime | None = Field(default=None, alias="from", description=SINCE)
    until: datetime | None = Field(default=None, alias="to", description=UNTIL)


class LogQuery(ListQuery):
    agent: FilterText | None = None
    level: ActivityLevel | None = Field(default=None, description="Minimum level")
    q: FilterText | None = None
    since: datetime | None = Field(default=None, alias="from", description=SINCE)


class ActivityCreate(Input):
    type: ActivityType = Field(description="What happened, e.g. task.started, agent.note, deploy.finished")
    message: Message
    agent: AgentName | None = Field(default=None, description="The agent it concerns; agent keys default to theirs")
    task_id: EntityId | None = None
    level: ActivityLevel = ActivityLevel.info
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value, default=str)) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata must serialize to at most {MAX_METADATA_BYTES} bytes")
        if not _storable(value):
            raise ValueError("metadata keys must be non-empty strings and numbers finite")
        return value


def _storable(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and k and _storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return True


class Activity(Output):
    id: str
    workspace_id: str
    type: str
    message: str
    agent: str | None = None
    task_id: str | None = None
    level: ActivityLevel
    metadata: dict[str, Any] = {}
    actor_id: str
    actor_type: ActorType
    created_at: str


class ActivityDay(Output):
    date: str
    count: int


class ActivityStats(Output):
    since: str
    until: str
    total: int
    by_type: dict[str, int]
    by_actor: dict[str, int]
    by_agent: dict[str, int]
    by_level: dict[str, int]
    by_day: list[ActivityDay]
    truncated: bool = Field(description="True when the window held more entries than one stats read covers")


class LogLine(Output):
    id: str
    at: str
    level: ActivityLevel
    source: str = Field(description="agent name, or the actor id when no agent is named")
    type: str
    message: str
    task_id: str | None = None
    actor_id: str

"""Agent memories (Toban's versioned, expiring knowledge entries, Takos's memories)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from agentplane.models.agents import AGENT_NAME_PATTERN
from agentplane.models.common import Input, ListQuery, Output

# A memory's key names it within its agent (upsert by agent + key); no '#' or '/'.
MEMORY_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
MemoryKey = Annotated[str, StringConstraints(pattern=MEMORY_KEY_PATTERN)]
MemoryRef = Annotated[str, StringConstraints(pattern=r"^mem_[0-9a-z]{26}$")]
MAX_CONTENT = 2000
Content = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CONTENT)]
MAX_EXPIRES_DAYS = 3650


class MemoryType(StrEnum):
    identity = "identity"
    feedback = "feedback"
    project = "project"
    reference = "reference"


class MemoryPut(Input):
    """The whole memory: fields left out take their defaults (not shared, never expires)."""

    content: Content
    type: MemoryType
    shared: bool = Field(default=False, description="Visible to every agent of the workspace")
    expires_days: int | None = Field(
        default=None, ge=1, le=MAX_EXPIRES_DAYS, description="Expires this many days after it was last validated"
    )
    version: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Optional optimistic lock (or send If-Match): the version being replaced (else 409), 0 to create only."
            " Left out, the write creates the memory or replaces whatever is stored (last writer wins)"
        ),
    )


class Memory(Output):
    id: str
    workspace_id: str
    agent_name: str
    key: str
    type: MemoryType
    content: str
    shared: bool = False
    version: int
    expires_days: int | None = None
    expires_at: str | None = Field(default=None, description="last_validated_at + expires_days")
    expired: bool = Field(default=False, description="expires_at has passed; revalidate to keep it")
    last_validated_at: str
    created_by: str
    updated_by: str
    created_at: str
    updated_at: str


class AgentMemoryQuery(ListQuery):
    """The query string of one agent's memories."""

    type: MemoryType | None = None


class MemoryQuery(AgentMemoryQuery):
    """The query string of a workspace's memories (all, shared or expired)."""

    agent: str | None = Field(default=None, pattern=AGENT_NAME_PATTERN, description="One agent's memories")


class MemorySearchQuery(MemoryQuery):
    q: str = Field(min_length=1, max_length=200, description="Words that must all appear in key or content")

"""Threads with ordered messages and public read-only shares (Takos), and team messages (Toban)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AliasChoices, BaseModel, Field, StringConstraints, model_validator

from agentplane.models.common import Input, ListQuery, LongText, Output
from agentplane.models.envelope import PageMeta

ThreadTitle = Annotated[str, StringConstraints(min_length=1, max_length=300)]
Author = Annotated[str, StringConstraints(min_length=1, max_length=100)]
MessageContent = Annotated[str, StringConstraints(min_length=1, max_length=20000)]
# Channels are agent names or 'team': letters, digits and . _ - only, so they can key a partition.
CHANNEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
Channel = Annotated[str, StringConstraints(pattern=CHANNEL_PATTERN)]
TEAM_CHANNEL = "team"
# Ids as minted (`agentplane.ids.new_id`): anything else names no thread or share.
THREAD_ID_PATTERN = r"^thr_[0-9a-z]{26}$"
SHARE_ID_PATTERN = r"^shr_[0-9a-z]{26}$"


class ThreadStatus(StrEnum):
    active = "active"
    archived = "archived"


class MessageRole(StrEnum):
    user = "user"
    assistant = "assistant"
    system = "system"
    tool = "tool"


class ThreadCreate(Input):
    title: ThreadTitle
    description: LongText = ""


class ThreadUpdate(Input):
    title: ThreadTitle | None = None
    description: LongText | None = None
    status: ThreadStatus | None = None
    version: int | None = Field(default=None, ge=1, description="Expected current version (or send If-Match)")


class Thread(Output):
    id: str
    workspace_id: str
    title: str
    description: str = ""
    status: ThreadStatus
    message_count: int = 0
    last_message_at: str | None = None
    created_by: str
    created_at: str
    updated_at: str
    version: int


class ThreadQuery(ListQuery):
    status: ThreadStatus | None = None


class ThreadMessageCreate(Input):
    content: MessageContent
    role: MessageRole = MessageRole.user
    author: Author | None = Field(default=None, description="Defaults to the calling agent's name or user id")


class ThreadMessage(Output):
    id: str
    thread_id: str
    sequence: int = Field(description="1, 2, 3… in the order the thread received its messages")
    role: MessageRole
    author: str
    content: str
    created_at: str


class ThreadShareCreate(Input):
    expires_in_hours: int | None = Field(default=None, ge=1, le=24 * 365, description="Omit for a share that lasts")


class ThreadShare(Output):
    id: str
    thread_id: str
    token_hint: str = Field(description="The token's prefix and last characters, never the token")
    created_by: str
    created_at: str
    expires_at: str | None = None
    revoked_at: str | None = None


class CreatedThreadShare(ThreadShare):
    token: str = Field(description="Shown once: anyone holding it can read the thread")
    path: str = Field(description="The public path that reads the thread with this token")


class SharedThreadView(Output):
    """What a share token lets anyone read: the thread's title and its messages, no member ids."""

    id: str
    title: str
    description: str = ""
    status: ThreadStatus
    message_count: int = 0
    created_at: str
    messages: list[ThreadMessage]


class SharedThreadPage(BaseModel):
    data: SharedThreadView
    meta: PageMeta


class MessageMode(StrEnum):
    team = "team"
    direct = "direct"


class TeamMessageCreate(Input):
    """Toban's `{"from", "to", "content"}`: `from` is the author, `to` an agent (a direct message)
    or 'team'."""

    content: MessageContent
    channel: Channel | None = Field(
        default=None, description="An agent's name or 'team'; defaults to `to` for direct messages, else 'team'"
    )
    mode: MessageMode | None = Field(
        default=None, description="'team' (everyone) or 'direct'; inferred from `to` ('team' or none: team)"
    )
    author: Author | None = Field(
        default=None,
        validation_alias=AliasChoices("author", "from"),
        description="Who speaks (Toban's `from`); defaults to the calling agent's name or user id",
    )
    to: Channel | None = Field(default=None, description="The agent a direct message is for, or 'team'")

    @model_validator(mode="after")
    def _channel_matches_mode(self) -> TeamMessageCreate:
        if self.mode is None:
            self.mode = MessageMode.direct if self.to and self.to != TEAM_CHANNEL else MessageMode.team
        if self.mode is MessageMode.direct and not (self.to or self.channel):
            raise ValueError("a direct message needs `to` or `channel`")
        if self.channel is None:
            self.channel = self.to if self.mode is MessageMode.direct else TEAM_CHANNEL
        return self


class TeamMessageQuery(ListQuery):
    channel: str | None = Field(default=None, pattern=CHANNEL_PATTERN)
    mode: MessageMode | None = None


class TeamMessage(Output):
    id: str
    workspace_id: str
    channel: str
    mode: MessageMode
    author: str
    to: str | None = None
    content: str
    created_by: str
    created_at: str

"""Notifications: a member's inbox in a workspace (Orkosi's fields, Takos's and Mobile's kinds)."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AliasChoices, Field, StringConstraints, field_validator, model_validator

from agentplane.models.common import Input, ListQuery, Output

MAX_DATA_BYTES = 8192

Title = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Body = Annotated[str, StringConstraints(max_length=4000)]
# A link a client may render as a target: a path inside the app or an http(s) URL, never `javascript:`.
Link = Annotated[str, StringConstraints(max_length=2000, pattern=r"^(/|https?://)\S*$")]
Source = Annotated[str, StringConstraints(min_length=1, max_length=100)]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class NotificationType(StrEnum):
    info = "info"
    success = "success"
    warning = "warning"
    error = "error"
    needs_input = "needs_input"
    billing = "billing"  # a payment failed, a top-up was declined
    finished = "finished"
    mention = "mention"
    stalled = "stalled"
    budget_exhausted = "budget_exhausted"  # the token balance could not cover what a run reported


class NotificationCreate(Input):
    """Sent to `user_id`, to every member (`all_members`), or, with neither, to the caller."""

    title: Title
    body: Body = Field(
        default="",
        validation_alias=AliasChoices("body", "message"),
        description="The text; Orkosi's `message` is accepted in its place",
    )
    type: NotificationType = NotificationType.info
    link: Link | None = None
    source: Source | None = None
    data: dict[str, Any] = Field(default_factory=dict, description=f"Free-form JSON, at most {MAX_DATA_BYTES} bytes")
    user_id: UserId | None = None
    all_members: bool = False

    @field_validator("data")
    @classmethod
    def _bounded_data(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value, separators=(",", ":"), default=str)) > MAX_DATA_BYTES:
            raise ValueError(f"data must serialize to at most {MAX_DATA_BYTES} bytes")
        return value

    @model_validator(mode="after")
    def _one_audience(self) -> NotificationCreate:
        if self.user_id is not None and self.all_members:
            raise ValueError("give either user_id or all_members, not both")
        return self


class NotificationQuery(ListQuery):
    read: bool | None = Field(default=None, description="true: only read ones; false: only unread ones")
    type: NotificationType | None = None


class Notification(Output):
    id: str
    workspace_id: str
    user_id: str
    type: NotificationType
    title: str
    body: str = ""
    link: str | None = None
    source: str | None = None
    data: dict[str, Any] = {}
    read: bool = False
    read_at: str | None = None
    created_by: str
    created_at: str


class NotificationCreated(Output):
    """What a create answers: the notification as sent, and who it went to (one inbox each)."""

    id: str
    workspace_id: str
    type: NotificationType
    title: str
    body: str = ""
    link: str | None = None
    source: str | None = None
    data: dict[str, Any] = {}
    recipients: list[str]
    created_by: str
    created_at: str


class UnreadCount(Output):
    count: int


class ReadAllResult(Output):
    updated: int = Field(description="How many notifications this call marked read")
    count: int = Field(description="Unread notifications left (0 unless new ones arrived meanwhile)")

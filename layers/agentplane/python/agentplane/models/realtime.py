"""The WebSocket API's messages: what a client sends, and what the server pushes back.

A client sends `{"action": "subscribe" | "unsubscribe" | "ping", …}`. The server answers control
messages with a `type` (`subscribed`, `replayed`, `unsubscribed`, `pong`, `error`) and pushes stored events as
`{"channel", "id", "event", "data"}` (no `type`, so a client tells the two apart at a glance).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, TypeAdapter

from agentplane.models.common import Input, Output

# Clients name a channel as one of these; `runs/<run id>` carries that run's events, `workspace`
# every run event of the workspace, `notifications` the caller's own notifications there.
Channel = Annotated[
    str, StringConstraints(max_length=80, pattern=r"^(runs/run_[0-9a-z]{1,64}|workspace|notifications)$")
]
NotificationId = Annotated[str, StringConstraints(pattern=r"^ntf_[0-9a-z]{26}$")]
WorkspaceId = Annotated[str, StringConstraints(min_length=4, max_length=64, pattern=r"^ws_[0-9a-z]+$")]


class Subscribe(Input):
    action: Literal["subscribe"]
    channel: Channel
    workspace_id: WorkspaceId | None = Field(
        default=None,
        description="Optional: a run channel is found among the caller's workspaces, and the other "
        "channels need it only when the caller belongs to more than one",
    )
    since: Annotated[int, Field(ge=0, le=10**12 - 1)] | NotificationId | None = Field(
        default=None,
        description="Replay the stored events after this one before live ones: a run event id on "
        "runs/<id>, a notification id on notifications (the workspace channel has no replay)",
    )


class Unsubscribe(Input):
    action: Literal["unsubscribe"]
    channel: Channel
    workspace_id: WorkspaceId | None = None  # found as for subscribe when left out


class Ping(Input):
    action: Literal["ping"]


ClientMessage = Annotated[Subscribe | Unsubscribe | Ping, Field(discriminator="action")]
client_message = TypeAdapter(ClientMessage)


class Push(Output):
    """One stored event delivered to a subscriber: `event` is its type, `id` its id in the channel."""

    channel: str
    id: int | str
    event: str
    data: dict[str, Any]


class Subscribed(Output):
    type: Literal["subscribed"] = "subscribed"
    channel: str
    workspace_id: str
    # Run and notification channels: the last event id the subscriber has (live pushes continue
    # after it); none on a notifications channel whose inbox is still empty.
    since: int | str | None = None


class Replayed(Output):
    """Sent after a `since` replay: the events through `through` were pushed; with `complete` false
    the replay stopped at its limit, and subscribing again with `since: through` continues it."""

    type: Literal["replayed"] = "replayed"
    channel: str
    workspace_id: str
    through: int | str
    complete: bool


class Unsubscribed(Output):
    type: Literal["unsubscribed"] = "unsubscribed"
    channel: str
    workspace_id: str


class Pong(Output):
    type: Literal["pong"] = "pong"


class ErrorMessage(Output):
    """A refused message, with the fields of an RFC 9457 problem (the connection stays open)."""

    type: Literal["error"] = "error"
    status: int
    title: str
    detail: str
    action: str | None = None
    channel: str | None = None
    workspace_id: str | None = None
    errors: list[dict[str, Any]] | None = None
    required_scope: str | None = None

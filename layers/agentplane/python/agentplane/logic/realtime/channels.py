"""Channels: what a client names (`runs/<run id>`, `workspace`, `notifications`), the workspace it
belongs to, and where a new subscription's cursor starts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from agentplane import keys
from agentplane.auth.principal import Principal
from agentplane.entities.runs import RunItem
from agentplane.errors import BadRequest, Forbidden, NotFound, Unprocessable
from agentplane.logic import notifications
from agentplane.logic.workspaces import list_memberships
from agentplane.store import get_store

# Workspaces searched for a run channel named without its workspace (one BatchGetItem).
MAX_WORKSPACES_SEARCHED = 100
_NOTIFICATION_ID = re.compile(r"^ntf_[0-9a-z]{26}$")


@dataclass(frozen=True)
class Channel:
    name: str  # as the client names it
    key: str  # as stored: notifications carry the member's user id
    scope: str | None
    run_id: str | None = None
    user_id: str | None = None  # whose notifications


def channel_of(name: str, principal: Principal) -> Channel:
    if name.startswith("runs/"):
        run_id = name.removeprefix("runs/")
        return Channel(name, keys.realtime_run_channel(run_id), "runs:read", run_id)
    if name == keys.REALTIME_WORKSPACE_CHANNEL:
        return Channel(name, keys.REALTIME_WORKSPACE_CHANNEL, "runs:read")
    if not principal.user_id:
        raise Forbidden("notifications belong to people; an agent key has none")
    user_id = principal.user_id
    return Channel(name, keys.realtime_notification_channel(user_id), None, user_id=user_id)


def workspace_of(principal: Principal, channel: Channel) -> str:
    """The workspace a channel named without one belongs to, as the contract writes it
    (`{"action":"subscribe","channel":"runs/<id>"}`): a workspace key's own; for a person, the one
    of their workspaces holding the run, or their only workspace for the other channels."""
    if principal.workspace_id:
        return principal.workspace_id
    assert principal.user_id is not None
    memberships, _ = list_memberships(principal.user_id, MAX_WORKSPACES_SEARCHED, None)
    workspaces = [membership.workspace_id for membership in memberships]
    if channel.run_id is not None:
        found = get_store().read_many(RunItem, [keys.run_key(ws, channel.run_id) for ws in workspaces])
        holding = [ws for ws, run in zip(workspaces, found, strict=True) if run is not None]
        if not holding:
            raise NotFound(f"run {channel.run_id} not found in any of your workspaces")
        return holding[0]
    if len(workspaces) != 1:
        detail = f"you belong to {len(workspaces)} workspaces: name one with workspace_id"
        raise Unprocessable(detail, errors=[{"field": "workspace_id", "message": detail, "type": "missing"}])
    return workspaces[0]


def start_of(ws: str, channel: Channel, since: int | str | None) -> int | str | None:
    """Where a new subscription's cursor starts: after `since`, or after the newest stored event."""
    if channel.run_id is not None:
        if since is not None and not isinstance(since, int):
            raise BadRequest("`since` on a run channel is a run event id (an integer)")
        last = _last_event_id(ws, channel.run_id)
        return last if since is None else min(since, last)
    if channel.user_id is not None:
        if since is not None and not (isinstance(since, str) and _NOTIFICATION_ID.match(since)):
            raise BadRequest("`since` on the notifications channel is a notification id (ntf_…)")
        return since if since is not None else notifications.newest_id(ws, channel.user_id) or ""
    if since is not None:
        raise BadRequest(
            "`since` does not apply to the workspace channel: its events are numbered per run; "
            "subscribe to runs/<run id> with `since` to replay one run"
        )
    return None


def _last_event_id(ws: str, run_id: str) -> int:
    run = get_store().read_or_404(RunItem, keys.run_key(ws, run_id), f"run {run_id} not found")
    return int(run.last_event_id or 0)

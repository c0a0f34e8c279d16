"""Access at push time: a member removed, or a token revoked or expired, after subscribing gets no
more pushes. Each (connection, workspace, scope) is checked once per fan-out batch."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from agentplane import keys
from agentplane.access import workspace_access
from agentplane.entities.base import Entity
from agentplane.entities.tokens import TokenItem
from agentplane.entities.workspaces import MemberItem
from agentplane.errors import Forbidden, NotFound
from agentplane.ids import epoch
from agentplane.logic.realtime.connections import registered
from agentplane.store import get_store


@dataclass
class PushGate:
    """Whether a subscriber may still receive a workspace's pushes, checked when pushing.

    A connection whose token was revoked or expired (or that is no longer registered) and a member
    removed from the workspace (or without the channel's scope any more) get nothing more. Each
    (connection, workspace, scope) is checked once per gate: one gate serves one fan-out batch."""

    _verdicts: dict[tuple[str, str, str | None], str | None] = field(default_factory=dict)

    def refusal(self, connection_id: str, ws: str, scope: str | None) -> str | None:
        """None when the push may go out; else "connection" (the token or connection is no longer
        good) or "access" (no longer a member, or the scope is missing)."""
        key = (connection_id, ws, scope)
        if key not in self._verdicts:
            self._verdicts[key] = push_refusal(connection_id, ws, scope)
        return self._verdicts[key]


def push_refusal(connection_id: str, ws: str, scope: str | None) -> str | None:
    connection = registered(connection_id)
    if connection is None:
        return "connection"
    principal = connection.principal
    person = principal.kind != "agent_key" and principal.user_id is not None
    wanted: list[tuple[type[Entity], keys.Key]] = [(TokenItem, keys.token_key(principal.token_hash))]
    if person:
        assert principal.user_id is not None
        wanted.append((MemberItem, keys.member_key(ws, principal.user_id)))
    found, *member = get_store().read_each(wanted)
    token = TokenItem.found(found)
    expires_at = int((token.expires_at if token else None) or 0)
    if token is None or token.revoked is not None or (expires_at and expires_at <= epoch()):
        return "connection"
    if person:
        if not member or not isinstance(member[0], MemberItem):
            return "access"
        principal = replace(principal, memberships={ws: member[0].role})
    try:
        workspace_access(principal, ws, scope)
    except (NotFound, Forbidden):
        return "access"
    return None

"""Who is calling: the principal a request's bearer token speaks for, as the handlers receive it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from agentplane.auth.scopes import WILDCARD


@dataclass(frozen=True)
class Principal:
    kind: str  # session | pat | api_key | agent_key
    id: str  # user id, key id or agent id
    user_id: str | None  # the human behind it (None for agent keys)
    token_id: str  # the session, key or token record the secret maps to
    token_hash: str = ""  # key of the secret's record, re-checked by every write
    scopes: frozenset[str] = frozenset({WILDCARD})
    workspace_id: str | None = None  # set for keys bound to one workspace
    agent_name: str | None = None
    site_owner: bool = False
    # The role in the one workspace this request checked (`checked_workspace`): absent there means
    # "not a member", checked this request; any other workspace is looked up when asked for.
    memberships: dict[str, str] = field(default_factory=dict)
    checked_workspace: str | None = None

    def has_scope(self, scope: str) -> bool:
        return WILDCARD in self.scopes or scope in self.scopes

    def same_token(self, other: Principal) -> bool:
        """Whether `other` was read from the same token record with the same rights (memberships aside)."""
        return replace(self, memberships={}, checked_workspace=None) == replace(
            other, memberships={}, checked_workspace=None
        )

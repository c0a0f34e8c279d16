"""Who is calling: the principal the authorizer resolved, as the handlers receive it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agentplane.auth.scopes import WILDCARD
from agentplane.errors import Unauthorized

# Memberships passed through the authorizer context; past this a user's workspaces are looked up.
MAX_CONTEXT_MEMBERSHIPS = 100


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
    memberships: dict[str, str] = field(default_factory=dict)  # ws id -> role, as of the authorizer
    memberships_complete: bool = True

    def has_scope(self, scope: str) -> bool:
        return WILDCARD in self.scopes or scope in self.scopes

    def to_context(self) -> dict[str, Any]:
        """The authorizer's context for API Gateway (values must be scalars, so one JSON string)."""
        return {
            "principal": json.dumps(
                {
                    "kind": self.kind,
                    "id": self.id,
                    "user_id": self.user_id,
                    "token_id": self.token_id,
                    "token_hash": self.token_hash,
                    "scopes": sorted(self.scopes),
                    "workspace_id": self.workspace_id,
                    "agent_name": self.agent_name,
                    "site_owner": self.site_owner,
                    "memberships": self.memberships,
                    "memberships_complete": self.memberships_complete,
                },
                separators=(",", ":"),
            )
        }

    @classmethod
    def from_authorizer(cls, authorizer: dict[str, Any] | None) -> Principal:
        raw = ((authorizer or {}).get("lambda") or {}).get("principal")
        if not raw:
            raise Unauthorized("a bearer token is required")
        data = json.loads(raw) if isinstance(raw, str) else raw
        return cls(
            kind=data["kind"],
            id=data["id"],
            user_id=data.get("user_id"),
            token_id=data["token_id"],
            token_hash=data.get("token_hash", ""),
            scopes=frozenset(data.get("scopes") or [WILDCARD]),
            workspace_id=data.get("workspace_id"),
            agent_name=data.get("agent_name"),
            site_owner=bool(data.get("site_owner")),
            memberships=dict(data.get("memberships") or {}),
            memberships_complete=bool(data.get("memberships_complete", True)),
        )

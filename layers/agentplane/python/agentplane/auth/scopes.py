"""Scopes (abilities) and the roles that grant them. A token's scopes cap its owner's role."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    owner = "owner"
    admin = "admin"
    member = "member"
    viewer = "viewer"


ALL_SCOPES: tuple[str, ...] = (
    "projects:read", "projects:write",
    "tasks:read", "tasks:write",
    "agents:read", "agents:write",
    "runs:read", "runs:start", "runs:control",
    "git:commit", "git:push",
    "deploy:plan", "deploy:apply",
    "secrets:read", "secrets:write",
    "settings:read", "settings:write",
    "billing:read", "billing:write",
    "admin",
)  # fmt: skip

WILDCARD = "*"

_READ = frozenset(s for s in ALL_SCOPES if s.endswith(":read") and s not in ("secrets:read", "billing:read"))
_MEMBER = _READ | {
    "projects:write", "tasks:write", "agents:write", "runs:start", "runs:control",
    "git:commit", "git:push", "deploy:plan",
}  # fmt: skip
# Admins hold every scope an owner does (billing:write too: they buy plans); what only an owner
# may do is checked by role.
_ADMIN = frozenset(ALL_SCOPES)

ROLE_SCOPES: dict[Role, frozenset[str]] = {
    Role.viewer: frozenset(_READ),
    Role.member: frozenset(_MEMBER),
    Role.admin: frozenset(_ADMIN),
    Role.owner: frozenset(ALL_SCOPES),
}

# Roles ordered by power: an admin may grant member but not owner.
ROLE_RANK = {Role.viewer: 0, Role.member: 1, Role.admin: 2, Role.owner: 3}

# Agent keys act inside one workspace with what an agent needs and nothing more.
AGENT_SCOPES = frozenset({
    "projects:read", "tasks:read", "tasks:write", "agents:read", "agents:write",
    "runs:read", "runs:start", "runs:control", "git:commit",
})  # fmt: skip


def roles_with(scope: str) -> list[str]:
    """The roles whose grant includes `scope` (used in conditional writes on the membership)."""
    return [role.value for role, scopes in ROLE_SCOPES.items() if scope in scopes]


def normalize_scopes(requested: list[str] | None) -> list[str]:
    """Validate requested scopes; None or ['*'] means every scope the role allows."""
    if not requested or requested == [WILDCARD]:
        return [WILDCARD]
    unknown = sorted(set(requested) - set(ALL_SCOPES))
    if unknown:
        from agentplane.errors import Unprocessable

        raise Unprocessable(
            f"unknown scope(s): {', '.join(unknown)}",
            errors=[{"field": "scopes", "message": f"unknown scope '{s}'"} for s in unknown],
        )
    return sorted(set(requested))

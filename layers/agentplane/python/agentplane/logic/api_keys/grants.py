"""What a key may be given: never more than the person or token that makes it, an expiry in
range, and for an agent key the agent scopes only."""

from __future__ import annotations

from agentplane.access import Access
from agentplane.auth.scopes import AGENT_SCOPES, ROLE_SCOPES, WILDCARD
from agentplane.errors import Forbidden, Unprocessable
from agentplane.models.api_keys import ApiKeyCreate

MAX_EXPIRY_DAYS = 3650


def _caller_grant(access: Access) -> tuple[frozenset[str], bool]:
    """What the caller may hand to a key: its role's scopes, capped by its own token's scopes."""
    role_scopes = ROLE_SCOPES[access.role]
    unlimited = WILDCARD in access.principal.scopes
    return (role_scopes if unlimited else role_scopes & access.principal.scopes), unlimited


def check_grant(access: Access, scopes: list[str]) -> None:
    """A key never holds more than the person or token that made it."""
    grant, unlimited = _caller_grant(access)
    if scopes == [WILDCARD]:
        if not unlimited:
            raise Forbidden(
                "a token with limited scopes cannot give a key every scope; list the scopes it needs",
                scopes=[WILDCARD],
            )
        return
    beyond = sorted(set(scopes) - grant)
    if beyond:
        raise Forbidden(
            f"you cannot grant {', '.join(repr(s) for s in beyond)}: "
            f"neither the '{access.role.value}' role nor the calling token holds it",
            scopes=beyond,
            role=access.role.value,
        )


def agent_scopes(scopes: list[str]) -> list[str]:
    """An agent key acts as the agent, not for its creator: capped by the agent scopes (every
    scope, for a key given them all)."""
    scopes = sorted(AGENT_SCOPES) if scopes == [WILDCARD] else scopes
    beyond = sorted(set(scopes) - AGENT_SCOPES)
    if beyond:
        raise Forbidden(f"agent keys cannot hold {', '.join(beyond)}", scopes=beyond)
    return scopes


def expiry(body: ApiKeyCreate, now: int) -> int | None:
    if body.expires_in_days is not None:
        return now + body.expires_in_days * 86400
    if body.expires_at is None:
        return None
    expires = int(body.expires_at.timestamp())
    if expires <= now or expires > now + MAX_EXPIRY_DAYS * 86400:
        raise Unprocessable(
            f"expires_at must be in the future and within {MAX_EXPIRY_DAYS} days",
            errors=[{"field": "expires_at", "message": "out of range"}],
        )
    return expires


def key_user(access: Access) -> str:
    if access.principal.user_id is None:
        raise Forbidden("only a person, or a key acting for one, can manage API keys")
    return access.principal.user_id

"""Bearer token records: issuing them, and resolving a presented secret to a principal.

Each secret maps to one `TOKEN#<sha256>` item holding what the secret may do. Lookups are a single
strongly consistent GetItem, so a key works the moment it is shown and stops the moment it is
revoked; every request reads it again (agentplane.auth.caller).
"""

from __future__ import annotations

import time
from typing import Any

from agentplane import keys
from agentplane.auth.principal import Principal
from agentplane.auth.scopes import WILDCARD
from agentplane.auth.secrets import hash_secret, new_secret
from agentplane.entities.accounts import PatItem
from agentplane.entities.tokens import TokenItem, expiry
from agentplane.errors import Unauthorized
from agentplane.store import Transaction, TransactionFailed, get_store

BEARER_KINDS = frozenset({"session", "pat", "api_key", "agent_key"})
# A sliding session is pushed forward at most this often, so busy clients do not write per call.
SLIDE_GRANULARITY_SECONDS = 3600
# A personal access token's `last_used_at` is recorded at most this often.
LAST_USED_GRANULARITY_SECONDS = 60
# A revoked token's record is kept this long, then TTL removes it (an unknown secret is refused too).
REVOKED_RETENTION_SECONDS = 86400
# An expiring record outlives its expiry by this long before TTL removes it.
EXPIRED_RETENTION_SECONDS = 86400
MAX_SECRET_LENGTH = 512


def new_token(
    secret: str,
    *,
    kind: str,
    token_id: str,
    principal_id: str,
    user_id: str | None,
    scopes: list[str] | None = None,
    workspace_id: str | None = None,
    expires_at: int | None = None,
    sliding_seconds: int | None = None,
    extra: dict[str, Any] | None = None,
) -> TokenItem:
    """The record that makes `secret` valid; write it in the same transaction as what it belongs
    to. `extra` holds what a kind of token carries besides (an agent key's agent_name, ...)."""
    token = TokenItem(
        token_hash=hash_secret(secret),
        token_kind=kind,
        token_id=token_id,
        principal_id=principal_id,
        user_id=user_id,
        scopes=scopes or [WILDCARD],
        workspace_id=workspace_id,
        expires_at=expires_at,
        sliding_seconds=sliding_seconds,
        created_at=int(time.time()),
    )
    if expires_at:
        # Expired secrets are removed by TTL a day after they stop working.
        token.ttl = expires_at + EXPIRED_RETENTION_SECONDS
    attributes = TokenItem.get_attributes()
    for name, value in (extra or {}).items():
        if name not in attributes:
            raise TypeError(f"a token record has no attribute {name!r}: declare it on TokenItem")
        setattr(token, name, value)
    return token


def token_item(secret: str, **fields: Any) -> dict[str, Any]:
    """The record that makes `secret` valid, as the table holds it (see `new_token`)."""
    token = new_token(secret, **fields)
    token.stamp()
    return token.as_item()


def issue(tx: Transaction, kind: str, **fields: Any) -> str:
    """Add a new secret of `kind` to `tx` and return it (the only time it is ever visible)."""
    secret = new_secret(kind)
    tx.save(new_token(secret, kind=kind, **fields))
    return secret


def find(secret: str) -> TokenItem | None:
    """The live token record for `secret`, or None if unknown, revoked or expired."""
    if not secret or len(secret) > MAX_SECRET_LENGTH:
        return None
    token = get_store().read(TokenItem, keys.token_key(hash_secret(secret)))
    if token is None or token.revoked is not None:
        return None
    if token.expires_at and int(token.expires_at) <= int(time.time()):
        return None
    return token


def lookup(secret: str) -> dict[str, Any] | None:
    """The live token record for `secret` as the table holds it, or None (see `find`)."""
    token = find(secret)
    return token.as_item() if token is not None else None


def revocation(at: int | None = None) -> list[Any]:
    """The update actions that revoke a record now, and let TTL remove it a day later."""
    now = int(time.time()) if at is None else at
    return [TokenItem.revoked.set(now), TokenItem.ttl.set(expiry(now + REVOKED_RETENTION_SECONDS))]


def revoke_by_hash(tx: Transaction, token_hash: str) -> None:
    # Whether or not the record is still there: an expired one may already be gone.
    tx.upsert(TokenItem, keys.token_key(token_hash), revocation())


def _slide(token: TokenItem) -> None:
    sliding = token.sliding_seconds
    if not sliding:
        return
    now = int(time.time())
    new_expiry = now + int(sliding)
    if new_expiry - int(token.expires_at or 0) >= SLIDE_GRANULARITY_SECONDS:
        get_store().upsert(
            TokenItem,
            token.key,
            [TokenItem.expires_at.set(new_expiry), TokenItem.ttl.set(expiry(new_expiry + EXPIRED_RETENTION_SECONDS))],
        )


def _record_use(token: TokenItem) -> None:
    """Personal access tokens show when they were last used, to spot forgotten ones. The time goes
    on the token record (which paces these writes) and on the user's listing of the token (which
    the token list reads), in one transaction."""
    if token.token_kind != "pat":
        return
    now = int(time.time())
    if now - int(token.last_used_at or 0) < LAST_USED_GRANULARITY_SECONDS:
        return
    assert token.user_id is not None  # a personal access token is its user's
    tx = get_store().transaction()
    tx.adjust(TokenItem, token.key, [TokenItem.last_used_at.set(now)])
    tx.adjust(PatItem, keys.pat_key(token.user_id, token.token_id), [PatItem.last_used_at.set(now)])
    try:
        tx.commit()
    except TransactionFailed:  # revoked and removed in the meantime, or a concurrent call recorded it
        return


def principal_of(token: TokenItem) -> Principal:
    """Who a live token record speaks for (memberships not included: they are checked apart)."""
    return Principal(
        kind=token.token_kind,
        id=token.principal_id,
        user_id=token.user_id,
        token_id=token.token_id,
        token_hash=token.PK.removeprefix(keys.TOKEN),
        scopes=frozenset(token.scopes or [WILDCARD]),
        workspace_id=token.workspace_id,
        agent_name=token.agent_name,
        site_owner=bool(token.site_owner),
    )


def is_live(token: TokenItem | None) -> bool:
    """Whether a token record still lets its secret in: present, not revoked, not expired."""
    if token is None or token.revoked is not None or token.token_kind not in BEARER_KINDS:
        return False
    expires_at = token.expires_at
    return not (expires_at and int(expires_at) <= int(time.time()))


def note_use(token: TokenItem) -> None:
    """What a successful call does to its token: a session slides, a PAT records its last use."""
    _slide(token)
    _record_use(token)


def resolve_principal(secret: str) -> Principal:
    """The principal a presented bearer secret speaks for, read now (one GetItem)."""
    token = find(secret)
    if token is None or token.token_kind not in BEARER_KINDS:
        raise Unauthorized("the token is invalid, expired or revoked")
    note_use(token)
    return principal_of(token)

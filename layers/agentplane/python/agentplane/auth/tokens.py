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
from agentplane.errors import Unauthorized
from agentplane.store import Transaction, TransactionFailed, Update, exists, get_store

BEARER_KINDS = frozenset({"session", "pat", "api_key", "agent_key"})
# A sliding session is pushed forward at most this often, so busy clients do not write per call.
SLIDE_GRANULARITY_SECONDS = 3600
# A personal access token's `last_used_at` is recorded at most this often.
LAST_USED_GRANULARITY_SECONDS = 60
# A revoked token's record is kept this long, then TTL removes it (an unknown secret is refused too).
REVOKED_RETENTION_SECONDS = 86400


def token_item(
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
) -> dict[str, Any]:
    """The item that makes `secret` valid; put it in the same transaction as what it belongs to."""
    item: dict[str, Any] = {
        **keys.token_key(hash_secret(secret)),
        keys.ENTITY: "token",
        "kind": kind,
        "token_id": token_id,
        "principal_id": principal_id,
        "user_id": user_id,
        "scopes": scopes or [WILDCARD],
        "workspace_id": workspace_id,
        "expires_at": expires_at,
        "sliding_seconds": sliding_seconds,
        "created_at": int(time.time()),
    }
    if expires_at:
        # Expired secrets are removed by TTL a day after they stop working.
        item[keys.TTL] = expires_at + 86400
    item.update(extra or {})
    return item


def issue(tx: Transaction, kind: str, **fields: Any) -> str:
    """Add a new secret of `kind` to `tx` and return it (the only time it is ever visible)."""
    secret = new_secret(kind)
    tx.put(token_item(secret, kind=kind, **fields))
    return secret


def lookup(secret: str) -> dict[str, Any] | None:
    """The live token record for `secret`, or None if unknown, revoked or expired."""
    if not secret or len(secret) > 512:
        return None
    item = get_store().get(keys.token_key(hash_secret(secret)))
    if item is None or item.get("revoked") is not None:
        return None
    expires_at = item.get("expires_at")
    if expires_at and int(expires_at) <= int(time.time()):
        return None
    return item


def revoke_by_hash(tx: Transaction, token_hash: str) -> None:
    now = int(time.time())
    tx.update(keys.token_key(token_hash), Update(set={"revoked": now, keys.TTL: now + REVOKED_RETENTION_SECONDS}))


def _slide(item: dict[str, Any]) -> None:
    sliding = item.get("sliding_seconds")
    if not sliding:
        return
    now = int(time.time())
    new_expiry = now + int(sliding)
    if new_expiry - int(item.get("expires_at") or 0) >= SLIDE_GRANULARITY_SECONDS:
        get_store().update(
            keys.key(item[keys.PK], item[keys.SK]),
            Update(set={"expires_at": new_expiry, keys.TTL: new_expiry + 86400}),
        )


def _record_use(item: dict[str, Any]) -> None:
    """Personal access tokens show when they were last used, to spot forgotten ones. The time goes
    on the token record (which paces these writes) and on the user's listing of the token (which
    the token list reads), in one transaction."""
    if item["kind"] != "pat":
        return
    now = int(time.time())
    if now - int(item.get("last_used_at") or 0) < LAST_USED_GRANULARITY_SECONDS:
        return
    used = Update(set={"last_used_at": now})
    tx = get_store().transaction()
    tx.update(keys.key(item[keys.PK], item[keys.SK]), used, exists())
    tx.update(keys.pat_key(item["user_id"], item["token_id"]), used, exists())
    try:
        tx.commit()
    except TransactionFailed:  # revoked and removed in the meantime, or a concurrent call recorded it
        return


def principal_of(item: dict[str, Any]) -> Principal:
    """Who a live token record speaks for (memberships not included: they are checked apart)."""
    return Principal(
        kind=item["kind"],
        id=item["principal_id"],
        user_id=item.get("user_id"),
        token_id=item["token_id"],
        token_hash=item[keys.PK].removeprefix(keys.TOKEN),
        scopes=frozenset(item.get("scopes") or [WILDCARD]),
        workspace_id=item.get("workspace_id"),
        agent_name=item.get("agent_name"),
        site_owner=bool(item.get("site_owner")),
    )


def is_live(item: dict[str, Any] | None) -> bool:
    """Whether a token record still lets its secret in: present, not revoked, not expired."""
    if item is None or item.get("revoked") is not None or item.get("kind") not in BEARER_KINDS:
        return False
    expires_at = item.get("expires_at")
    return not (expires_at and int(expires_at) <= int(time.time()))


def note_use(item: dict[str, Any]) -> None:
    """What a successful call does to its token: a session slides, a PAT records its last use."""
    _slide(item)
    _record_use(item)


def resolve_principal(secret: str) -> Principal:
    """The principal a presented bearer secret speaks for, read now (one GetItem)."""
    item = lookup(secret)
    if item is None or item["kind"] not in BEARER_KINDS:
        raise Unauthorized("the token is invalid, expired or revoked")
    note_use(item)
    return principal_of(item)

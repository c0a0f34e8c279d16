"""What every API key route shares: the clock, a key's record and how callers see it, which of
its secrets still work, and how a write that reaches those secrets is guarded and committed."""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agentplane import keys
from agentplane.access import TOKEN_GUARD, Access
from agentplane.entities.api_keys import ApiKeyItem
from agentplane.entities.tokens import TokenItem
from agentplane.errors import InvalidTransition, NotFound
from agentplane.ids import iso
from agentplane.models.api_keys import ApiKey, ApiKeyStatus, ApiKeyWithSecret
from agentplane.store import Transaction, TransactionFailed, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition
    from pynamodb.expressions.update import Action

# What lists show of a secret: its kind prefix and a few characters, enough to tell keys apart.
KEY_PREFIX_LENGTH = 12
# Secrets of one key that may sit in a rotation grace period at once; older ones stop at once.
MAX_GRACE_SECRETS = 5
# The token item's TTL outlives its expiry by a day (see tokens.new_token).
TOKEN_TTL_MARGIN = 86400


def now() -> int:
    return int(time.time())


def iso_epoch(epoch: int) -> str:
    return iso(datetime.fromtimestamp(epoch, UTC))


def status_of(item: dict[str, Any], at: int | None = None) -> ApiKeyStatus:
    """The status of a key record read as a plain item, as callers see it (expired past its expiry)."""
    stored = ApiKeyStatus(item["status"])
    expires = item.get("expires_epoch")
    if stored is not ApiKeyStatus.revoked and expires and int(expires) <= (now() if at is None else at):
        return ApiKeyStatus.expired
    return stored


def to_key(key: ApiKeyItem) -> ApiKey:
    return key.to_model_at(now())


def with_secret(key: ApiKeyItem, secret: str) -> ApiKeyWithSecret:
    return ApiKeyWithSecret.model_validate({**key.fields(), "status": key.status_at(now()), "key": secret})


def load_live(ws: str, key_id: str) -> ApiKeyItem:
    key = get_store().read(ApiKeyItem, keys.api_key_key(ws, key_id))
    if key is None or key.deleted_at:
        raise NotFound(f"API key {key_id} not found")
    return key


def grace_secrets(key: ApiKeyItem, at: int) -> list[dict[str, Any]]:
    """Secrets replaced by a rotation that still work (their grace has not ended)."""
    return [g for g in key.grace_tokens or [] if int(g["until"]) > at]


def working_hashes(key: ApiKeyItem, at: int) -> list[str]:
    """Hashes of every secret of the key whose token item may still exist."""
    hashes = [g["hash"] for g in grace_secrets(key, at)]
    if not key.expires_epoch or int(key.expires_epoch) + TOKEN_TTL_MARGIN > at:
        hashes.insert(0, key.token_hash)
    return hashes


def token_kind(agent: str | None) -> str:
    return "agent_key" if agent else "api_key"


def guarded(access: Access, written: Collection[str]) -> Transaction:
    """`access.transaction()` for a write to the key secrets whose hashes are `written`.

    When the caller is using one of those very secrets, the transaction's live-token guard would
    name the same item as that write, and DynamoDB refuses two operations on one item: the guard
    is left out and `write_token` puts its condition on the write instead, under its name, so a
    failure there still means the caller's token stopped working.
    """
    if access.principal.token_hash not in written:
        return access.transaction()
    tx = get_store().transaction()
    access.check_membership(tx)
    return tx


def write_token(
    tx: Transaction, access: Access, token_hash: str, actions: Sequence[Action], condition: Condition | None = None
) -> None:
    """Change one of the key's token items inside `tx` (built by `guarded`); without a condition
    the change lands whether or not the item is still there."""
    key = keys.token_key(token_hash)
    if token_hash != access.principal.token_hash:
        tx.upsert(TokenItem, key, actions, condition)
        return
    live = TokenItem.live() if condition is None else TokenItem.live() & condition
    tx.upsert(TokenItem, key, actions, live, name=TOKEN_GUARD)


def revoke_token(tx: Transaction, access: Access, token_hash: str, at: int) -> None:
    write_token(tx, access, token_hash, [TokenItem.revoked.set(at)])


def commit(access: Access, tx: Transaction, ws: str, key_id: str, verb: str) -> None:
    """Commit; when the key changed under us, say how it stands now."""
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        current = get_store().read(ApiKeyItem, keys.api_key_key(ws, key_id))
        if current is None or current.deleted_at:
            raise NotFound(f"API key {key_id} not found") from failure
        raise InvalidTransition(
            f"API key {key_id} changed while it was being {verb}; reload and retry",
            current_status=current.status_at(now()).value,
        ) from failure

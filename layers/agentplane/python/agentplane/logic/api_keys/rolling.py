"""Replacing a key's secret: rotating it (the old secret keeps working for a grace period, then
stops) and rolling it (every earlier secret stops now)."""

from __future__ import annotations

from agentplane.access import Access
from agentplane.auth import tokens
from agentplane.auth.secrets import hash_secret
from agentplane.entities.api_keys import ApiKeyItem
from agentplane.entities.tokens import TokenItem, expiry
from agentplane.errors import InvalidTransition
from agentplane.ids import iso
from agentplane.logic.api_keys.records import (
    KEY_PREFIX_LENGTH,
    MAX_GRACE_SECRETS,
    TOKEN_TTL_MARGIN,
    commit,
    grace_secrets,
    guarded,
    iso_epoch,
    load_live,
    now,
    revoke_token,
    token_kind,
    with_secret,
    write_token,
)
from agentplane.models.api_keys import ApiKeyStatus, ApiKeyWithSecret


def _replace_secret(
    access: Access, key_id: str, *, grace_hours: int, end_all_old: bool, action: str
) -> ApiKeyWithSecret:
    ws = access.workspace_id
    key = load_live(ws, key_id)
    verb = action.removeprefix("api_key.")
    status = key.status_at(now())
    if status is not ApiKeyStatus.active:
        raise InvalidTransition(
            f"only an active key can be {verb}; API key {key_id} is {status.value}", current_status=status.value
        )
    at_epoch = now()
    at = iso()
    old_hash = key.token_hash
    graced = grace_secrets(key, at_epoch)
    ending: list[str] = []
    grace_until: int | None = None
    if end_all_old:
        ending = [old_hash, *(g["hash"] for g in graced)]
        graced = []
    elif grace_hours == 0:
        ending = [old_hash]
    else:
        grace_until = at_epoch + grace_hours * 3600
        if key.expires_epoch:
            grace_until = min(grace_until, int(key.expires_epoch))
        graced.append({"hash": old_hash, "until": grace_until})
        # Bound how many old secrets work at once: past the limit the oldest stop now.
        while len(graced) > MAX_GRACE_SECRETS:
            ending.append(graced.pop(0)["hash"])
    tx = guarded(access, [*ending, *([old_hash] if grace_until else [])])
    if grace_until:
        grace = [TokenItem.expires_at.set(grace_until), TokenItem.ttl.set(expiry(grace_until + TOKEN_TTL_MARGIN))]
        write_token(tx, access, old_hash, grace, TokenItem.present())
    for token_hash in ending:
        revoke_token(tx, access, token_hash, at_epoch)
    secret = tokens.issue(
        tx,
        token_kind(key.agent),
        token_id=key_id,
        principal_id=key_id,
        user_id=None if key.agent else key.user_id,
        scopes=key.scopes,
        workspace_id=ws,
        expires_at=key.expires_epoch,
        extra={"agent_name": key.agent} if key.agent else None,
    )
    replaced = key.assign(
        token_hash=hash_secret(secret),
        key_prefix=secret[:KEY_PREFIX_LENGTH],
        grace_tokens=graced,
        rotated_at=at,
        previous_key_expires_at=iso_epoch(grace_until) if grace_until else None,
        updated_at=at,
    )
    still_active = (ApiKeyItem.status == ApiKeyStatus.active.value) & ApiKeyItem.deleted_at.does_not_exist()
    tx.change(key, replaced, still_active)
    access.audit(tx, action, "api_key", key_id, {"grace_hours": 0 if end_all_old else grace_hours})
    commit(access, tx, ws, key_id, verb)
    return with_secret(key, secret)


def rotate_api_key(access: Access, key_id: str, grace_hours: int) -> ApiKeyWithSecret:
    """A new secret; the old one keeps working for `grace_hours` (0: it stops now), then stops."""
    return _replace_secret(access, key_id, grace_hours=grace_hours, end_all_old=False, action="api_key.rotated")


def roll_api_key(access: Access, key_id: str) -> ApiKeyWithSecret:
    """A new secret; every earlier one, including any still in a rotation grace, stops now."""
    return _replace_secret(access, key_id, grace_hours=0, end_all_old=True, action="api_key.rolled")

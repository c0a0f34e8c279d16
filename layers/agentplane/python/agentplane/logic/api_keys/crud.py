"""Making, reading, listing and changing API keys; every secret of a key follows a change of its
scopes or of whether it is switched on."""

from __future__ import annotations

from typing import Any

from agentplane.access import Access
from agentplane.auth import tokens
from agentplane.auth.scopes import normalize_scopes
from agentplane.auth.secrets import hash_secret
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.api_keys import ApiKeyItem, ApiKeyUsageTotalItem, listed_keys, live_keys
from agentplane.entities.tokens import TokenItem
from agentplane.errors import InvalidTransition, PreconditionFailed
from agentplane.ids import iso, new_id
from agentplane.logic.api_keys.grants import agent_scopes, check_grant, expiry, key_user
from agentplane.logic.api_keys.records import (
    KEY_PREFIX_LENGTH,
    commit,
    guarded,
    iso_epoch,
    load_live,
    now,
    to_key,
    token_kind,
    with_secret,
    working_hashes,
    write_token,
)
from agentplane.models.api_keys import ApiKey, ApiKeyCreate, ApiKeyStatus, ApiKeyUpdate, ApiKeyWithSecret


def create_api_key(access: Access, body: ApiKeyCreate) -> ApiKeyWithSecret:
    ws = access.workspace_id
    user_id = key_user(access)
    scopes = normalize_scopes(body.scopes)
    check_grant(access, scopes)
    if body.agent is not None:
        # Not tied to the creator's membership either: it dies when revoked, not when its creator leaves.
        scopes = agent_scopes(scopes)
    expires = expiry(body, now())
    key_id = new_id("key")
    at = iso()
    tx = access.transaction()
    secret = tokens.issue(
        tx,
        token_kind(body.agent),
        token_id=key_id,
        principal_id=key_id,
        user_id=None if body.agent else user_id,
        scopes=scopes,
        workspace_id=ws,
        expires_at=expires,
        extra={"agent_name": body.agent} if body.agent else None,
    )
    key = ApiKeyItem(
        id=key_id,
        workspace_id=ws,
        name=body.name,
        description=body.description,
        scopes=scopes,
        key_prefix=secret[:KEY_PREFIX_LENGTH],
        status=ApiKeyStatus.active.value,
        token_hash=hash_secret(secret),
        grace_tokens=[],
        user_id=user_id,
        agent=body.agent,
        created_by=access.actor_id,
        created_at=at,
        updated_at=at,
        expires_at=iso_epoch(expires) if expires else None,
        expires_epoch=expires,
    )
    tx.create(key)
    tx.create(ApiKeyUsageTotalItem(workspace_id=ws, key_id=key_id))
    details = {"name": body.name, "scopes": scopes, "expires_at": key.expires_at}
    access.audit(tx, "api_key.created", "api_key", key_id, details)
    access.commit(tx)
    return with_secret(key, secret)


def get_api_key(access: Access, key_id: str) -> ApiKey:
    return to_key(load_live(access.workspace_id, key_id))


def list_api_keys(
    access: Access, *, include_revoked: bool, limit: int, cursor: str | None
) -> tuple[list[ApiKey], str | None]:
    ws = access.workspace_id
    query = {"include_revoked": include_revoked}
    scope = f"api_keys:{ws}"
    start = decode_cursor(cursor, scope, query)
    page = (listed_keys if include_revoked else live_keys)(ws, limit=limit, start=start)
    return [to_key(key) for key in page.items], encode_cursor(page.last_key, scope, query)


def update_api_key(access: Access, key_id: str, body: ApiKeyUpdate, if_match: int | None = None) -> ApiKey:
    """Rename, re-describe, re-scope, or switch a key off and on; every secret it has follows."""
    ws = access.workspace_id
    key = load_live(ws, key_id)
    expected = body.version or if_match
    if expected is not None and expected != key.version:
        raise PreconditionFailed(
            f"API key {key_id} is at version {key.version}, not {expected}", current_version=key.version
        )
    stored_status = ApiKeyStatus(key.status)
    changes: dict[str, Any] = body.model_dump(exclude_none=True, include={"name", "description"})
    token_changes: list[Any] = []
    if body.scopes is not None:
        if stored_status is ApiKeyStatus.revoked:
            raise InvalidTransition("a revoked key's scopes cannot change", current_status=stored_status.value)
        scopes = normalize_scopes(body.scopes)
        check_grant(access, scopes)
        changes["scopes"] = scopes
        token_changes.append(TokenItem.scopes.set(scopes))
    if body.active is not None:
        if stored_status is ApiKeyStatus.revoked:
            raise InvalidTransition("a revoked key cannot be switched on or off", current_status=stored_status.value)
        wanted = ApiKeyStatus.active if body.active else ApiKeyStatus.inactive
        if wanted is not stored_status:
            changes["status"] = wanted.value
            # Switched off, the key's secrets are refused exactly like revoked ones; switched back
            # on, the mark is lifted from the secrets that have not otherwise ended.
            on = wanted is ApiKeyStatus.active
            token_changes.append(TokenItem.revoked.remove() if on else TokenItem.revoked.set(now()))
    if not changes:
        return to_key(key)
    details: dict[str, Any] = {"fields": sorted(changes)}
    if "scopes" in changes:
        details["scopes"] = changes["scopes"]
    secrets = working_hashes(key, now()) if token_changes else []
    tx = guarded(access, secrets)
    tx.change(key, key.assign(**changes, updated_at=iso()), ApiKeyItem.deleted_at.does_not_exist())
    for token_hash in secrets:
        write_token(tx, access, token_hash, token_changes, TokenItem.present())
    access.audit(tx, "api_key.updated", "api_key", key_id, details)
    commit(access, tx, ws, key_id, "updated")
    return to_key(key)

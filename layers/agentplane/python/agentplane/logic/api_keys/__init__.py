"""API keys: workspace-bound bearer secrets with scopes, instant revocation, rotation with a grace
period, rolling, and a per-minute usage log.

A key is one record in its workspace (what lists show) plus one token item per secret it has had
(found by hash, as every bearer secret is). The record remembers the hash of the current secret
and of the secrets still inside a rotation grace period, so switching the key off, revoking it or
deleting it reaches every secret that still works, in the same transaction as its audit row.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agentplane import audit, keys
from agentplane.access import Access, live_token
from agentplane.auth import tokens
from agentplane.auth.scopes import AGENT_SCOPES, ROLE_SCOPES, WILDCARD, normalize_scopes
from agentplane.auth.secrets import hash_secret
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.errors import Forbidden, InvalidTransition, NotFound, PreconditionFailed, Unprocessable
from agentplane.ids import iso, new_id
from agentplane.models.api_keys import (
    ApiKey,
    ApiKeyCreate,
    ApiKeyStatus,
    ApiKeyUpdate,
    ApiKeyUsage,
    ApiKeyUsageBucket,
    ApiKeyWithSecret,
)
from agentplane.store import (
    ConditionFailed,
    Expr,
    Transaction,
    TransactionFailed,
    Update,
    attr_eq,
    exists,
    get_store,
    not_exists,
)

# What lists show of a secret: its kind prefix and a few characters, enough to tell keys apart.
KEY_PREFIX_LENGTH = 12
MAX_EXPIRY_DAYS = 3650
# Secrets of one key that may sit in a rotation grace period at once; older ones stop at once.
MAX_GRACE_SECRETS = 5
USAGE_TTL_SECONDS = 30 * 86400
# Usage buckets are folded into the key's running total once they are this old, so a request still
# in flight for a minute that just ended is never lost from the total.
FOLD_AFTER_SECONDS = 120
FOLD_BATCH = 100
# The token item's TTL outlives its expiry by a day (see tokens.token_item).
TOKEN_TTL_MARGIN = 86400

_INDEX_ATTRS = (keys.GSI1PK, keys.GSI1SK, keys.GSI2PK, keys.GSI2SK)


def _now() -> int:
    return int(time.time())


def _iso_epoch(epoch: int) -> str:
    return iso(datetime.fromtimestamp(epoch, UTC))


def _not_deleted() -> Expr:
    return Expr("attribute_not_exists(#deleted)", {"#deleted": "deleted_at"})


def _index_attrs(ws: str, key_id: str, *, live: bool) -> dict[str, str]:
    attrs = {keys.GSI1PK: keys.api_key_list_gsi(ws), keys.GSI1SK: key_id}
    if live:
        attrs |= {keys.GSI2PK: keys.api_key_live_gsi(ws), keys.GSI2SK: key_id}
    return attrs


def status_of(item: dict[str, Any], now: int | None = None) -> ApiKeyStatus:
    stored = ApiKeyStatus(item["status"])
    expires = item.get("expires_epoch")
    if stored is not ApiKeyStatus.revoked and expires and int(expires) <= (_now() if now is None else now):
        return ApiKeyStatus.expired
    return stored


def _to_key(item: dict[str, Any]) -> ApiKey:
    return ApiKey.model_validate({**item, "status": status_of(item)})


def _with_secret(item: dict[str, Any], secret: str) -> ApiKeyWithSecret:
    return ApiKeyWithSecret.model_validate({**item, "status": status_of(item), "key": secret})


def _load_live(ws: str, key_id: str) -> dict[str, Any]:
    item = get_store().get(keys.api_key_key(ws, key_id))
    if item is None or item.get("deleted_at"):
        raise NotFound(f"API key {key_id} not found")
    return item


def _grace_secrets(item: dict[str, Any], now: int) -> list[dict[str, Any]]:
    """Secrets replaced by a rotation that still work (their grace has not ended)."""
    return [g for g in item.get("grace_tokens") or [] if int(g["until"]) > now]


def _working_hashes(item: dict[str, Any], now: int) -> list[str]:
    """Hashes of every secret of the key whose token item may still exist."""
    hashes = [g["hash"] for g in _grace_secrets(item, now)]
    expires = item.get("expires_epoch")
    if not expires or int(expires) + TOKEN_TTL_MARGIN > now:
        hashes.insert(0, item["token_hash"])
    return hashes


def _caller_grant(access: Access) -> tuple[frozenset[str], bool]:
    """What the caller may hand to a key: its role's scopes, capped by its own token's scopes."""
    role_scopes = ROLE_SCOPES[access.role]
    unlimited = WILDCARD in access.principal.scopes
    return (role_scopes if unlimited else role_scopes & access.principal.scopes), unlimited


def _check_grant(access: Access, scopes: list[str]) -> None:
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


def _expiry(body: ApiKeyCreate, now: int) -> int | None:
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


def _token_kind(agent: str | None) -> str:
    return "agent_key" if agent else "api_key"


def _key_user(access: Access) -> str:
    if access.principal.user_id is None:
        raise Forbidden("only a person, or a key acting for one, can manage API keys")
    return access.principal.user_id


def _write_token(tx: Transaction, access: Access, token_hash: str, update: Update, condition: Expr | None) -> None:
    """Change one of the key's token items inside `tx`.

    When the caller is using that very secret, the transaction's first operation (the caller's
    live-token guard, see Access.transaction) already names the item, and DynamoDB refuses two
    operations on one item: the guard becomes this update, still conditioned on the token being
    live, so a failure there still means the caller's token stopped working.
    """
    token_key = keys.token_key(token_hash)
    if token_hash != access.principal.token_hash:
        tx.update(token_key, update, condition)
        return
    guarded = live_token() if condition is None else live_token() & condition
    scratch = get_store().transaction().update(token_key, update, guarded)
    tx.operations[0] = scratch.operations[0]


def _revoke_token(tx: Transaction, access: Access, token_hash: str, at: int) -> None:
    _write_token(tx, access, token_hash, Update(set={"revoked": at}), None)


def _commit(access: Access, tx: Transaction, ws: str, key_id: str, verb: str) -> None:
    """Commit; when the key changed under us, say how it stands now."""
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        now = get_store().get(keys.api_key_key(ws, key_id))
        if now is None or now.get("deleted_at"):
            raise NotFound(f"API key {key_id} not found") from failure
        raise InvalidTransition(
            f"API key {key_id} changed while it was being {verb}; reload and retry",
            current_status=status_of(now).value,
        ) from failure


# --- create, read --------------------------------------------------------------------------------


def create_api_key(access: Access, body: ApiKeyCreate, request_id: str = "") -> ApiKeyWithSecret:
    ws = access.workspace_id
    user_id = _key_user(access)
    scopes = normalize_scopes(body.scopes)
    _check_grant(access, scopes)
    if body.agent is not None:
        # An agent key acts as the agent, not for its creator: capped by the agent scopes and not
        # tied to the creator's membership (it dies when revoked, not when its creator leaves).
        scopes = sorted(AGENT_SCOPES) if scopes == [WILDCARD] else scopes
        beyond = sorted(set(scopes) - AGENT_SCOPES)
        if beyond:
            raise Forbidden(f"agent keys cannot hold {', '.join(beyond)}", scopes=beyond)
    now = _now()
    expires = _expiry(body, now)
    key_id = new_id("key")
    at = iso()
    tx = access.transaction()
    secret = tokens.issue(
        tx,
        _token_kind(body.agent),
        token_id=key_id,
        principal_id=key_id,
        user_id=None if body.agent else user_id,
        scopes=scopes,
        workspace_id=ws,
        expires_at=expires,
        extra={"agent_name": body.agent} if body.agent else None,
    )
    item = {
        **keys.api_key_key(ws, key_id),
        **_index_attrs(ws, key_id, live=True),
        keys.ENTITY: "api_key",
        "id": key_id,
        "workspace_id": ws,
        "name": body.name,
        "description": body.description,
        "scopes": scopes,
        "key_prefix": secret[:KEY_PREFIX_LENGTH],
        "status": ApiKeyStatus.active.value,
        "token_hash": hash_secret(secret),
        "grace_tokens": [],
        "user_id": user_id,
        "agent": body.agent,
        "created_by": access.actor_id,
        "created_at": at,
        "updated_at": at,
        "expires_at": _iso_epoch(expires) if expires else None,
        "expires_epoch": expires,
        "version": 1,
    }
    tx.put(item, not_exists())
    tx.put(_usage_total_item(ws, key_id), not_exists())
    audit.record(
        tx,
        ws,
        access.actor_id,
        "api_key.created",
        "api_key",
        key_id,
        request_id,
        {"name": body.name, "scopes": scopes, "expires_at": item["expires_at"]},
    )
    access.commit(tx)
    return _with_secret(item, secret)


def get_api_key(access: Access, key_id: str) -> ApiKey:
    return _to_key(_load_live(access.workspace_id, key_id))


def list_api_keys(
    access: Access, *, include_revoked: bool, limit: int, cursor: str | None
) -> tuple[list[ApiKey], str | None]:
    ws = access.workspace_id
    query = {"include_revoked": include_revoked}
    scope = f"api_keys:{ws}"
    start = decode_cursor(cursor, scope, query)
    if include_revoked:
        page = get_store().query(keys.api_key_list_gsi(ws), index=keys.GSI1, limit=limit, start_key=start)
    else:
        page = get_store().query(keys.api_key_live_gsi(ws), index=keys.GSI2, limit=limit, start_key=start)
    return [_to_key(item) for item in page.items], encode_cursor(page.last_key, scope, query)


# --- change --------------------------------------------------------------------------------------


def update_api_key(
    access: Access, key_id: str, body: ApiKeyUpdate, if_match: int | None = None, request_id: str = ""
) -> ApiKey:
    """Rename, re-describe, re-scope, or switch a key off and on; every secret it has follows."""
    ws = access.workspace_id
    current = _load_live(ws, key_id)
    expected = body.version or if_match
    if expected is not None and expected != current["version"]:
        raise PreconditionFailed(
            f"API key {key_id} is at version {current['version']}, not {expected}",
            current_version=current["version"],
        )
    stored_status = ApiKeyStatus(current["status"])
    changes: dict[str, Any] = body.model_dump(exclude_none=True, include={"name", "description"})
    token_changes: dict[str, Any] = {}
    token_removes: list[str] = []
    if body.scopes is not None:
        if stored_status is ApiKeyStatus.revoked:
            raise InvalidTransition("a revoked key's scopes cannot change", current_status=stored_status.value)
        scopes = normalize_scopes(body.scopes)
        _check_grant(access, scopes)
        changes["scopes"] = token_changes["scopes"] = scopes
    if body.active is not None:
        if stored_status is ApiKeyStatus.revoked:
            raise InvalidTransition("a revoked key cannot be switched on or off", current_status=stored_status.value)
        wanted = ApiKeyStatus.active if body.active else ApiKeyStatus.inactive
        if wanted is not stored_status:
            changes["status"] = wanted.value
            # Switched off, the key's secrets are refused exactly like revoked ones; switched back
            # on, the mark is lifted from the secrets that have not otherwise ended.
            if wanted is ApiKeyStatus.inactive:
                token_changes["revoked"] = _now()
            else:
                token_removes.append("revoked")
    if not changes:
        return _to_key(current)
    changes["updated_at"] = iso()
    changes["version"] = current["version"] + 1
    tx = access.transaction()
    tx.update(
        keys.api_key_key(ws, key_id),
        Update(set=changes),
        exists() & attr_eq("version", current["version"]) & _not_deleted(),
    )
    if token_changes or token_removes:
        for token_hash in _working_hashes(current, _now()):
            _write_token(tx, access, token_hash, Update(set=token_changes, remove=token_removes), exists())
    details: dict[str, Any] = {"fields": sorted(k for k in changes if k not in ("updated_at", "version"))}
    if "scopes" in changes:
        details["scopes"] = changes["scopes"]
    audit.record(tx, ws, access.actor_id, "api_key.updated", "api_key", key_id, request_id, details)
    _commit(access, tx, ws, key_id, "updated")
    return _to_key({**current, **changes})


def revoke_api_key(access: Access, key_id: str, request_id: str = "") -> ApiKey:
    """Revoke for good: every secret of the key is refused from the next call on."""
    ws = access.workspace_id
    current = _load_live(ws, key_id)
    if current["status"] == ApiKeyStatus.revoked:
        raise InvalidTransition(f"API key {key_id} is already revoked", current_status=ApiKeyStatus.revoked.value)
    now = _now()
    at = iso()
    changes = {
        "status": ApiKeyStatus.revoked.value,
        "revoked_at": at,
        "updated_at": at,
        "grace_tokens": [],
        "previous_key_expires_at": None,
        "version": current["version"] + 1,
    }
    tx = access.transaction()
    tx.update(
        keys.api_key_key(ws, key_id),
        Update(set=changes, remove=[keys.GSI2PK, keys.GSI2SK]),
        exists() & attr_eq("version", current["version"]) & _not_deleted(),
    )
    for token_hash in _working_hashes(current, now):
        _revoke_token(tx, access, token_hash, now)
    audit.record(tx, ws, access.actor_id, "api_key.revoked", "api_key", key_id, request_id)
    _commit(access, tx, ws, key_id, "revoked")
    return _to_key({**current, **changes})


def delete_api_key(access: Access, key_id: str, request_id: str = "") -> None:
    """Soft delete: the key is revoked, leaves every list and answers 404; its audit trail stays."""
    ws = access.workspace_id
    current = _load_live(ws, key_id)
    now = _now()
    at = iso()
    changes: dict[str, Any] = {
        "deleted_at": at,
        "status": ApiKeyStatus.revoked.value,
        "revoked_at": current.get("revoked_at") or at,
        "grace_tokens": [],
        "previous_key_expires_at": None,
        "updated_at": at,
        "version": current["version"] + 1,
    }
    tx = access.transaction()
    tx.update(
        keys.api_key_key(ws, key_id),
        Update(set=changes, remove=list(_INDEX_ATTRS)),
        exists() & attr_eq("version", current["version"]) & _not_deleted(),
    )
    if current["status"] != ApiKeyStatus.revoked:
        for token_hash in _working_hashes(current, now):
            _revoke_token(tx, access, token_hash, now)
    # Its usage log answers 404 from now on, like the key.
    tx.update(keys.api_key_usage_total_key(ws, key_id), Update(set={"deleted_at": at}))
    audit.record(tx, ws, access.actor_id, "api_key.deleted", "api_key", key_id, request_id)
    _commit(access, tx, ws, key_id, "deleted")


@dataclass
class KeyRevocation:
    token_hashes: list[str]
    operations: list[dict[str, Any]]


def live_key_revocations(ws: str, made_by: str | None = None) -> list[KeyRevocation]:
    """The operations that revoke every live key of a workspace (being deleted), or every API key
    one member made (leaving it), one group per key: its secrets first, then its record. A key
    whose group did not commit is still live and is found again when the caller resumes, so every
    group may be committed on its own."""
    now = _now()
    at = iso()
    groups: list[KeyRevocation] = []
    start: dict[str, Any] | None = None
    while True:
        page = get_store().query(
            keys.ws_pk(ws), sk_prefix=keys.API_KEY_PREFIX, limit=100, start_key=start, consistent=True
        )
        for item in page.items:
            if item.get("deleted_at") or item["status"] == ApiKeyStatus.revoked:
                continue
            if made_by is not None and item.get("user_id") != made_by:
                continue
            group = get_store().transaction()
            hashes = _working_hashes(item, now)
            for token_hash in hashes:
                group.update(keys.token_key(token_hash), Update(set={"revoked": now}))
            group.update(
                keys.api_key_key(ws, item["id"]),
                Update(
                    set={
                        "status": ApiKeyStatus.revoked.value,
                        "revoked_at": at,
                        "grace_tokens": [],
                        "previous_key_expires_at": None,
                        "updated_at": at,
                        "version": item["version"] + 1,
                    },
                    remove=[keys.GSI2PK, keys.GSI2SK],
                ),
                exists() & attr_eq("version", item["version"]),
            )
            groups.append(KeyRevocation(hashes, group.operations))
        if page.last_key is None:
            return groups
        start = page.last_key


def revoke_keys_made_by(ws: str, user_id: str) -> int:
    """Revoke the API keys a member made, as they leave the workspace: listed `revoked`, and
    dead for good even if they are added again. One key per transaction; a key that changed
    meanwhile is found again by the next pass (at most three)."""
    revoked = 0
    for _ in range(3):
        pending = live_key_revocations(ws, made_by=user_id)
        if not pending:
            return revoked
        for revocation in pending:
            tx = get_store().transaction()
            tx.operations.extend(revocation.operations)
            try:
                tx.commit()
                revoked += 1
            except TransactionFailed:
                continue
    return revoked


def _replace_secret(
    access: Access, key_id: str, *, grace_hours: int, end_all_old: bool, action: str, request_id: str
) -> ApiKeyWithSecret:
    ws = access.workspace_id
    current = _load_live(ws, key_id)
    verb = action.removeprefix("api_key.")
    status = status_of(current)
    if status is not ApiKeyStatus.active:
        raise InvalidTransition(
            f"only an active key can be {verb}; API key {key_id} is {status.value}", current_status=status.value
        )
    now = _now()
    at = iso()
    old_hash = current["token_hash"]
    graced = _grace_secrets(current, now)
    tx = access.transaction()
    ending: list[str] = []
    grace_until: int | None = None
    if end_all_old:
        ending = [old_hash, *(g["hash"] for g in graced)]
        graced = []
    elif grace_hours == 0:
        ending = [old_hash]
    else:
        grace_until = now + grace_hours * 3600
        if current.get("expires_epoch"):
            grace_until = min(grace_until, int(current["expires_epoch"]))
        graced.append({"hash": old_hash, "until": grace_until})
        _write_token(
            tx,
            access,
            old_hash,
            Update(set={"expires_at": grace_until, keys.TTL: grace_until + TOKEN_TTL_MARGIN}),
            exists(),
        )
        # Bound how many old secrets work at once: past the limit the oldest stop now.
        while len(graced) > MAX_GRACE_SECRETS:
            ending.append(graced.pop(0)["hash"])
    for token_hash in ending:
        _revoke_token(tx, access, token_hash, now)
    agent = current.get("agent")
    secret = tokens.issue(
        tx,
        _token_kind(agent),
        token_id=key_id,
        principal_id=key_id,
        user_id=None if agent else current["user_id"],
        scopes=current["scopes"],
        workspace_id=ws,
        expires_at=current.get("expires_epoch"),
        extra={"agent_name": agent} if agent else None,
    )
    changes = {
        "token_hash": hash_secret(secret),
        "key_prefix": secret[:KEY_PREFIX_LENGTH],
        "grace_tokens": graced,
        "rotated_at": at,
        "previous_key_expires_at": _iso_epoch(grace_until) if grace_until else None,
        "updated_at": at,
        "version": current["version"] + 1,
    }
    tx.update(
        keys.api_key_key(ws, key_id),
        Update(set=changes),
        exists()
        & attr_eq("version", current["version"])
        & attr_eq("status", ApiKeyStatus.active.value)
        & _not_deleted(),
    )
    details = {"grace_hours": 0 if end_all_old else grace_hours}
    audit.record(tx, ws, access.actor_id, action, "api_key", key_id, request_id, details)
    _commit(access, tx, ws, key_id, verb)
    return _with_secret({**current, **changes}, secret)


def rotate_api_key(access: Access, key_id: str, grace_hours: int, request_id: str = "") -> ApiKeyWithSecret:
    """A new secret; the old one keeps working for `grace_hours` (0: it stops now), then stops."""
    return _replace_secret(
        access, key_id, grace_hours=grace_hours, end_all_old=False, action="api_key.rotated", request_id=request_id
    )


def roll_api_key(access: Access, key_id: str, request_id: str = "") -> ApiKeyWithSecret:
    """A new secret; every earlier one, including any still in a rotation grace, stops now."""
    return _replace_secret(
        access, key_id, grace_hours=0, end_all_old=True, action="api_key.rolled", request_id=request_id
    )


# --- usage ---------------------------------------------------------------------------------------


def _minute_label(epoch: int) -> str:
    return datetime.fromtimestamp(epoch - epoch % 60, UTC).strftime("%Y-%m-%dT%H:%MZ")


def _bucket_minute(item: dict[str, Any]) -> str:
    label = str(item[keys.SK]).removeprefix(keys.API_KEY_USAGE_MINUTE)
    return label.replace("Z", ":00Z")


# The first requests of a key each minute are written one by one, so a key used now and then
# shows every call at once; past that, a busy key's requests are written in batches.
USAGE_WRITTEN_AT_ONCE = 5
USAGE_BATCH = 10


@dataclass
class _PendingUse:
    minute: int  # epoch of the minute being counted
    written_at_once: int = 0
    requests: int = 0  # counted, not yet written


_pending: dict[tuple[str, str], _PendingUse] = {}
_pending_lock = threading.Lock()


def count_request(workspace_id: str, key_id: str, now: int | None = None) -> None:
    """Count one request made with a workspace key (API key or agent key). Called on every call
    whose check passed, so the usage log counts exactly what the key did.

    Per Lambda instance and minute, the first USAGE_WRITTEN_AT_ONCE requests of a key are written
    at once; later ones every USAGE_BATCH requests, and what is left with the key's first request
    of a later minute. A busy key's figures therefore trail by less than a batch per instance, and
    an instance that is recycled loses at most that much.
    """
    now = _now() if now is None else now
    minute = now - now % 60
    writes: dict[int, int] = {}  # minute -> requests to add to its bucket
    with _pending_lock:
        pending = _pending.get((workspace_id, key_id))
        if pending is None or pending.minute != minute:
            if pending is not None and pending.requests:
                # Into the minute they were made in, unless that one may be folded already: the
                # running total only ever folds forward, so they go to this minute instead.
                late = pending.minute <= now - FOLD_AFTER_SECONDS
                writes[minute if late else pending.minute] = pending.requests
            pending = _pending[(workspace_id, key_id)] = _PendingUse(minute)
        if pending.written_at_once < USAGE_WRITTEN_AT_ONCE:
            pending.written_at_once += 1
            writes[minute] = writes.get(minute, 0) + 1
        else:
            pending.requests += 1
            if pending.requests >= USAGE_BATCH:
                writes[minute] = pending.requests
                pending.requests = 0
    for at, requests in sorted(writes.items()):
        record_use(workspace_id, key_id, now=now, minute=at, requests=requests)


def reset_pending_usage() -> None:
    with _pending_lock:
        _pending.clear()


def record_use(
    workspace_id: str, key_id: str, now: int | None = None, *, minute: int | None = None, requests: int = 1
) -> None:
    """Add `requests` to the key's bucket for `minute` (default: the minute of `now`).

    One UpdateItem. The first write of a minute also stamps the key's last_used_at and folds
    minutes that have ended into its running total, so the key's record is written at most once a
    minute however busy the key is.
    """
    now = _now() if now is None else now
    bucket = get_store().update(
        keys.api_key_usage_key(workspace_id, key_id, _minute_label(now if minute is None else minute)),
        Update(
            set={
                keys.ENTITY: "api_key_usage",
                "workspace_id": workspace_id,
                "key_id": key_id,
                keys.TTL: now + USAGE_TTL_SECONDS,
            },
            add={"requests": requests},
        ),
    )
    if int(bucket.get("requests", 0)) == requests:
        _fold_usage(workspace_id, key_id, now)


def _usage_total_item(ws: str, key_id: str, record: dict[str, Any] | None = None) -> dict[str, Any]:
    """The key's usage total as first written: with the key, or (for a key made before totals were
    kept beside its minutes) from what its record had folded."""
    record = record or {}
    return {
        **keys.api_key_usage_total_key(ws, key_id),
        keys.ENTITY: "api_key_usage_total",
        "workspace_id": ws,
        "key_id": key_id,
        "request_total": int(record.get("request_total", 0)),
        "usage_folded_through": record.get("usage_folded_through"),
        "last_used_at": record.get("last_used_at"),
    }


def _usage_total(ws: str, key_id: str) -> dict[str, Any] | None:
    """The key's usage total; None for an unknown or deleted key."""
    total = get_store().get(keys.api_key_usage_total_key(ws, key_id))
    if total is None:
        record = get_store().get(keys.api_key_key(ws, key_id))
        if record is None or record.get("deleted_at"):
            return None
        total = _usage_total_item(ws, key_id, record)
        try:
            get_store().put(total, not_exists())
        except ConditionFailed:
            total = get_store().get(keys.api_key_usage_total_key(ws, key_id))
    if total is None or total.get("deleted_at"):
        return None
    return total


def _fold_usage(ws: str, key_id: str, now: int) -> None:
    """Fold the minutes that have ended into the key's total and stamp its last use, on the total
    and on the key's record (what key views show), in one transaction."""
    total = _usage_total(ws, key_id)
    if total is None:
        return
    folded = total.get("usage_folded_through")
    upper = keys.api_key_usage_key(ws, key_id, _minute_label(now - FOLD_AFTER_SECONDS))["SK"]
    lower = folded or keys.API_KEY_USAGE_MINUTE
    page = get_store().query(
        keys.api_key_usage_pk(ws, key_id), sk_between=(lower, upper), limit=FOLD_BATCH + 1, consistent=True
    )
    ready = [item for item in page.items if item[keys.SK] != folded][:FOLD_BATCH]
    last_used = {"last_used_at": _iso_epoch(now)}
    changes: dict[str, Any] = dict(last_used)
    add: dict[str, int | float] = {}
    if ready:
        add["request_total"] = sum(int(item.get("requests", 0)) for item in ready)
        changes["usage_folded_through"] = ready[-1][keys.SK]
    unchanged = (
        Expr("attribute_not_exists(#folded)", {"#folded": "usage_folded_through"})
        if folded is None
        else attr_eq("usage_folded_through", folded)
    )
    tx = get_store().transaction()
    tx.update(
        keys.api_key_usage_total_key(ws, key_id), Update(set=changes, add=add), exists() & _not_deleted() & unchanged
    )
    tx.update(keys.api_key_key(ws, key_id), Update(set=last_used), exists() & _not_deleted())
    try:
        tx.commit()
    except TransactionFailed:
        # Another call folded these minutes first (its total already holds them), or the key is gone.
        return


def _is_minute(item: dict[str, Any]) -> bool:
    return str(item[keys.SK]).startswith(keys.API_KEY_USAGE_MINUTE)


def get_usage(access: Access, key_id: str, *, limit: int, cursor: str | None) -> tuple[ApiKeyUsage, str | None]:
    """The key's requests per minute, newest first, with its all-time total.

    The first page is one Query: the key's total sorts after its minutes, so it comes first, and
    the minutes not yet folded into it are the newest ones, which follow."""
    ws = access.workspace_id
    scope = f"api_key_usage:{ws}:{key_id}"
    start = decode_cursor(cursor, scope, {})
    store = get_store()
    pk = keys.api_key_usage_pk(ws, key_id)
    total: dict[str, Any] | None = None
    if start is None:
        page = store.query(pk, newest_first=True, limit=limit + 1, consistent=True)
        if page.items and page.items[0][keys.SK] == keys.api_key_usage_total_key(ws, key_id)["SK"]:
            total = page.items[0]
            if total.get("deleted_at"):
                raise NotFound(f"API key {key_id} not found")
    else:
        page = store.query(pk, sk_prefix=keys.API_KEY_USAGE_MINUTE, newest_first=True, limit=limit, start_key=start)
    if total is None:
        stored = store.get(keys.api_key_usage_total_key(ws, key_id))
        if stored is None:
            # A key made before totals were kept beside its minutes: its record holds the total.
            stored = _usage_total_item(ws, key_id, _load_live(ws, key_id))
            if start is None:  # the page was read for a total that is not there: read it again
                page = store.query(pk, sk_prefix=keys.API_KEY_USAGE_MINUTE, newest_first=True, limit=limit)
        if stored.get("deleted_at"):
            raise NotFound(f"API key {key_id} not found")
        total = stored
    buckets = [item for item in page.items if _is_minute(item)]
    folded = total.get("usage_folded_through")
    unfolded_seen = [item for item in buckets if folded is None or item[keys.SK] > folded]
    if start is None and (len(unfolded_seen) < len(buckets) or page.last_key is None):
        # Every minute newer than the folded ones was on this page.
        unfolded = sum(int(item.get("requests", 0)) for item in unfolded_seen)
    else:
        lower = folded or keys.API_KEY_USAGE_MINUTE
        recent = store.query(
            pk, sk_between=(lower, keys.api_key_usage_upper_bound()), limit=FOLD_BATCH + 1, consistent=True
        )
        unfolded = sum(int(item.get("requests", 0)) for item in recent.items if item[keys.SK] != folded)
    usage = ApiKeyUsage(
        key_id=key_id,
        total_requests=int(total.get("request_total", 0)) + unfolded,
        last_used_at=total.get("last_used_at"),
        buckets=[
            ApiKeyUsageBucket(minute=_bucket_minute(item), requests=int(item.get("requests", 0))) for item in buckets
        ],
    )
    return usage, encode_cursor(page.last_key, scope, {})

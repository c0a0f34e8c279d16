"""The caller's own account: profile, workspaces, personal access tokens and push devices.

Every route here acts as the person themself, so only sessions and personal access tokens reach
it (`accounts.require_person`). Reading the profile and the workspace list is open to any of them;
changing the account (profile, tokens, push devices) needs a session or a token with every scope:
a token scoped to `tasks:read` cannot list or revoke the owner's other tokens, rename them, or
register a phone to receive their pushes. Writes re-check in their own transaction that the caller's token is
still live, as workspace writes do.
"""

from __future__ import annotations

from typing import Any

from agentplane import audit, keys
from agentplane.access import live_token
from agentplane.auth import tokens
from agentplane.auth.principal import Principal
from agentplane.auth.scopes import WILDCARD, normalize_scopes
from agentplane.auth.secrets import hash_secret, secret_hint
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.errors import Conflict, NotFound, Unauthorized
from agentplane.ids import epoch, iso
from agentplane.logic import accounts, workspaces
from agentplane.models.me import (
    PersonalAccessToken,
    PersonalAccessTokenCreate,
    PersonalAccessTokenCreated,
    Profile,
    ProfileUpdate,
    PushDevice,
    PushDeviceRegister,
)
from agentplane.models.workspaces import Membership
from agentplane.store import Expr, Transaction, TransactionFailed, Update, attr_eq, exists, get_store, not_exists

# Revoked personal access tokens stay listed nowhere, and their records are removed after this.
REVOKED_PAT_RETENTION_SECONDS = 30 * 86400


def _guarded_transaction(principal: Principal) -> Transaction:
    """A transaction whose first operation fails unless the caller's token is still live."""
    tx = get_store().transaction()
    tx.check(keys.token_key(principal.token_hash), live_token())
    return tx


def _token_revoked() -> Unauthorized:
    return Unauthorized("the token is invalid, expired or revoked")


# --- profile ------------------------------------------------------------------------------------


def get_profile(principal: Principal) -> Profile:
    user_id = accounts.require_person(principal)
    return Profile.model_validate(accounts.load_user(user_id))


def update_profile(principal: Principal, body: ProfileUpdate, request_id: str = "") -> Profile:
    """Change the fields sent. A new username is claimed and the old one released in the same
    transaction, so two people can never end up holding one name."""
    user_id = accounts.require_person(principal, unrestricted=True)
    user = accounts.load_user(user_id)
    changes: dict[str, Any] = {name: getattr(body, name) for name in body.model_fields_set}
    if not changes:
        return Profile.model_validate(user)
    changes["updated_at"] = iso()
    old_username = user["username"]
    new_username = changes.get("username", old_username)
    tx = _guarded_transaction(principal)
    claim_index = None
    if new_username.lower() != old_username.lower():
        claim_index = len(tx.operations)
        tx.put({**keys.unique_key("username", new_username), "user_id": user_id}, not_exists())
        tx.delete(keys.unique_key("username", old_username), attr_eq("user_id", user_id))
    tx.update(
        keys.user_key(user_id),
        Update(set=changes),
        exists() & Expr("attribute_not_exists(erased_at)") & attr_eq("username", old_username),
    )
    fields = sorted(body.model_fields_set)
    audit.record_account(tx, user_id, "profile.updated", "user", user_id, request_id, {"fields": fields})
    try:
        tx.commit()
    except TransactionFailed as failure:
        index = failure.failed_index()
        if index == 0:
            raise _token_revoked() from failure
        if index == claim_index:
            raise Conflict("this username is taken", field="username") from failure
        raise Conflict("the profile changed while it was being updated; reload and retry") from failure
    updated = {**user, **changes}
    return Profile.model_validate({k: v for k, v in updated.items() if v is not None})


# --- workspaces -----------------------------------------------------------------------------------


def list_my_workspaces(principal: Principal, limit: int, cursor: str | None) -> tuple[list[Membership], str | None]:
    user_id = accounts.require_person(principal)
    scope = f"me-workspaces:{user_id}"
    items, last_key = workspaces.list_memberships(user_id, limit, decode_cursor(cursor, scope, {}))
    return items, encode_cursor(last_key, scope, {})


# --- personal access tokens -----------------------------------------------------------------------


def _to_pat(record: dict[str, Any], last_used: int | None = None) -> PersonalAccessToken:
    expires_at = record.get("expires_at")
    return PersonalAccessToken(
        id=record["id"],
        name=record["name"],
        scopes=record.get("scopes") or [WILDCARD],
        origin=record.get("origin", "personal"),
        created_at=record["created_at"],
        last_used_at=accounts.iso_epoch(last_used) if last_used else None,
        expires_at=accounts.iso_epoch(int(expires_at)) if expires_at else None,
    )


def create_pat(
    principal: Principal, body: PersonalAccessTokenCreate, request_id: str = ""
) -> PersonalAccessTokenCreated:
    """A new token for the caller. Only an unrestricted session or token mints tokens, so a
    scoped token leaked from CI can neither widen itself nor outlive its own revocation."""
    user_id = accounts.require_person(principal, unrestricted=True)
    scopes = normalize_scopes(body.scopes)
    # The caller's live token stands for their account (erasing it revokes every token): the
    # transaction's liveness check is all the reading this needs.
    user = {"id": user_id, "site_owner": principal.site_owner}
    tx = _guarded_transaction(principal)
    record, secret = accounts.issue_personal_token(
        tx, user, name=body.name, scopes=scopes, expires_in_days=body.expires_in_days, origin="personal"
    )
    details = {"name": body.name, "scopes": scopes, "expires_at": record["expires_at"]}
    audit.record_account(tx, user_id, "personal_access_token.created", "pat", record["id"], request_id, details)
    try:
        tx.commit()
    except TransactionFailed as failure:
        raise _token_revoked() from failure
    return PersonalAccessTokenCreated(**_to_pat(record).model_dump(), token=secret)


def list_pats(principal: Principal, limit: int, cursor: str | None) -> tuple[list[PersonalAccessToken], str | None]:
    """The caller's live tokens, newest first: personal ones and those issued to devices."""
    user_id = accounts.require_person(principal, unrestricted=True)
    scope = f"pats:{user_id}"
    page = get_store().query(
        keys.user_pk(user_id),
        sk_prefix=keys.pat_prefix(),
        limit=limit,
        start_key=decode_cursor(cursor, scope, {}),
        newest_first=True,
        filter=Expr("attribute_not_exists(revoked_at)"),
    )
    # Each check of a token stamps `last_used_at` on its listing item (agentplane.auth.tokens.note_use).
    items = [_to_pat(item, item.get("last_used_at")) for item in page.items]
    return items, encode_cursor(page.last_key, scope, {})


def revoke_pat(principal: Principal, pat_id: str, request_id: str = "") -> None:
    """Revoke one of the caller's tokens; it stops working at once (the caller's own included)."""
    user_id = accounts.require_person(principal, unrestricted=True)
    pat_key = keys.pat_key(user_id, pat_id)
    record = get_store().get(pat_key)
    if record is None or record.get("revoked_at"):
        raise NotFound(f"personal access token {pat_id} not found")
    now_iso = iso()
    if record["token_hash"] == principal.token_hash:
        # Revoking the token making the call: the revocation itself is the liveness check.
        tx = get_store().transaction()
        tx.update(keys.token_key(record["token_hash"]), Update(set={"revoked": epoch()}), live_token())
    else:
        tx = _guarded_transaction(principal)
        tokens.revoke_by_hash(tx, record["token_hash"])
    tx.update(
        pat_key,
        Update(set={"revoked_at": now_iso, keys.TTL: epoch() + REVOKED_PAT_RETENTION_SECONDS}),
        exists() & Expr("attribute_not_exists(revoked_at)"),
    )
    audit.record_account(
        tx, user_id, "personal_access_token.revoked", "pat", pat_id, request_id, {"name": record.get("name")}
    )
    try:
        tx.commit()
    except TransactionFailed as failure:
        if failure.failed_index() == 0:
            raise _token_revoked() from failure
        raise NotFound(f"personal access token {pat_id} not found") from failure


# --- push devices ---------------------------------------------------------------------------------


def device_id_for(push_token: str) -> str:
    """Registering the same push token again updates one device instead of adding another."""
    return f"dev_{hash_secret(push_token)[:26]}"


def _to_device(item: dict[str, Any]) -> PushDevice:
    return PushDevice(
        id=item["id"],
        platform=item["platform"],
        name=item.get("name", ""),
        push_token_hint=secret_hint(item["push_token"]),
        created_at=item["created_at"],
        updated_at=item["updated_at"],
    )


def register_device(principal: Principal, body: PushDeviceRegister, request_id: str = "") -> PushDevice:
    """Register (or refresh) a push token for notifications.

    A push token belongs to one person at a time: registering one another user holds moves it,
    so a phone that changed hands stops receiving the previous owner's notifications.
    """
    user_id = accounts.require_person(principal, unrestricted=True)
    digest = hash_secret(body.push_token)
    device_id = device_id_for(body.push_token)
    device_key = keys.device_key(user_id, device_id)
    claim_key = keys.push_token_claim_key(digest)
    existing, claim = get_store().get_many([device_key, claim_key])
    at = iso()
    item = {
        **device_key,
        keys.ENTITY: "device",
        "id": device_id,
        "user_id": user_id,
        "platform": body.platform.value,
        "name": body.name,
        "push_token": body.push_token,
        "push_token_digest": digest,
        "created_at": existing["created_at"] if existing else at,
        "updated_at": at,
    }
    tx = _guarded_transaction(principal)
    tx.put(item)
    if claim is None:
        tx.put({**claim_key, "user_id": user_id, "device_id": device_id}, not_exists())
    else:
        tx.put({**claim_key, "user_id": user_id, "device_id": device_id}, attr_eq("user_id", claim["user_id"]))
        if claim["user_id"] != user_id:
            tx.delete(keys.device_key(claim["user_id"], claim["device_id"]))
    details = {"platform": body.platform.value, "name": body.name}
    audit.record_account(tx, user_id, "push_device.registered", "device", device_id, request_id, details)
    try:
        tx.commit()
    except TransactionFailed as failure:
        if failure.failed_index() == 0:
            raise _token_revoked() from failure
        raise Conflict("this push token was registered concurrently; try again") from failure
    return _to_device(item)


def delete_device(principal: Principal, device_id: str, request_id: str = "") -> None:
    user_id = accounts.require_person(principal, unrestricted=True)
    device_key = keys.device_key(user_id, device_id)
    device = get_store().get(device_key)
    if device is None:
        raise NotFound(f"device {device_id} not found")
    tx = _guarded_transaction(principal)
    tx.delete(device_key, exists())
    claim_key = keys.push_token_claim_key(device["push_token_digest"])
    claim = get_store().get(claim_key)
    if claim is not None and claim.get("user_id") == user_id:
        tx.delete(claim_key, attr_eq("user_id", user_id))
    audit.record_account(tx, user_id, "push_device.removed", "device", device_id, request_id)
    try:
        tx.commit()
    except TransactionFailed as failure:
        if failure.failed_index() == 0:
            raise _token_revoked() from failure
        raise NotFound(f"device {device_id} not found") from failure

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
from agentplane.access import TOKEN_GUARD
from agentplane.auth import tokens
from agentplane.auth.principal import Principal
from agentplane.auth.scopes import WILDCARD, normalize_scopes
from agentplane.auth.secrets import hash_secret, secret_hint
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.accounts import DeviceItem, PatItem, UniqueItem, UserItem, live_pats
from agentplane.entities.tokens import TokenItem, expiry
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
from agentplane.store import TransactionFailed, get_store

# Revoked personal access tokens stay listed nowhere, and their records are removed after this.
REVOKED_PAT_RETENTION_SECONDS = 30 * 86400


def _token_revoked() -> Unauthorized:
    return Unauthorized("the token is invalid, expired or revoked")


# --- profile ------------------------------------------------------------------------------------


def get_profile(principal: Principal) -> Profile:
    return accounts.load_user(accounts.require_person(principal)).to_model()


def update_profile(principal: Principal, body: ProfileUpdate, request_id: str = "") -> Profile:
    """Change the fields sent. A new username is claimed and the old one released in the same
    transaction, so two people can never end up holding one name."""
    user_id = accounts.require_person(principal, unrestricted=True)
    user = accounts.load_user(user_id)
    changes: dict[str, Any] = {name: getattr(body, name) for name in body.model_fields_set}
    if not changes:
        return user.to_model()
    old_username = user.username
    new_username = changes.get("username", old_username)
    tx = accounts.guarded_transaction(principal)
    if new_username.lower() != old_username.lower():
        tx.create(UniqueItem(claim="username", value=new_username, user_id=user_id), name="username")
        tx.drop(UniqueItem, keys.unique_key("username", old_username), UniqueItem.held_by(user_id))
    unchanged = UserItem.erased_at.does_not_exist() & (UserItem.username == old_username)
    tx.change(user, user.assign(**changes, updated_at=iso()), unchanged)
    fields = sorted(body.model_fields_set)
    audit.record_account(tx, user_id, "profile.updated", "user", user_id, request_id, {"fields": fields})
    try:
        tx.commit()
    except TransactionFailed as failure:
        if failure.failed == TOKEN_GUARD:
            raise _token_revoked() from failure
        if failure.failed == "username":
            raise Conflict("this username is taken", field="username") from failure
        raise Conflict("the profile changed while it was being updated; reload and retry") from failure
    return user.to_model()


# --- workspaces -----------------------------------------------------------------------------------


def list_my_workspaces(principal: Principal, limit: int, cursor: str | None) -> tuple[list[Membership], str | None]:
    user_id = accounts.require_person(principal)
    scope = f"me-workspaces:{user_id}"
    items, last_key = workspaces.list_memberships(user_id, limit, decode_cursor(cursor, scope, {}))
    return items, encode_cursor(last_key, scope, {})


# --- personal access tokens -----------------------------------------------------------------------


def _to_pat(listing: PatItem) -> PersonalAccessToken:
    # Each check of a token stamps `last_used_at` on its listing item (agentplane.auth.tokens.note_use).
    return PersonalAccessToken(
        id=listing.id,
        name=listing.name,
        scopes=listing.scopes or [WILDCARD],
        origin=listing.origin or "personal",
        created_at=listing.created_at,
        last_used_at=accounts.iso_epoch(int(listing.last_used_at)) if listing.last_used_at else None,
        expires_at=accounts.iso_epoch(int(listing.expires_at)) if listing.expires_at else None,
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
    tx = accounts.guarded_transaction(principal)
    listing, secret = accounts.issue_personal_token(
        tx,
        user_id,
        site_owner=principal.site_owner,
        name=body.name,
        scopes=scopes,
        expires_in_days=body.expires_in_days,
        origin="personal",
    )
    details = {"name": body.name, "scopes": scopes, "expires_at": listing.expires_at}
    audit.record_account(tx, user_id, "personal_access_token.created", "pat", listing.id, request_id, details)
    try:
        tx.commit()
    except TransactionFailed as failure:
        raise _token_revoked() from failure
    return PersonalAccessTokenCreated(**_to_pat(listing).model_dump(), token=secret)


def list_pats(principal: Principal, limit: int, cursor: str | None) -> tuple[list[PersonalAccessToken], str | None]:
    """The caller's live tokens, newest first: personal ones and those issued to devices."""
    user_id = accounts.require_person(principal, unrestricted=True)
    scope = f"pats:{user_id}"
    page = live_pats(user_id, limit=limit, start=decode_cursor(cursor, scope, {}))
    return [_to_pat(listing) for listing in page.items], encode_cursor(page.last_key, scope, {})


def revoke_pat(principal: Principal, pat_id: str, request_id: str = "") -> None:
    """Revoke one of the caller's tokens; it stops working at once (the caller's own included)."""
    user_id = accounts.require_person(principal, unrestricted=True)
    listing = get_store().read(PatItem, keys.pat_key(user_id, pat_id))
    if listing is None or listing.revoked_at:
        raise NotFound(f"personal access token {pat_id} not found")
    if listing.token_hash == principal.token_hash:
        # Revoking the token making the call: the revocation itself is the liveness check.
        tx = get_store().transaction()
        revoked = [TokenItem.revoked.set(epoch())]
        tx.upsert(TokenItem, keys.token_key(listing.token_hash), revoked, TokenItem.live(), name=TOKEN_GUARD)
    else:
        tx = accounts.guarded_transaction(principal)
        tokens.revoke_by_hash(tx, listing.token_hash)
    hidden = [PatItem.revoked_at.set(iso()), PatItem.ttl.set(expiry(epoch() + REVOKED_PAT_RETENTION_SECONDS))]
    tx.adjust(PatItem, listing.key, hidden, PatItem.revoked_at.does_not_exist())
    details = {"name": listing.name}
    audit.record_account(tx, user_id, "personal_access_token.revoked", "pat", pat_id, request_id, details)
    try:
        tx.commit()
    except TransactionFailed as failure:
        if failure.failed == TOKEN_GUARD:
            raise _token_revoked() from failure
        raise NotFound(f"personal access token {pat_id} not found") from failure


# --- push devices ---------------------------------------------------------------------------------


def device_id_for(push_token: str) -> str:
    """Registering the same push token again updates one device instead of adding another."""
    return f"dev_{hash_secret(push_token)[:26]}"


def _to_device(device: DeviceItem) -> PushDevice:
    return PushDevice(
        id=device.id,
        platform=device.platform,
        name=device.name or "",
        push_token_hint=secret_hint(device.push_token),
        created_at=device.created_at,
        updated_at=device.updated_at,
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
    existing, claim = get_store().read_each([(DeviceItem, device_key), (UniqueItem, claim_key)])
    at = iso()
    device = DeviceItem(
        id=device_id,
        user_id=user_id,
        platform=body.platform.value,
        name=body.name,
        push_token=body.push_token,
        push_token_digest=digest,
        created_at=existing.created_at if isinstance(existing, DeviceItem) else at,
        updated_at=at,
    )
    new_claim = UniqueItem(claim="push_token", value=digest, user_id=user_id, device_id=device_id)
    tx = accounts.guarded_transaction(principal)
    tx.save(device)
    if not isinstance(claim, UniqueItem):
        tx.create(new_claim)
    else:
        tx.save(new_claim, UniqueItem.held_by(claim.user_id))
        if claim.user_id != user_id and claim.device_id:
            tx.discard(DeviceItem, keys.device_key(claim.user_id, claim.device_id))
    details = {"platform": body.platform.value, "name": body.name}
    audit.record_account(tx, user_id, "push_device.registered", "device", device_id, request_id, details)
    try:
        tx.commit()
    except TransactionFailed as failure:
        if failure.failed == TOKEN_GUARD:
            raise _token_revoked() from failure
        raise Conflict("this push token was registered concurrently; try again") from failure
    return _to_device(device)


def delete_device(principal: Principal, device_id: str, request_id: str = "") -> None:
    user_id = accounts.require_person(principal, unrestricted=True)
    device = get_store().read_or_404(DeviceItem, keys.device_key(user_id, device_id), f"device {device_id} not found")
    tx = accounts.guarded_transaction(principal)
    tx.drop(DeviceItem, device.key)
    claim_key = keys.push_token_claim_key(device.push_token_digest)
    claim = get_store().read(UniqueItem, claim_key)
    if claim is not None and claim.user_id == user_id:
        tx.drop(UniqueItem, claim_key, UniqueItem.held_by(user_id))
    audit.record_account(tx, user_id, "push_device.removed", "device", device_id, request_id)
    try:
        tx.commit()
    except TransactionFailed as failure:
        if failure.failed == TOKEN_GUARD:
            raise _token_revoked() from failure
        raise NotFound(f"device {device_id} not found") from failure

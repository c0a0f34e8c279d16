"""Accounts: register, log in, device tokens, refresh, log out, password reset, GDPR erase."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from agentplane import audit, keys
from agentplane.access import TOKEN_GUARD
from agentplane.auth import tokens
from agentplane.auth.principal import Principal
from agentplane.auth.scopes import WILDCARD, normalize_scopes
from agentplane.auth.secrets import dummy_password_hash, hash_password, hash_secret, verify_password
from agentplane.entities.accounts import (
    DeviceItem,
    PatItem,
    SessionItem,
    SiteOwnerItem,
    UniqueItem,
    UserItem,
    devices_of,
    pats_of,
    sessions_of,
)
from agentplane.entities.plan_usage import PlanUsageItem
from agentplane.entities.teams import teams_of_member
from agentplane.entities.tokens import TokenItem
from agentplane.entities.workspaces import MemberItem, WorkspaceItem, every_membership_of, first_members
from agentplane.errors import Conflict, Forbidden, NotFound, Unauthorized
from agentplane.ids import iso, new_id
from agentplane.logic import api_keys
from agentplane.logic.billing import limits
from agentplane.logic.teams import drop_team_membership
from agentplane.models.auth import (
    ERASED_USERNAME,
    DeviceToken,
    DeviceTokenRequest,
    LoginRequest,
    RegisterRequest,
    ResetPasswordRequest,
    Session,
    User,
)
from agentplane.observability import logger
from agentplane.settings import get_settings
from agentplane.store import Transaction, TransactionFailed, get_store

RESET_TTL_SECONDS = 3600
# Kinds of token that act as the person themself (API and agent keys act inside one workspace).
PERSONAL_KINDS = frozenset({"session", "pat"})
# Profile attributes that are personal data: an erased account keeps none of them.
PERSONAL_FIELDS = (
    "email", "password_hash", "display_name", "avatar_url", "bio", "timezone", "locale",
    "terms_accepted_at", "privacy_accepted_at",
)  # fmt: skip


def iso_epoch(epoch: int) -> str:
    return iso(datetime.fromtimestamp(epoch, UTC))


def load_user(user_id: str) -> UserItem:
    user = get_store().read(UserItem, keys.user_key(user_id))
    if user is None or user.erased:
        raise NotFound("user not found")
    return user


def require_person(principal: Principal, *, unrestricted: bool = False) -> str:
    """The user id behind a session or personal access token; other kinds of token are refused.

    `unrestricted` also refuses personal access tokens that were given only some scopes: what
    such a token may do is capped, and managing the account itself is not within any cap.
    """
    if principal.user_id is None or principal.kind not in PERSONAL_KINDS:
        raise Forbidden("this route needs a person's session or personal access token")
    if unrestricted and principal.kind != "session" and WILDCARD not in principal.scopes:
        raise Forbidden("this route needs a session or a personal access token with every scope")
    return principal.user_id


def guarded_transaction(principal: Principal) -> Transaction:
    """A transaction that fails unless the caller's token is still live (`TOKEN_GUARD`)."""
    tx = get_store().transaction()
    tx.require(TokenItem, keys.token_key(principal.token_hash), TokenItem.live(), name=TOKEN_GUARD)
    return tx


def current_user(principal: Principal) -> User:
    """The person behind a session or personal access token. A workspace key acts for a person
    (or as an agent) without being one: it gets 403, as on /me, and never its maker's profile."""
    return load_user(require_person(principal)).to_user()


def register(body: RegisterRequest, request_id: str = "") -> User:
    """Create an account. The first account ever registered becomes the site owner."""
    user_id = new_id("usr")
    at = iso()
    email = body.email.lower()
    user = UserItem(
        id=user_id,
        username=body.username,
        email=email,
        password_hash=hash_password(body.password),
        terms_accepted_at=at,
        privacy_accepted_at=at,
        created_at=at,
        updated_at=at,
    )

    def attempt(claim_site_owner: bool) -> None:
        tx = get_store().transaction()
        tx.create(UniqueItem(claim="email", value=email, user_id=user_id), name="email")
        tx.create(UniqueItem(claim="username", value=body.username, user_id=user_id), name="username")
        if claim_site_owner:
            tx.create(SiteOwnerItem(user_id=user_id, claimed_at=at))
        user.site_owner = claim_site_owner
        tx.create(user)
        audit.record_account(tx, user_id, "account.registered", "user", user_id, request_id)
        tx.commit()

    try:
        attempt(claim_site_owner=True)
    except TransactionFailed as failure:
        if failure.failed == "email":
            raise Conflict("an account with this email already exists", field="email") from failure
        if failure.failed == "username":
            raise Conflict("this username is taken", field="username") from failure
        try:
            attempt(claim_site_owner=False)
        except TransactionFailed as retry:
            field = "email" if retry.failed == "email" else "username"
            raise Conflict(f"an account with this {field} already exists", field=field) from retry
    return user.to_user()


def _authenticate(email: str, password: str) -> UserItem:
    """Verify credentials in constant-ish time: unknown emails still pay for a hash check."""
    unique = get_store().read(UniqueItem, keys.unique_key("email", email.lower()))
    user = get_store().read(UserItem, keys.user_key(unique.user_id)) if unique else None
    if user is None or user.erased:
        verify_password(dummy_password_hash(), password)
        raise Unauthorized("invalid email or password")
    if not verify_password(user.password_hash or "", password):
        raise Unauthorized("invalid email or password")
    return user


def _issue_session(tx: Transaction, user: UserItem, session_id: str) -> tuple[str, str, int]:
    settings = get_settings()
    now = int(time.time())
    access_expires = now + settings.session_ttl_seconds
    common: dict[str, Any] = {"token_id": session_id, "principal_id": user.id, "user_id": user.id}
    access = tokens.issue(
        tx,
        "session",
        expires_at=access_expires,
        sliding_seconds=settings.session_ttl_seconds,
        extra={"site_owner": bool(user.site_owner)},
        **common,
    )
    refresh = tokens.issue(tx, "refresh", expires_at=now + settings.refresh_ttl_seconds, **common)
    session = SessionItem(
        id=session_id,
        user_id=user.id,
        token_hashes=[hash_secret(access), hash_secret(refresh)],
        created_at=iso(),
        ttl=now + settings.refresh_ttl_seconds,
    )
    tx.save(session)
    return access, refresh, access_expires


def login(body: LoginRequest) -> Session:
    user = _authenticate(body.email, body.password)
    tx = get_store().transaction()
    access, refresh, expires = _issue_session(tx, user, new_id("ses"))
    tx.commit()
    return Session(token=access, refresh_token=refresh, expires_at=iso_epoch(expires), user=user.to_user())


def issue_personal_token(
    tx: Transaction,
    user_id: str,
    *,
    site_owner: bool,
    name: str,
    scopes: list[str],
    expires_in_days: int | None,
    origin: str,
) -> tuple[PatItem, str]:
    """Add a personal access token to `tx`: the bearer record (by hash) and the user's listing of
    it. Returns the listing item and the secret, which is never stored and never shown again."""
    token_id = new_id("pat")
    expires_at = int(time.time()) + expires_in_days * 86400 if expires_in_days else None
    secret = tokens.issue(
        tx,
        "pat",
        token_id=token_id,
        principal_id=user_id,
        user_id=user_id,
        scopes=scopes,
        expires_at=expires_at,
        extra={"site_owner": site_owner},
    )
    listing = PatItem(
        id=token_id,
        user_id=user_id,
        name=name,
        scopes=scopes,
        origin=origin,
        token_hash=hash_secret(secret),
        expires_at=expires_at,
        created_at=iso(),
    )
    tx.create(listing)
    return listing, secret


def issue_device_token(body: DeviceTokenRequest, request_id: str = "") -> DeviceToken:
    """A named, scoped token for a device or CLI (listed with the user's personal access tokens)."""
    user = _authenticate(body.email, body.password)
    abilities = normalize_scopes(body.abilities)
    tx = get_store().transaction()
    listing, secret = issue_personal_token(
        tx,
        user.id,
        site_owner=bool(user.site_owner),
        name=body.name,
        scopes=abilities,
        expires_in_days=body.expires_in_days,
        origin="device",
    )
    details = {"name": body.name, "scopes": abilities, "expires_at": listing.expires_at}
    audit.record_account(tx, user.id, "device_token.created", "pat", listing.id, request_id, details)
    tx.commit()
    return DeviceToken(
        id=listing.id,
        token=secret,
        name=body.name,
        abilities=abilities,
        expires_at=iso_epoch(int(listing.expires_at)) if listing.expires_at else None,
    )


def _invalid_refresh() -> Unauthorized:
    return Unauthorized("the refresh token is invalid, expired or revoked")


def refresh_session(refresh_secret: str) -> Session:
    """Trade a refresh token for a new pair; the old pair stops working (rotation)."""
    record = tokens.find(refresh_secret)
    if record is None or record.token_kind != "refresh" or record.user_id is None:
        raise _invalid_refresh()
    user, session = get_store().read_each(
        [(UserItem, keys.user_key(record.user_id)), (SessionItem, keys.session_key(record.user_id, record.token_id))]
    )
    if not isinstance(user, UserItem) or user.erased or not isinstance(session, SessionItem):
        raise _invalid_refresh()
    tx = get_store().transaction()
    presented = hash_secret(refresh_secret)
    for token_hash in session.token_hashes or []:
        # The presented token's revocation is conditional: two racing refreshes cannot both win.
        unrevoked = TokenItem.present() & TokenItem.revoked.does_not_exist() if token_hash == presented else None
        tx.upsert(TokenItem, keys.token_key(token_hash), [TokenItem.revoked.set(int(time.time()))], unrevoked)
    tx.discard(SessionItem, session.key)
    access, refresh, expires = _issue_session(tx, user, new_id("ses"))
    try:
        tx.commit()
    except TransactionFailed as failure:
        raise _invalid_refresh() from failure
    return Session(token=access, refresh_token=refresh, expires_at=iso_epoch(expires), user=user.to_user())


def _commit_in_parts(tx: Transaction) -> None:
    """Write `tx` as consecutive transactions of at most 100 operations each.

    Used where a user's own collections can outgrow one transaction. Each part is atomic; the
    whole is not, so callers order operations so that a retry after a partial failure is safe.
    """
    for part in tx.parts():
        part.commit()


def _revoke_sessions(tx: Transaction, user_id: str, only_session: str | None = None, keep: str = "") -> None:
    """Revoke both tokens of each session and drop the session; `keep` is a token hash already
    revoked elsewhere in `tx` (one transaction may not touch an item twice)."""
    for session in sessions_of(user_id):
        if only_session and session.id != only_session:
            continue
        for token_hash in session.token_hashes or []:
            if token_hash != keep:
                tokens.revoke_by_hash(tx, token_hash)
        tx.discard(SessionItem, session.key)


def _revoke_pats(tx: Transaction, user_id: str, origins: frozenset[str], keep: str = "") -> None:
    for pat in pats_of(user_id):
        if (pat.origin or "personal") in origins and not pat.revoked_at and pat.token_hash != keep:
            tokens.revoke_by_hash(tx, pat.token_hash)
            tx.upsert(PatItem, pat.key, [PatItem.revoked_at.set(iso())])


def _revoke_caller(tx: Transaction, principal: Principal) -> None:
    """Revoke the caller's own token, on condition that it is still live (a token revoked while
    this request was in flight cannot act); a personal access token also leaves its
    owner's list."""
    revoked = [TokenItem.revoked.set(int(time.time()))]
    tx.upsert(TokenItem, keys.token_key(principal.token_hash), revoked, TokenItem.live(), name=TOKEN_GUARD)
    if principal.kind == "pat" and principal.user_id:
        tx.upsert(PatItem, keys.pat_key(principal.user_id, principal.token_id), [PatItem.revoked_at.set(iso())])


def logout(principal: Principal, all_devices: bool, request_id: str = "") -> None:
    """End the caller's session (or token); with `all_devices`, also every other session and every
    device token. Personal access tokens made for automation are revoked only from /me."""
    if principal.user_id is None:
        raise Unauthorized("only a person can log out")
    if principal.kind not in PERSONAL_KINDS:
        raise Forbidden("an API key is revoked through its workspace's API key routes, not by logging out")
    tx = get_store().transaction()
    # The caller's own token goes first: even if a later part fails, the caller is logged out.
    _revoke_caller(tx, principal)
    audit.record_account(
        tx, principal.user_id, "session.logged_out", principal.kind, principal.token_id, request_id,
        {"all_devices": all_devices},
    )  # fmt: skip
    if all_devices:
        _revoke_sessions(tx, principal.user_id, keep=principal.token_hash)
        _revoke_pats(tx, principal.user_id, frozenset({"device"}), keep=principal.token_hash)
    elif principal.kind == "session":
        _revoke_sessions(tx, principal.user_id, only_session=principal.token_id, keep=principal.token_hash)
    try:
        _commit_in_parts(tx)
    except TransactionFailed as failure:
        raise Unauthorized("the token is invalid, expired or revoked") from failure


def deliver_password_reset(user: dict[str, Any], reset_secret: str) -> None:
    """Hand the reset link to the mail sender. No mail transport is configured in this stack, so
    the secret is never written anywhere; operators plug delivery in here."""
    logger.info("password reset issued", extra={"user_id": user["id"]})


def forgot_password(email: str) -> None:
    """Always succeeds from the caller's view, so the answer never reveals whether an account exists."""
    unique = get_store().read(UniqueItem, keys.unique_key("email", email.lower()))
    if unique is None:
        return
    user = get_store().read(UserItem, keys.user_key(unique.user_id))
    if user is None or user.erased:
        return
    tx = get_store().transaction()
    secret = tokens.issue(
        tx,
        "reset",
        token_id=new_id("rst"),
        principal_id=user.id,
        user_id=user.id,
        expires_at=int(time.time()) + RESET_TTL_SECONDS,
    )
    tx.commit()
    deliver_password_reset(user.as_item(), secret)


def _invalid_reset() -> Unauthorized:
    return Unauthorized("the reset token is invalid, expired or already used")


def reset_password(body: ResetPasswordRequest, request_id: str = "") -> None:
    """Set a new password with a reset secret. It ends every session and device token (whoever knew
    the old password is logged out) and voids every other reset secret issued before it."""
    record = tokens.find(body.token)
    if record is None or record.token_kind != "reset" or record.user_id is None:
        raise _invalid_reset()
    user = get_store().read(UserItem, keys.user_key(record.user_id))
    if user is None or user.erased:
        raise _invalid_reset()
    if int(record.created_at or 0) <= int(user.password_changed_epoch or 0):
        raise _invalid_reset()
    tx = get_store().transaction()
    now = int(time.time())
    tx.adjust(
        TokenItem,
        keys.token_key(hash_secret(body.token)),
        [TokenItem.revoked.set(now)],
        TokenItem.revoked.does_not_exist(),
    )
    # Two reset secrets used at once: only the first changes the password.
    unchanged = UserItem.password_hash == user.password_hash
    changed = user.assign(password_hash=hash_password(body.password), password_changed_epoch=now, updated_at=iso())
    tx.change(user, changed, unchanged)
    audit.record_account(tx, user.id, "password.reset", "user", user.id, request_id)
    _revoke_sessions(tx, user.id)
    _revoke_pats(tx, user.id, frozenset({"device"}))
    try:
        _commit_in_parts(tx)
    except TransactionFailed as failure:
        raise _invalid_reset() from failure


def _has_other_members(ws_id: str, user_id: str) -> bool:
    return any(member.user_id != user_id for member in first_members(ws_id, limit=2))


def _leave_teams(tx: Transaction, ws_id: str, user_id: str) -> None:
    """Drop the user from the workspace's teams, keeping each team's member count right."""
    for team_id in teams_of_member(ws_id, user_id):
        drop_team_membership(tx, ws_id, team_id, user_id)


def _close_workspace(tx: Transaction, workspace: WorkspaceItem, user_id: str, at: str, request_id: str) -> None:
    """Delete a workspace its owner was alone in as their account is erased; its keys die with it
    (an agent key has no membership to lose)."""
    marks = [
        WorkspaceItem.deleted_at.set(at),
        WorkspaceItem.deleted_by.set(user_id),
        WorkspaceItem.deleted_reason.set("owner_erased"),
        WorkspaceItem.updated_at.set(at),
    ]
    tx.adjust(WorkspaceItem, workspace.key, marks, WorkspaceItem.deleted_at.does_not_exist())
    revocations = api_keys.live_key_revocations(workspace.id)
    details = {"reason": "its only member erased their account", "api_keys_revoked": len(revocations)}
    audit.record(tx, workspace.id, user_id, "workspace.deleted", "workspace", workspace.id, request_id, details)
    for revocation in revocations:
        revocation.add_to(tx)


def erase_user(principal: Principal, password: str | None = None, request_id: str = "") -> None:
    """GDPR erasure of the caller's account.

    Refused (409) while the caller owns a workspace that has other members: ownership must be
    handed over first, so no team loses its workspace. The site owner is refused (403), as the
    seed refuses admin accounts. Otherwise the caller leaves every workspace (one they were alone
    in is deleted), every token they hold stops working, their email, username and push tokens are
    released, and the profile becomes an anonymous tombstone: audit trails keep resolving the user
    id, to "deleted-user".
    """
    user_id = require_person(principal, unrestricted=True)
    user = load_user(user_id)
    if password is not None and not verify_password(user.password_hash or "", password):
        raise Unauthorized("the password is not correct")
    if user.site_owner:
        raise Forbidden("the site owner's account cannot be erased; it administers this installation")
    memberships = list(every_membership_of(user_id))
    shared = sorted(
        m.workspace_id for m in memberships if m.role == "owner" and _has_other_members(m.workspace_id, user_id)
    )
    if shared:
        raise Conflict(
            "you own workspaces that have other members: transfer ownership or remove the members first",
            workspace_ids=shared,
        )

    # A token revoked while this request is in flight cannot erase anything.
    cleanup = guarded_transaction(principal)
    at = iso()
    for membership in memberships:
        ws_id = membership.workspace_id
        cleanup.discard(MemberItem, membership.key)
        workspace, counts = get_store().read_each(
            [(WorkspaceItem, keys.workspace_key(ws_id)), (PlanUsageItem, keys.plan_usage_key(ws_id))]
        )
        if membership.role == "owner" and isinstance(workspace, WorkspaceItem) and not workspace.deleted_at:
            _close_workspace(cleanup, workspace, user_id, at, request_id)  # they were its only member
        else:
            _leave_teams(cleanup, ws_id, user_id)
            limits.free_seat_as_read(cleanup, ws_id, counts)
            audit.record(cleanup, ws_id, user_id, "member.erased", "user", user_id, request_id)
    _revoke_sessions(cleanup, user_id, keep=principal.token_hash)
    for pat in pats_of(user_id):
        if pat.token_hash != principal.token_hash:
            tokens.revoke_by_hash(cleanup, pat.token_hash)
        if pat.id != principal.token_id:
            cleanup.discard(PatItem, pat.key)
    for device in devices_of(user_id):
        cleanup.discard(DeviceItem, device.key)
        claim_key = keys.push_token_claim_key(device.push_token_digest)
        claim = get_store().read(UniqueItem, claim_key)
        if claim and claim.user_id == user_id:
            cleanup.drop(UniqueItem, claim_key, UniqueItem.held_by(user_id))
    first, *rest = cleanup.parts()
    try:
        first.commit()
    except TransactionFailed as failure:
        if failure.failed == TOKEN_GUARD:
            raise Unauthorized("the token is invalid, expired or revoked") from failure
        raise Conflict("the account changed while it was being erased; try again") from failure
    for part in rest:
        part.commit()

    # Last, in one transaction: the tombstone, the released email and username, and the caller's
    # own token. Until this commits the account still exists and the erase can be retried.
    email, username = str(user.email), user.username
    final = get_store().transaction()
    still_theirs = UserItem.erased_at.does_not_exist() & (UserItem.email == email) & (UserItem.username == username)
    tombstone = user.assign(
        erased_at=at,
        username=ERASED_USERNAME,
        site_owner=False,
        updated_at=at,
        **dict.fromkeys(PERSONAL_FIELDS),
    )
    final.change(user, tombstone, still_theirs)
    final.drop(UniqueItem, keys.unique_key("email", email), UniqueItem.held_by(user_id))
    final.drop(UniqueItem, keys.unique_key("username", username), UniqueItem.held_by(user_id))
    final.upsert(TokenItem, keys.token_key(principal.token_hash), [TokenItem.revoked.set(int(time.time()))])
    if principal.kind == "pat":
        final.discard(PatItem, keys.pat_key(user_id, principal.token_id))
    try:
        final.commit()
    except TransactionFailed as failure:
        raise Conflict("the account changed while it was being erased; try again") from failure
    logger.info("account erased", extra={"user_id": user_id, "workspaces_left": len(memberships)})

"""Accounts: register, log in, device tokens, refresh, log out, password reset, GDPR erase."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from agentplane import audit, keys
from agentplane.access import live_token
from agentplane.auth import tokens
from agentplane.auth.principal import Principal
from agentplane.auth.scopes import WILDCARD, normalize_scopes
from agentplane.auth.secrets import dummy_password_hash, hash_password, hash_secret, verify_password
from agentplane.errors import Conflict, Forbidden, NotFound, Unauthorized
from agentplane.ids import iso, new_id
from agentplane.logic import api_keys
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
from agentplane.store import (
    Expr,
    Transaction,
    TransactionFailed,
    Update,
    attr_eq,
    exists,
    get_store,
    not_exists,
)

RESET_TTL_SECONDS = 3600
# DynamoDB's ceiling on the operations of one TransactWriteItems.
MAX_TRANSACTION_OPERATIONS = 100
# Kinds of token that act as the person themself (API and agent keys act inside one workspace).
PERSONAL_KINDS = frozenset({"session", "pat"})
# Profile attributes that are personal data: an erased account keeps none of them.
PERSONAL_FIELDS = (
    "email", "password_hash", "display_name", "avatar_url", "bio", "timezone", "locale",
    "terms_accepted_at", "privacy_accepted_at",
)  # fmt: skip


def iso_epoch(epoch: int) -> str:
    return iso(datetime.fromtimestamp(epoch, UTC))


def to_user(item: dict[str, Any]) -> User:
    return User.model_validate(item)


def load_user(user_id: str) -> dict[str, Any]:
    item = get_store().get(keys.user_key(user_id))
    if item is None or item.get("erased_at"):
        raise NotFound("user not found")
    return item


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


def current_user(principal: Principal) -> User:
    """The person behind a session or personal access token. A workspace key acts for a person
    (or as an agent) without being one: it gets 403, as on /me, and never its maker's profile."""
    return to_user(load_user(require_person(principal)))


def register(body: RegisterRequest, request_id: str = "") -> User:
    """Create an account. The first account ever registered becomes the site owner."""
    user_id = new_id("usr")
    at = iso()
    email = body.email.lower()
    user = {
        **keys.user_key(user_id),
        keys.ENTITY: "user",
        "id": user_id,
        "username": body.username,
        "email": email,
        "password_hash": hash_password(body.password),
        "terms_accepted_at": at,
        "privacy_accepted_at": at,
        "created_at": at,
        "updated_at": at,
    }

    def attempt(claim_site_owner: bool) -> None:
        tx = get_store().transaction()
        tx.put({**keys.unique_key("email", email), "user_id": user_id}, not_exists())
        tx.put({**keys.unique_key("username", body.username), "user_id": user_id}, not_exists())
        if claim_site_owner:
            tx.put({**keys.site_owner_key(), "user_id": user_id, "claimed_at": at}, not_exists())
        tx.put({**user, "site_owner": claim_site_owner}, not_exists())
        audit.record_account(tx, user_id, "account.registered", "user", user_id, request_id)
        tx.commit()

    try:
        attempt(claim_site_owner=True)
        user["site_owner"] = True
    except TransactionFailed as failure:
        index = failure.failed_index()
        if index == 0:
            raise Conflict("an account with this email already exists", field="email") from failure
        if index == 1:
            raise Conflict("this username is taken", field="username") from failure
        try:
            attempt(claim_site_owner=False)
        except TransactionFailed as retry:
            field = "email" if retry.failed_index() == 0 else "username"
            raise Conflict(f"an account with this {field} already exists", field=field) from retry
        user["site_owner"] = False
    return to_user(user)


def _authenticate(email: str, password: str) -> dict[str, Any]:
    """Verify credentials in constant-ish time: unknown emails still pay for a hash check."""
    unique = get_store().get(keys.unique_key("email", email.lower()))
    user = get_store().get(keys.user_key(unique["user_id"])) if unique else None
    if user is None or user.get("erased_at"):
        verify_password(dummy_password_hash(), password)
        raise Unauthorized("invalid email or password")
    if not verify_password(user["password_hash"], password):
        raise Unauthorized("invalid email or password")
    return user


def _issue_session(tx: Transaction, user: dict[str, Any], session_id: str) -> tuple[str, str, int]:
    settings = get_settings()
    now = int(time.time())
    access_expires = now + settings.session_ttl_seconds
    common = {"token_id": session_id, "principal_id": user["id"], "user_id": user["id"]}
    access = tokens.issue(
        tx,
        "session",
        expires_at=access_expires,
        sliding_seconds=settings.session_ttl_seconds,
        extra={"site_owner": bool(user.get("site_owner"))},
        **common,
    )
    refresh = tokens.issue(tx, "refresh", expires_at=now + settings.refresh_ttl_seconds, **common)
    tx.put({
        **keys.session_key(user["id"], session_id),
        keys.ENTITY: "session",
        "id": session_id,
        "token_hashes": [hash_secret(access), hash_secret(refresh)],
        "created_at": iso(),
        keys.TTL: now + settings.refresh_ttl_seconds,
    })  # fmt: skip
    return access, refresh, access_expires


def login(body: LoginRequest) -> Session:
    user = _authenticate(body.email, body.password)
    tx = get_store().transaction()
    access, refresh, expires = _issue_session(tx, user, new_id("ses"))
    tx.commit()
    return Session(token=access, refresh_token=refresh, expires_at=iso_epoch(expires), user=to_user(user))


def issue_personal_token(
    tx: Transaction,
    user: dict[str, Any],
    *,
    name: str,
    scopes: list[str],
    expires_in_days: int | None,
    origin: str,
) -> tuple[dict[str, Any], str]:
    """Add a personal access token to `tx`: the bearer record (by hash) and the user's listing of
    it. Returns the listing item and the secret, which is never stored and never shown again."""
    token_id = new_id("pat")
    expires_at = int(time.time()) + expires_in_days * 86400 if expires_in_days else None
    secret = tokens.issue(
        tx,
        "pat",
        token_id=token_id,
        principal_id=user["id"],
        user_id=user["id"],
        scopes=scopes,
        expires_at=expires_at,
        extra={"site_owner": bool(user.get("site_owner"))},
    )
    record = {
        **keys.pat_key(user["id"], token_id),
        keys.ENTITY: "pat",
        "id": token_id,
        "name": name,
        "scopes": scopes,
        "origin": origin,
        "token_hash": hash_secret(secret),
        "expires_at": expires_at,
        "created_at": iso(),
    }
    tx.put(record, not_exists())
    return record, secret


def issue_device_token(body: DeviceTokenRequest, request_id: str = "") -> DeviceToken:
    """A named, scoped token for a device or CLI (listed with the user's personal access tokens)."""
    user = _authenticate(body.email, body.password)
    abilities = normalize_scopes(body.abilities)
    tx = get_store().transaction()
    record, secret = issue_personal_token(
        tx, user, name=body.name, scopes=abilities, expires_in_days=body.expires_in_days, origin="device"
    )
    details = {"name": body.name, "scopes": abilities, "expires_at": record["expires_at"]}
    audit.record_account(tx, user["id"], "device_token.created", "pat", record["id"], request_id, details)
    tx.commit()
    expires_at = record["expires_at"]
    return DeviceToken(
        id=record["id"],
        token=secret,
        name=body.name,
        abilities=abilities,
        expires_at=iso_epoch(expires_at) if expires_at else None,
    )


def _invalid_refresh() -> Unauthorized:
    return Unauthorized("the refresh token is invalid, expired or revoked")


def refresh_session(refresh_secret: str) -> Session:
    """Trade a refresh token for a new pair; the old pair stops working (rotation)."""
    record = tokens.lookup(refresh_secret)
    if record is None or record["kind"] != "refresh":
        raise _invalid_refresh()
    user = get_store().get(keys.user_key(record["user_id"]))
    session_key = keys.session_key(record["user_id"], record["token_id"])
    session = get_store().get(session_key)
    if user is None or user.get("erased_at") or session is None:
        raise _invalid_refresh()
    tx = get_store().transaction()
    presented = hash_secret(refresh_secret)
    for token_hash in session.get("token_hashes", []):
        # The presented token's revocation is conditional: two racing refreshes cannot both win.
        guard = exists() & _not_revoked() if token_hash == presented else None
        tx.update(keys.token_key(token_hash), Update(set={"revoked": int(time.time())}), guard)
    tx.delete(session_key)
    access, refresh, expires = _issue_session(tx, user, new_id("ses"))
    try:
        tx.commit()
    except TransactionFailed as failure:
        raise _invalid_refresh() from failure
    return Session(token=access, refresh_token=refresh, expires_at=iso_epoch(expires), user=to_user(user))


def _not_revoked() -> Expr:
    return Expr("attribute_not_exists(#revoked)", {"#revoked": "revoked"})


def _all_items(partition: str, sk_prefix: str) -> list[dict[str, Any]]:
    """Every item of one of a user's own collections (sessions, tokens, devices), page by page."""
    items: list[dict[str, Any]] = []
    start: dict[str, Any] | None = None
    while True:
        page = get_store().query(partition, sk_prefix=sk_prefix, limit=100, start_key=start, consistent=True)
        items.extend(page.items)
        if page.last_key is None:
            return items
        start = page.last_key


def commit_in_chunks(operations: list[dict[str, Any]]) -> None:
    """Write `operations` as consecutive transactions of at most 100 operations each.

    Used where a user's own collections can outgrow one transaction. Each chunk is atomic; the
    whole is not, so callers order operations so that a retry after a partial failure is safe.
    """
    for start in range(0, len(operations), MAX_TRANSACTION_OPERATIONS):
        chunk = get_store().transaction()
        chunk.operations = operations[start : start + MAX_TRANSACTION_OPERATIONS]
        chunk.commit()


def _revoke_sessions(tx: Transaction, user_id: str, only_session: str | None = None, keep: str = "") -> None:
    """Revoke both tokens of each session and drop the session; `keep` is a token hash already
    revoked elsewhere in `tx` (one transaction may not touch an item twice)."""
    for session in _all_items(keys.user_pk(user_id), keys.session_prefix()):
        if only_session and session["id"] != only_session:
            continue
        for token_hash in session.get("token_hashes", []):
            if token_hash != keep:
                tokens.revoke_by_hash(tx, token_hash)
        tx.delete(keys.key(session[keys.PK], session[keys.SK]))


def _revoke_pats(tx: Transaction, user_id: str, origins: frozenset[str], keep: str = "") -> None:
    for pat in _all_items(keys.user_pk(user_id), keys.pat_prefix()):
        if pat.get("origin", "personal") in origins and not pat.get("revoked_at") and pat["token_hash"] != keep:
            tokens.revoke_by_hash(tx, pat["token_hash"])
            tx.update(keys.key(pat[keys.PK], pat[keys.SK]), Update(set={"revoked_at": iso()}))


def _revoke_caller(tx: Transaction, principal: Principal) -> None:
    """Revoke the caller's own token, on condition that it is still live (a token revoked while
    this request was in flight cannot act); a personal access token also leaves its
    owner's list."""
    tx.update(keys.token_key(principal.token_hash), Update(set={"revoked": int(time.time())}), live_token())
    if principal.kind == "pat" and principal.user_id:
        tx.update(keys.pat_key(principal.user_id, principal.token_id), Update(set={"revoked_at": iso()}))


def logout(principal: Principal, all_devices: bool, request_id: str = "") -> None:
    """End the caller's session (or token); with `all_devices`, also every other session and every
    device token. Personal access tokens made for automation are revoked only from /me."""
    if principal.user_id is None:
        raise Unauthorized("only a person can log out")
    if principal.kind not in PERSONAL_KINDS:
        raise Forbidden("an API key is revoked through its workspace's API key routes, not by logging out")
    tx = get_store().transaction()
    # The caller's own token goes first: even if a later chunk fails, the caller is logged out.
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
        commit_in_chunks(tx.operations)
    except TransactionFailed as failure:
        raise Unauthorized("the token is invalid, expired or revoked") from failure


def deliver_password_reset(user: dict[str, Any], reset_secret: str) -> None:
    """Hand the reset link to the mail sender. No mail transport is configured in this stack, so
    the secret is never written anywhere; operators plug delivery in here."""
    logger.info("password reset issued", extra={"user_id": user["id"]})


def forgot_password(email: str) -> None:
    """Always succeeds from the caller's view, so the answer never reveals whether an account exists."""
    unique = get_store().get(keys.unique_key("email", email.lower()))
    if unique is None:
        return
    user = get_store().get(keys.user_key(unique["user_id"]))
    if user is None or user.get("erased_at"):
        return
    tx = get_store().transaction()
    secret = tokens.issue(
        tx,
        "reset",
        token_id=new_id("rst"),
        principal_id=user["id"],
        user_id=user["id"],
        expires_at=int(time.time()) + RESET_TTL_SECONDS,
    )
    tx.commit()
    deliver_password_reset(user, secret)


def _invalid_reset() -> Unauthorized:
    return Unauthorized("the reset token is invalid, expired or already used")


def reset_password(body: ResetPasswordRequest, request_id: str = "") -> None:
    """Set a new password with a reset secret. It ends every session and device token (whoever knew
    the old password is logged out) and voids every other reset secret issued before it."""
    record = tokens.lookup(body.token)
    if record is None or record["kind"] != "reset":
        raise _invalid_reset()
    user = get_store().get(keys.user_key(record["user_id"]))
    if user is None or user.get("erased_at"):
        raise _invalid_reset()
    if int(record.get("created_at") or 0) <= int(user.get("password_changed_epoch") or 0):
        raise _invalid_reset()
    tx = get_store().transaction()
    tx.update(
        keys.token_key(hash_secret(body.token)), Update(set={"revoked": int(time.time())}), exists() & _not_revoked()
    )
    tx.update(
        keys.user_key(user["id"]),
        Update(
            set={
                "password_hash": hash_password(body.password),
                "password_changed_epoch": int(time.time()),
                "updated_at": iso(),
            }
        ),
        # Two reset secrets used at once: only the first changes the password.
        exists() & attr_eq("password_hash", user["password_hash"]),
    )
    audit.record_account(tx, user["id"], "password.reset", "user", user["id"], request_id)
    _revoke_sessions(tx, user["id"])
    _revoke_pats(tx, user["id"], frozenset({"device"}))
    try:
        commit_in_chunks(tx.operations)
    except TransactionFailed as failure:
        raise _invalid_reset() from failure


def _workspaces_of(user_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    start: dict[str, Any] | None = None
    while True:
        page = get_store().query(keys.member_of_user_gsi(user_id), index=keys.GSI1, limit=100, start_key=start)
        items.extend(page.items)
        if page.last_key is None:
            return items
        start = page.last_key


def _has_other_members(ws_id: str, user_id: str) -> bool:
    page = get_store().query(keys.ws_pk(ws_id), sk_prefix=keys.MEMBER_PREFIX, limit=2, consistent=True)
    return any(item.get("user_id") != user_id for item in page.items)


def _leave_teams(tx: Transaction, ws_id: str, user_id: str) -> None:
    """Drop the user from the workspace's teams, keeping each team's member count right."""
    start: dict[str, Any] | None = None
    while True:
        page = get_store().query(keys.teams_of_member_gsi(ws_id, user_id), index=keys.GSI1, limit=100, start_key=start)
        for item in page.items:
            tx.delete(keys.team_member_key(ws_id, item["team_id"], user_id), exists())
            tx.update(keys.team_key(ws_id, item["team_id"]), Update(add={"member_count": -1}), exists())
        if page.last_key is None:
            return
        start = page.last_key


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
    if password is not None and not verify_password(user["password_hash"], password):
        raise Unauthorized("the password is not correct")
    if user.get("site_owner"):
        raise Forbidden("the site owner's account cannot be erased; it administers this installation")
    memberships = _workspaces_of(user_id)
    shared = sorted(
        m["workspace_id"]
        for m in memberships
        if m.get("role") == "owner" and _has_other_members(m["workspace_id"], user_id)
    )
    if shared:
        raise Conflict(
            "you own workspaces that have other members: transfer ownership or remove the members first",
            workspace_ids=shared,
        )

    cleanup = get_store().transaction()
    # A token revoked while this request is in flight cannot erase anything.
    cleanup.check(keys.token_key(principal.token_hash), live_token())
    at = iso()
    for membership in memberships:
        ws_id = membership["workspace_id"]
        cleanup.delete(keys.member_key(ws_id, user_id))
        workspace = get_store().get(keys.workspace_key(ws_id))
        if membership.get("role") == "owner" and workspace is not None and not workspace.get("deleted_at"):
            # They were its only member: nobody is left to use it.
            cleanup.update(
                keys.workspace_key(ws_id),
                Update(
                    set={"deleted_at": at, "deleted_by": user_id, "deleted_reason": "owner_erased", "updated_at": at}
                ),
                exists() & Expr("attribute_not_exists(deleted_at)"),
            )
            # Its keys die with it: an agent key has no membership to lose.
            revocations = api_keys.live_key_revocations(ws_id)
            details = {"reason": "its only member erased their account", "api_keys_revoked": len(revocations)}
            audit.record(cleanup, ws_id, user_id, "workspace.deleted", "workspace", ws_id, request_id, details)
            for revocation in revocations:
                cleanup.operations.extend(revocation.operations)
        else:
            _leave_teams(cleanup, ws_id, user_id)
            audit.record(cleanup, ws_id, user_id, "member.erased", "user", user_id, request_id)
    _revoke_sessions(cleanup, user_id, keep=principal.token_hash)
    for pat in _all_items(keys.user_pk(user_id), keys.pat_prefix()):
        if pat["token_hash"] != principal.token_hash:
            tokens.revoke_by_hash(cleanup, pat["token_hash"])
        if pat["id"] != principal.token_id:
            cleanup.delete(keys.key(pat[keys.PK], pat[keys.SK]))
    for device in _all_items(keys.user_pk(user_id), keys.device_prefix()):
        cleanup.delete(keys.key(device[keys.PK], device[keys.SK]))
        claim_key = keys.push_token_claim_key(device["push_token_digest"])
        claim = get_store().get(claim_key)
        if claim and claim.get("user_id") == user_id:
            cleanup.delete(claim_key, attr_eq("user_id", user_id))
    try:
        commit_in_chunks(cleanup.operations[:MAX_TRANSACTION_OPERATIONS])
    except TransactionFailed as failure:
        if failure.failed_index() == 0:
            raise Unauthorized("the token is invalid, expired or revoked") from failure
        raise Conflict("the account changed while it was being erased; try again") from failure
    commit_in_chunks(cleanup.operations[MAX_TRANSACTION_OPERATIONS:])

    # Last, in one transaction: the tombstone, the released email and username, and the caller's
    # own token. Until this commits the account still exists and the erase can be retried.
    final = get_store().transaction()
    final.update(
        keys.user_key(user_id),
        Update(
            set={"erased_at": at, "username": ERASED_USERNAME, "site_owner": False, "updated_at": at},
            remove=list(PERSONAL_FIELDS),
        ),
        exists()
        & Expr("attribute_not_exists(erased_at)")
        & attr_eq("email", user["email"])
        & attr_eq("username", user["username"]),
    )
    final.delete(keys.unique_key("email", user["email"]), attr_eq("user_id", user_id))
    final.delete(keys.unique_key("username", user["username"]), attr_eq("user_id", user_id))
    final.update(keys.token_key(principal.token_hash), Update(set={"revoked": int(time.time())}))
    if principal.kind == "pat":
        final.delete(keys.pat_key(user_id, principal.token_id))
    try:
        final.commit()
    except TransactionFailed as failure:
        raise Conflict("the account changed while it was being erased; try again") from failure
    logger.info("account erased", extra={"user_id": user_id, "workspaces_left": len(memberships)})

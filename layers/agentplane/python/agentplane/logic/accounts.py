"""Accounts: register, log in, device tokens, refresh, log out, password reset, GDPR erase."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from agentplane import keys
from agentplane.auth import tokens
from agentplane.auth.principal import Principal
from agentplane.auth.scopes import normalize_scopes
from agentplane.auth.secrets import dummy_password_hash, hash_password, hash_secret, verify_password
from agentplane.errors import Conflict, NotFound, Unauthorized
from agentplane.ids import iso, new_id
from agentplane.models.auth import (
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
from agentplane.store import Expr, Transaction, TransactionFailed, Update, exists, get_store, not_exists

RESET_TTL_SECONDS = 3600


def _iso_epoch(epoch: int) -> str:
    return iso(datetime.fromtimestamp(epoch, UTC))


def to_user(item: dict[str, Any]) -> User:
    return User.model_validate(item)


def load_user(user_id: str) -> dict[str, Any]:
    item = get_store().get(keys.user_key(user_id))
    if item is None or item.get("erased_at"):
        raise NotFound("user not found")
    return item


def current_user(principal: Principal) -> User:
    if principal.user_id is None:
        raise NotFound("this token does not belong to a person")
    return to_user(load_user(principal.user_id))


def register(body: RegisterRequest) -> User:
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
    return Session(token=access, refresh_token=refresh, expires_at=_iso_epoch(expires), user=to_user(user))


def issue_device_token(body: DeviceTokenRequest) -> DeviceToken:
    """A named, scoped token for a device or CLI (listed with the user's personal access tokens)."""
    user = _authenticate(body.email, body.password)
    abilities = normalize_scopes(body.abilities)
    token_id = new_id("pat")
    expires_at = int(time.time()) + body.expires_in_days * 86400 if body.expires_in_days else None
    tx = get_store().transaction()
    secret = tokens.issue(
        tx,
        "pat",
        token_id=token_id,
        principal_id=user["id"],
        user_id=user["id"],
        scopes=abilities,
        expires_at=expires_at,
        extra={"site_owner": bool(user.get("site_owner"))},
    )
    tx.put({
        **keys.pat_key(user["id"], token_id),
        keys.ENTITY: "pat",
        "id": token_id,
        "name": body.name,
        "scopes": abilities,
        "origin": "device",
        "token_hash": hash_secret(secret),
        "expires_at": expires_at,
        "created_at": iso(),
    })  # fmt: skip
    tx.commit()
    return DeviceToken(
        id=token_id,
        token=secret,
        name=body.name,
        abilities=abilities,
        expires_at=_iso_epoch(expires_at) if expires_at else None,
    )


def refresh_session(refresh_secret: str) -> Session:
    """Trade a refresh token for a new pair; the old pair stops working (rotation)."""
    record = tokens.lookup(refresh_secret)
    if record is None or record["kind"] != "refresh":
        raise Unauthorized("the refresh token is invalid, expired or revoked")
    user = load_user(record["user_id"])
    session_key = keys.session_key(user["id"], record["token_id"])
    session = get_store().get(session_key)
    if session is None:
        raise Unauthorized("the refresh token is invalid, expired or revoked")
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
        raise Unauthorized("the refresh token is invalid, expired or revoked") from failure
    return Session(token=access, refresh_token=refresh, expires_at=_iso_epoch(expires), user=to_user(user))


def _not_revoked() -> Expr:
    return Expr("attribute_not_exists(#revoked)", {"#revoked": "revoked"})


def _revoke_sessions(tx: Transaction, user_id: str, only_session: str | None = None) -> None:
    page = get_store().query(keys.user_pk(user_id), sk_prefix=keys.session_prefix(), limit=40, consistent=True)
    for session in page.items:
        if only_session and session["id"] != only_session:
            continue
        for token_hash in session.get("token_hashes", []):
            tokens.revoke_by_hash(tx, token_hash)
        tx.delete(keys.key(session[keys.PK], session[keys.SK]))


def _revoke_device_tokens(tx: Transaction, user_id: str) -> None:
    page = get_store().query(keys.user_pk(user_id), sk_prefix=keys.pat_prefix(), limit=40, consistent=True)
    for pat in page.items:
        if pat.get("origin") == "device" and not pat.get("revoked_at"):
            tokens.revoke_by_hash(tx, pat["token_hash"])
            tx.update(keys.key(pat[keys.PK], pat[keys.SK]), Update(set={"revoked_at": iso()}))


def logout(principal: Principal, all_devices: bool) -> None:
    if principal.user_id is None:
        raise Unauthorized("only a person can log out")
    tx = get_store().transaction()
    if all_devices:
        _revoke_sessions(tx, principal.user_id)
        _revoke_device_tokens(tx, principal.user_id)
    elif principal.kind == "session":
        _revoke_sessions(tx, principal.user_id, only_session=principal.token_id)
    else:
        tokens.revoke_by_hash(tx, principal.token_hash)
    tx.commit()


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


def reset_password(body: ResetPasswordRequest) -> None:
    record = tokens.lookup(body.token)
    if record is None or record["kind"] != "reset":
        raise Unauthorized("the reset token is invalid, expired or already used")
    user = load_user(record["user_id"])
    tx = get_store().transaction()
    tx.update(
        keys.token_key(hash_secret(body.token)), Update(set={"revoked": int(time.time())}), exists() & _not_revoked()
    )
    tx.update(
        keys.user_key(user["id"]), Update(set={"password_hash": hash_password(body.password), "updated_at": iso()})
    )
    # A new password ends every session: whoever knew the old one is logged out.
    _revoke_sessions(tx, user["id"])
    try:
        tx.commit()
    except TransactionFailed as failure:
        raise Unauthorized("the reset token is invalid, expired or already used") from failure

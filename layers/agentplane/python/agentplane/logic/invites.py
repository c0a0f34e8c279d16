"""Workspace invites (Orkosi's organization invites): invite by email, list pending, revoke, accept.

The invite's secret is a bearer token of kind `invite`: returned once to the inviter as `token`,
stored only as its hash (`TOKEN#<sha256>`), expiring after `expires_in_days` (7 by default). It
never authenticates API calls; it is only ever accepted, once, by a logged-in person:

- accepting marks the token used with a conditional write, so of two concurrent accepts exactly
  one succeeds; the membership (with the invited role), the invite's status and the audit row are
  written in that same transaction;
- an unknown, expired, revoked or already used token is 404; an invitee who is already a member
  gets 409 and the invite stays pending;
- the invitee's email is not required to match the invite's: the secret itself is the proof, as
  with a link the inviter sends;
- one live invite per email per workspace (409 for a second), guarded by an `INVITEEMAIL#` item.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from agentplane import audit, keys
from agentplane.access import Access, live_token
from agentplane.auth import tokens
from agentplane.auth.principal import Principal
from agentplane.auth.scopes import Role
from agentplane.auth.secrets import hash_secret, new_secret
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.errors import Conflict, Forbidden, InvalidTransition, NotFound, Unauthorized
from agentplane.ids import epoch, iso, new_id, now
from agentplane.logic.workspaces import load_workspace, member_item, not_deleted
from agentplane.models.workspaces import Invite, InviteCreate, InviteCreated, InviteStatus, Membership
from agentplane.store import Expr, Transaction, TransactionFailed, Update, attr_eq, exists, get_store, not_exists

_INVITE_NOT_FOUND = "invite not found, expired, revoked or already used"
# Invite records stay readable (accepted_by, revoked_at) for a while after they stop mattering.
_RECORD_RETENTION_SECONDS = 30 * 86400


def _to_invite(item: dict[str, Any]) -> Invite:
    return Invite.model_validate(item)


def _email_guard_free(at: int) -> Expr:
    """No live invite holds the email: no guard, or the guard's invite has expired."""
    return Expr(
        "attribute_not_exists(#pk) OR #gexp <= :gnow", {"#pk": keys.PK, "#gexp": "expires_epoch"}, {":gnow": at}
    )


def create_invite(access: Access, body: InviteCreate, request_id: str = "") -> InviteCreated:
    ws = access.workspace_id
    email = body.email.lower()
    # Who holds the email, if anyone: whether they are a member already is checked in the transaction.
    account = get_store().get(keys.unique_key("email", email))
    if account and account["user_id"] == access.principal.user_id:
        raise Conflict(f"{email} is already a member of this workspace")
    invite_id = new_id("inv")
    secret = new_secret("invite")
    created = now()
    expires = created + timedelta(days=body.expires_in_days)
    expires_epoch = epoch(expires)
    item = {
        **keys.invite_key(ws, invite_id),
        keys.ENTITY: "invite",
        keys.GSI1PK: keys.invite_pending_gsi(ws),
        keys.GSI1SK: invite_id,
        keys.TTL: expires_epoch + _RECORD_RETENTION_SECONDS,
        "id": invite_id,
        "workspace_id": ws,
        "email": email,
        "role": body.role.value,
        "status": InviteStatus.pending.value,
        "expires_at": iso(expires),
        "expires_epoch": expires_epoch,
        "created_by": access.actor_id,
        "created_at": iso(created),
        "token_hash": hash_secret(secret),
    }
    tx = access.transaction()
    workspace_index = member_index = None
    if access.principal.kind != "agent_key":  # an agent key's guard already checks the workspace
        # A workspace being deleted loses its members last: it is checked here, not read first.
        workspace_index = len(tx.operations)
        tx.check(keys.workspace_key(ws), exists() & not_deleted())
    if account:
        member_index = len(tx.operations)
        tx.check(keys.member_key(ws, account["user_id"]), not_exists())
    tx.put(item, not_exists())
    guard_index = len(tx.operations)
    tx.put(
        {
            **keys.invite_email_key(ws, email),
            keys.ENTITY: "invite_email",
            keys.TTL: expires_epoch,
            "invite_id": invite_id,
            "expires_epoch": expires_epoch,
        },
        _email_guard_free(epoch(created)),
    )
    tx.put(
        tokens.token_item(
            secret,
            kind="invite",
            token_id=invite_id,
            principal_id=invite_id,
            user_id=None,
            workspace_id=ws,
            expires_at=expires_epoch,
            extra={"role": body.role.value, "invited_by": access.actor_id},
        ),
        not_exists(),
    )
    audit.record(
        tx,
        ws,
        access.actor_id,
        "invite.created",
        "invite",
        invite_id,
        request_id,
        {"email": email, "role": body.role.value},
    )
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        index = failure.failed_index()
        if index is not None and index == workspace_index:
            raise NotFound("workspace not found") from failure
        if index is not None and index == member_index:
            raise Conflict(f"{email} is already a member of this workspace") from failure
        if index == guard_index:
            raise Conflict(f"an active invite for {email} already exists; revoke it first") from failure
        raise
    return InviteCreated.model_validate({**item, "token": secret})


def list_invites(access: Access, limit: int, cursor: str | None) -> tuple[list[Invite], str | None]:
    """Pending, unexpired invites, oldest first. Never their secrets."""
    ws = access.workspace_id
    scope = f"invites:{ws}"
    page = get_store().query(
        keys.invite_pending_gsi(ws),
        index=keys.GSI1,
        limit=limit,
        start_key=decode_cursor(cursor, scope, {}),
        filter=Expr("#exp > :now", {"#exp": "expires_epoch"}, {":now": int(time.time())}),
    )
    return [_to_invite(item) for item in page.items], encode_cursor(page.last_key, scope, {})


def _release_email(tx: Transaction, ws_id: str, email: str, invite_id: str) -> None:
    """Drop the one-live-invite guard, if it is still this invite's."""
    guard = get_store().get(keys.invite_email_key(ws_id, email))
    if guard and guard.get("invite_id") == invite_id:
        tx.delete(keys.invite_email_key(ws_id, email), attr_eq("invite_id", invite_id))


def revoke_invite(access: Access, invite_id: str, request_id: str = "") -> None:
    ws = access.workspace_id
    item = get_store().get(keys.invite_key(ws, invite_id))
    if item is None:
        raise NotFound(f"invite {invite_id} not found")
    if item["status"] != InviteStatus.pending.value:
        raise InvalidTransition(f"invite {invite_id} is {item['status']}", current_status=item["status"])
    at = iso()
    tx = access.transaction()
    tx.update(
        keys.invite_key(ws, invite_id),
        Update(
            set={"status": InviteStatus.revoked.value, "revoked_at": at, "revoked_by": access.actor_id},
            remove=[keys.GSI1PK, keys.GSI1SK],
        ),
        exists() & attr_eq("status", InviteStatus.pending.value),
    )
    if int(item["expires_epoch"]) > int(time.time()):
        # Past its expiry the secret no longer works (and its record may be gone): nothing to revoke.
        tx.update(keys.token_key(item["token_hash"]), Update(set={"revoked": int(time.time())}), exists())
    _release_email(tx, ws, item["email"], invite_id)
    audit.record(tx, ws, access.actor_id, "invite.revoked", "invite", invite_id, request_id, {"email": item["email"]})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        current = get_store().get(keys.invite_key(ws, invite_id)) or {}
        raise InvalidTransition(
            f"invite {invite_id} changed while it was being revoked", current_status=current.get("status", "unknown")
        ) from failure


def accept_invite(principal: Principal, secret: str, request_id: str = "") -> Membership:
    if principal.user_id is None or principal.workspace_id is not None:
        raise Forbidden("an invite is accepted by a person's session or personal token")
    user_id = principal.user_id
    token_hash = hash_secret(secret)
    record = get_store().get(keys.token_key(token_hash)) if 0 < len(secret) <= 512 else None
    now_epoch = int(time.time())
    if (
        record is None
        or record.get("kind") != "invite"
        or record.get("revoked") is not None
        or record.get("used_at") is not None
        or int(record.get("expires_at") or 0) <= now_epoch
    ):
        raise NotFound(_INVITE_NOT_FOUND)
    ws, invite_id = record["workspace_id"], record["token_id"]
    invite = get_store().get(keys.invite_key(ws, invite_id))
    if invite is None or invite["status"] != InviteStatus.pending.value:
        raise NotFound(_INVITE_NOT_FOUND)
    try:
        workspace = load_workspace(ws)
    except NotFound as gone:
        raise NotFound(_INVITE_NOT_FOUND) from gone
    if get_store().get(keys.member_key(ws, user_id)):
        raise Conflict("you are already a member of this workspace")
    at = iso()
    role = Role(invite["role"])
    membership = member_item(ws, workspace["name"], user_id, role, at, added_by=invite["created_by"])
    tx = get_store().transaction()
    tx.check(keys.token_key(principal.token_hash), live_token())
    # Single use: the secret's record is marked used only if it is still live and unused.
    tx.update(
        keys.token_key(token_hash),
        Update(set={"used_at": now_epoch, "used_by": user_id}),
        live_token() & Expr("attribute_not_exists(used_at)"),
    )
    tx.update(
        keys.invite_key(ws, invite_id),
        Update(
            set={"status": InviteStatus.accepted.value, "accepted_by": user_id, "accepted_at": at},
            remove=[keys.GSI1PK, keys.GSI1SK],
        ),
        exists() & attr_eq("status", InviteStatus.pending.value),
    )
    member_index = len(tx.operations)
    tx.put(membership, not_exists())
    tx.check(keys.workspace_key(ws), exists() & not_deleted())
    _release_email(tx, ws, invite["email"], invite_id)
    audit.record(tx, ws, user_id, "invite.accepted", "invite", invite_id, request_id, {"role": role.value})
    try:
        tx.commit()
    except TransactionFailed as failure:
        index = failure.failed_index()
        if index == 0:
            raise Unauthorized("the token is invalid, expired or revoked") from failure
        if index == member_index:
            raise Conflict("you are already a member of this workspace") from failure
        raise NotFound(_INVITE_NOT_FOUND) from failure
    return Membership.model_validate(membership)

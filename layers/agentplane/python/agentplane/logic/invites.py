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

from agentplane import audit, keys
from agentplane.access import TOKEN_GUARD, Access
from agentplane.auth import tokens
from agentplane.auth.principal import Principal
from agentplane.auth.scopes import Role
from agentplane.auth.secrets import hash_secret, new_secret
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.accounts import UniqueItem
from agentplane.entities.tokens import TokenItem
from agentplane.entities.workspaces import (
    InviteEmailItem,
    InviteItem,
    MemberItem,
    WorkspaceItem,
    pending_invites,
)
from agentplane.errors import Conflict, Forbidden, InvalidTransition, NotFound, Unauthorized
from agentplane.ids import epoch, iso, new_id, now
from agentplane.logic.billing import limits
from agentplane.logic.workspaces import new_member
from agentplane.models.workspaces import Invite, InviteCreate, InviteCreated, InviteStatus, Membership
from agentplane.store import Transaction, TransactionFailed, get_store

_INVITE_NOT_FOUND = "invite not found, expired, revoked or already used"
# Invite records stay readable (accepted_by, revoked_at) for a while after they stop mattering.
_RECORD_RETENTION_SECONDS = 30 * 86400


def create_invite(access: Access, body: InviteCreate) -> InviteCreated:
    ws = access.workspace_id
    email = body.email.lower()
    # Who holds the email, if anyone: whether they are a member already is checked in the transaction.
    account = get_store().read(UniqueItem, keys.unique_key("email", email))
    if account and account.user_id == access.principal.user_id:
        raise Conflict(f"{email} is already a member of this workspace")
    secret = new_secret("invite")
    created = now()
    expires = created + timedelta(days=body.expires_in_days)
    expires_epoch = epoch(expires)
    invite = InviteItem(
        id=new_id("inv"),
        workspace_id=ws,
        email=email,
        role=body.role.value,
        status=InviteStatus.pending.value,
        expires_at=iso(expires),
        expires_epoch=expires_epoch,
        created_by=access.actor_id,
        created_at=iso(created),
        token_hash=hash_secret(secret),
        ttl=expires_epoch + _RECORD_RETENTION_SECONDS,
    )
    email_guard = InviteEmailItem(
        workspace_id=ws, email=email, invite_id=invite.id, expires_epoch=expires_epoch, ttl=expires_epoch
    )
    token = tokens.new_token(
        secret,
        kind="invite",
        token_id=invite.id,
        principal_id=invite.id,
        user_id=None,
        workspace_id=ws,
        expires_at=expires_epoch,
        extra={"role": body.role.value, "invited_by": access.actor_id},
    )
    tx = access.transaction()
    if access.principal.kind != "agent_key":  # an agent key's guard already checks the workspace
        # A workspace being deleted loses its members last: it is checked here, not read first.
        tx.require(WorkspaceItem, keys.workspace_key(ws), WorkspaceItem.live(), name="workspace")
    if account:
        tx.require(MemberItem, keys.member_key(ws, account.user_id), MemberItem.absent(), name="membership")
    tx.create(invite)
    tx.save(email_guard, InviteEmailItem.free(epoch(created)), name="email")
    tx.create(token)
    access.audit(tx, "invite.created", "invite", invite.id, {"email": email, "role": body.role.value})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed == "workspace":
            raise NotFound("workspace not found") from failure
        if failure.failed == "membership":
            raise Conflict(f"{email} is already a member of this workspace") from failure
        if failure.failed == "email":
            raise Conflict(f"an active invite for {email} already exists; revoke it first") from failure
        raise
    return InviteCreated.model_validate({**invite.to_model().model_dump(), "token": secret})


def list_invites(access: Access, limit: int, cursor: str | None) -> tuple[list[Invite], str | None]:
    """Pending, unexpired invites, oldest first. Never their secrets."""
    ws = access.workspace_id
    scope = f"invites:{ws}"
    page = pending_invites(ws, now=int(time.time()), limit=limit, start=decode_cursor(cursor, scope, {}))
    return [invite.to_model() for invite in page.items], encode_cursor(page.last_key, scope, {})


def _release_email(tx: Transaction, invite: InviteItem) -> None:
    """Drop the one-live-invite guard, if it is still this invite's."""
    guard_key = keys.invite_email_key(invite.workspace_id, invite.email)
    guard = get_store().read(InviteEmailItem, guard_key)
    if guard is not None and guard.invite_id == invite.id:
        tx.drop(InviteEmailItem, guard_key, InviteEmailItem.invite_id == invite.id)


def revoke_invite(access: Access, invite_id: str) -> None:
    ws = access.workspace_id
    invite = get_store().read_or_404(InviteItem, keys.invite_key(ws, invite_id), f"invite {invite_id} not found")
    if invite.status != InviteStatus.pending.value:
        raise InvalidTransition(f"invite {invite_id} is {invite.status}", current_status=invite.status)
    expired = int(invite.expires_epoch) <= int(time.time())
    tx = access.transaction()
    revoked = invite.assign(status=InviteStatus.revoked.value, revoked_at=iso(), revoked_by=access.actor_id)
    tx.change(invite, revoked, InviteItem.pending())
    if not expired:
        # Past its expiry the secret no longer works (and its record may be gone): nothing to revoke.
        tx.adjust(TokenItem, keys.token_key(invite.token_hash), [TokenItem.revoked.set(int(time.time()))])
    _release_email(tx, invite)
    access.audit(tx, "invite.revoked", "invite", invite_id, {"email": invite.email})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        current = get_store().read(InviteItem, keys.invite_key(ws, invite_id))
        raise InvalidTransition(
            f"invite {invite_id} changed while it was being revoked",
            current_status=current.status if current is not None else "unknown",
        ) from failure


def accept_invite(principal: Principal, secret: str, request_id: str = "") -> Membership:
    if principal.user_id is None or principal.workspace_id is not None:
        raise Forbidden("an invite is accepted by a person's session or personal token")
    user_id = principal.user_id
    token_hash = hash_secret(secret)
    record = get_store().read(TokenItem, keys.token_key(token_hash)) if 0 < len(secret) <= 512 else None
    now_epoch = int(time.time())
    if (
        record is None
        or record.token_kind != "invite"
        or record.revoked is not None
        or record.used_at is not None
        or int(record.expires_at or 0) <= now_epoch
    ):
        raise NotFound(_INVITE_NOT_FOUND)
    ws, invite_id = str(record.workspace_id), record.token_id
    # The invite, its workspace and whether the caller belongs there already, in one read.
    invite, workspace, member = get_store().read_each([
        (InviteItem, keys.invite_key(ws, invite_id)),
        (WorkspaceItem, keys.workspace_key(ws)),
        (MemberItem, keys.member_key(ws, user_id)),
    ])  # fmt: skip
    if not isinstance(invite, InviteItem) or invite.status != InviteStatus.pending.value:
        raise NotFound(_INVITE_NOT_FOUND)
    if not isinstance(workspace, WorkspaceItem) or workspace.deleted_at:
        raise NotFound(_INVITE_NOT_FOUND)
    if member is not None:
        raise Conflict("you are already a member of this workspace")
    at = iso()
    role = Role(invite.role)
    membership = new_member(ws, workspace.name, user_id, role, at, added_by=invite.created_by)
    tx = get_store().transaction()
    tx.require(TokenItem, keys.token_key(principal.token_hash), TokenItem.live(), name=TOKEN_GUARD)
    # Single use: the secret's record is marked used only if it is still live and unused.
    tx.adjust(
        TokenItem,
        keys.token_key(token_hash),
        [TokenItem.used_at.set(now_epoch), TokenItem.used_by.set(user_id)],
        TokenItem.live() & TokenItem.used_at.does_not_exist(),
    )
    accepted = invite.assign(status=InviteStatus.accepted.value, accepted_by=user_id, accepted_at=at)
    tx.change(invite, accepted, InviteItem.pending())
    tx.create(membership, name="membership")
    tx.require(WorkspaceItem, keys.workspace_key(ws), WorkspaceItem.live())
    limits.take_seat(tx, ws)
    _release_email(tx, invite)
    audit.record(tx, ws, user_id, "invite.accepted", "invite", invite_id, request_id, {"role": role.value})
    try:
        limits.commit_counted(tx, ws)
    except TransactionFailed as failure:
        if failure.failed == TOKEN_GUARD:
            raise Unauthorized("the token is invalid, expired or revoked") from failure
        if failure.failed == "membership":
            raise Conflict("you are already a member of this workspace") from failure
        raise NotFound(_INVITE_NOT_FOUND) from failure
    return membership.to_membership()

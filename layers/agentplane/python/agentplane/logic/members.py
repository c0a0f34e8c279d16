"""Workspace members: list, add, change role, remove, leave.

Rules (Orkosi's organization members, Takos' space members):
- Adding, changing and removing others needs `settings:write` (admin and owner).
- Only an owner grants the owner role, or changes or removes another owner.
- A workspace always keeps at least one owner: the last owner can be neither demoted nor removed
  (409), guarded by the workspace's `owner_count` in the same transaction.
- Anyone may remove themselves (leave), except the last owner.
- Removing a member also removes them from the workspace's teams.
"""

from __future__ import annotations

import dataclasses

from agentplane import keys
from agentplane.access import Access
from agentplane.auth.scopes import Role
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.accounts import UserItem
from agentplane.entities.teams import teams_of_member
from agentplane.entities.workspaces import MemberItem, members_page
from agentplane.errors import Conflict, Forbidden, MissingScope, NotFound, Unprocessable
from agentplane.ids import iso
from agentplane.logic import api_keys
from agentplane.logic.billing import limits
from agentplane.logic.teams import drop_team_membership
from agentplane.logic.workspaces import OWNER_COUNT, count_owners, load_workspace, new_member, own_transaction
from agentplane.models.workspaces import Member, MemberAdd, MemberUpdate
from agentplane.store import Transaction, TransactionFailed, get_store

_PROFILE_FIELDS = ("username", "display_name", "avatar_url")
# Team memberships removed in the member's own transaction; any beyond follow in their own.
_TEAMS_IN_REMOVAL = 40
# The name of the write to the member's own item in a transaction that changes it.
_MEMBERSHIP = "membership"


def _member_view(member: MemberItem, user: UserItem | None) -> Member:
    """A member with the public parts of their profile (none once their account is erased)."""
    profile = {f: getattr(user, f) for f in _PROFILE_FIELDS} if user is not None and not user.erased else {}
    return Member.model_validate({**member.fields(), **profile})


def _with_profiles(members: list[MemberItem]) -> list[Member]:
    users: list[UserItem | None] = []
    for start in range(0, len(members), 100):
        users += get_store().read_many(UserItem, [keys.user_key(m.user_id) for m in members[start : start + 100]])
    return [_member_view(member, user) for member, user in zip(members, users, strict=True)]


def load_member(ws_id: str, user_id: str) -> MemberItem:
    missing = f"{user_id} is not a member of this workspace"
    return get_store().read_or_404(MemberItem, keys.member_key(ws_id, user_id), missing)


def list_members(access: Access, limit: int, cursor: str | None) -> tuple[list[Member], str | None]:
    ws = access.workspace_id
    scope = f"members:{ws}"
    page = members_page(ws, limit=limit, start=decode_cursor(cursor, scope, {}))
    return _with_profiles(page.items), encode_cursor(page.last_key, scope, {})


def _require_grant(access: Access, role: Role) -> None:
    if role == Role.owner and access.role != Role.owner:
        raise Forbidden("only an owner can grant the owner role", role=access.role.value)


def add_member(access: Access, body: MemberAdd) -> Member:
    ws = access.workspace_id
    _require_grant(access, body.role)
    workspace = load_workspace(ws)
    user = get_store().read(UserItem, keys.user_key(body.user_id))
    if user is None or user.erased:
        raise Unprocessable(
            f"there is no user {body.user_id}", errors=[{"field": "user_id", "message": "unknown user"}]
        )
    if body.user_id == access.principal.user_id or get_store().read(MemberItem, keys.member_key(ws, body.user_id)):
        raise Conflict(f"{body.user_id} is already a member of this workspace")
    member = new_member(ws, workspace.name, body.user_id, body.role, iso(), added_by=access.actor_id)
    tx = access.transaction()
    tx.create(member, name=_MEMBERSHIP)
    limits.take_seat(tx, ws)
    if body.role == Role.owner:
        count_owners(tx, ws, +1)
    access.audit(tx, "member.added", "user", body.user_id, {"role": body.role.value})
    try:
        limits.commit_counted(tx, ws, access.commit)
    except TransactionFailed as failure:
        if failure.failed == _MEMBERSHIP:
            raise Conflict(f"{body.user_id} is already a member of this workspace") from failure
        raise NotFound("workspace not found") from failure
    return _member_view(member, user)


def _guarded(access: Access, target_user: str) -> tuple[Transaction, bool]:
    """The transaction for a write to `target_user`'s membership; True if that is the caller's own."""
    own = target_user == access.principal.user_id
    return (own_transaction(access) if own else access.transaction()), own


def _commit_membership_change(access: Access, tx: Transaction, what: str) -> None:
    try:
        limits.commit_counted(tx, access.workspace_id, access.commit)
    except TransactionFailed as failure:
        if failure.failed == OWNER_COUNT and failure.reason(OWNER_COUNT) == "ConditionalCheckFailed":
            load_workspace(access.workspace_id)  # 404 if it was deleted meanwhile
            raise Conflict(f"the workspace must keep at least one owner: {what} the last owner") from failure
        if failure.failed == _MEMBERSHIP:
            raise Conflict("the membership changed meanwhile; reload and retry") from failure
        raise Conflict("the workspace changed meanwhile; retry") from failure


def update_member(access: Access, user_id: str, body: MemberUpdate) -> Member:
    ws = access.workspace_id
    workspace = load_workspace(ws)
    target = load_member(ws, user_id)
    current, new = Role(target.role), body.role
    _require_grant(access, new)
    if current == Role.owner and access.role != Role.owner:
        raise Forbidden("only an owner can change an owner's role", role=access.role.value)
    if new == current:
        return _with_profiles([target])[0]
    if current == Role.owner and int(workspace.owner_count or 1) <= 1:
        raise Conflict("the workspace must keep at least one owner: cannot demote the last owner")
    tx, own = _guarded(access, user_id)
    condition = MemberItem.with_role(current.value)
    if own:
        condition = condition & access.membership_condition()
    tx.change(target, target.assign(role=new.value, role_changed_at=iso()), condition, name=_MEMBERSHIP)
    if current == Role.owner:
        count_owners(tx, ws, -1)
    elif new == Role.owner:
        count_owners(tx, ws, +1)
    access.audit(tx, "member.role_changed", "user", user_id, {"from": current.value, "to": new.value})
    _commit_membership_change(access, tx, "cannot demote")
    return _with_profiles([target])[0]


def remove_member(access: Access, user_id: str) -> None:
    """Remove a member; removing yourself is leaving, which any role may do."""
    ws = access.workspace_id
    own = user_id == access.principal.user_id
    if own:
        # Leaving changes a membership: a scoped token must carry settings:write for it too.
        if not access.principal.has_scope("settings:write"):
            raise MissingScope("settings:write")
    else:
        access.require("settings:write")
        access = dataclasses.replace(access, scope="settings:write")
    workspace = load_workspace(ws)
    target = load_member(ws, user_id)
    role = Role(target.role)
    if not own and role == Role.owner and access.role != Role.owner:
        raise Forbidden("only an owner can remove another owner", role=access.role.value)
    if role == Role.owner and int(workspace.owner_count or 1) <= 1:
        raise Conflict("the workspace must keep at least one owner: the last owner cannot leave or be removed")
    tx, own = _guarded(access, user_id)
    condition = MemberItem.with_role(role.value)
    if own:
        condition = condition & access.membership_condition()
    tx.remove(target, condition, name=_MEMBERSHIP)
    limits.free_seat(tx, ws)
    if role == Role.owner:
        count_owners(tx, ws, -1)
    teams = teams_of_member(ws, user_id)
    for team_id in teams[:_TEAMS_IN_REMOVAL]:
        drop_team_membership(tx, ws, team_id, user_id)
    access.audit(tx, "member.left" if own else "member.removed", "user", user_id, {"role": role.value})
    _commit_membership_change(access, tx, "cannot remove")
    # Their keys are already refused (a key dies with its maker's membership); revoking them
    # says so in the list, and keeps them dead if the person is added again.
    api_keys.revoke_keys_made_by(ws, user_id)
    for team_id in teams[_TEAMS_IN_REMOVAL:]:
        follow_up = get_store().transaction()
        drop_team_membership(follow_up, ws, team_id, user_id)
        try:
            follow_up.commit()
        except TransactionFailed:
            continue  # the team or the team membership went away meanwhile

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
from typing import Any

from agentplane import audit, keys
from agentplane.access import Access
from agentplane.auth.scopes import Role
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.teams import teams_of_member
from agentplane.errors import Conflict, Forbidden, MissingScope, NotFound, Unprocessable
from agentplane.ids import iso
from agentplane.logic import api_keys
from agentplane.logic.teams import drop_team_membership
from agentplane.logic.workspaces import (
    failure_reason,
    load_workspace,
    member_item,
    own_member_condition,
    own_transaction,
    owner_count_change,
)
from agentplane.models.workspaces import Member, MemberAdd, MemberUpdate
from agentplane.store import Transaction, TransactionFailed, Update, attr_eq, exists, get_store, not_exists

_PROFILE_FIELDS = ("username", "display_name", "avatar_url")
# Team memberships removed in the member's own transaction; any beyond follow in their own.
_TEAMS_IN_REMOVAL = 40


def _with_profiles(items: list[dict[str, Any]]) -> list[Member]:
    users: list[dict[str, Any] | None] = []
    for start in range(0, len(items), 100):
        users += get_store().get_many([keys.user_key(i["user_id"]) for i in items[start : start + 100]])
    members = []
    for item, user in zip(items, users, strict=True):
        profile = {f: user.get(f) for f in _PROFILE_FIELDS} if user and not user.get("erased_at") else {}
        members.append(Member.model_validate({**item, **profile}))
    return members


def load_member(ws_id: str, user_id: str) -> dict[str, Any]:
    item = get_store().get(keys.member_key(ws_id, user_id))
    if item is None:
        raise NotFound(f"{user_id} is not a member of this workspace")
    return item


def list_members(access: Access, limit: int, cursor: str | None) -> tuple[list[Member], str | None]:
    ws = access.workspace_id
    scope = f"members:{ws}"
    page = get_store().query(
        keys.ws_pk(ws), sk_prefix=keys.MEMBER_PREFIX, limit=limit, start_key=decode_cursor(cursor, scope, {})
    )
    return _with_profiles(page.items), encode_cursor(page.last_key, scope, {})


def _require_grant(access: Access, role: Role) -> None:
    if role == Role.owner and access.role != Role.owner:
        raise Forbidden("only an owner can grant the owner role", role=access.role.value)


def add_member(access: Access, body: MemberAdd, request_id: str = "") -> Member:
    ws = access.workspace_id
    _require_grant(access, body.role)
    workspace = load_workspace(ws)
    user = get_store().get(keys.user_key(body.user_id))
    if user is None or user.get("erased_at"):
        raise Unprocessable(
            f"there is no user {body.user_id}", errors=[{"field": "user_id", "message": "unknown user"}]
        )
    if body.user_id == access.principal.user_id or get_store().get(keys.member_key(ws, body.user_id)):
        raise Conflict(f"{body.user_id} is already a member of this workspace")
    item = member_item(ws, workspace["name"], body.user_id, body.role, iso(), added_by=access.actor_id)
    tx = access.transaction()
    tx.put(item, not_exists())
    member_index = len(tx.operations) - 1
    if body.role == Role.owner:
        owner_count_change(tx, ws, +1)
    audit.record(tx, ws, access.actor_id, "member.added", "user", body.user_id, request_id, {"role": body.role.value})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed_index() == member_index:
            raise Conflict(f"{body.user_id} is already a member of this workspace") from failure
        raise NotFound("workspace not found") from failure
    return _with_profiles([item])[0]


def _guarded(access: Access, target_user: str) -> tuple[Transaction, bool]:
    """The transaction for a write to `target_user`'s membership; True if that is the caller's own."""
    own = target_user == access.principal.user_id
    return (own_transaction(access) if own else access.transaction()), own


def _commit_membership_change(
    access: Access, tx: Transaction, member_index: int, owner_index: int | None, what: str
) -> None:
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        index = failure.failed_index()
        if index == owner_index and failure_reason(failure, index) == "ConditionalCheckFailed":
            load_workspace(access.workspace_id)  # 404 if it was deleted meanwhile
            raise Conflict(f"the workspace must keep at least one owner: {what} the last owner") from failure
        if index == member_index:
            raise Conflict("the membership changed meanwhile; reload and retry") from failure
        raise Conflict("the workspace changed meanwhile; retry") from failure


def update_member(access: Access, user_id: str, body: MemberUpdate, request_id: str = "") -> Member:
    ws = access.workspace_id
    workspace = load_workspace(ws)
    target = load_member(ws, user_id)
    current, new = Role(target["role"]), body.role
    _require_grant(access, new)
    if current == Role.owner and access.role != Role.owner:
        raise Forbidden("only an owner can change an owner's role", role=access.role.value)
    if new == current:
        return _with_profiles([target])[0]
    if current == Role.owner and int(workspace.get("owner_count", 1)) <= 1:
        raise Conflict("the workspace must keep at least one owner: cannot demote the last owner")
    tx, own = _guarded(access, user_id)
    condition = exists() & attr_eq("role", current.value)
    if own:
        condition = condition & own_member_condition(access)
    tx.update(keys.member_key(ws, user_id), Update(set={"role": new.value, "role_changed_at": iso()}), condition)
    member_index = len(tx.operations) - 1
    owner_index = None
    if current == Role.owner:
        owner_index = owner_count_change(tx, ws, -1)
    elif new == Role.owner:
        owner_index = owner_count_change(tx, ws, +1)
    audit.record(
        tx,
        ws,
        access.actor_id,
        "member.role_changed",
        "user",
        user_id,
        request_id,
        {"from": current.value, "to": new.value},
    )
    _commit_membership_change(access, tx, member_index, owner_index, "cannot demote")
    return _with_profiles([{**target, "role": new.value}])[0]


def remove_member(access: Access, user_id: str, request_id: str = "") -> None:
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
    role = Role(target["role"])
    if not own and role == Role.owner and access.role != Role.owner:
        raise Forbidden("only an owner can remove another owner", role=access.role.value)
    if role == Role.owner and int(workspace.get("owner_count", 1)) <= 1:
        raise Conflict("the workspace must keep at least one owner: the last owner cannot leave or be removed")
    tx, own = _guarded(access, user_id)
    condition = exists() & attr_eq("role", role.value)
    if own:
        condition = condition & own_member_condition(access)
    tx.delete(keys.member_key(ws, user_id), condition)
    member_index = len(tx.operations) - 1
    owner_index = owner_count_change(tx, ws, -1) if role == Role.owner else None
    teams = teams_of_member(ws, user_id)
    for team_id in teams[:_TEAMS_IN_REMOVAL]:
        drop_team_membership(tx, ws, team_id, user_id)
    action = "member.left" if own else "member.removed"
    audit.record(tx, ws, access.actor_id, action, "user", user_id, request_id, {"role": role.value})
    _commit_membership_change(access, tx, member_index, owner_index, "cannot remove")
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

"""Workspaces: the tenant boundary. Everything a team owns hangs off one workspace id.

This module holds the workspace itself (create, read, patch, soft delete), its common
environment, and the transaction helpers the other workspace modules (members, invites, teams,
transfer) share.

Owners are counted on the workspace item (`owner_count`): every change that takes an owner away
decrements it under the condition `owner_count > 1` in the same transaction, so two owners
demoting each other at once cannot leave a workspace without one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from agentplane import audit, crypto, keys
from agentplane.access import Access
from agentplane.auth.principal import Principal
from agentplane.auth.scopes import Role
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.api_keys import ApiKeyItem
from agentplane.entities.tokens import TokenItem
from agentplane.entities.workspaces import (
    CommonEnvItem,
    MemberItem,
    WorkspaceItem,
    every_member,
    first_members,
    memberships_of,
)
from agentplane.errors import Conflict, Forbidden, NotFound, PreconditionFailed, Unprocessable
from agentplane.ids import iso, new_id
from agentplane.logic import api_keys
from agentplane.logic.billing import limits
from agentplane.models.workspaces import (
    MAX_COMMON_ENV,
    CommonEnv,
    CommonEnvPut,
    CommonEnvVar,
    Membership,
    Workspace,
    WorkspaceCreate,
    WorkspaceUpdate,
)
from agentplane.store import ConditionFailed, Transaction, TransactionFailed, get_store

MAX_TRANSACTION_ITEMS = 100
# The name of the owner count's update in a transaction that changes it.
OWNER_COUNT = "owner_count"


# --- shared helpers ------------------------------------------------------------------------------


def new_member(ws_id: str, ws_name: str, user_id: str, role: Role, at: str, added_by: str | None = None) -> MemberItem:
    return MemberItem(
        workspace_id=ws_id, workspace_name=ws_name, user_id=user_id, role=role.value, joined_at=at, added_by=added_by
    )


def member_item(
    ws_id: str, ws_name: str, user_id: str, role: Role, at: str, added_by: str | None = None
) -> dict[str, Any]:
    """A membership as the table holds it."""
    member = new_member(ws_id, ws_name, user_id, role, at, added_by)
    member.stamp()
    return member.as_item()


def own_transaction(access: Access) -> Transaction:
    """A transaction for a write to the caller's *own* membership item.

    DynamoDB allows one operation per item in a transaction, so the membership guard that
    `access.transaction()` adds as a separate check moves into that write's condition instead
    (`access.membership_condition()`); the transaction starts with the token's guard alone.
    """
    tx = get_store().transaction()
    tx.require(TokenItem, keys.token_key(access.principal.token_hash), TokenItem.live())
    return tx


def owner_transaction(access: Access) -> Transaction:
    """Like `access.transaction()`, but the caller must still be an owner when it commits."""
    if access.principal.user_id is None or access.role != Role.owner:
        raise Forbidden("only an owner of the workspace can do this", role=access.role.value)
    tx = get_store().transaction()
    tx.require(TokenItem, keys.token_key(access.principal.token_hash), TokenItem.live())
    owner = keys.member_key(access.workspace_id, access.principal.user_id)
    tx.require(MemberItem, owner, MemberItem.with_role(Role.owner.value))
    return tx


def count_owners(tx: Transaction, ws_id: str, delta: int) -> None:
    """Add `delta` owners to the workspace's count (the operation named OWNER_COUNT); a decrement
    never takes it below one."""
    actions, condition = WorkspaceItem.owner_count_change(delta)
    tx.adjust(WorkspaceItem, keys.workspace_key(ws_id), actions, condition, name=OWNER_COUNT)


def commit_in_parts(
    access: Access,
    operations: list[dict[str, Any]],
    audit_row: Callable[[Transaction, int, int], None],
) -> int:
    """Commit `operations` (built in scratch transactions) as consecutive guarded transactions of
    at most 100 items each.

    Each part carries the caller's guards and its own audit row, and is atomic; the whole is not.
    If part k fails, parts before it stay applied: `PartialWrite` says how far it got. Returns the
    number of transactions written.
    """
    room = MAX_TRANSACTION_ITEMS - access.transaction().size - 1
    parts = [operations[i : i + room] for i in range(0, len(operations), room)] or [[]]
    for index, part in enumerate(parts):
        tx = access.transaction()
        tx.operations.extend(part)
        audit_row(tx, index, len(parts))
        try:
            access.commit(tx)
        except TransactionFailed as failure:
            raise Conflict(
                f"the workspace changed while this was being written; parts 1-{index} of {len(parts)} were applied",
                applied_parts=index,
                parts=len(parts),
            ) from failure
    return len(parts)


def scratch() -> Transaction:
    """A transaction used only to build operations that `commit_in_parts` will write."""
    return get_store().transaction()


def all_members(ws_id: str) -> Iterator[dict[str, Any]]:
    """Every membership of a workspace as the table holds it."""
    for member in every_member(ws_id):
        yield member.as_item()


# --- workspace ---------------------------------------------------------------------------------


def create_workspace(principal: Principal, body: WorkspaceCreate, request_id: str = "") -> Workspace:
    """The creator becomes the owner, in the same transaction as the workspace and its audit row."""
    if principal.user_id is None or principal.workspace_id is not None:
        raise Forbidden("only a person's session or personal token can create workspaces")
    ws_id = new_id("ws")
    at = iso()
    workspace = WorkspaceItem(
        id=ws_id,
        **body.model_dump(),
        owner_id=principal.user_id,
        owner_count=1,
        auto_push=False,
        created_at=at,
        updated_at=at,
    )
    tx = get_store().transaction()
    tx.create(workspace)
    tx.create(new_member(ws_id, body.name, principal.user_id, Role.owner, at))
    tx.create(limits.new_workspace_counts(ws_id))
    audit.record(tx, ws_id, principal.user_id, "workspace.created", "workspace", ws_id, request_id, {"name": body.name})
    tx.commit()
    return workspace.to_model()


def load_workspace(ws_id: str) -> WorkspaceItem:
    """The workspace, or a 404 once it is deleted."""
    workspace = get_store().read(WorkspaceItem, keys.workspace_key(ws_id))
    if workspace is None or workspace.deleted_at:
        raise NotFound("workspace not found")
    return workspace


def get_workspace(access: Access) -> Workspace:
    return load_workspace(access.workspace_id).to_model()


def list_memberships(user_id: str, limit: int, start_key: dict[str, Any] | None) -> tuple[list[Membership], Any]:
    page = memberships_of(user_id, limit=limit, start=start_key)
    return [member.to_membership() for member in page.items], page.last_key


def list_workspaces(principal: Principal, limit: int, cursor: str | None) -> tuple[list[Membership], str | None]:
    """The workspaces the caller can reach: a person's memberships, or a workspace key's one
    workspace (never the other workspaces of the person who made it)."""
    scope = f"workspaces:{principal.id}"
    start_key = decode_cursor(cursor, scope, {})
    if principal.workspace_id is None:
        items, last_key = list_memberships(principal.user_id or "", limit, start_key)
        return items, encode_cursor(last_key, scope, {})
    ws = principal.workspace_id
    if principal.user_id is not None:
        member = get_store().read(MemberItem, keys.member_key(ws, principal.user_id))
        return ([member.to_membership()] if member else []), None
    workspace, key = get_store().read_each(
        [(WorkspaceItem, keys.workspace_key(ws)), (ApiKeyItem, keys.api_key_key(ws, principal.token_id))]
    )
    if not isinstance(workspace, WorkspaceItem) or workspace.deleted_at or not isinstance(key, ApiKeyItem):
        return [], None
    agent = Membership(
        workspace_id=ws, workspace_name=workspace.name, user_id=None, role=Role.member, joined_at=key.created_at
    )
    return [agent], None


def update_workspace(access: Access, body: WorkspaceUpdate, if_match: int | None = None) -> Workspace:
    """Optimistic: a stale `version` (or If-Match) is a 412 and nothing is written."""
    ws = access.workspace_id
    workspace = load_workspace(ws)
    expected = body.version or if_match
    if expected is not None and expected != workspace.version:
        raise PreconditionFailed(
            f"the workspace is at version {workspace.version}, not {expected}", current_version=workspace.version
        )
    changes: dict[str, Any] = body.model_dump(exclude_none=True, exclude={"version"})
    if not changes:
        return workspace.to_model()
    fields = sorted(changes)
    old_name = workspace.name
    tx = access.transaction()
    tx.change(workspace, workspace.assign(**changes, updated_at=iso()), WorkspaceItem.deleted_at.does_not_exist())
    access.audit(tx, "workspace.updated", "workspace", ws, {"fields": fields})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise PreconditionFailed("the workspace changed while it was being updated; reload and retry") from failure
    if workspace.name != old_name:
        rename_memberships(ws, workspace.name)
    return workspace.to_model()


def rename_memberships(ws_id: str, name: str) -> None:
    """Carry a new workspace name onto its membership items (what `GET /workspaces` lists).

    Done after the rename commits, one conditional update per member: a crash half way leaves
    some lists showing the old name until the next rename, and nothing else."""
    for member in list(every_member(ws_id)):
        try:
            get_store().adjust(MemberItem, member.key, [MemberItem.workspace_name.set(name)])
        except ConditionFailed:
            continue  # the member left meanwhile


def delete_workspace(access: Access) -> None:
    """Soft delete (owner only). The workspace item keeps `deleted_at` for its audit trail, every
    API key and agent key of it is revoked, and every membership is removed, so members get 404
    everywhere, the workspace leaves their lists, and its keys stop working.

    The first transaction marks the workspace deleted and revokes the keys and removes the other
    memberships that fit in it; larger workspaces lose the rest in further transactions, and the
    caller's own membership goes last. Until then the owner can repeat the DELETE, which resumes
    the cleanup. Meanwhile no key can write: agent keys re-check the workspace in every write, API
    keys their maker's membership.
    """
    ws = access.workspace_id
    tx = owner_transaction(access)
    actor = access.principal.user_id
    workspace = get_store().read_or_404(WorkspaceItem, keys.workspace_key(ws), "workspace not found")
    if not workspace.deleted_at:
        others = [m.user_id for m in every_member(ws) if m.user_id != actor]
        revocations = api_keys.live_key_revocations(ws)
        at = iso()
        marks = workspace.assign(deleted_at=at, deleted_by=access.actor_id, updated_at=at)
        tx.adjust(WorkspaceItem, workspace.key, marks, WorkspaceItem.deleted_at.does_not_exist(), name="workspace")
        access.audit(
            tx, "workspace.deleted", "workspace", ws, {"name": workspace.name, "api_keys_revoked": len(revocations)}
        )
        for revocation in revocations:
            # The caller's own token is already guarded by the transaction: its key goes later.
            fits = tx.size + revocation.size <= MAX_TRANSACTION_ITEMS
            if fits and access.principal.token_hash not in revocation.token_hashes:
                revocation.add_to(tx)
        for user_id in others[: MAX_TRANSACTION_ITEMS - tx.size]:
            tx.discard(MemberItem, keys.member_key(ws, user_id))
        try:
            access.commit(tx)
        except TransactionFailed as failure:
            # A concurrent DELETE won: fall through and finish its cleanup.
            if failure.reason("workspace") != "ConditionalCheckFailed":
                raise Conflict("the workspace changed while it was being deleted; try again") from failure
    _revoke_keys(ws)
    _remove_memberships(ws, keep_last=actor)


def _revoke_keys(ws_id: str) -> None:
    """Revoke the keys the first transaction had no room for, one key per transaction."""
    for revocation in api_keys.live_key_revocations(ws_id):
        tx = get_store().transaction()
        revocation.add_to(tx)
        try:
            tx.commit()
        except TransactionFailed as failure:
            # The key changed meanwhile (rotated, revoked): the owner's retry of the DELETE finds it.
            raise Conflict("a key changed while the workspace was being deleted; repeat the DELETE") from failure


def _remove_memberships(ws_id: str, keep_last: str | None) -> None:
    while doomed := [m.user_id for m in first_members(ws_id, limit=100) if m.user_id != keep_last]:
        tx = get_store().transaction()
        for user_id in doomed:
            tx.discard(MemberItem, keys.member_key(ws_id, user_id))
        tx.commit()
    if keep_last:
        get_store().discard(MemberItem, keys.member_key(ws_id, keep_last))


# --- common env ----------------------------------------------------------------------------------
#
# Takos' per-space common environment: variables every agent run in the workspace receives.
# Decisions (the seed is silent on them):
# - Values are secrets. They are stored as one KMS-sealed blob (`crypto.seal`, bound to the
#   workspace), never in plaintext; names and who set them when are plain metadata.
# - `GET …/common-env` (settings:read, every role) lists every variable with its value masked
#   by `crypto.mask`. `?reveal=true` returns plaintext and additionally needs `secrets:read`
#   (admin and owner); each reveal is audited.
# - `PUT` (secrets:write) upserts the variables given (`replace: true` drops the others);
#   `DELETE` (secrets:write) removes one variable (`?name=`) or, without a name, all of them.
# - Audit rows name the variables that changed and never carry a value.
# - Runs receive the values server-side through `common_env_values`; export never includes them.

EnvMeta = dict[str, dict[str, str]]


def _env(ws_id: str) -> CommonEnvItem | None:
    return get_store().read(CommonEnvItem, keys.common_env_key(ws_id))


def _open_env(env: CommonEnvItem | None, ws_id: str) -> dict[str, str]:
    if env is None or not env.sealed:
        return {}
    values: dict[str, str] = json.loads(crypto.unseal(env.sealed, ws_id))
    return values


def _env_view(env: CommonEnvItem | None, values: dict[str, str], reveal: bool) -> CommonEnv:
    meta: EnvMeta = env.variables if env is not None else {}
    variables = [
        CommonEnvVar(
            name=name,
            value=values[name] if reveal else crypto.mask(values[name]),
            updated_at=meta.get(name, {}).get("updated_at", ""),
            updated_by=meta.get(name, {}).get("updated_by", ""),
        )
        for name in sorted(values)
    ]
    return CommonEnv(
        variables=variables,
        revealed=reveal,
        version=int(env.version or 0) if env is not None else 0,
        updated_at=env.updated_at if env is not None else None,
    )


def common_env_values(ws_id: str) -> dict[str, str]:
    """The plaintext variables, for the runs that hand them to agents (never for a response)."""
    return _open_env(_env(ws_id), ws_id)


def get_common_env(access: Access, reveal: bool = False) -> CommonEnv:
    ws = access.workspace_id
    if reveal:
        access.require("secrets:read")
    env = _env(ws)
    values = _open_env(env, ws)
    if reveal and values:
        tx = access.transaction()
        access.audit(tx, "common_env.revealed", "common_env", ws, {"names": sorted(values)})
        access.commit(tx)
    return _env_view(env, values, reveal)


def _write_env(
    access: Access,
    env: CommonEnvItem | None,
    values: dict[str, str],
    meta: EnvMeta,
    action: str,
    details: dict[str, Any],
) -> CommonEnvItem | None:
    """Store `values` over the common env read as `env` (only if it is still at that version),
    or remove it when none are left; answers what is stored now."""
    ws = access.workspace_id
    tx = access.transaction()
    written: CommonEnvItem | None = None
    if values:
        written = env if env is not None else CommonEnvItem(workspace_id=ws)
        written.sealed = crypto.seal(json.dumps(values, separators=(",", ":")), ws)
        written.variables = meta
        written.updated_at = iso()
        written.updated_by = access.actor_id
        tx.save(written)
    else:
        assert env is not None, "only a stored common env is emptied"
        tx.remove(env)
    access.audit(tx, action, "common_env", ws, details)
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise PreconditionFailed("the common env changed while it was being written; reload and retry") from failure
    return written


def put_common_env(access: Access, body: CommonEnvPut, if_match: int | None = None) -> CommonEnv:
    ws = access.workspace_id
    load_workspace(ws)
    env = _env(ws)
    current_version = int(env.version or 0) if env is not None else 0
    expected = body.version if body.version is not None else if_match
    if expected is not None and expected != current_version:
        raise PreconditionFailed(
            f"the common env is at version {current_version}, not {expected}", current_version=current_version
        )
    values = _open_env(env, ws)
    meta: EnvMeta = dict(env.variables) if env is not None else {}
    removed = sorted(set(values) - set(body.variables)) if body.replace else []
    for name in removed:
        values.pop(name)
        meta.pop(name, None)
    changed = sorted(name for name, value in body.variables.items() if values.get(name) != value)
    if len(set(values) | set(body.variables)) > MAX_COMMON_ENV:
        raise Unprocessable(
            f"a workspace holds at most {MAX_COMMON_ENV} common env variables",
            errors=[{"field": "variables", "message": f"at most {MAX_COMMON_ENV} variables"}],
        )
    if not changed and not removed:
        return _env_view(env, values, reveal=False)
    at = iso()
    for name in changed:
        values[name] = body.variables[name]
        meta[name] = {"updated_at": at, "updated_by": access.actor_id}
    written = _write_env(access, env, values, meta, "common_env.updated", {"set": changed, "removed": removed})
    return _env_view(written, values, reveal=False)


def delete_common_env(access: Access, name: str | None = None) -> None:
    ws = access.workspace_id
    load_workspace(ws)
    env = _env(ws)
    values = _open_env(env, ws)
    meta: EnvMeta = dict(env.variables) if env is not None else {}
    if name is not None:
        if name not in values:
            raise NotFound(f"no common env variable named {name}")
        values.pop(name)
        meta.pop(name, None)
        _write_env(access, env, values, meta, "common_env.deleted", {"removed": [name]})
        return
    if env is None:
        return
    _write_env(access, env, {}, {}, "common_env.cleared", {"removed": sorted(values)})

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
from agentplane.access import Access, live_token
from agentplane.auth.principal import Principal
from agentplane.auth.scopes import Role, roles_with
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.errors import Conflict, Forbidden, NotFound, PreconditionFailed, Unprocessable
from agentplane.ids import iso, new_id
from agentplane.logic import api_keys
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
from agentplane.store import (
    ConditionFailed,
    Expr,
    Transaction,
    TransactionFailed,
    Update,
    attr_eq,
    attr_in,
    exists,
    get_store,
    not_exists,
)

MAX_TRANSACTION_ITEMS = 100


# --- shared helpers ------------------------------------------------------------------------------


def not_deleted() -> Expr:
    return Expr("attribute_not_exists(deleted_at)")


def member_item(
    ws_id: str, ws_name: str, user_id: str, role: Role, at: str, added_by: str | None = None
) -> dict[str, Any]:
    return {
        **keys.member_key(ws_id, user_id),
        keys.ENTITY: "member",
        keys.GSI1PK: keys.member_of_user_gsi(user_id),
        keys.GSI1SK: keys.member_of_user_sort_key(ws_id),
        "workspace_id": ws_id,
        "workspace_name": ws_name,
        "user_id": user_id,
        "role": role.value,
        "joined_at": at,
        "added_by": added_by,
    }


def own_transaction(access: Access) -> Transaction:
    """A transaction for a write to the caller's *own* membership item.

    DynamoDB allows one operation per item in a transaction, so the membership guard that
    `access.transaction()` adds as a separate check moves into that write's condition instead
    (`own_member_condition`). The write must be the transaction's second operation, where
    `access.commit` expects the membership guard.
    """
    tx = get_store().transaction()
    tx.check(keys.token_key(access.principal.token_hash), live_token())
    return tx


def own_member_condition(access: Access) -> Expr:
    allowed = roles_with(access.scope) if access.scope else [r.value for r in Role]
    return exists() & attr_in("role", allowed)


def owner_transaction(access: Access) -> Transaction:
    """Like `access.transaction()`, but the caller must still be an owner when it commits."""
    if access.principal.user_id is None or access.role != Role.owner:
        raise Forbidden("only an owner of the workspace can do this", role=access.role.value)
    tx = get_store().transaction()
    tx.check(keys.token_key(access.principal.token_hash), live_token())
    tx.check(keys.member_key(access.workspace_id, access.principal.user_id), attr_eq("role", Role.owner.value))
    return tx


def owner_count_change(tx: Transaction, ws_id: str, delta: int) -> int:
    """Add `delta` owners to the workspace's count; a decrement never takes it below one.
    Returns the operation's index, so a failure there can be told apart."""
    condition = exists() & not_deleted()
    if delta < 0:
        condition = condition & Expr("#owners > :one", {"#owners": "owner_count"}, {":one": 1})
    tx.update(keys.workspace_key(ws_id), Update(add={"owner_count": delta}), condition)
    return len(tx.operations) - 1


def failure_reason(failure: TransactionFailed, index: int | None) -> str:
    if index is None or index >= len(failure.reasons):
        return ""
    return failure.reasons[index]


def commit_in_parts(
    access: Access,
    operations: list[dict[str, Any]],
    audit_row: Callable[[Transaction, int, int], None],
) -> int:
    """Commit `operations` as consecutive guarded transactions of at most 100 items each.

    Each part carries the caller's guards and its own audit row, and is atomic; the whole is not.
    If part k fails, parts before it stay applied: `PartialWrite` says how far it got. Returns the
    number of transactions written.
    """
    room = MAX_TRANSACTION_ITEMS - len(access.transaction().operations) - 1
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


def all_items(pk: str, sk_prefix: str, page_size: int = 100) -> Iterator[dict[str, Any]]:
    """Every item of one workspace collection, page by page (strongly consistent)."""
    start: dict[str, Any] | None = None
    while True:
        page = get_store().query(pk, sk_prefix=sk_prefix, limit=page_size, start_key=start, consistent=True)
        yield from page.items
        if page.last_key is None:
            return
        start = page.last_key


def all_members(ws_id: str) -> Iterator[dict[str, Any]]:
    return all_items(keys.ws_pk(ws_id), keys.MEMBER_PREFIX)


# --- workspace ---------------------------------------------------------------------------------


def create_workspace(principal: Principal, body: WorkspaceCreate, request_id: str = "") -> Workspace:
    """The creator becomes the owner, in the same transaction as the workspace and its audit row."""
    if principal.user_id is None or principal.workspace_id is not None:
        raise Forbidden("only a person's session or personal token can create workspaces")
    ws_id = new_id("ws")
    at = iso()
    item = {
        **keys.workspace_key(ws_id),
        keys.ENTITY: "workspace",
        **body.model_dump(),
        "id": ws_id,
        "owner_id": principal.user_id,
        "owner_count": 1,
        "auto_push": False,
        "created_at": at,
        "updated_at": at,
        "version": 1,
    }
    tx = get_store().transaction()
    tx.put(item, not_exists())
    tx.put(member_item(ws_id, body.name, principal.user_id, Role.owner, at), not_exists())
    audit.record(tx, ws_id, principal.user_id, "workspace.created", "workspace", ws_id, request_id, {"name": body.name})
    tx.commit()
    return Workspace.model_validate(item)


def load_workspace(ws_id: str) -> dict[str, Any]:
    item = get_store().get(keys.workspace_key(ws_id))
    if item is None or item.get("deleted_at"):
        raise NotFound("workspace not found")
    return item


def get_workspace(access: Access) -> Workspace:
    return Workspace.model_validate(load_workspace(access.workspace_id))


def list_memberships(user_id: str, limit: int, start_key: dict[str, Any] | None) -> tuple[list[Membership], Any]:
    page = get_store().query(keys.member_of_user_gsi(user_id), index=keys.GSI1, limit=limit, start_key=start_key)
    return [Membership.model_validate(item) for item in page.items], page.last_key


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
        member = get_store().get(keys.member_key(ws, principal.user_id))
        return ([Membership.model_validate(member)] if member else []), None
    workspace, key = get_store().get_many([keys.workspace_key(ws), keys.api_key_key(ws, principal.token_id)])
    if workspace is None or workspace.get("deleted_at") or key is None:
        return [], None
    agent = Membership(
        workspace_id=ws, workspace_name=workspace["name"], user_id=None, role=Role.member, joined_at=key["created_at"]
    )
    return [agent], None


def update_workspace(
    access: Access, body: WorkspaceUpdate, if_match: int | None = None, request_id: str = ""
) -> Workspace:
    """Optimistic: a stale `version` (or If-Match) is a 412 and nothing is written."""
    ws = access.workspace_id
    current = load_workspace(ws)
    expected = body.version or if_match
    if expected is not None and expected != current["version"]:
        raise PreconditionFailed(
            f"the workspace is at version {current['version']}, not {expected}", current_version=current["version"]
        )
    changes: dict[str, Any] = body.model_dump(exclude_none=True, exclude={"version"})
    if not changes:
        return Workspace.model_validate(current)
    fields = sorted(changes)
    changes["updated_at"] = iso()
    changes["version"] = current["version"] + 1
    tx = access.transaction()
    tx.update(
        keys.workspace_key(ws),
        Update(set=changes),
        exists() & attr_eq("version", current["version"]) & not_deleted(),
    )
    audit.record(tx, ws, access.actor_id, "workspace.updated", "workspace", ws, request_id, {"fields": fields})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise PreconditionFailed("the workspace changed while it was being updated; reload and retry") from failure
    if "name" in changes and changes["name"] != current["name"]:
        rename_memberships(ws, changes["name"])
    return Workspace.model_validate({**current, **changes})


def rename_memberships(ws_id: str, name: str) -> None:
    """Carry a new workspace name onto its membership items (what `GET /workspaces` lists).

    Done after the rename commits, one conditional update per member: a crash half way leaves
    some lists showing the old name until the next rename, and nothing else."""
    for member in list(all_members(ws_id)):
        try:
            get_store().update(
                keys.member_key(ws_id, member["user_id"]), Update(set={"workspace_name": name}), exists()
            )
        except ConditionFailed:
            continue  # the member left meanwhile


def delete_workspace(access: Access, request_id: str = "") -> None:
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
    item = get_store().get(keys.workspace_key(ws))
    if item is None:
        raise NotFound("workspace not found")
    if not item.get("deleted_at"):
        others = [m["user_id"] for m in all_members(ws) if m["user_id"] != actor]
        revocations = api_keys.live_key_revocations(ws)
        at = iso()
        tx.update(
            keys.workspace_key(ws),
            Update(set={"deleted_at": at, "deleted_by": access.actor_id, "updated_at": at}),
            exists() & not_deleted(),
        )
        details = {"name": item["name"], "api_keys_revoked": len(revocations)}
        audit.record(tx, ws, access.actor_id, "workspace.deleted", "workspace", ws, request_id, details)
        for revocation in revocations:
            # The caller's own token is already the transaction's first operation: its key goes later.
            fits = len(tx.operations) + len(revocation.operations) <= MAX_TRANSACTION_ITEMS
            if fits and access.principal.token_hash not in revocation.token_hashes:
                tx.operations.extend(revocation.operations)
        room = MAX_TRANSACTION_ITEMS - len(tx.operations)
        for user_id in others[:room]:
            tx.delete(keys.member_key(ws, user_id))
        try:
            access.commit(tx)
        except TransactionFailed as failure:
            # A concurrent DELETE won: fall through and finish its cleanup.
            if failure_reason(failure, 2) != "ConditionalCheckFailed":
                raise Conflict("the workspace changed while it was being deleted; try again") from failure
    _revoke_keys(ws)
    _remove_memberships(ws, keep_last=actor)


def _revoke_keys(ws_id: str) -> None:
    """Revoke the keys the first transaction had no room for, one key per transaction."""
    for revocation in api_keys.live_key_revocations(ws_id):
        tx = get_store().transaction()
        tx.operations.extend(revocation.operations)
        try:
            tx.commit()
        except TransactionFailed as failure:
            # The key changed meanwhile (rotated, revoked): the owner's retry of the DELETE finds it.
            raise Conflict("a key changed while the workspace was being deleted; repeat the DELETE") from failure


def _remove_memberships(ws_id: str, keep_last: str | None) -> None:
    while True:
        page = get_store().query(keys.ws_pk(ws_id), sk_prefix=keys.MEMBER_PREFIX, limit=100, consistent=True)
        doomed = [m["user_id"] for m in page.items if m["user_id"] != keep_last]
        if not doomed:
            break
        tx = get_store().transaction()
        for user_id in doomed:
            tx.delete(keys.member_key(ws_id, user_id))
        tx.commit()
    if keep_last:
        get_store().delete(keys.member_key(ws_id, keep_last))


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


def _env_item(ws_id: str) -> dict[str, Any] | None:
    return get_store().get(keys.common_env_key(ws_id))


def _open_env(item: dict[str, Any] | None, ws_id: str) -> dict[str, str]:
    if not item or not item.get("sealed"):
        return {}
    values: dict[str, str] = json.loads(crypto.unseal(item["sealed"], ws_id))
    return values


def _env_view(item: dict[str, Any] | None, values: dict[str, str], reveal: bool) -> CommonEnv:
    meta: dict[str, dict[str, str]] = (item or {}).get("variables", {})
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
        version=int((item or {}).get("version", 0)),
        updated_at=(item or {}).get("updated_at"),
    )


def common_env_values(ws_id: str) -> dict[str, str]:
    """The plaintext variables, for the runs that hand them to agents (never for a response)."""
    return _open_env(_env_item(ws_id), ws_id)


def get_common_env(access: Access, reveal: bool = False, request_id: str = "") -> CommonEnv:
    ws = access.workspace_id
    if reveal:
        access.require("secrets:read")
    item = _env_item(ws)
    values = _open_env(item, ws)
    if reveal and values:
        tx = access.transaction()
        audit.record(
            tx, ws, access.actor_id, "common_env.revealed", "common_env", ws, request_id, {"names": sorted(values)}
        )
        access.commit(tx)
    return _env_view(item, values, reveal)


def _write_env(
    access: Access,
    item: dict[str, Any] | None,
    values: dict[str, str],
    meta: dict[str, dict[str, str]],
    action: str,
    details: dict[str, Any],
    request_id: str,
) -> dict[str, Any] | None:
    ws = access.workspace_id
    at = iso()
    version = int(item["version"]) if item else 0
    guard = attr_eq("version", version) if item else not_exists()
    tx = access.transaction()
    new_item: dict[str, Any] | None = None
    if values:
        new_item = {
            **keys.common_env_key(ws),
            keys.ENTITY: "common_env",
            "workspace_id": ws,
            "sealed": crypto.seal(json.dumps(values, separators=(",", ":")), ws),
            "variables": meta,
            "version": version + 1,
            "updated_at": at,
            "updated_by": access.actor_id,
        }
        tx.put(new_item, guard)
    else:
        tx.delete(keys.common_env_key(ws), guard)
    audit.record(tx, ws, access.actor_id, action, "common_env", ws, request_id, details)
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise PreconditionFailed("the common env changed while it was being written; reload and retry") from failure
    return new_item


def put_common_env(access: Access, body: CommonEnvPut, if_match: int | None = None, request_id: str = "") -> CommonEnv:
    ws = access.workspace_id
    load_workspace(ws)
    item = _env_item(ws)
    current_version = int(item["version"]) if item else 0
    expected = body.version if body.version is not None else if_match
    if expected is not None and expected != current_version:
        raise PreconditionFailed(
            f"the common env is at version {current_version}, not {expected}", current_version=current_version
        )
    values = _open_env(item, ws)
    meta: dict[str, dict[str, str]] = dict((item or {}).get("variables", {}))
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
        return _env_view(item, values, reveal=False)
    at = iso()
    for name in changed:
        values[name] = body.variables[name]
        meta[name] = {"updated_at": at, "updated_by": access.actor_id}
    new_item = _write_env(
        access, item, values, meta, "common_env.updated", {"set": changed, "removed": removed}, request_id
    )
    return _env_view(new_item, values, reveal=False)


def delete_common_env(access: Access, name: str | None = None, request_id: str = "") -> None:
    ws = access.workspace_id
    load_workspace(ws)
    item = _env_item(ws)
    values = _open_env(item, ws)
    meta: dict[str, dict[str, str]] = dict((item or {}).get("variables", {}))
    if name is not None:
        if name not in values:
            raise NotFound(f"no common env variable named {name}")
        values.pop(name)
        meta.pop(name, None)
        _write_env(access, item, values, meta, "common_env.deleted", {"removed": [name]}, request_id)
        return
    if item is None:
        return
    _write_env(access, item, {}, {}, "common_env.cleared", {"removed": sorted(values)}, request_id)

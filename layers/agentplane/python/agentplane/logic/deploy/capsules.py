"""Capsules (an OpenTofu/Terraform root module: its source, tool and version), their provider
bindings, and the workspace's deploy policy.

A binding names a provider and a connection. Its resolution is never stored: it is worked out each
time a capsule is shown, from the deploy policy and the bound connections as they are now (read
together in one BatchGetItem), so a deleted connection or a changed policy shows at once. A binding
resolves only when its connection exists, is of the provider it is bound for, and the policy
allows both; plans of a capsule with any other binding are refused (logic.deploy.runs).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from agentplane import keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.base import Entity
from agentplane.entities.deploy import CapsuleItem, ConnectionItem, DeployPolicyItem, capsules_of_workspace
from agentplane.entities.projects import ProjectItem
from agentplane.errors import Conflict, NotFound, PreconditionFailed, Unprocessable
from agentplane.ids import iso, new_id
from agentplane.logic.deploy.connections import CONNECTION_ID
from agentplane.models.deploy import (
    Binding,
    BindingsPut,
    Capsule,
    CapsuleBindings,
    CapsuleCreate,
    CapsuleUpdate,
    DeployPolicy,
    DeployPolicyPut,
    Resolution,
)
from agentplane.store import TransactionFailed, get_store

# Ids as minted (`agentplane.ids.new_id`): anything else names no capsule and is never looked up.
CAPSULE_ID = re.compile(r"^cap_[0-9a-z]{26}$")
# The condition check that a capsule's project is live (failing there: a 404 for the project).
_PROJECT = "project"


def load(ws: str, capsule_id: str) -> CapsuleItem:
    """The capsule, or a 404 problem."""
    capsule = get_store().read(CapsuleItem, keys.capsule_key(ws, capsule_id)) if CAPSULE_ID.match(capsule_id) else None
    if capsule is None:
        raise NotFound(f"capsule {capsule_id} not found")
    return capsule


# --- resolution ----------------------------------------------------------------------------------


def resolve(
    bindings: Sequence[Mapping[str, Any]], policy: DeployPolicyItem | None, connections: Mapping[str, ConnectionItem]
) -> tuple[list[Binding], dict[str, ConnectionItem]]:
    """Each binding as it stands under `policy` (None: no policy, everything allowed) with the
    workspace's `connections` by id (a connection not there is gone), and the connections of
    the bindings that resolve."""
    shown: list[Binding] = []
    usable: dict[str, ConnectionItem] = {}
    for binding in bindings:
        provider, connection_id = str(binding["provider"]), str(binding["connection_id"])
        connection = connections.get(connection_id)
        detail: str | None = None
        if connection is None or connection.provider != provider:
            resolution = Resolution.blocked_missing_connection
            detail = f"no {provider} connection {connection_id} exists in this workspace"
        elif policy is not None and (detail := policy.blocks(provider, connection_id)) is not None:
            resolution = Resolution.blocked_policy
        else:
            resolution = Resolution.resolved_provider_connection
            usable[connection_id] = connection
        shown.append(Binding(provider=provider, connection_id=connection_id, resolution=resolution, detail=detail))
    return shown, usable


def _read_for_resolving(
    ws: str, connection_ids: Sequence[str]
) -> tuple[DeployPolicyItem | None, dict[str, ConnectionItem]]:
    """The policy and the connections of `connection_ids` that exist, in one BatchGetItem (more
    only past its 100 keys, which only a list of many capsules bound to many connections reaches:
    the store splits them)."""
    ids = sorted({connection_id for connection_id in connection_ids if CONNECTION_ID.match(connection_id)})
    wanted: list[tuple[type[Entity], keys.Key]] = [(DeployPolicyItem, keys.deploy_policy_key(ws))]
    wanted += [(ConnectionItem, keys.connection_key(ws, connection_id)) for connection_id in ids]
    found = get_store().read_each(wanted)
    connections = {
        connection_id: connection
        for connection_id, item in zip(ids, found[1:], strict=True)
        if (connection := ConnectionItem.found(item)) is not None
    }
    return DeployPolicyItem.found(found[0]), connections


def resolve_bindings(ws: str, capsule: CapsuleItem) -> tuple[list[Binding], dict[str, ConnectionItem]]:
    """The capsule's bindings as resolved now, and the connections of those that resolve by id."""
    if not capsule.bindings:
        return [], {}
    policy, connections = _read_for_resolving(ws, [binding["connection_id"] for binding in capsule.bindings])
    return resolve(capsule.bindings, policy, connections)


def to_capsule(ws: str, capsule: CapsuleItem) -> Capsule:
    """The capsule as the API shows it, its bindings resolved now."""
    bindings, _ = resolve_bindings(ws, capsule)
    return capsule.to_model(bindings)


def _to_capsules(ws: str, capsules: Sequence[CapsuleItem]) -> list[Capsule]:
    """Capsules as the API shows them, every binding resolved from one read."""
    bound = [binding["connection_id"] for capsule in capsules for binding in capsule.bindings]
    if not bound:
        return [capsule.to_model([]) for capsule in capsules]
    policy, connections = _read_for_resolving(ws, bound)
    return [capsule.to_model(resolve(capsule.bindings, policy, connections)[0]) for capsule in capsules]


# --- capsules ------------------------------------------------------------------------------------


def create_capsule(access: Access, body: CapsuleCreate) -> Capsule:
    """A new capsule, unbound; a `project_id` must name a live project of the workspace (checked
    in the create's own transaction)."""
    ws = access.workspace_id
    _require_auto_apply_scope(access, body.auto_apply)
    at = iso()
    capsule = CapsuleItem(
        workspace_id=ws,
        id=new_id("cap"),
        **body.model_dump(mode="json"),
        bindings=[],
        created_by=access.actor_id,
        created_at=at,
        updated_at=at,
    )
    tx = access.transaction()
    if body.project_id is not None:
        tx.require(ProjectItem, keys.project_key(ws, body.project_id), ProjectItem.live(), name=_PROJECT)
    tx.create(capsule)
    details = {"name": body.name, "tool": capsule.tool, "project_id": body.project_id}
    access.audit(tx, "capsule.created", "capsule", capsule.id, details)
    try:
        access.commit(tx)
    except TransactionFailed as refused:
        if refused.failed == _PROJECT:
            raise NotFound(f"project {body.project_id} not found") from refused
        raise
    return capsule.to_model([])


def _require_auto_apply_scope(access: Access, auto_apply: bool | None) -> None:
    """Turning `auto_apply` on lets every plan apply without a person: it takes `deploy:apply`,
    as approving a plan does."""
    if auto_apply:
        access.require("deploy:apply")


def get_capsule(access: Access, capsule_id: str) -> Capsule:
    ws = access.workspace_id
    return to_capsule(ws, load(ws, capsule_id))


def list_capsules(access: Access, *, limit: int, cursor: str | None) -> tuple[list[Capsule], str | None]:
    """Oldest first."""
    ws = access.workspace_id
    scope = f"capsules:{ws}"
    page = capsules_of_workspace(ws, limit=limit, start=decode_cursor(cursor, scope, {}))
    return _to_capsules(ws, page.items), encode_cursor(page.last_key, scope, {})


def update_capsule(access: Access, capsule_id: str, body: CapsuleUpdate, if_match: int | None = None) -> Capsule:
    ws = access.workspace_id
    _require_auto_apply_scope(access, body.auto_apply)
    current = load(ws, capsule_id)
    expected = body.version or if_match
    if expected is not None and expected != current.version:
        raise PreconditionFailed(
            f"capsule {capsule_id} is at version {current.version}, not {expected}", current_version=current.version
        )
    changes: dict[str, Any] = body.model_dump(mode="json", exclude_none=True, exclude={"version"})
    tx = access.transaction()
    tx.change(current, current.assign(**changes, updated_at=iso()))
    access.audit(tx, "capsule.updated", "capsule", capsule_id, {"fields": sorted(changes)})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise PreconditionFailed(f"capsule {capsule_id} changed while it was being updated; retry") from failure
    return to_capsule(ws, current)


def put_bindings(access: Access, capsule_id: str, body: BindingsPut) -> CapsuleBindings:
    """Replace the capsule's bindings. A binding to a connection of another provider is bad input
    (422); one to a connection that does not exist, or that the policy refuses, is stored and
    answered blocked, as it would be if the connection went or the policy changed later."""
    ws = access.workspace_id
    if not CAPSULE_ID.match(capsule_id):
        raise NotFound(f"capsule {capsule_id} not found")
    ids = sorted({b.connection_id for b in body.bindings if CONNECTION_ID.match(b.connection_id)})
    found_capsule, found_policy, *found = get_store().read_each(
        [
            (CapsuleItem, keys.capsule_key(ws, capsule_id)),
            (DeployPolicyItem, keys.deploy_policy_key(ws)),
            *[(ConnectionItem, keys.connection_key(ws, connection_id)) for connection_id in ids],
        ]
    )
    capsule = CapsuleItem.found(found_capsule)
    if capsule is None:
        raise NotFound(f"capsule {capsule_id} not found")
    connections = {
        connection_id: connection
        for connection_id, item in zip(ids, found, strict=True)
        if (connection := ConnectionItem.found(item)) is not None
    }
    mismatched = [
        {
            "field": f"bindings.{index}.connection_id",
            "message": f"connection {b.connection_id} is a {connections[b.connection_id].provider} connection, "
            f"not {b.provider}",
        }
        for index, b in enumerate(body.bindings)
        if b.connection_id in connections and connections[b.connection_id].provider != b.provider
    ]
    if mismatched:
        raise Unprocessable("a binding names a connection of another provider", errors=mismatched)
    bindings = [{"provider": b.provider, "connection_id": b.connection_id} for b in body.bindings]
    tx = access.transaction()
    tx.change(capsule, capsule.assign(bindings=bindings, updated_at=iso()))
    access.audit(tx, "capsule.bindings_updated", "capsule", capsule_id, {"bindings": bindings})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise Conflict(f"capsule {capsule_id} changed while its bindings were being written; retry") from failure
    shown, _ = resolve(bindings, DeployPolicyItem.found(found_policy), connections)
    return CapsuleBindings(bindings=shown)


# --- policy --------------------------------------------------------------------------------------


def get_policy(access: Access) -> DeployPolicy:
    """The workspace's deploy policy; none set is the empty default, which allows everything."""
    ws = access.workspace_id
    policy = get_store().read(DeployPolicyItem, keys.deploy_policy_key(ws))
    return policy.to_model() if policy is not None else DeployPolicy(workspace_id=ws)


def put_policy(access: Access, body: DeployPolicyPut, if_match: int | None = None) -> DeployPolicy:
    """Replace the policy (over the version read: a concurrent PUT makes one of them fail)."""
    ws = access.workspace_id
    current = get_store().read(DeployPolicyItem, keys.deploy_policy_key(ws))
    stored_version = int(current.version or 0) if current is not None else 0
    expected = body.version or if_match
    if expected is not None and expected != stored_version:
        raise PreconditionFailed(
            f"the deploy policy is at version {stored_version}, not {expected}", current_version=stored_version
        )
    policy = current if current is not None else DeployPolicyItem(workspace_id=ws)
    providers, by_provider = body.allowed_providers, body.allowed_connections
    policy.allowed_providers = list(dict.fromkeys(providers)) if providers is not None else None
    policy.allowed_connections = (
        {name: list(dict.fromkeys(ids)) for name, ids in by_provider.items()} if by_provider is not None else None
    )
    policy.updated_by = access.actor_id
    policy.updated_at = iso()
    tx = access.transaction()
    tx.save(policy)
    details = {"allowed_providers": policy.allowed_providers, "allowed_connections": policy.allowed_connections}
    access.audit(tx, "deploy_policy.updated", "deploy_policy", ws, details)
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise PreconditionFailed("the deploy policy changed while it was being written; reload and retry") from failure
    return policy.to_model()

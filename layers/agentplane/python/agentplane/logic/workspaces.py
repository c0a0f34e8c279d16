"""Workspaces: the tenant boundary. Everything a team owns hangs off one workspace id."""

from __future__ import annotations

from typing import Any

from agentplane import audit, keys
from agentplane.auth.principal import Principal
from agentplane.auth.scopes import Role
from agentplane.errors import Forbidden, NotFound
from agentplane.ids import iso, new_id
from agentplane.models.workspaces import Membership, Workspace, WorkspaceCreate
from agentplane.store import get_store, not_exists


def member_item(ws_id: str, ws_name: str, user_id: str, role: Role, at: str) -> dict[str, Any]:
    return {
        **keys.member_key(ws_id, user_id),
        keys.ENTITY: "member",
        keys.GSI1PK: keys.member_of_user_gsi(user_id),
        keys.GSI1SK: f"{keys.WS}{ws_id}",
        "workspace_id": ws_id,
        "workspace_name": ws_name,
        "user_id": user_id,
        "role": role.value,
        "joined_at": at,
    }


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


def list_memberships(user_id: str, limit: int, start_key: dict[str, Any] | None) -> tuple[list[Membership], Any]:
    page = get_store().query(keys.member_of_user_gsi(user_id), index=keys.GSI1, limit=limit, start_key=start_key)
    return [Membership.model_validate(item) for item in page.items], page.last_key

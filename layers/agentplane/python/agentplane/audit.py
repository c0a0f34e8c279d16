"""Audit events, written in the same transaction as the change they record: a workspace's trail
for what happens in it, and a person's own trail for changes to their account."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentplane.entities.audit import AuditItem
from agentplane.ids import iso, new_id
from agentplane.store import Transaction

# Field names whose values never reach the audit trail.
_SECRET_FIELDS = ("password", "secret", "token", "key", "api_key", "value", "authorization", "credential")


def redact_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for name, value in data.items():
        lowered = name.lower()
        if any(lowered == f or lowered.endswith("_" + f) for f in _SECRET_FIELDS):
            clean[name] = "[redacted]"
        elif isinstance(value, Mapping):
            clean[name] = redact_fields(value)
        else:
            clean[name] = value
    return clean


def new_event(
    workspace_id: str,
    actor_id: str,
    action: str,
    target_type: str,
    target_id: str,
    request_id: str = "",
    details: Mapping[str, Any] | None = None,
    *,
    user_id: str | None = None,
) -> AuditItem:
    """An audit event of `workspace_id` (or, with no workspace, of `user_id`'s own account), its
    details with every secret field masked."""
    return AuditItem(
        id=new_id("aud"),
        workspace_id=workspace_id or None,
        user_id=user_id,
        actor_id=actor_id,
        action=action,
        target_type=target_type,
        target_id=target_id,
        request_id=request_id,
        details=redact_fields(details or {}),
        created_at=iso(),
    )


def audit_item(
    workspace_id: str,
    actor_id: str,
    action: str,
    target_type: str,
    target_id: str,
    request_id: str = "",
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A workspace's audit event as the table holds it (for writes still built from plain items)."""
    event = new_event(workspace_id, actor_id, action, target_type, target_id, request_id, details)
    event.stamp()
    return event.as_item()


def record(
    tx: Transaction,
    workspace_id: str,
    actor_id: str,
    action: str,
    target_type: str,
    target_id: str,
    request_id: str = "",
    details: Mapping[str, Any] | None = None,
) -> None:
    tx.save(new_event(workspace_id, actor_id, action, target_type, target_id, request_id, details))


def record_account(
    tx: Transaction,
    user_id: str,
    action: str,
    target_type: str,
    target_id: str,
    request_id: str = "",
    details: Mapping[str, Any] | None = None,
) -> None:
    """An audit event of a change to a person's own account (tokens, profile, sessions): it
    belongs to no workspace, so it goes to the person's own trail, in the same transaction."""
    tx.save(new_event("", user_id, action, target_type, target_id, request_id, details, user_id=user_id))

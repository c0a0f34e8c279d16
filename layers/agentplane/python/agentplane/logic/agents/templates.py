"""Agent templates: the role, model, engine and prompt an agent can be created from. A template's
slug is unique among the workspace's live templates (a guard item written with it); deleting a
template is soft: it leaves the list and its slug is free again, the audit trail remains."""

from __future__ import annotations

import json
import re
from typing import Any

from agentplane import keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.agents import AgentTemplateItem, AgentTemplateSlugItem, templates_of_workspace
from agentplane.errors import Conflict, NotFound, PreconditionFailed, Unprocessable
from agentplane.ids import iso, new_id
from agentplane.models.agents import AgentTemplate, AgentTemplateCreate, AgentTemplateUpdate
from agentplane.store import TransactionFailed, get_store

MAX_TEMPLATE_CONFIG_BYTES = 8192
_CLEARABLE = (
    "icon", "category", "role", "model", "engine", "execution_mode", "system_prompt", "identity", "interval_sec",
)  # fmt: skip
_SLUG_CHARS = re.compile(r"[^a-z0-9]+")


def _slugify(name: str) -> str:
    slug = _SLUG_CHARS.sub("-", name.lower()).strip("-")[:64].strip("-")
    return slug or "template"


def _check_config(config: dict[str, Any] | None) -> None:
    if config is not None and len(json.dumps(config, default=str)) > MAX_TEMPLATE_CONFIG_BYTES:
        raise Unprocessable(
            f"config holds at most {MAX_TEMPLATE_CONFIG_BYTES} bytes of JSON",
            errors=[{"field": "config", "message": "too large"}],
        )


def load_template(ws: str, template_id: str, field: str | None = None) -> AgentTemplateItem:
    """A live template; unknown or deleted, a 404 (or a 422 naming `field`, when a body names it)."""
    template = get_store().read(AgentTemplateItem, keys.agent_template_key(ws, template_id))
    if template is None or template.deleted_at:
        if field:
            raise Unprocessable(
                f"unknown agent template {template_id}", errors=[{"field": field, "message": "no such template"}]
            )
        raise NotFound(f"agent template {template_id} not found")
    return template


def _slug_guard(ws: str, slug: str, template_id: str) -> AgentTemplateSlugItem:
    return AgentTemplateSlugItem(workspace_id=ws, slug=slug, template_id=template_id)


def create_template(access: Access, body: AgentTemplateCreate) -> AgentTemplate:
    ws = access.workspace_id
    _check_config(body.config)
    slug = body.slug or _slugify(body.name)
    at = iso()
    template = AgentTemplateItem(
        workspace_id=ws,
        id=new_id("atpl"),
        **body.model_dump(exclude_none=True, exclude={"slug"}),
        slug=slug,
        created_by=access.actor_id,
        created_at=at,
        updated_at=at,
    )
    tx = access.transaction()
    tx.create(template)
    tx.create(_slug_guard(ws, slug, template.id), name="slug")
    access.audit(tx, "agent_template.created", "agent_template", template.id, {"slug": slug})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed == "slug":
            raise Conflict(f"an agent template with slug {slug} already exists") from failure
        raise
    return template.to_model()


def get_template(access: Access, template_id: str) -> AgentTemplate:
    return load_template(access.workspace_id, template_id).to_model()


def list_templates(
    access: Access, *, category: str | None, featured: bool | None, limit: int, cursor: str | None
) -> tuple[list[AgentTemplate], str | None]:
    """Live templates in creation order."""
    ws = access.workspace_id
    query = {"category": category, "featured": featured}
    scope = f"agent-templates:{ws}"
    start = decode_cursor(cursor, scope, query)
    page = templates_of_workspace(ws, category=category, featured=featured, limit=limit, start=start)
    return [template.to_model() for template in page.items], encode_cursor(page.last_key, scope, query)


def update_template(
    access: Access, template_id: str, body: AgentTemplateUpdate, if_match: int | None = None
) -> AgentTemplate:
    ws = access.workspace_id
    template = load_template(ws, template_id)
    expected = body.version or if_match
    if expected is not None and expected != template.version:
        raise PreconditionFailed(
            f"agent template {template_id} is at version {template.version}, not {expected}",
            current_version=template.version,
        )
    _check_config(body.config)
    changes = body.model_dump(exclude_none=True, exclude={"version"})
    cleared = [
        f
        for f in _CLEARABLE
        if f in body.model_fields_set and getattr(body, f) is None and getattr(template, f) is not None
    ]
    if not changes and not cleared:
        return template.to_model()
    old_slug, new_slug = template.slug, changes.get("slug")
    tx = access.transaction()
    actions = template.assign(**changes, **dict.fromkeys(cleared), updated_at=iso())
    tx.change(template, actions, AgentTemplateItem.deleted_at.does_not_exist())
    if new_slug and new_slug != old_slug:
        tx.discard(AgentTemplateSlugItem, keys.agent_template_slug_key(ws, old_slug))
        tx.create(_slug_guard(ws, new_slug, template_id), name="slug")
    access.audit(tx, "agent_template.updated", "agent_template", template_id, {"fields": sorted({*changes, *cleared})})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed == "slug":
            raise Conflict(f"an agent template with slug {new_slug} already exists") from failure
        raise PreconditionFailed(
            f"agent template {template_id} changed while it was being updated; reload and retry"
        ) from failure
    return template.to_model()


def delete_template(access: Access, template_id: str) -> None:
    """Soft delete: it leaves the list and its slug is free again; the audit trail remains."""
    ws = access.workspace_id
    template = load_template(ws, template_id)
    tx = access.transaction()
    deleted = template.assign(deleted_at=iso())
    tx.adjust(
        AgentTemplateItem, template.key, [*deleted, *template.restamp()], AgentTemplateItem.deleted_at.does_not_exist()
    )
    tx.discard(AgentTemplateSlugItem, keys.agent_template_slug_key(ws, template.slug))
    access.audit(tx, "agent_template.deleted", "agent_template", template_id)
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise NotFound(f"agent template {template_id} not found") from failure

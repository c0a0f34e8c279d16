"""A project's managed docs, addressed by slug.

A doc item holds the doc's metadata and the SHA-256 of its content; the content itself is stored
once per distinct value in an immutable body item. Snapshots therefore capture docs by reference,
stay small, and a restore only has to point docs back at bodies that still exist.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from typing import Any

from agentplane import audit, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.errors import Conflict, NotFound, PreconditionFailed, Unprocessable
from agentplane.ids import iso
from agentplane.logic.projects import (
    PROJECT_ID,
    changelog_item,
    check_version,
    live,
    load_live_project,
    maintenance_run_item,
    project_is_live,
    queue_maintenance_run,
)
from agentplane.models.projects import (
    MAX_DOCS_PER_PROJECT,
    RESERVED_SLUGS,
    SLUG_PATTERN,
    MaintenanceAction,
    MaintenanceRun,
    ProjectDoc,
    ProjectDocPut,
    ProjectDocSummary,
)
from agentplane.store import (
    ConditionFailed,
    Expr,
    Item,
    TransactionFailed,
    Update,
    attr_eq,
    exists,
    get_store,
    not_exists,
)

_SLUG = re.compile(SLUG_PATTERN)


def content_digest(content: str) -> tuple[str, int]:
    raw = content.encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest(), len(raw)


def load_docs(ws: str, project_id: str) -> list[Item]:
    """Every doc of a project (bounded by the per-project limit, so one query reads them all)."""
    page = get_store().query(
        keys.project_pk(ws, project_id), sk_prefix=keys.DOC_PREFIX, limit=MAX_DOCS_PER_PROJECT, consistent=True
    )
    return page.items


def doc_item(ws: str, project_id: str, slug: str, fields: dict[str, Any]) -> Item:
    return {
        **keys.doc_key(ws, project_id, slug),
        keys.ENTITY: "doc",
        "workspace_id": ws,
        "project_id": project_id,
        "slug": slug,
        **fields,
    }


def store_body(ws: str, project_id: str, content: str) -> tuple[str, int]:
    """Write the content's body item unless it is already stored; returns (sha256, size)."""
    digest, size = content_digest(content)
    body = {
        **keys.doc_body_key(ws, project_id, digest),
        keys.ENTITY: "doc_body",
        "workspace_id": ws,
        "project_id": project_id,
        "content_sha256": digest,
        "size_bytes": size,
        "content": content,
        "created_at": iso(),
    }
    # Bodies are immutable and named by their hash: an existing one is already right. One left
    # behind by a failed write is unreferenced and harmless.
    with contextlib.suppress(ConditionFailed):
        get_store().put(body, not_exists())
    return digest, size


def load_bodies(ws: str, project_id: str, digests: list[str]) -> dict[str, str]:
    wanted = sorted(set(digests))
    found = get_store().get_many([keys.doc_body_key(ws, project_id, d) for d in wanted])
    return {d: item["content"] for d, item in zip(wanted, found, strict=True) if item is not None}


def list_docs(
    access: Access, project_id: str, *, limit: int, cursor: str | None
) -> tuple[list[ProjectDocSummary], str | None]:
    ws = access.workspace_id
    load_live_project(ws, project_id)
    scope = f"docs:{ws}:{project_id}"
    page = get_store().query(
        keys.project_pk(ws, project_id),
        sk_prefix=keys.DOC_PREFIX,
        limit=limit,
        start_key=decode_cursor(cursor, scope, {}),
    )
    return [ProjectDocSummary.model_validate(item) for item in page.items], encode_cursor(page.last_key, scope, {})


def get_doc(access: Access, project_id: str, slug: str) -> ProjectDoc:
    ws = access.workspace_id
    if not (PROJECT_ID.match(project_id) and _SLUG.match(slug)):
        load_live_project(ws, project_id)  # an unknown project is its own 404
        raise NotFound(f"doc {slug} not found")
    # The project and the doc in one BatchGetItem; a doc of a deleted project is gone with it.
    project, item = get_store().get_many([keys.project_key(ws, project_id), keys.doc_key(ws, project_id, slug)])
    if project is None or project.get("deleted_at"):
        raise NotFound(f"project {project_id} not found")
    if item is None:
        raise NotFound(f"doc {slug} not found")
    content = load_bodies(ws, project_id, [item["content_sha256"]]).get(item["content_sha256"])
    if content is None:  # pragma: no cover - bodies are never deleted
        raise NotFound(f"the content of doc {slug} is missing")
    return ProjectDoc.model_validate({**item, "content": content})


def _check_slug(slug: str) -> None:
    if not _SLUG.match(slug):
        raise Unprocessable(
            "the doc slug is invalid",
            errors=[{"field": "slug", "message": f"must match {SLUG_PATTERN}", "type": "string_pattern_mismatch"}],
        )
    if slug in RESERVED_SLUGS:
        raise Unprocessable(
            f"'{slug}' is reserved", errors=[{"field": "slug", "message": "reserved name", "type": "value_error"}]
        )


def put_doc(
    access: Access, project_id: str, slug: str, body: ProjectDocPut, if_match: int | None = None, request_id: str = ""
) -> tuple[ProjectDoc, bool]:
    """Create or replace a doc; returns the doc and whether it was created."""
    _check_slug(slug)
    ws = access.workspace_id
    project = load_live_project(ws, project_id)
    current = get_store().get(keys.doc_key(ws, project_id, slug))
    expected = body.version or if_match
    if current is None and expected is not None:
        raise PreconditionFailed(f"doc {slug} does not exist, so it is not at version {expected}")
    if current is not None:
        check_version("doc", slug, current["version"], expected)
    digest, size = content_digest(body.content)
    if current is not None and (current["content_sha256"], current["title"], current.get("stale")) == (
        digest,
        body.title,
        False,
    ):
        return ProjectDoc.model_validate({**current, "content": body.content}), False
    store_body(ws, project_id, body.content)
    at = iso()
    fields = {
        "title": body.title,
        "content_sha256": digest,
        "size_bytes": size,
        "stale": False,
        "updated_by": access.actor_id,
        "updated_at": at,
    }
    tx = access.transaction()
    project_index = len(tx.operations)
    if current is None:
        item = doc_item(ws, project_id, slug, {**fields, "version": 1, "created_by": access.actor_id, "created_at": at})
        # The project counts its docs, which bounds them (and so every snapshot and restore).
        tx.update(
            keys.project_key(ws, project_id),
            Update(add={"doc_count": 1}),
            live() & Expr("#dc < :max_docs", {"#dc": "doc_count"}, {":max_docs": MAX_DOCS_PER_PROJECT}),
        )
        tx.put(item, not_exists())
    else:
        item = {**current, **fields, "version": current["version"] + 1}
        tx.check(keys.project_key(ws, project_id), live())
        tx.update(
            keys.doc_key(ws, project_id, slug),
            Update(set={**fields, "version": item["version"]}),
            exists() & attr_eq("version", current["version"]),
        )
    event = "doc.created" if current is None else "doc.updated"
    verb = "added" if current is None else "updated"
    tx.put(
        changelog_item(
            ws, project_id, event, f"Doc {body.title} {verb}", access.actor_id, ("doc", slug), f"{slug}: {size} bytes"
        )
    )
    audit.record(tx, ws, access.actor_id, event, "doc", f"{project_id}/{slug}", request_id, {"project_id": project_id})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if not project_is_live(ws, project_id):
            raise NotFound(f"project {project_id} not found") from failure
        if current is None and failure.failed_index() == project_index:
            raise Conflict(
                f"project {project['name']} already has {MAX_DOCS_PER_PROJECT} docs, the most it can hold"
            ) from failure
        raise PreconditionFailed(f"doc {slug} changed while it was being written; reload and retry") from failure
    return ProjectDoc.model_validate({**item, "content": body.content}), current is None


def regenerate_docs(access: Access, project_id: str, request_id: str = "") -> MaintenanceRun:
    """Mark every doc stale and queue a maintenance run that regenerates them."""
    ws = access.workspace_id
    project = load_live_project(ws, project_id)
    docs = load_docs(ws, project_id)
    run = maintenance_run_item(access, project, MaintenanceAction.regenerate_docs)
    tx = access.transaction()
    tx.check(keys.project_key(ws, project_id), live())
    for doc in docs:
        # Not a new version: the content is unchanged until the run writes the regenerated doc.
        tx.update(keys.doc_key(ws, project_id, doc["slug"]), Update(set={"stale": True}), exists())
    tx.put(run, not_exists())
    tx.put(
        changelog_item(
            ws,
            project_id,
            "docs.regenerate_requested",
            f"Regeneration of {len(docs)} doc(s) requested",
            access.actor_id,
            ("run", run["id"]),
        )
    )
    audit.record(
        tx,
        ws,
        access.actor_id,
        "project.maintenance_requested",
        "project",
        project_id,
        request_id,
        {"action": MaintenanceAction.regenerate_docs.value, "run_id": run["id"], "docs": len(docs)},
    )
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if not project_is_live(ws, project_id):
            raise NotFound(f"project {project_id} not found") from failure
        raise Conflict("the project's docs changed while marking them stale; retry") from failure
    return queue_maintenance_run(access, run, request_id)

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

from agentplane import keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.projects import DocBodyItem, DocItem, ProjectItem, docs_of_project, every_doc
from agentplane.errors import Conflict, NotFound, PreconditionFailed, Unprocessable
from agentplane.ids import iso
from agentplane.logic.projects import (
    PROJECT_ID,
    add_draft_run,
    changelog_entry,
    check_version,
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
from agentplane.store import ConditionFailed, TransactionFailed, get_store

_SLUG = re.compile(SLUG_PATTERN)


def content_digest(content: str) -> tuple[str, int]:
    raw = content.encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest(), len(raw)


def load_docs(ws: str, project_id: str) -> list[DocItem]:
    """Every doc of a project (bounded by the per-project limit, so one query reads them all)."""
    return every_doc(ws, project_id, at_most=MAX_DOCS_PER_PROJECT)


def store_body(ws: str, project_id: str, content: str) -> tuple[str, int]:
    """Write the content's body item unless it is already stored; returns (sha256, size)."""
    digest, size = content_digest(content)
    body = DocBodyItem(
        workspace_id=ws,
        project_id=project_id,
        content_sha256=digest,
        size_bytes=size,
        content=content,
        created_at=iso(),
    )
    # Bodies are immutable and named by their hash: an existing one is already right. One left
    # behind by a failed write is unreferenced and harmless.
    with contextlib.suppress(ConditionFailed):
        get_store().create(body)
    return digest, size


def load_bodies(ws: str, project_id: str, digests: list[str]) -> dict[str, str]:
    wanted = sorted(set(digests))
    found = get_store().read_many(DocBodyItem, [keys.doc_body_key(ws, project_id, d) for d in wanted])
    return {d: body.content for d, body in zip(wanted, found, strict=True) if body is not None}


def list_docs(
    access: Access, project_id: str, *, limit: int, cursor: str | None
) -> tuple[list[ProjectDocSummary], str | None]:
    ws = access.workspace_id
    load_live_project(ws, project_id)
    scope = f"docs:{ws}:{project_id}"
    page = docs_of_project(ws, project_id, limit=limit, start=decode_cursor(cursor, scope, {}))
    return [doc.to_model() for doc in page.items], encode_cursor(page.last_key, scope, {})


def get_doc(access: Access, project_id: str, slug: str) -> ProjectDoc:
    ws = access.workspace_id
    if not (PROJECT_ID.match(project_id) and _SLUG.match(slug)):
        load_live_project(ws, project_id)  # an unknown project is its own 404
        raise NotFound(f"doc {slug} not found")
    # The project and the doc in one BatchGetItem; a doc of a deleted project is gone with it.
    project, doc = get_store().read_each(
        [(ProjectItem, keys.project_key(ws, project_id)), (DocItem, keys.doc_key(ws, project_id, slug))]
    )
    if not isinstance(project, ProjectItem) or project.deleted_at:
        raise NotFound(f"project {project_id} not found")
    if not isinstance(doc, DocItem):
        raise NotFound(f"doc {slug} not found")
    content = load_bodies(ws, project_id, [doc.content_sha256]).get(doc.content_sha256)
    if content is None:  # pragma: no cover - bodies are never deleted
        raise NotFound(f"the content of doc {slug} is missing")
    return doc.with_content(content)


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
    access: Access, project_id: str, slug: str, body: ProjectDocPut, if_match: int | None = None
) -> tuple[ProjectDoc, bool]:
    """Create or replace a doc; returns the doc and whether it was created."""
    _check_slug(slug)
    ws = access.workspace_id
    project = load_live_project(ws, project_id)
    current = get_store().read(DocItem, keys.doc_key(ws, project_id, slug))
    expected = body.version or if_match
    if current is None and expected is not None:
        raise PreconditionFailed(f"doc {slug} does not exist, so it is not at version {expected}")
    if current is not None:
        check_version("doc", slug, current.version, expected)
    digest, size = content_digest(body.content)
    if current is not None and (current.content_sha256, current.title, current.stale) == (digest, body.title, False):
        return current.with_content(body.content), False
    store_body(ws, project_id, body.content)
    at = iso()
    fields: dict[str, Any] = {
        "title": body.title,
        "content_sha256": digest,
        "size_bytes": size,
        "stale": False,
        "updated_by": access.actor_id,
        "updated_at": at,
    }
    tx = access.transaction()
    if current is None:
        doc = DocItem(
            workspace_id=ws, project_id=project_id, slug=slug, **fields, created_by=access.actor_id, created_at=at
        )
        # The project counts its docs, which bounds them (and so every snapshot and restore).
        room = ProjectItem.undeleted() & (ProjectItem.doc_count < MAX_DOCS_PER_PROJECT)
        tx.adjust(ProjectItem, project.key, [ProjectItem.doc_count.add(1)], room, name="project")
        tx.create(doc)
    else:
        doc = current
        tx.require(ProjectItem, project.key, ProjectItem.live(), name="project")
        tx.change(doc, doc.assign(**fields))
    event = "doc.created" if current is None else "doc.updated"
    verb = "added" if current is None else "updated"
    tx.save(
        changelog_entry(
            ws, project_id, event, f"Doc {body.title} {verb}", access.actor_id, ("doc", slug), f"{slug}: {size} bytes"
        )
    )
    access.audit(tx, event, "doc", f"{project_id}/{slug}", {"project_id": project_id})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if not project_is_live(ws, project_id):
            raise NotFound(f"project {project_id} not found") from failure
        if current is None and failure.failed == "project":
            raise Conflict(
                f"project {project.name} already has {MAX_DOCS_PER_PROJECT} docs, the most it can hold"
            ) from failure
        raise PreconditionFailed(f"doc {slug} changed while it was being written; reload and retry") from failure
    return doc.with_content(body.content), current is None


def regenerate_docs(access: Access, project_id: str) -> MaintenanceRun:
    """Mark every doc stale and queue a maintenance run that regenerates them."""
    ws = access.workspace_id
    project = load_live_project(ws, project_id)
    docs = load_docs(ws, project_id)
    run = maintenance_run_item(access, project, MaintenanceAction.regenerate_docs)
    tx = access.transaction()
    tx.require(ProjectItem, project.key, ProjectItem.live())
    for doc in docs:
        # Not a new version: the content is unchanged until the run writes the regenerated doc.
        tx.adjust(DocItem, doc.key, [DocItem.stale.set(True)])
    add_draft_run(tx, run)
    tx.save(
        changelog_entry(
            ws,
            project_id,
            "docs.regenerate_requested",
            f"Regeneration of {len(docs)} doc(s) requested",
            access.actor_id,
            ("run", run["id"]),
        )
    )
    access.audit(
        tx,
        "project.maintenance_requested",
        "project",
        project_id,
        {"action": MaintenanceAction.regenerate_docs.value, "run_id": run["id"], "docs": len(docs)},
    )
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if not project_is_live(ws, project_id):
            raise NotFound(f"project {project_id} not found") from failure
        raise Conflict("the project's docs changed while marking them stale; retry") from failure
    return queue_maintenance_run(access, run)

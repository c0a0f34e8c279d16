"""Project snapshots: capture a project's fields and docs, restore them, compare two states.

A snapshot records the project fields and, per doc, its title and the hash of its content (the
bodies are immutable, see logic/docs.py). Taking a snapshot re-checks in its transaction that the
project and every doc are still at the versions read, so a snapshot is always one consistent state.
"""

from __future__ import annotations

import re
from typing import Any

from agentplane import keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.projects import DocItem, ProjectItem, SnapshotItem, snapshots_of_project
from agentplane.errors import Conflict, NotFound, Unprocessable
from agentplane.ids import iso, new_id
from agentplane.logic.docs import load_bodies, load_docs
from agentplane.logic.projects import (
    NAME_GUARD,
    changelog_entry,
    load_live_project,
    project_fields,
    project_is_live,
    swap_name_guard,
)
from agentplane.models.projects import (
    PROJECT_FIELDS,
    ProjectSnapshot,
    ProjectSnapshotCompare,
    ProjectSnapshotCreate,
    ProjectSnapshotDiff,
    ProjectSnapshotKind,
    ProjectSnapshotSummary,
    SnapshotDocChange,
    SnapshotDocRef,
    SnapshotDocsDiff,
    SnapshotFieldChange,
    SnapshotRestoreResult,
)
from agentplane.store import Transaction, TransactionFailed, get_store

SNAPSHOT_ID = re.compile(r"^snap_[0-9a-z]{26}$")
# Inline content of a snapshot's docs only up to this many bytes in all.
MAX_INLINE_BYTES = 2 * 1024 * 1024
# A changed doc's unified diff is cut after this many characters.
MAX_DIFF_CHARS = 20_000
_DOC_STATE_FIELDS = ("slug", "title", "content_sha256", "size_bytes", "version", "stale")


def _capture(project: ProjectItem, docs: list[DocItem]) -> dict[str, Any]:
    return {
        "project": project_fields(project),
        "docs": sorted(
            ({name: getattr(doc, name) for name in _DOC_STATE_FIELDS} for doc in docs), key=lambda d: str(d["slug"])
        ),
    }


RESTORE_CHECKPOINT_DESCRIPTION = "restore checkpoint"


def _snapshot(
    access: Access,
    project: ProjectItem,
    state: dict[str, Any],
    kind: ProjectSnapshotKind,
    label: str,
    description: str = "",
    restored_from: str | None = None,
) -> SnapshotItem:
    return SnapshotItem(
        workspace_id=access.workspace_id,
        project_id=project.id,
        id=new_id("snap"),
        snapshot_kind=kind.value,
        label=label,
        description=description,
        restored_from=restored_from,
        project_version=project.version,
        doc_count=len(state["docs"]),
        state=state,
        created_by=access.actor_id,
        created_at=iso(),
    )


def _load_snapshot(ws: str, snapshot_id: str) -> tuple[SnapshotItem, ProjectItem]:
    """The snapshot and its project; a snapshot of a deleted project is gone with it."""
    snapshot = (
        get_store().read(SnapshotItem, keys.snapshot_key(ws, snapshot_id)) if SNAPSHOT_ID.match(snapshot_id) else None
    )
    if snapshot is None:
        raise NotFound(f"snapshot {snapshot_id} not found")
    try:
        project = load_live_project(ws, snapshot.project_id)
    except NotFound as gone:
        raise NotFound(f"snapshot {snapshot_id} not found") from gone
    return snapshot, project


def _check_unchanged(tx: Transaction, project: ProjectItem, docs: list[DocItem]) -> None:
    """Guards that the project and each doc are still as read."""
    tx.require(ProjectItem, project.key, project.as_read())
    for doc in docs:
        tx.require(DocItem, doc.key, doc.as_read())


def create_snapshot(access: Access, project_id: str, body: ProjectSnapshotCreate) -> ProjectSnapshot:
    ws = access.workspace_id
    project = load_live_project(ws, project_id)
    docs = load_docs(ws, project_id)
    snapshot = _snapshot(
        access, project, _capture(project, docs), ProjectSnapshotKind.manual, body.label, body.description
    )
    tx = access.transaction()
    _check_unchanged(tx, project, docs)
    tx.create(snapshot)
    tx.save(
        changelog_entry(
            ws,
            project_id,
            "snapshot.created",
            f"Snapshot {body.label} created",
            access.actor_id,
            ("snapshot", snapshot.id),
            body.description,
        )
    )
    access.audit(tx, "snapshot.created", "snapshot", snapshot.id, {"project_id": project_id})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if not project_is_live(ws, project_id):
            raise NotFound(f"project {project_id} not found") from failure
        raise Conflict("the project changed while the snapshot was being taken; retry") from failure
    return snapshot.to_model()


def list_snapshots(
    access: Access, project_id: str, *, limit: int, cursor: str | None
) -> tuple[list[ProjectSnapshotSummary], str | None]:
    ws = access.workspace_id
    load_live_project(ws, project_id)
    scope = f"snapshots:{ws}:{project_id}"
    page = snapshots_of_project(ws, project_id, limit=limit, start=decode_cursor(cursor, scope, {}))
    return [snapshot.to_summary() for snapshot in page.items], encode_cursor(page.last_key, scope, {})


def get_snapshot(access: Access, snapshot_id: str, include_content: bool = False) -> ProjectSnapshot:
    ws = access.workspace_id
    snapshot, _ = _load_snapshot(ws, snapshot_id)
    if include_content:
        docs = snapshot.state["docs"]
        total = sum(int(doc["size_bytes"]) for doc in docs)
        if total > MAX_INLINE_BYTES:
            raise Unprocessable(
                f"the snapshot's docs hold {total} bytes, more than the {MAX_INLINE_BYTES} that can be inlined",
                errors=[{"field": "include_content", "message": "content too large to inline", "type": "value_error"}],
            )
        bodies = load_bodies(ws, snapshot.project_id, [doc["content_sha256"] for doc in docs])
        for doc in docs:
            doc["content"] = bodies.get(doc["content_sha256"])
    return snapshot.to_model()


def restore_snapshot(access: Access, snapshot_id: str) -> SnapshotRestoreResult:
    """Record a checkpoint of the current state, then put back the snapshot's fields and docs,
    all in one transaction."""
    ws = access.workspace_id
    actor = access.actor_id
    snapshot, project = _load_snapshot(ws, snapshot_id)
    project_id = project.id
    current_docs = load_docs(ws, project_id)
    checkpoint = _snapshot(
        access,
        project,
        _capture(project, current_docs),
        ProjectSnapshotKind.restore_checkpoint,
        f"before restoring {snapshot.label}"[:200],  # a label's bound (SnapshotLabel)
        RESTORE_CHECKPOINT_DESCRIPTION,  # as the mobile runs API describes it
        restored_from=snapshot_id,
    )
    target = snapshot.state
    at = iso()
    restored = {name: target["project"].get(name) for name in PROJECT_FIELDS}
    # The version is guarded by the change itself; a doc written meanwhile moves `doc_count`.
    docs_as_read = ProjectItem.undeleted() & (ProjectItem.doc_count == project.doc_count)
    old_name = project.name

    tx = access.transaction()
    tx.create(checkpoint)
    tx.change(project, project.assign(**restored, doc_count=len(target["docs"]), updated_at=at), docs_as_read)
    swap_name_guard(tx, ws, project_id, old_name, restored["name"])
    current = {doc.slug: doc for doc in current_docs}
    wanted = {doc["slug"]: doc for doc in target["docs"]}
    for slug, doc in wanted.items():
        now = current.get(slug)
        fields: dict[str, Any] = {name: doc[name] for name in ("title", "content_sha256", "size_bytes")}
        fields["stale"] = bool(doc.get("stale"))
        if now is None:
            meta: dict[str, Any] = {"created_by": actor, "created_at": at, "updated_by": actor, "updated_at": at}
            tx.create(DocItem(workspace_id=ws, project_id=project_id, slug=slug, **fields, **meta))
        elif all(getattr(now, name) == value for name, value in fields.items()):
            tx.require(DocItem, now.key, now.as_read())
        else:
            tx.change(now, now.assign(**fields, updated_by=actor, updated_at=at))
    for slug, now in current.items():
        if slug not in wanted:
            tx.remove(now)
    # Two entries in one millisecond: sorted ids keep the checkpoint listed before the restore.
    first_entry, second_entry = sorted((new_id("chg"), new_id("chg")))
    tx.save(
        changelog_entry(
            ws,
            project_id,
            "snapshot.created",
            "Snapshot restore checkpoint created",
            actor,
            ("snapshot", checkpoint.id),
            checkpoint.description,
            entry_id=first_entry,
        )
    )
    tx.save(
        changelog_entry(
            ws,
            project_id,
            "snapshot.restored",
            f"Snapshot {snapshot.label} restored",
            actor,
            ("snapshot", snapshot_id),
            f"Checkpoint of the previous state: {checkpoint.id}",
            entry_id=second_entry,
        )
    )
    access.audit(
        tx,
        "snapshot.restored",
        "snapshot",
        snapshot_id,
        {"project_id": project_id, "checkpoint_snapshot_id": checkpoint.id},
    )
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed == NAME_GUARD:
            raise Conflict(f"another project is now named '{restored['name']}'; rename it first") from failure
        if not project_is_live(ws, project_id):
            raise NotFound(f"snapshot {snapshot_id} not found") from failure
        raise Conflict("the project changed while it was being restored; retry") from failure
    return SnapshotRestoreResult(
        restored_snapshot_id=snapshot_id, checkpoint_snapshot_id=checkpoint.id, project=project.to_model()
    )


def compare_snapshot(access: Access, snapshot_id: str, body: ProjectSnapshotCompare) -> ProjectSnapshotDiff:
    """What changed from the snapshot to `against` (the project now, or another snapshot)."""
    ws = access.workspace_id
    snapshot, project = _load_snapshot(ws, snapshot_id)
    if body.against == "current":
        after = _capture(project, load_docs(ws, project.id))
    else:
        other, _ = _load_snapshot(ws, body.against)
        if other.project_id != snapshot.project_id:
            raise Unprocessable(
                "both snapshots must belong to the same project",
                errors=[{"field": "against", "message": "a snapshot of another project", "type": "value_error"}],
            )
        after = other.state
    before = snapshot.state
    fields = [
        SnapshotFieldChange(field=name, before=before["project"].get(name), after=after["project"].get(name))
        for name in PROJECT_FIELDS
        if before["project"].get(name) != after["project"].get(name)
    ]
    docs = _diff_docs(ws, project.id, before["docs"], after["docs"])
    identical = not (fields or docs.added or docs.removed or docs.changed)
    return ProjectSnapshotDiff(
        snapshot_id=snapshot_id, against=body.against, identical=identical, fields=fields, docs=docs
    )


def _diff_docs(ws: str, project_id: str, before: list[dict[str, Any]], after: list[dict[str, Any]]) -> SnapshotDocsDiff:
    old = {doc["slug"]: doc for doc in before}
    new = {doc["slug"]: doc for doc in after}
    added = [SnapshotDocRef(slug=slug, title=new[slug]["title"]) for slug in sorted(new.keys() - old.keys())]
    removed = [SnapshotDocRef(slug=slug, title=old[slug]["title"]) for slug in sorted(old.keys() - new.keys())]
    both = [
        slug
        for slug in sorted(old.keys() & new.keys())
        if (old[slug]["title"], old[slug]["content_sha256"]) != (new[slug]["title"], new[slug]["content_sha256"])
    ]
    content_changed = [slug for slug in both if old[slug]["content_sha256"] != new[slug]["content_sha256"]]
    digests = [d[slug]["content_sha256"] for slug in content_changed for d in (old, new)]
    bodies = load_bodies(ws, project_id, digests) if digests else {}
    changed = []
    for slug in both:
        a, b = old[slug], new[slug]
        change = SnapshotDocChange(
            slug=slug,
            title_before=a["title"],
            title_after=b["title"],
            content_changed=a["content_sha256"] != b["content_sha256"],
            size_before=a["size_bytes"],
            size_after=b["size_bytes"],
        )
        if change.content_changed:
            _fill_text_diff(change, bodies.get(a["content_sha256"], ""), bodies.get(b["content_sha256"], ""))
        changed.append(change)
    return SnapshotDocsDiff(added=added, removed=removed, changed=changed)


def _fill_text_diff(change: SnapshotDocChange, before: str, after: str) -> None:
    import difflib  # only this comparison needs it; kept out of the function's cold start

    lines = list(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"a/{change.slug}",
            tofile=f"b/{change.slug}",
        )
    )
    change.lines_added = sum(1 for line in lines if line.startswith("+") and not line.startswith("+++"))
    change.lines_removed = sum(1 for line in lines if line.startswith("-") and not line.startswith("---"))
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    change.diff = text[:MAX_DIFF_CHARS]
    change.diff_truncated = len(text) > MAX_DIFF_CHARS

"""Project snapshots: capture a project's fields and docs, restore them, compare two states.

A snapshot records the project fields and, per doc, its title and the hash of its content (the
bodies are immutable, see logic/docs.py). Taking a snapshot re-checks in its transaction that the
project and every doc are still at the versions read, so a snapshot is always one consistent state.
"""

from __future__ import annotations

import re
from typing import Any

from agentplane import audit, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.errors import Conflict, NotFound, Unprocessable
from agentplane.ids import iso, new_id
from agentplane.logic.docs import doc_item, load_bodies, load_docs
from agentplane.logic.projects import (
    changelog_item,
    live,
    load_live_project,
    project_fields,
    project_is_live,
    swap_name_guard,
    to_project,
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
from agentplane.store import Expr, Item, Transaction, TransactionFailed, Update, attr_eq, get_store, not_exists

SNAPSHOT_ID = re.compile(r"^snap_[0-9a-z]{26}$")
# Inline content of a snapshot's docs only up to this many bytes in all.
MAX_INLINE_BYTES = 2 * 1024 * 1024
# A changed doc's unified diff is cut after this many characters.
MAX_DIFF_CHARS = 20_000
_DOC_STATE_FIELDS = ("slug", "title", "content_sha256", "size_bytes", "version", "stale")


def _capture(project: Item, docs: list[Item]) -> dict[str, Any]:
    return {
        "project": project_fields(project),
        "docs": sorted(
            ({name: doc.get(name, False if name == "stale" else None) for name in _DOC_STATE_FIELDS} for doc in docs),
            key=lambda d: str(d["slug"]),
        ),
    }


RESTORE_CHECKPOINT_DESCRIPTION = "restore checkpoint"


def _snapshot_item(
    access: Access,
    project: Item,
    state: dict[str, Any],
    kind: ProjectSnapshotKind,
    label: str,
    description: str = "",
    restored_from: str | None = None,
) -> Item:
    ws = access.workspace_id
    snapshot_id = new_id("snap")
    return {
        **keys.snapshot_key(ws, snapshot_id),
        keys.GSI1PK: keys.project_snapshots_gsi(ws, project["id"]),
        keys.GSI1SK: snapshot_id,
        keys.ENTITY: "snapshot",
        "id": snapshot_id,
        "workspace_id": ws,
        "project_id": project["id"],
        "kind": kind.value,
        "label": label,
        "description": description,
        "restored_from": restored_from,
        "project_version": project["version"],
        "doc_count": len(state["docs"]),
        "state": state,
        "created_by": access.actor_id,
        "created_at": iso(),
    }


def _load_snapshot(ws: str, snapshot_id: str) -> tuple[Item, Item]:
    """The snapshot and its project; a snapshot of a deleted project is gone with it."""
    item = get_store().get(keys.snapshot_key(ws, snapshot_id)) if SNAPSHOT_ID.match(snapshot_id) else None
    if item is None:
        raise NotFound(f"snapshot {snapshot_id} not found")
    try:
        project = load_live_project(ws, item["project_id"])
    except NotFound as gone:
        raise NotFound(f"snapshot {snapshot_id} not found") from gone
    return item, project


def _check_unchanged(tx: Transaction, ws: str, project: Item, docs: list[Item]) -> None:
    """Guards that the project and each doc are still as read (a new doc moves `doc_count`)."""
    tx.check(
        keys.project_key(ws, project["id"]),
        live() & attr_eq("version", project["version"]) & attr_eq("doc_count", project.get("doc_count", 0)),
    )
    for doc in docs:
        tx.check(keys.doc_key(ws, project["id"], doc["slug"]), _doc_as_read(doc))


def _doc_as_read(doc: Item) -> Expr:
    # Marking docs stale does not move their version, so the flag is checked too.
    return attr_eq("version", doc["version"]) & attr_eq("stale", bool(doc.get("stale")))


def create_snapshot(
    access: Access, project_id: str, body: ProjectSnapshotCreate, request_id: str = ""
) -> ProjectSnapshot:
    ws = access.workspace_id
    project = load_live_project(ws, project_id)
    docs = load_docs(ws, project_id)
    item = _snapshot_item(
        access, project, _capture(project, docs), ProjectSnapshotKind.manual, body.label, body.description
    )
    tx = access.transaction()
    _check_unchanged(tx, ws, project, docs)
    tx.put(item, not_exists())
    tx.put(
        changelog_item(
            ws,
            project_id,
            "snapshot.created",
            f"Snapshot {body.label} created",
            access.actor_id,
            ("snapshot", item["id"]),
            body.description,
        )
    )
    audit.record(
        tx, ws, access.actor_id, "snapshot.created", "snapshot", item["id"], request_id, {"project_id": project_id}
    )
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if not project_is_live(ws, project_id):
            raise NotFound(f"project {project_id} not found") from failure
        raise Conflict("the project changed while the snapshot was being taken; retry") from failure
    return ProjectSnapshot.model_validate(item)


def list_snapshots(
    access: Access, project_id: str, *, limit: int, cursor: str | None
) -> tuple[list[ProjectSnapshotSummary], str | None]:
    ws = access.workspace_id
    load_live_project(ws, project_id)
    scope = f"snapshots:{ws}:{project_id}"
    page = get_store().query(
        keys.project_snapshots_gsi(ws, project_id),
        index=keys.GSI1,
        limit=limit,
        start_key=decode_cursor(cursor, scope, {}),
        newest_first=True,
    )
    return [ProjectSnapshotSummary.model_validate(item) for item in page.items], encode_cursor(page.last_key, scope, {})


def get_snapshot(access: Access, snapshot_id: str, include_content: bool = False) -> ProjectSnapshot:
    ws = access.workspace_id
    item, _ = _load_snapshot(ws, snapshot_id)
    if include_content:
        docs = item["state"]["docs"]
        total = sum(int(doc["size_bytes"]) for doc in docs)
        if total > MAX_INLINE_BYTES:
            raise Unprocessable(
                f"the snapshot's docs hold {total} bytes, more than the {MAX_INLINE_BYTES} that can be inlined",
                errors=[{"field": "include_content", "message": "content too large to inline", "type": "value_error"}],
            )
        bodies = load_bodies(ws, item["project_id"], [doc["content_sha256"] for doc in docs])
        for doc in docs:
            doc["content"] = bodies.get(doc["content_sha256"])
    return ProjectSnapshot.model_validate(item)


def restore_snapshot(access: Access, snapshot_id: str, request_id: str = "") -> SnapshotRestoreResult:
    """Record a checkpoint of the current state, then put back the snapshot's fields and docs,
    all in one transaction."""
    ws = access.workspace_id
    snapshot, project = _load_snapshot(ws, snapshot_id)
    project_id = project["id"]
    current_docs = load_docs(ws, project_id)
    checkpoint = _snapshot_item(
        access,
        project,
        _capture(project, current_docs),
        ProjectSnapshotKind.restore_checkpoint,
        f"before restoring {snapshot['label']}"[:200],  # a label's bound (SnapshotLabel)
        RESTORE_CHECKPOINT_DESCRIPTION,  # as the mobile runs API describes it
        restored_from=snapshot_id,
    )
    target = snapshot["state"]
    at = iso()
    restored = {name: target["project"].get(name) for name in PROJECT_FIELDS}
    changes = {**restored, "doc_count": len(target["docs"]), "updated_at": at, "version": project["version"] + 1}

    tx = access.transaction()
    tx.put(checkpoint, not_exists())
    tx.update(
        keys.project_key(ws, project_id),
        Update(set=changes),
        live() & attr_eq("version", project["version"]) & attr_eq("doc_count", project.get("doc_count", 0)),
    )
    guard_index = swap_name_guard(tx, ws, project_id, project["name"], restored["name"])
    current = {doc["slug"]: doc for doc in current_docs}
    wanted = {doc["slug"]: doc for doc in target["docs"]}
    for slug, doc in wanted.items():
        now = current.get(slug)
        fields = {name: doc[name] for name in ("title", "content_sha256", "size_bytes")}
        fields["stale"] = bool(doc.get("stale"))
        if now is None:
            meta = {"version": 1, "created_by": access.actor_id, "created_at": at}
            item = doc_item(ws, project_id, slug, {**fields, **meta, "updated_by": access.actor_id, "updated_at": at})
            tx.put(item, not_exists())
        elif all(now.get(name) == value for name, value in fields.items()):
            tx.check(keys.doc_key(ws, project_id, slug), _doc_as_read(now))
        else:
            update = {**fields, "version": now["version"] + 1, "updated_by": access.actor_id, "updated_at": at}
            tx.update(keys.doc_key(ws, project_id, slug), Update(set=update), attr_eq("version", now["version"]))
    for slug, now in current.items():
        if slug not in wanted:
            tx.delete(keys.doc_key(ws, project_id, slug), attr_eq("version", now["version"]))
    # Two entries in one millisecond: sorted ids keep the checkpoint listed before the restore.
    first_entry, second_entry = sorted((new_id("chg"), new_id("chg")))
    tx.put(
        changelog_item(
            ws,
            project_id,
            "snapshot.created",
            "Snapshot restore checkpoint created",
            access.actor_id,
            ("snapshot", checkpoint["id"]),
            checkpoint["description"],
            entry_id=first_entry,
        )
    )
    tx.put(
        changelog_item(
            ws,
            project_id,
            "snapshot.restored",
            f"Snapshot {snapshot['label']} restored",
            access.actor_id,
            ("snapshot", snapshot_id),
            f"Checkpoint of the previous state: {checkpoint['id']}",
            entry_id=second_entry,
        )
    )
    audit.record(
        tx,
        ws,
        access.actor_id,
        "snapshot.restored",
        "snapshot",
        snapshot_id,
        request_id,
        {"project_id": project_id, "checkpoint_snapshot_id": checkpoint["id"]},
    )
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if guard_index is not None and failure.failed_index() == guard_index:
            raise Conflict(f"another project is now named '{restored['name']}'; rename it first") from failure
        if not project_is_live(ws, project_id):
            raise NotFound(f"snapshot {snapshot_id} not found") from failure
        raise Conflict("the project changed while it was being restored; retry") from failure
    return SnapshotRestoreResult(
        restored_snapshot_id=snapshot_id,
        checkpoint_snapshot_id=checkpoint["id"],
        project=to_project({**project, **changes}),
    )


def compare_snapshot(access: Access, snapshot_id: str, body: ProjectSnapshotCompare) -> ProjectSnapshotDiff:
    """What changed from the snapshot to `against` (the project now, or another snapshot)."""
    ws = access.workspace_id
    snapshot, project = _load_snapshot(ws, snapshot_id)
    if body.against == "current":
        after = _capture(project, load_docs(ws, project["id"]))
    else:
        other, _ = _load_snapshot(ws, body.against)
        if other["project_id"] != snapshot["project_id"]:
            raise Unprocessable(
                "both snapshots must belong to the same project",
                errors=[{"field": "against", "message": "a snapshot of another project", "type": "value_error"}],
            )
        after = other["state"]
    before = snapshot["state"]
    fields = [
        SnapshotFieldChange(field=name, before=before["project"].get(name), after=after["project"].get(name))
        for name in PROJECT_FIELDS
        if before["project"].get(name) != after["project"].get(name)
    ]
    docs = _diff_docs(ws, project["id"], before["docs"], after["docs"])
    identical = not (fields or docs.added or docs.removed or docs.changed)
    return ProjectSnapshotDiff(
        snapshot_id=snapshot_id, against=body.against, identical=identical, fields=fields, docs=docs
    )


def _diff_docs(ws: str, project_id: str, before: list[Item], after: list[Item]) -> SnapshotDocsDiff:
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

"""Projects, the guard that keeps their names unique, their changelog, docs, doc bodies and
snapshots.

A project lives in its workspace's partition and, while it is not deleted, in the workspace's
project list (GSI1); a soft delete takes it out of the list. Its docs, doc bodies and changelog
share one partition per project; snapshots live in the workspace's partition and are listed per
project on GSI1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pynamodb.attributes import BooleanAttribute, UnicodeAttribute, VersionAttribute

from agentplane import keys
from agentplane.entities.base import Entity, Keys, ListDocument, MapDocument, number
from agentplane.entities.patterns import access_pattern
from agentplane.models.projects import (
    Project,
    ProjectChangelogEntry,
    ProjectDoc,
    ProjectDocSummary,
    ProjectSnapshot,
    ProjectSnapshotSummary,
)
from agentplane.store import EntityPage, QuerySpec, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition
    from pynamodb.expressions.update import Action


class ProjectItem(Entity[Project], discriminator="project"):
    workspace_id = UnicodeAttribute()
    id = UnicodeAttribute()
    name = UnicodeAttribute()
    description = UnicodeAttribute(default="")
    repository_url = UnicodeAttribute(null=True)
    default_branch = UnicodeAttribute()
    access_agents = ListDocument(default=list)
    doc_count = number(default=0)
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()
    deleted_at = UnicodeAttribute(null=True)  # soft delete: kept for its audit trail, out of the list

    internal = frozenset({"deleted_at"})

    def where(self) -> Keys:
        listed = None if self.deleted_at else (keys.project_list_gsi(self.workspace_id), self.id)
        return Keys(keys.project_key(self.workspace_id, self.id), gsi1=listed)

    @classmethod
    def undeleted(cls) -> Condition:
        """The project has not been deleted (for a write to an item read before)."""
        return cls.deleted_at.does_not_exist()

    @classmethod
    def live(cls) -> Condition:
        """The project exists and has not been deleted."""
        live: Condition = cls.present() & cls.undeleted()
        return live

    def as_read(self) -> Condition:
        """The project is still as read: live, at the same version and with as many docs (a new
        doc moves `doc_count`, not the version)."""
        kind = type(self)
        unchanged: Condition = kind.live() & (kind.version == self.version) & (kind.doc_count == self.doc_count)
        return unchanged

    def soft_delete(self, at: str) -> list[Action]:
        """The actions that delete the project but keep its item: it leaves the project list."""
        return [*self.assign(deleted_at=at), *self.restamp()]


class ProjectNameItem(Entity, discriminator="project_name"):
    """Holds a project name (case-insensitive) for one project of the workspace."""

    workspace_id = UnicodeAttribute()
    project_id = UnicodeAttribute()
    name = UnicodeAttribute(null=True)  # the name as given (its key holds the unique form)

    def where(self) -> Keys:
        assert self.name is not None, "a name guard is written with its name"
        return Keys(keys.project_name_key(self.workspace_id, self.name))

    @classmethod
    def held_by(cls, project_id: str) -> Condition:
        return cls.project_id == project_id


class ChangelogItem(Entity[ProjectChangelogEntry], discriminator="changelog"):
    workspace_id = UnicodeAttribute()
    project_id = UnicodeAttribute()
    id = UnicodeAttribute()
    event = UnicodeAttribute()
    title = UnicodeAttribute()
    description = UnicodeAttribute(default="")
    subject_type = UnicodeAttribute()
    subject_id = UnicodeAttribute()
    actor_id = UnicodeAttribute()
    created_at = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(keys.changelog_key(self.workspace_id, self.project_id, self.id))


class DocItem(Entity[ProjectDocSummary], discriminator="doc"):
    """A doc's metadata and the hash of its content (the content is a `DocBodyItem`)."""

    workspace_id = UnicodeAttribute()
    project_id = UnicodeAttribute()
    slug = UnicodeAttribute()
    title = UnicodeAttribute()
    content_sha256 = UnicodeAttribute()
    size_bytes = number()
    stale = BooleanAttribute(default=False)
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_by = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()

    def where(self) -> Keys:
        return Keys(keys.doc_key(self.workspace_id, self.project_id, self.slug))

    def with_content(self, content: str) -> ProjectDoc:
        return ProjectDoc.model_validate({**self.fields(), "content": content})

    def as_read(self) -> Condition:
        """The doc is still as read; marking docs stale does not move their version, so the flag
        is compared too."""
        unchanged: Condition = (DocItem.version == self.version) & (DocItem.stale == bool(self.stale))
        return unchanged


class DocBodyItem(Entity, discriminator="doc_body"):
    """One distinct content of a project's docs, named by its hash and never changed."""

    workspace_id = UnicodeAttribute()
    project_id = UnicodeAttribute()
    content_sha256 = UnicodeAttribute()
    size_bytes = number()
    content = UnicodeAttribute()
    created_at = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(keys.doc_body_key(self.workspace_id, self.project_id, self.content_sha256))


class SnapshotItem(Entity[ProjectSnapshot], discriminator="snapshot"):
    workspace_id = UnicodeAttribute()
    project_id = UnicodeAttribute()
    id = UnicodeAttribute()
    snapshot_kind = UnicodeAttribute(attr_name="kind")  # `kind` names an entity's own kind
    label = UnicodeAttribute()
    description = UnicodeAttribute(default="")
    restored_from = UnicodeAttribute(null=True)
    project_version = number()
    doc_count = number()
    state = MapDocument()  # the project's fields and, per doc, its state (see logic.snapshots)
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(
            keys.snapshot_key(self.workspace_id, self.id),
            gsi1=(keys.project_snapshots_gsi(self.workspace_id, self.project_id), self.id),
        )

    def public(self) -> dict[str, Any]:
        fields = self.fields()
        fields["kind"] = fields.pop("snapshot_kind")
        return fields

    def to_model(self) -> ProjectSnapshot:
        return ProjectSnapshot.model_validate(self.public())

    def to_summary(self) -> ProjectSnapshotSummary:
        return ProjectSnapshotSummary.model_validate(self.public())


@access_pattern(ProjectItem, partition=keys.project_list_gsi, index=keys.GSI1)
def projects_of_workspace(ws_id: str, *, limit: int, start: dict[str, Any] | None) -> EntityPage[ProjectItem]:
    """A workspace's live projects in creation order."""
    return get_store().select(
        ProjectItem, QuerySpec(keys.project_list_gsi(ws_id), index=keys.GSI1), limit=limit, start=start
    )


@access_pattern(ChangelogItem, partition=keys.project_pk, sort="prefix CHANGE#, newest first")
def changelog_of_project(
    ws_id: str, project_id: str, *, limit: int, start: dict[str, Any] | None
) -> EntityPage[ChangelogItem]:
    """A project's changelog entries, newest first."""
    spec = QuerySpec(keys.project_pk(ws_id, project_id), sk_prefix=keys.CHANGELOG_PREFIX, newest_first=True)
    return get_store().select(ChangelogItem, spec, limit=limit, start=start)


@access_pattern(DocItem, partition=keys.project_pk, sort="prefix DOC#")
def docs_of_project(ws_id: str, project_id: str, *, limit: int, start: dict[str, Any] | None) -> EntityPage[DocItem]:
    """A page of a project's docs in slug order."""
    spec = QuerySpec(keys.project_pk(ws_id, project_id), sk_prefix=keys.DOC_PREFIX)
    return get_store().select(DocItem, spec, limit=limit, start=start)


@access_pattern(DocItem, partition=keys.project_pk, sort="prefix DOC#, strongly consistent")
def every_doc(ws_id: str, project_id: str, *, at_most: int) -> list[DocItem]:
    """Every doc of a project, strongly consistent, in one Query: a project holds at most
    `at_most` docs (its `doc_count` bounds them)."""
    spec = QuerySpec(keys.project_pk(ws_id, project_id), sk_prefix=keys.DOC_PREFIX, consistent=True)
    return get_store().select(DocItem, spec, limit=at_most).items


@access_pattern(SnapshotItem, partition=keys.project_snapshots_gsi, index=keys.GSI1, sort="newest first")
def snapshots_of_project(
    ws_id: str, project_id: str, *, limit: int, start: dict[str, Any] | None
) -> EntityPage[SnapshotItem]:
    """A project's snapshots, newest first."""
    spec = QuerySpec(keys.project_snapshots_gsi(ws_id, project_id), index=keys.GSI1, newest_first=True)
    return get_store().select(SnapshotItem, spec, limit=limit, start=start)

"""Projects (Mobile projects, Toban repositories, Orkosi products), their managed docs, changelog
and snapshots."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints, field_validator

from agentplane.models.common import Input, ListQuery, Output

MAX_DOC_BYTES = 200 * 1024
MAX_DOCS_PER_PROJECT = 40
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
# `docs/regenerate` is a route of its own, so no doc may take that name.
RESERVED_SLUGS = frozenset({"regenerate"})

ProjectName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Description = Annotated[str, StringConstraints(max_length=2000)]
RepositoryUrl = Annotated[
    str, StringConstraints(min_length=1, max_length=2048, pattern=r"^(https?://|ssh://|git://|git@)[^\s]+$")
]
Branch = Annotated[str, StringConstraints(min_length=1, max_length=255)]
AgentName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
DocTitle = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
SnapshotLabel = Annotated[str, StringConstraints(min_length=1, max_length=200)]
SnapshotRef = Annotated[str, StringConstraints(pattern=r"^(current|snap_[0-9a-z]{26})$")]

# What git accepts as a branch name (git check-ref-format), minus the rarely used corners.
_BAD_BRANCH = re.compile(r"(^[-/.])|([/.]$)|(\.\.)|(//)|(@\{)|(\.lock$)|(/\.)|([\x00-\x20~^:?*\[\\\x7f])")


def _check_branch(value: str | None) -> str | None:
    if value is not None and (_BAD_BRANCH.search(value) or value == "@"):
        raise ValueError("not a valid git branch name")
    return value


class ProjectCreate(Input):
    name: ProjectName
    description: Description = ""
    repository_url: RepositoryUrl | None = None
    default_branch: Branch = "main"
    access_agents: list[AgentName] = Field(default_factory=list, max_length=50)

    _branch = field_validator("default_branch")(_check_branch)


class ProjectUpdate(Input):
    name: ProjectName | None = None
    description: Description | None = None
    repository_url: RepositoryUrl | None = None
    default_branch: Branch | None = None
    access_agents: list[AgentName] | None = Field(default=None, max_length=50)
    version: int | None = Field(default=None, ge=1, description="Expected current version (or send If-Match)")

    _branch = field_validator("default_branch")(_check_branch)


# The project fields a snapshot captures and a restore puts back.
PROJECT_FIELDS = ("name", "description", "repository_url", "default_branch", "access_agents")


class Project(Output):
    id: str
    workspace_id: str
    name: str
    description: str = ""
    repository_url: str | None = None
    default_branch: str
    access_agents: list[str] = []
    doc_count: int = 0
    created_by: str
    created_at: str
    updated_at: str
    version: int


class MaintenanceAction(StrEnum):
    clone = "clone"
    pull = "pull"
    reindex = "index"  # (a member named `index` would hide str.index)
    regenerate_docs = "regenerate_docs"


class MaintenanceRun(Output):
    """A maintenance run request as queued; the runs API owns it from here on."""

    id: str
    workspace_id: str
    project_id: str
    kind: str
    action: MaintenanceAction
    status: str
    title: str
    created_by: str
    created_at: str
    updated_at: str
    version: int


class ProjectDocPut(Input):
    # A doc's content is stored byte for byte: no whitespace stripping here (the title strips its own).
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    title: DocTitle
    content: str = Field(description=f"Markdown, at most {MAX_DOC_BYTES} bytes in UTF-8")
    version: int | None = Field(default=None, ge=1, description="Expected current version (or send If-Match)")

    @field_validator("content", mode="before")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value.encode("utf-8", "surrogatepass")) > MAX_DOC_BYTES:
            raise ValueError(f"content is larger than {MAX_DOC_BYTES} bytes")
        return value


class ProjectDocSummary(Output):
    slug: str
    project_id: str
    title: str
    content_sha256: str
    size_bytes: int
    version: int
    stale: bool = False
    created_by: str
    created_at: str
    updated_by: str
    updated_at: str


class ProjectDoc(ProjectDocSummary):
    content: str


class ProjectChangelogEntry(Output):
    id: str
    project_id: str
    event: str
    title: str
    description: str = ""
    subject_type: str
    subject_id: str
    actor_id: str
    created_at: str


class ProjectChangelogFormat(StrEnum):
    json = "json"
    rss = "rss"


class ChangelogQuery(ListQuery):
    format: ProjectChangelogFormat = ProjectChangelogFormat.json


class ProjectSnapshotCreate(Input):
    label: SnapshotLabel = "Manual snapshot"
    description: Description = ""


class ProjectSnapshotKind(StrEnum):
    manual = "manual"
    restore_checkpoint = "restore_checkpoint"


class ProjectSnapshotDoc(Output):
    slug: str
    title: str
    content_sha256: str
    size_bytes: int
    version: int
    stale: bool = False
    content: str | None = Field(default=None, description="Only with include_content=true")


class ProjectState(Output):
    name: str
    description: str = ""
    repository_url: str | None = None
    default_branch: str
    access_agents: list[str] = []


class ProjectSnapshotState(Output):
    project: ProjectState
    docs: list[ProjectSnapshotDoc]


class ProjectSnapshotSummary(Output):
    id: str
    workspace_id: str
    project_id: str
    kind: ProjectSnapshotKind
    label: str
    description: str = ""
    restored_from: str | None = Field(default=None, description="For a restore checkpoint: the snapshot restored")
    project_version: int
    doc_count: int
    created_by: str
    created_at: str


class ProjectSnapshot(ProjectSnapshotSummary):
    state: ProjectSnapshotState


class ProjectSnapshotCompare(Input):
    against: SnapshotRef = Field(default="current", description="'current' or another snapshot id of the project")


class SnapshotFieldChange(Output):
    field: str
    before: Any = None
    after: Any = None


class SnapshotDocRef(Output):
    slug: str
    title: str


class SnapshotDocChange(Output):
    slug: str
    title_before: str
    title_after: str
    content_changed: bool
    size_before: int
    size_after: int
    lines_added: int = 0
    lines_removed: int = 0
    diff: str = Field(default="", description="Unified diff of the content, cut at a bounded length")
    diff_truncated: bool = False


class SnapshotDocsDiff(Output):
    added: list[SnapshotDocRef] = []
    removed: list[SnapshotDocRef] = []
    changed: list[SnapshotDocChange] = []


class ProjectSnapshotDiff(Output):
    snapshot_id: str
    against: str
    identical: bool
    fields: list[SnapshotFieldChange]
    docs: SnapshotDocsDiff


class SnapshotRestoreResult(Output):
    restored_snapshot_id: str
    checkpoint_snapshot_id: str
    project: Project

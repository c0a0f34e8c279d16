"""Run telemetry: events an agent reports, and what they materialize (files, commands, snapshots),
the run's structured summary and its uploaded artifacts (Mobile's run telemetry, Takos' runs)."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from agentplane.models.common import Input, ListQuery, LongText, Output

MAX_EVENTS_PER_APPEND = 500
# One event as JSON, and one append in all: an append is one transaction (4 MB at most), and the
# files, commands and snapshots it materializes may repeat part of its events.
MAX_EVENT_BYTES = 16 * 1024
MAX_APPEND_BYTES = 1_500_000
# Files, commands and snapshots materialized by one append: each is one write of its transaction.
MAX_MATERIALIZED_PER_APPEND = 80
MAX_ARTIFACT_BYTES = 100 * 1024 * 1024

# Types the platform writes itself (the lifecycle, git gates) or uses on the stream (`end`).
RESERVED_EVENT_TYPES = frozenset(
    {"status_changed", "git_commit_requested", "git_push_requested", "input_requested", "input_answered", "end"}
)
# Types that mean the agent waits on a person: the run's creator is notified.
NEEDS_INPUT_EVENT_TYPES = frozenset({"question", "input_required"})
FILE_CHANGED = "file_changed"
COMMAND_EXECUTED = "command_executed"
SNAPSHOT_CREATED = "snapshot_created"

EventType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.:-]{0,63}$")]
EventPath = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class EventSeverity(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class FileChange(StrEnum):
    added = "added"
    modified = "modified"
    deleted = "deleted"


def json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), default=str).encode())


class _EventData(BaseModel):
    """What a materializing event's `data` must hold; other keys are kept as sent."""

    model_config = ConfigDict(extra="allow")


class FileChangedData(_EventData):
    path: EventPath | None = None
    change: FileChange
    diff: str = ""


class CommandExecutedData(_EventData):
    command: Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
    exit_code: int | None = Field(default=None, ge=-(2**31), le=2**31)
    stdout: str = ""
    stderr: str = ""
    duration_ms: int | None = Field(default=None, ge=0, le=2**40)


class SnapshotCreatedData(_EventData):
    label: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    files: list[Any] = Field(default_factory=list, max_length=5000)


_MATERIALIZED_DATA: dict[str, type[_EventData]] = {
    FILE_CHANGED: FileChangedData,
    COMMAND_EXECUTED: CommandExecutedData,
    SNAPSHOT_CREATED: SnapshotCreatedData,
}


class RunEventIn(Input):
    event_type: EventType
    severity: EventSeverity = EventSeverity.info
    path: EventPath | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _valid_event(self) -> RunEventIn:
        if self.event_type in RESERVED_EVENT_TYPES:
            raise ValueError(f"event_type '{self.event_type}' is reserved for events the platform writes")
        if json_size(self.model_dump(mode="json")) > MAX_EVENT_BYTES:
            raise ValueError(f"an event must serialize to at most {MAX_EVENT_BYTES} bytes of JSON")
        shape = _MATERIALIZED_DATA.get(self.event_type)
        if shape is not None:
            try:
                shape.model_validate(self.data)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                raise ValueError(f"a {self.event_type} event's data.{where}: {first['msg']}") from None
        if self.event_type == FILE_CHANGED and not self.file_path():
            raise ValueError("a file_changed event needs data.path (or path)")
        return self

    def file_path(self) -> str | None:
        value = self.data.get("path") if isinstance(self.data.get("path"), str) else None
        return value or self.path


class RunEventsAppend(Input):
    events: list[RunEventIn] = Field(min_length=1, max_length=MAX_EVENTS_PER_APPEND)

    @model_validator(mode="after")
    def _bounded(self) -> RunEventsAppend:
        total = sum(json_size(event.model_dump(mode="json")) for event in self.events)
        if total > MAX_APPEND_BYTES:
            raise ValueError(f"the events of one append must total at most {MAX_APPEND_BYTES} bytes; split them")
        paths = {e.file_path() for e in self.events if e.event_type == FILE_CHANGED}
        others = sum(1 for e in self.events if e.event_type in (COMMAND_EXECUTED, SNAPSHOT_CREATED))
        if len(paths) + others > MAX_MATERIALIZED_PER_APPEND:
            raise ValueError(
                f"one append may change at most {MAX_MATERIALIZED_PER_APPEND} files, commands and snapshots "
                "in all; split it"
            )
        return self


class RunEventQuery(ListQuery):
    """The event list's query string: its page, and which events it shows."""

    since: int = Field(default=0, ge=0, description="Only events with a greater id")
    event_types: str | None = Field(default=None, max_length=1000, description="Comma-separated event types")
    severity: str | None = Field(default=None, max_length=100, description="Comma-separated severities")
    path: str | None = Field(default=None, max_length=1024, description="Only events whose path starts so")


class RunEvent(Output):
    id: int
    run_id: str
    event_type: str
    severity: EventSeverity = EventSeverity.info
    path: str | None = None
    data: dict[str, Any] = {}
    created_at: str


class EventsAppended(Output):
    """The ids given to the appended events, in the order they were sent (dense, increasing)."""

    run_id: str
    ids: list[int]
    first_id: int
    last_id: int


class RunFile(Output):
    id: str
    run_id: str
    path: str
    change: FileChange
    additions: int = 0
    deletions: int = 0
    event_id: int
    updated_at: str


class RunFileDetail(RunFile):
    diff: str = ""


class RunDiff(Output):
    """A unified diff of the run's changed files (one page of them; `next_cursor` continues)."""

    run_id: str
    diff: str
    files: list[str]
    next_cursor: str | None = None


class RunCommand(Output):
    id: str
    run_id: str
    command: str
    exit_code: int | None = None
    duration_ms: int | None = None
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    event_id: int
    created_at: str


class RunCommandDetail(RunCommand):
    stdout_url: str | None = Field(default=None, description="Signed GET URL of the (redacted) stdout")
    stderr_url: str | None = Field(default=None, description="Signed GET URL of the (redacted) stderr")
    urls_expire_at: str


class RunSnapshot(Output):
    id: str
    run_id: str
    label: str
    files: list[Any] = []
    event_id: int
    created_at: str


class RiskLevel(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"


class SummaryChangedFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: EventPath
    change: FileChange = FileChange.modified
    note: Annotated[str, StringConstraints(max_length=1000)] | None = None


class SummaryRisk(BaseModel):
    model_config = ConfigDict(extra="forbid")
    level: RiskLevel = RiskLevel.medium
    description: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class SummaryTests(BaseModel):
    model_config = ConfigDict(extra="forbid")
    passed: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    skipped: int = Field(default=0, ge=0)
    command: Annotated[str, StringConstraints(max_length=2000)] | None = None
    notes: Annotated[str, StringConstraints(max_length=5000)] | None = None


SummaryDoc = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class RunSummaryPut(Input):
    """The run's structured final summary; PUT replaces it whole. Secrets are redacted on write."""

    text: LongText | None = None
    changed_files: list[SummaryChangedFile] = Field(default_factory=list, max_length=1000)
    risks: list[SummaryRisk] = Field(default_factory=list, max_length=100)
    tests: SummaryTests | None = None
    docs: list[SummaryDoc] = Field(default_factory=list, max_length=200)


class RunSummary(Output):
    run_id: str
    text: str | None = None
    changed_files: list[SummaryChangedFile] = []
    risks: list[SummaryRisk] = []
    tests: SummaryTests | None = None
    docs: list[str] = []
    version: int = 0
    updated_by: str | None = None
    updated_at: str | None = None


ArtifactName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")]
ContentType = Annotated[str, StringConstraints(pattern=r"^[\w.+-]+/[\w.+-]+$", max_length=200)]


class ArtifactCreate(Input):
    name: ArtifactName
    content_type: ContentType = "application/octet-stream"
    size: int = Field(ge=1, le=MAX_ARTIFACT_BYTES, description="Bytes to upload (at most 100 MB)")


class Artifact(Output):
    id: str
    run_id: str
    name: str
    content_type: str
    size: int
    upload_url: str = Field(description="Signed S3 PUT URL; send the body with the same Content-Type")
    upload_expires_at: str
    created_by: str
    created_at: str

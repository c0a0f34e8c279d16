"""Run telemetry: appending events, reading them back (backfill and SSE), and what they materialize.

An append is one TransactWriteItems: the run's `last_event_id` moves from N to N+k (conditional
on it still being N and the run being live), the events go into batch items keyed by their last
id, and the files, commands and snapshots the events describe are written beside them. Concurrent
appenders therefore get dense, strictly increasing ids: a loser re-reads N and tries again.

Everything is redacted before it is stored: token shapes (agentplane.redact) and the workspace's
own secret values (its common env and its agents' API keys, see known_secrets). Command output
goes to S3 (redacted, before the transaction), and is read back through short-lived signed URLs.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from agentplane import clients, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.base import Entity
from agentplane.entities.runs import (
    RunArtifactItem,
    RunCommandItem,
    RunFileItem,
    RunItem,
    RunSnapshotItem,
    RunSummaryItem,
    commands_of_run,
    events_after,
    files_of_run,
    snapshots_of_run,
)
from agentplane.errors import Conflict, InvalidCursor, InvalidTransition, NotFound, Unprocessable
from agentplane.ids import iso, new_id, now
from agentplane.logic import known_secrets, sse
from agentplane.logic.run_events import event_record, events_batch, events_of, pack, redact_event
from agentplane.models.run_telemetry import (
    COMMAND_EXECUTED,
    FILE_CHANGED,
    NEEDS_INPUT_EVENT_TYPES,
    SNAPSHOT_CREATED,
    Artifact,
    ArtifactCreate,
    EventsAppended,
    EventSeverity,
    RunCommand,
    RunCommandDetail,
    RunDiff,
    RunEvent,
    RunEventsAppend,
    RunFile,
    RunFileDetail,
    RunSnapshot,
    RunSummary,
    RunSummaryPut,
)
from agentplane.models.runs import TERMINAL, RunStatus
from agentplane.observability import logger
from agentplane.redact import redact_text, redact_value
from agentplane.settings import get_settings
from agentplane.store import EntityPage, Transaction, TransactionFailed, get_store, retrying

# Statuses a run takes events in: not before it starts, not once it is over.
APPENDABLE = frozenset(RunStatus) - TERMINAL - {RunStatus.draft}
_APPENDABLE_VALUES = sorted(status.value for status in APPENDABLE)
# The run's own write in an append's transaction (the one a concurrent appender makes fail).
_RUN = "run"
# Concurrent appenders race for the run's counter; a loser retries with backoff, within limits.
_MAX_ATTEMPTS = 40
_RETRY_SECONDS = 20.0
_BACKOFF_BASE = 0.01
_BACKOFF_CAP = 0.25
SIGNED_URL_SECONDS = 300
MAX_EVENT_TYPES_FILTER = 20
_END_OF_EVENTS = keys.RUN_EVENTS_MAX_ID
D = TypeVar("D", bound=Entity)


# ------------------------------------------------------------------------------- reading


def _load_run(ws: str, run_id: str) -> RunItem:
    return get_store().read_or_404(RunItem, keys.run_key(ws, run_id), f"run {run_id} not found")


def _to_event(run_id: str, record: dict[str, Any]) -> RunEvent:
    return RunEvent.model_validate({**record, "run_id": run_id})


def _csv(value: str | None, field: str, allowed: frozenset[str] | None = None) -> list[str]:
    if not value:
        return []
    parts = sorted({part.strip() for part in value.split(",") if part.strip()})
    if len(parts) > MAX_EVENT_TYPES_FILTER:
        raise Unprocessable(
            f"at most {MAX_EVENT_TYPES_FILTER} values in {field}",
            errors=[{"field": field, "message": f"at most {MAX_EVENT_TYPES_FILTER} values"}],
        )
    unknown = [p for p in parts if allowed is not None and p not in allowed]
    if unknown:
        raise Unprocessable(
            f"unknown {field}: {', '.join(unknown)}",
            errors=[{"field": field, "message": f"one of {', '.join(sorted(allowed or ()))}"}],
        )
    return parts


def list_events(
    access: Access,
    run_id: str,
    *,
    since: int,
    event_types: str | None,
    severity: str | None,
    path: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[RunEvent], str | None]:
    """Events with id > `since`, oldest first, filtered; one Query per page (`limit` batch items
    read, at most `limit` events answered). The cursor holds the last event id the page covered."""
    ws = access.workspace_id
    types = _csv(event_types, "event_types")
    severities = _csv(severity, "severity", frozenset(s.value for s in EventSeverity))
    query = {"since": since, "event_types": ",".join(types) or None, "severity": ",".join(severities) or None,
             "path": path}  # fmt: skip
    scope = f"run_events:{ws}:{run_id}"
    start = decode_cursor(cursor, scope, query)
    after = since
    if start is not None:
        if not isinstance(start.get("after"), int) or start["after"] < since:
            raise InvalidCursor("the cursor is malformed")
        after = start["after"]
    if after >= _END_OF_EVENTS:
        return [], None
    page = events_after(ws, run_id, after, limit=limit)
    if not page.items:
        _load_run(ws, run_id)  # an unknown run is a 404, a run with nothing newer an empty page
        return [], None
    events = events_of(page.items, after)

    def matches(event: dict[str, Any]) -> bool:
        if types and event["event_type"] not in types:
            return False
        if severities and event.get("severity", "info") not in severities:
            return False
        return not path or str(event.get("path") or "").startswith(path)

    matched = [e for e in events if matches(e)]
    next_after: int | None = None
    if len(matched) > limit:
        matched = matched[:limit]
        next_after = matched[-1]["id"]
    elif page.last_key and events:
        next_after = events[-1]["id"]
    next_cursor = encode_cursor({"after": next_after}, scope, query) if next_after is not None else None
    return [_to_event(run_id, e) for e in matched], next_cursor


def stream_events(access: Access, run_id: str, after: int, budget: float) -> str:
    """SSE body: the events after `after` (at most MAX_EVENTS_PER_RESPONSE), as soon as there is
    one; `end` at once when the run is over and nothing newer exists; else a ping after `budget`."""
    ws = access.workspace_id
    first = [_load_run(ws, run_id)]

    def poll() -> list[sse.ServerEvent] | None:
        run = first.pop() if first else _load_run(ws, run_id)
        last = int(run.last_event_id or 0)
        if last > after:
            page = events_after(ws, run_id, after, limit=sse.MAX_EVENTS_PER_RESPONSE)
            events = events_of(page.items, after)[: sse.MAX_EVENTS_PER_RESPONSE]
            if events:
                return [
                    sse.ServerEvent(e["event_type"], _to_event(run_id, e).model_dump(mode="json"), str(e["id"]))
                    for e in events
                ]
        if run.state in TERMINAL:
            end = {"run_id": run_id, "status": run.status, "last_event_id": last}
            return [sse.ServerEvent("end", end)]
        return None

    found = sse.wait_for(poll, budget) or []
    ended = bool(found) and found[0].event == "end"
    return sse.render(found, sse.get_stream_settings().end_retry_ms if ended else None)


# ------------------------------------------------------------------------------ appending


def _require_appendable(run: RunItem) -> None:
    if run.state not in APPENDABLE:
        reason = "has not started" if run.state == RunStatus.draft else "is over"
        raise InvalidTransition(f"run {run.id} {reason} ({run.status}); it takes no events", current_status=run.status)


def file_id_for(path: str) -> str:
    """Stable per path, so every change of one file lands on the same item."""
    return "fil_" + hashlib.sha256(path.encode()).hexdigest()[:24]


def _diff_counts(diff: str) -> tuple[int, int]:
    additions = deletions = 0
    for line in diff.splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            additions += 1
        elif line.startswith("-") and not line.startswith("---"):
            deletions += 1
    return additions, deletions


class _Prepared:
    """An append's events, redacted, with what they materialize; ids are given per attempt."""

    def __init__(self, ws: str, run_id: str, body: RunEventsAppend, known: tuple[str, ...]) -> None:
        self.ws, self.run_id = ws, run_id
        self.events: list[dict[str, Any]] = []
        self.uploads: list[tuple[str, str]] = []  # (S3 key, redacted text)
        for sent in body.events:
            raw = {"event_type": sent.event_type, "severity": sent.severity.value, "path": sent.path,
                   "data": dict(sent.data)}  # fmt: skip
            event = redact_event(raw, known)
            data = event["data"]
            if sent.event_type == FILE_CHANGED:
                data["path"] = redact_text(sent.file_path() or "", known)
                data["file_id"] = file_id_for(data["path"])
            elif sent.event_type == COMMAND_EXECUTED:
                command_id = new_id("cmd")
                data["command_id"] = command_id
                for stream in ("stdout", "stderr"):
                    text = data.get(stream)
                    if isinstance(text, str) and text:
                        self.uploads.append((keys.run_command_output_object(ws, run_id, command_id, stream), text))
            elif sent.event_type == SNAPSHOT_CREATED:
                data["snapshot_id"] = new_id("rsnap")
            self.events.append(event)

    def upload_outputs(self) -> None:
        bucket = get_settings().artifacts_bucket
        for key, text in self.uploads:
            clients.s3().put_object(Bucket=bucket, Key=key, Body=text.encode(), ContentType="text/plain; charset=utf-8")

    def discard_outputs(self) -> None:
        """The events were refused: their command output must not linger in the bucket."""
        bucket = get_settings().artifacts_bucket
        for key, _ in self.uploads:
            try:
                clients.s3().delete_object(Bucket=bucket, Key=key)
            except Exception:
                logger.warning("could not remove refused command output", extra={"key": key})

    def records(self, first_id: int, at: str) -> list[dict[str, Any]]:
        return [
            event_record(first_id + i, e["event_type"], severity=e["severity"], path=e["path"], data=e["data"], at=at)
            for i, e in enumerate(self.events)
        ]

    def materialized(self, records: list[dict[str, Any]]) -> list[Entity]:
        ws, run_id = self.ws, self.run_id
        files: dict[str, Entity] = {}  # the latest change of a path in this append wins
        others: list[Entity] = []
        for record in records:
            data, at, event_id = record["data"], record["created_at"], record["id"]
            common = {"workspace_id": ws, "run_id": run_id, "event_id": event_id}
            if record["event_type"] == FILE_CHANGED:
                diff = str(data.get("diff") or "")
                additions, deletions = _diff_counts(diff)
                files[data["file_id"]] = RunFileItem(
                    **common,
                    id=data["file_id"],
                    path=data["path"],
                    change=data["change"],
                    diff=diff,
                    additions=additions,
                    deletions=deletions,
                    updated_at=at,
                )
            elif record["event_type"] == COMMAND_EXECUTED:
                others.append(
                    RunCommandItem(
                        **common,
                        id=data["command_id"],
                        command=data["command"],
                        exit_code=data.get("exit_code"),
                        duration_ms=data.get("duration_ms"),
                        stdout_bytes=len(str(data.get("stdout") or "").encode()),
                        stderr_bytes=len(str(data.get("stderr") or "").encode()),
                        created_at=at,
                    )
                )
            elif record["event_type"] == SNAPSHOT_CREATED:
                others.append(
                    RunSnapshotItem(
                        **common,
                        id=data["snapshot_id"],
                        label=data["label"],
                        files=data.get("files") or [],
                        created_at=at,
                    )
                )
        return [*files.values(), *others]


def _needs_input(tx: Transaction, run: RunItem, records: list[dict[str, Any]]) -> None:
    """A question from the agent reaches the run's creator, in the append's own transaction."""
    asking = next((r for r in records if r["event_type"] in NEEDS_INPUT_EVENT_TYPES), None)
    creator = str(run.created_by or "")
    if asking is None or not creator.startswith("usr_"):
        return
    from agentplane.logic import notifications

    data = asking["data"]
    text = next((data[k] for k in ("question", "prompt", "message", "text") if isinstance(data.get(k), str)), "")
    notifications.notify(
        tx, run.workspace_id, [creator], "needs_input", f"Run '{run.title or run.id}' needs your input",
        body=text, data={"run_id": run.id, "event_id": asking["id"], "event_type": asking["event_type"]},
        link=f"/workspaces/{run.workspace_id}/runs/{run.id}", source="runs",
    )  # fmt: skip


def append_events(access: Access, run_id: str, body: RunEventsAppend) -> EventsAppended:
    ws = access.workspace_id
    run, known = known_secrets.read_with(RunItem, keys.run_key(ws, run_id), ws)
    if run is None:
        raise NotFound(f"run {run_id} not found")
    _require_appendable(run)
    prepared = _Prepared(ws, run_id, body, known)
    prepared.upload_outputs()
    try:
        return _commit_append(access, run, prepared)
    except Exception:
        prepared.discard_outputs()
        raise


class _LostRace(Exception):
    """Another append (or a transition) took the run's next event ids first."""


@dataclass
class _Append:
    """One append's transaction, written again over the run as it now is when it loses a race."""

    access: Access
    run: RunItem
    prepared: _Prepared

    def attempt(self) -> EventsAppended:
        ws, run_id = self.access.workspace_id, self.run.id
        at = iso()
        records = self.prepared.records(self.run.next_event_id, at)
        actions, unchanged = self.run.record_events(len(records), last_event_at=at)
        tx = self.access.transaction()
        tx.change(self.run, actions, unchanged & RunItem.status.is_in(*_APPENDABLE_VALUES), name=_RUN)
        for batch in pack(records):
            tx.create(events_batch(ws, run_id, batch, redacted=True))
        for materialized in self.prepared.materialized(records):
            tx.save(materialized)
        _needs_input(tx, self.run, records)
        try:
            self.access.commit(tx)
        except TransactionFailed as failure:
            if failure.failed != _RUN and "TransactionConflict" not in failure.reasons:
                raise
            # The cancellation carries the run as it is now; without it, read it again.
            self.run = failure.current(_RUN, RunItem) or _load_run(ws, run_id)
            _require_appendable(self.run)
            raise _LostRace from failure
        ids = [r["id"] for r in records]
        return EventsAppended(run_id=run_id, ids=ids, first_id=ids[0], last_id=ids[-1])


def _commit_append(access: Access, run: RunItem, prepared: _Prepared) -> EventsAppended:
    """Concurrent appenders race for the run's counter: a loser tries again over the run as it is
    now, with backoff, within `_MAX_ATTEMPTS` and `_RETRY_SECONDS`."""
    append = _Append(access, run, prepared)
    deadline = time.monotonic() + _RETRY_SECONDS
    try:
        return retrying(
            append.attempt,
            retry_if=lambda failure: isinstance(failure, _LostRace) and time.monotonic() <= deadline,
            attempts=_MAX_ATTEMPTS,
            base_delay=_BACKOFF_BASE,
            max_delay=_BACKOFF_CAP,
        )
    except _LostRace as lost:
        raise Conflict(
            f"run {append.run.id} is taking events too quickly; retry", current_status=append.run.status
        ) from lost


# ------------------------------------------------------------- files, diff, commands, snapshots


def _data_page(
    access: Access,
    run_id: str,
    name: str,
    read: Callable[..., EntityPage[D]],
    limit: int,
    cursor: str | None,
) -> tuple[list[D], str | None]:
    """A page of what a run's events materialized; an empty first page of an unknown run is a 404."""
    ws = access.workspace_id
    scope = f"run_{name}:{ws}:{run_id}"
    start = decode_cursor(cursor, scope, {})
    page = read(ws, run_id, limit=limit, start=start)
    if not page.items and start is None:
        _load_run(ws, run_id)
    return page.items, encode_cursor(page.last_key, scope, {})


def list_files(access: Access, run_id: str, *, limit: int, cursor: str | None) -> tuple[list[RunFile], str | None]:
    files, next_cursor = _data_page(access, run_id, "files", files_of_run, limit, cursor)
    return [file.listed() for file in files], next_cursor


def get_file(access: Access, run_id: str, file_id: str) -> RunFileDetail:
    key = keys.run_file_key(access.workspace_id, run_id, file_id[:100])
    file = get_store().read_or_404(RunFileItem, key, f"file {file_id[:100]} of run {run_id} not found")
    return file.to_model()


def _file_diff(file: RunFileItem) -> str:
    diff = str(file.diff or "")
    if diff.startswith(("diff --git", "--- ")):
        return diff if diff.endswith("\n") else diff + "\n"
    path = file.path
    old = "/dev/null" if file.change == "added" else f"a/{path}"
    new = "/dev/null" if file.change == "deleted" else f"b/{path}"
    header = f"diff --git a/{path} b/{path}\n--- {old}\n+++ {new}\n"
    return header + diff + ("" if not diff or diff.endswith("\n") else "\n")


def run_diff(access: Access, run_id: str, *, limit: int, cursor: str | None) -> RunDiff:
    """The run's changed files as one unified diff, a page of files at a time (one Query)."""
    files, next_cursor = _data_page(access, run_id, "diff", files_of_run, limit, cursor)
    ordered = sorted(files, key=lambda file: str(file.path))
    return RunDiff(
        run_id=run_id,
        diff="".join(_file_diff(file) for file in ordered),
        files=[str(file.path) for file in ordered],
        next_cursor=next_cursor,
    )


def list_commands(
    access: Access, run_id: str, *, limit: int, cursor: str | None
) -> tuple[list[RunCommand], str | None]:
    commands, next_cursor = _data_page(access, run_id, "commands", commands_of_run, limit, cursor)
    return [command.to_model() for command in commands], next_cursor


def get_command(access: Access, run_id: str, command_id: str) -> RunCommandDetail:
    ws = access.workspace_id
    found = keys.run_command_key(ws, run_id, command_id[:100])
    command = get_store().read_or_404(RunCommandItem, found, f"command {command_id[:100]} of run {run_id} not found")
    urls: dict[str, str | None] = {}
    for stream in ("stdout", "stderr"):
        urls[f"{stream}_url"] = None
        if getattr(command, f"{stream}_bytes"):
            key = keys.run_command_output_object(ws, run_id, command.id, stream)
            urls[f"{stream}_url"] = clients.s3().generate_presigned_url(
                "get_object", Params={"Bucket": get_settings().artifacts_bucket, "Key": key},
                ExpiresIn=SIGNED_URL_SECONDS,
            )  # fmt: skip
    expires = iso(now() + timedelta(seconds=SIGNED_URL_SECONDS))
    return RunCommandDetail.model_validate({**command.fields(), **urls, "urls_expire_at": expires})


def list_snapshots(
    access: Access, run_id: str, *, limit: int, cursor: str | None
) -> tuple[list[RunSnapshot], str | None]:
    snapshots, next_cursor = _data_page(access, run_id, "snapshots", snapshots_of_run, limit, cursor)
    return [snapshot.to_model() for snapshot in snapshots], next_cursor


# --------------------------------------------------------------------------------- summary


def get_summary(access: Access, run_id: str) -> RunSummary:
    """The structured summary; before one is written, the run's summary text and nothing else."""
    ws = access.workspace_id
    run, summary = get_store().read_many(Entity, [keys.run_key(ws, run_id), keys.run_summary_key(ws, run_id)])
    if not isinstance(run, RunItem):
        raise NotFound(f"run {run_id} not found")
    if not isinstance(summary, RunSummaryItem):
        return RunSummary(run_id=run_id, text=run.summary)
    return summary.to_model()


def put_summary(access: Access, run_id: str, body: RunSummaryPut) -> RunSummary:
    """Replace the summary (redacted); the run's own `summary` text follows it."""
    ws = access.workspace_id
    run, current, *secret_items = get_store().read_each(
        [
            (RunItem, keys.run_key(ws, run_id)),
            (RunSummaryItem, keys.run_summary_key(ws, run_id)),
            *known_secrets.wanted(ws),
        ]
    )
    if run is None:
        raise NotFound(f"run {run_id} not found")
    assert isinstance(run, RunItem)
    if run.state == RunStatus.draft:
        raise InvalidTransition(f"run {run_id} has not started; it has no summary yet", current_status="draft")
    at = iso()
    fields = redact_value(body.model_dump(mode="json"), known_secrets.values_in(ws, secret_items))
    # Written over the version read (or as the first one): a concurrent PUT makes one of them fail.
    summary = RunSummaryItem(workspace_id=ws, run_id=run_id, **fields, updated_by=access.actor_id, updated_at=at)
    version = 0
    if current is not None:  # written over the version read: of two concurrent PUTs, one fails
        assert isinstance(current, RunSummaryItem)
        version = summary.version = current.version
    tx = access.transaction()
    tx.save(summary)
    tx.change(run, run.assign(summary=fields.get("text"), updated_at=at))
    access.audit(tx, "run.summary_updated", "run", run_id, {"version": version + 1})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise Conflict(f"the summary of run {run_id} changed while it was being written; retry") from failure
    return summary.to_model()


# ------------------------------------------------------------------------------- artifacts


def create_artifact(access: Access, run_id: str, body: ArtifactCreate) -> Artifact:
    """Record an artifact and answer a signed S3 PUT URL to upload it to (5 minutes)."""
    ws = access.workspace_id
    run = _load_run(ws, run_id)
    if run.state == RunStatus.draft:
        raise InvalidTransition(f"run {run_id} has not started; it has no artifacts yet", current_status="draft")
    artifact_id = new_id("art")
    artifact = RunArtifactItem(
        workspace_id=ws,
        run_id=run_id,
        id=artifact_id,
        name=body.name,
        content_type=body.content_type,
        size=body.size,
        object_key=keys.run_artifact_object(ws, run_id, artifact_id, body.name),
        created_by=access.actor_id,
        created_at=iso(),
    )
    tx = access.transaction()
    tx.create(artifact)
    tx.require(RunItem, run.key, RunItem.present())
    access.audit(
        tx, "run.artifact_created", "run", run_id, {"artifact_id": artifact_id, "name": body.name, "size": body.size}
    )
    access.commit(tx)
    url = clients.s3().generate_presigned_url(
        "put_object",
        Params={
            "Bucket": get_settings().artifacts_bucket,
            "Key": artifact.object_key,
            "ContentType": body.content_type,
        },
        ExpiresIn=SIGNED_URL_SECONDS,
    )
    return artifact.to_model(upload_url=url, upload_expires_at=iso(now() + timedelta(seconds=SIGNED_URL_SECONDS)))

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
import random
import time
from datetime import timedelta
from typing import Any

from agentplane import audit, clients, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.errors import Conflict, InvalidCursor, InvalidTransition, NotFound, Unprocessable
from agentplane.ids import iso, new_id, now
from agentplane.logic import known_secrets, sse
from agentplane.logic.run_events import batch_item, event_record, events_of, pack, read_after, redact_event
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
from agentplane.store import (
    Item,
    Transaction,
    TransactionFailed,
    Update,
    attr_eq,
    attr_in,
    exists,
    get_store,
    not_exists,
)

# Statuses a run takes events in: not before it starts, not once it is over.
APPENDABLE = frozenset(RunStatus) - TERMINAL - {RunStatus.draft}
# Concurrent appenders race for the run's counter; a loser retries with backoff, within limits.
_MAX_ATTEMPTS = 40
_RETRY_SECONDS = 20.0
_BACKOFF_BASE = 0.01
_BACKOFF_CAP = 0.25
SIGNED_URL_SECONDS = 300
MAX_EVENT_TYPES_FILTER = 20
_END_OF_EVENTS = keys.RUN_EVENTS_MAX_ID


# ------------------------------------------------------------------------------- reading


def _load_run(ws: str, run_id: str) -> Item:
    run = get_store().get(keys.run_key(ws, run_id))
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return run


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
    page = read_after(ws, run_id, after, limit)
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
        last = int(run.get("last_event_id") or 0)
        if last > after:
            page = read_after(ws, run_id, after, sse.MAX_EVENTS_PER_RESPONSE)
            events = events_of(page.items, after)[: sse.MAX_EVENTS_PER_RESPONSE]
            if events:
                return [
                    sse.ServerEvent(e["event_type"], _to_event(run_id, e).model_dump(mode="json"), str(e["id"]))
                    for e in events
                ]
        if RunStatus(run["status"]) in TERMINAL:
            end = {"run_id": run_id, "status": run["status"], "last_event_id": last}
            return [sse.ServerEvent("end", end)]
        return None

    found = sse.wait_for(poll, budget) or []
    ended = bool(found) and found[0].event == "end"
    return sse.render(found, sse.get_stream_settings().end_retry_ms if ended else None)


# ------------------------------------------------------------------------------ appending


def _require_appendable(run: Item) -> None:
    status = RunStatus(run["status"])
    if status not in APPENDABLE:
        reason = "has not started" if status == RunStatus.draft else "is over"
        raise InvalidTransition(f"run {run['id']} {reason} ({status.value}); it takes no events",
                                current_status=status.value)  # fmt: skip


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

    def materialized(self, records: list[dict[str, Any]]) -> list[Item]:
        ws, run_id = self.ws, self.run_id
        files: dict[str, Item] = {}  # the latest change of a path in this append wins
        others: list[Item] = []
        for record in records:
            data, at, event_id = record["data"], record["created_at"], record["id"]
            common = {"workspace_id": ws, "run_id": run_id, "event_id": event_id}
            if record["event_type"] == FILE_CHANGED:
                diff = str(data.get("diff") or "")
                additions, deletions = _diff_counts(diff)
                files[data["file_id"]] = {
                    **keys.run_file_key(ws, run_id, data["file_id"]), **common, keys.ENTITY: "run_file",
                    "id": data["file_id"], "path": data["path"], "change": data["change"], "diff": diff,
                    "additions": additions, "deletions": deletions, "updated_at": at,
                }  # fmt: skip
            elif record["event_type"] == COMMAND_EXECUTED:
                command_id = data["command_id"]
                others.append({
                    **keys.run_command_key(ws, run_id, command_id), **common, keys.ENTITY: "run_command",
                    "id": command_id, "command": data["command"], "exit_code": data.get("exit_code"),
                    "duration_ms": data.get("duration_ms"),
                    "stdout_bytes": len(str(data.get("stdout") or "").encode()),
                    "stderr_bytes": len(str(data.get("stderr") or "").encode()),
                    "created_at": at,
                })  # fmt: skip
            elif record["event_type"] == SNAPSHOT_CREATED:
                snapshot_id = data["snapshot_id"]
                others.append({
                    **keys.run_snapshot_key(ws, run_id, snapshot_id), **common, keys.ENTITY: "run_snapshot",
                    "id": snapshot_id, "label": data["label"], "files": data.get("files") or [], "created_at": at,
                })  # fmt: skip
        return [*files.values(), *others]


def _needs_input(tx: Transaction, run: Item, records: list[dict[str, Any]]) -> None:
    """A question from the agent reaches the run's creator, in the append's own transaction."""
    asking = next((r for r in records if r["event_type"] in NEEDS_INPUT_EVENT_TYPES), None)
    creator = str(run.get("created_by") or "")
    if asking is None or not creator.startswith("usr_"):
        return
    from agentplane.logic import notifications

    data = asking["data"]
    text = next((data[k] for k in ("question", "prompt", "message", "text") if isinstance(data.get(k), str)), "")
    notifications.notify(
        tx, run["workspace_id"], [creator], "needs_input", f"Run '{run.get('title', run['id'])}' needs your input",
        body=text, data={"run_id": run["id"], "event_id": asking["id"], "event_type": asking["event_type"]},
        link=f"/workspaces/{run['workspace_id']}/runs/{run['id']}", source="runs",
    )  # fmt: skip


def append_events(access: Access, run_id: str, body: RunEventsAppend) -> EventsAppended:
    ws = access.workspace_id
    run, known = known_secrets.read_with(keys.run_key(ws, run_id), ws)
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


def _commit_append(access: Access, run: Item, prepared: _Prepared) -> EventsAppended:
    ws, run_id = access.workspace_id, run["id"]
    count = len(prepared.events)
    deadline = time.monotonic() + _RETRY_SECONDS
    for attempt in range(_MAX_ATTEMPTS):
        last = int(run.get("last_event_id") or 0)
        at = iso()
        records = prepared.records(last + 1, at)
        tx = access.transaction()
        run_index = len(tx.operations)
        tx.update(
            keys.run_key(ws, run_id),
            Update(set={"last_event_id": last + count, "last_event_at": at}),
            exists() & attr_eq("last_event_id", last) & attr_in("status", [s.value for s in APPENDABLE]),
        )
        for batch in pack(records):
            tx.put(batch_item(ws, run_id, batch, redacted=True), not_exists())
        for item in prepared.materialized(records):
            tx.put(item)
        _needs_input(tx, run, records)
        try:
            access.commit(tx)
        except TransactionFailed as failure:
            lost_race = failure.failed_index() == run_index or "TransactionConflict" in failure.reasons
            if not lost_race:
                raise
            if time.monotonic() > deadline:
                break
            # Another append (or a transition) moved the counter first. The cancellation carries
            # the run as it is now; without it, read it again. Then back off (full jitter).
            current = failure.items[run_index] if run_index < len(failure.items) else None
            run = current or _load_run(ws, run_id)
            _require_appendable(run)
            time.sleep(random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt)))  # noqa: S311 - jitter
        else:
            ids = [r["id"] for r in records]
            return EventsAppended(run_id=run_id, ids=ids, first_id=ids[0], last_id=ids[-1])
    raise Conflict(f"run {run_id} is taking events too quickly; retry", current_status=run["status"])


# ------------------------------------------------------------- files, diff, commands, snapshots


def _data_page(
    access: Access, run_id: str, prefix: str, name: str, limit: int, cursor: str | None
) -> tuple[list[Item], str | None]:
    ws = access.workspace_id
    scope = f"run_{name}:{ws}:{run_id}"
    start = decode_cursor(cursor, scope, {})
    page = get_store().query(keys.run_data_pk(ws, run_id), sk_prefix=prefix, limit=limit, start_key=start)
    if not page.items and start is None:
        _load_run(ws, run_id)
    return page.items, encode_cursor(page.last_key, scope, {})


def list_files(access: Access, run_id: str, *, limit: int, cursor: str | None) -> tuple[list[RunFile], str | None]:
    items, next_cursor = _data_page(access, run_id, keys.RUN_FILE_PREFIX, "files", limit, cursor)
    return [RunFile.model_validate(item) for item in items], next_cursor


def get_file(access: Access, run_id: str, file_id: str) -> RunFileDetail:
    item = get_store().get(keys.run_file_key(access.workspace_id, run_id, file_id[:100]))
    if item is None:
        raise NotFound(f"file {file_id[:100]} of run {run_id} not found")
    return RunFileDetail.model_validate(item)


def _file_diff(item: Item) -> str:
    diff = str(item.get("diff") or "")
    if diff.startswith(("diff --git", "--- ")):
        return diff if diff.endswith("\n") else diff + "\n"
    path = item["path"]
    old = "/dev/null" if item["change"] == "added" else f"a/{path}"
    new = "/dev/null" if item["change"] == "deleted" else f"b/{path}"
    header = f"diff --git a/{path} b/{path}\n--- {old}\n+++ {new}\n"
    return header + diff + ("" if not diff or diff.endswith("\n") else "\n")


def run_diff(access: Access, run_id: str, *, limit: int, cursor: str | None) -> RunDiff:
    """The run's changed files as one unified diff, a page of files at a time (one Query)."""
    items, next_cursor = _data_page(access, run_id, keys.RUN_FILE_PREFIX, "diff", limit, cursor)
    ordered = sorted(items, key=lambda item: str(item["path"]))
    return RunDiff(
        run_id=run_id,
        diff="".join(_file_diff(item) for item in ordered),
        files=[str(item["path"]) for item in ordered],
        next_cursor=next_cursor,
    )


def list_commands(
    access: Access, run_id: str, *, limit: int, cursor: str | None
) -> tuple[list[RunCommand], str | None]:
    items, next_cursor = _data_page(access, run_id, keys.RUN_COMMAND_PREFIX, "commands", limit, cursor)
    return [RunCommand.model_validate(item) for item in items], next_cursor


def get_command(access: Access, run_id: str, command_id: str) -> RunCommandDetail:
    ws = access.workspace_id
    item = get_store().get(keys.run_command_key(ws, run_id, command_id[:100]))
    if item is None:
        raise NotFound(f"command {command_id[:100]} of run {run_id} not found")
    urls: dict[str, str | None] = {}
    for stream in ("stdout", "stderr"):
        urls[f"{stream}_url"] = None
        if item.get(f"{stream}_bytes"):
            key = keys.run_command_output_object(ws, run_id, item["id"], stream)
            urls[f"{stream}_url"] = clients.s3().generate_presigned_url(
                "get_object", Params={"Bucket": get_settings().artifacts_bucket, "Key": key},
                ExpiresIn=SIGNED_URL_SECONDS,
            )  # fmt: skip
    expires = iso(now() + timedelta(seconds=SIGNED_URL_SECONDS))
    return RunCommandDetail.model_validate({**item, **urls, "urls_expire_at": expires})


def list_snapshots(
    access: Access, run_id: str, *, limit: int, cursor: str | None
) -> tuple[list[RunSnapshot], str | None]:
    items, next_cursor = _data_page(access, run_id, keys.RUN_SNAPSHOT_PREFIX, "snapshots", limit, cursor)
    return [RunSnapshot.model_validate(item) for item in items], next_cursor


# --------------------------------------------------------------------------------- summary


def get_summary(access: Access, run_id: str) -> RunSummary:
    """The structured summary; before one is written, the run's summary text and nothing else."""
    ws = access.workspace_id
    run, summary = get_store().get_many([keys.run_key(ws, run_id), keys.run_summary_key(ws, run_id)])
    if run is None:
        raise NotFound(f"run {run_id} not found")
    if summary is None:
        return RunSummary(run_id=run_id, text=run.get("summary"))
    return RunSummary.model_validate(summary)


def put_summary(access: Access, run_id: str, body: RunSummaryPut, request_id: str = "") -> RunSummary:
    """Replace the summary (redacted); the run's own `summary` text follows it."""
    ws = access.workspace_id
    run, current, *secret_items = get_store().get_many(
        [keys.run_key(ws, run_id), keys.run_summary_key(ws, run_id), *known_secrets.item_keys(ws)]
    )
    if run is None:
        raise NotFound(f"run {run_id} not found")
    if run["status"] == RunStatus.draft.value:
        raise InvalidTransition(f"run {run_id} has not started; it has no summary yet", current_status="draft")
    version = int((current or {}).get("version", 0))
    at = iso()
    fields = redact_value(body.model_dump(mode="json"), known_secrets.values_in(ws, secret_items))
    item = {
        **keys.run_summary_key(ws, run_id), keys.ENTITY: "run_summary", "workspace_id": ws, "run_id": run_id,
        **fields, "version": version + 1, "updated_by": access.actor_id, "updated_at": at,
    }  # fmt: skip
    tx = access.transaction()
    tx.put(item, not_exists() if current is None else attr_eq("version", version))
    tx.update(keys.run_key(ws, run_id), Update(set={"summary": fields.get("text"), "updated_at": at}), exists())
    audit.record(tx, ws, access.actor_id, "run.summary_updated", "run", run_id, request_id,
                 {"version": version + 1})  # fmt: skip
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise Conflict(f"the summary of run {run_id} changed while it was being written; retry") from failure
    return RunSummary.model_validate(item)


# ------------------------------------------------------------------------------- artifacts


def create_artifact(access: Access, run_id: str, body: ArtifactCreate, request_id: str = "") -> Artifact:
    """Record an artifact and answer a signed S3 PUT URL to upload it to (5 minutes)."""
    ws = access.workspace_id
    run = _load_run(ws, run_id)
    if run["status"] == RunStatus.draft.value:
        raise InvalidTransition(f"run {run_id} has not started; it has no artifacts yet", current_status="draft")
    artifact_id = new_id("art")
    object_key = keys.run_artifact_object(ws, run_id, artifact_id, body.name)
    at = iso()
    item = {
        **keys.run_artifact_key(ws, run_id, artifact_id), keys.ENTITY: "run_artifact", "workspace_id": ws,
        "run_id": run_id, "id": artifact_id, "name": body.name, "content_type": body.content_type,
        "size": body.size, "object_key": object_key, "created_by": access.actor_id, "created_at": at,
    }  # fmt: skip
    tx = access.transaction()
    tx.put(item, not_exists())
    tx.check(keys.run_key(ws, run_id), exists())
    audit.record(tx, ws, access.actor_id, "run.artifact_created", "run", run_id, request_id,
                 {"artifact_id": artifact_id, "name": body.name, "size": body.size})  # fmt: skip
    access.commit(tx)
    url = clients.s3().generate_presigned_url(
        "put_object",
        Params={"Bucket": get_settings().artifacts_bucket, "Key": object_key, "ContentType": body.content_type},
        ExpiresIn=SIGNED_URL_SECONDS,
    )
    expires = iso(now() + timedelta(seconds=SIGNED_URL_SECONDS))
    return Artifact.model_validate({**item, "upload_url": url, "upload_expires_at": expires})

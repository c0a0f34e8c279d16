"""Local data that survives a restart of `make dev`, kept under `.local/` (`make dev-reset` wipes it).

Saved: every table's items, every bucket's objects, runtime EventBridge Scheduler schedules, the
KMS keys' material (moto makes random material per start; restoring it keeps sealed secrets
openable), the signing secret (made on first run) and the state machine executions still running,
which start again from their input once the stack is back. Every DynamoDB write is in the journal
(devstack.journal) before it is answered, so a crash loses none; the table files are a snapshot
the journal is compacted into, once a minute while writes go on and on a clean shutdown. The rest
is saved every few seconds while something changed. Files are readable by their owner only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import string
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from devstack import aws, files, patches, template
from devstack.journal import Journal
from devstack.template import ROOT

log = logging.getLogger("devstack.persist")
TABLE_SAVE_INTERVAL = 60.0
JOURNAL_COMPACT_BYTES = 16 * 1024 * 1024


def data_dir() -> Path:
    return Path(os.environ.get("AGENTPLANE_DATA_DIR") or ROOT / ".local")


def signing_secret(directory: Path) -> str:
    """The stack's signing secret: made once (as the template's GenerateSecretString would), then kept."""
    path = directory / "signing-secret"
    if path.exists():
        return path.read_text().strip()
    files.private_dir(directory)
    secret = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(64))
    files.write_private(path, secret.encode())
    path.chmod(0o600)
    return secret


def _write_json(path: Path, value: Any) -> None:
    files.write_private(path, json.dumps(files.encode_value(value), separators=(",", ":")).encode())


def _read_json(path: Path) -> Any:
    return files.decode_value(json.loads(path.read_text())) if path.exists() else None


def _of_type(resource_type: str) -> list[str]:
    return [logical_id for logical_id, r in template.resources().items() if r["Type"] == resource_type]


class Persistence:
    def __init__(self, directory: Path, resources: aws.Resources, journal: Journal | None = None) -> None:
        self.directory = directory
        self.resources = resources
        self.journal = journal
        self._tables_saved_at = 0.0
        self._s3_cache: dict[tuple[str, str, str], str] = {}  # (bucket, key, etag) → content hash
        self._saved_fingerprint: Any = None
        self._lock = threading.Lock()
        self._executions_lock = threading.Lock()  # executions.json alone, written as each one starts
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- restore

    def restore(self) -> dict[str, int]:
        """Load what a previous run saved; returns counts of what came back."""
        files.private_dir(self.directory)
        counts = {"keys": self._restore_kms(), "items": 0, "objects": 0, "schedules": 0}
        os.environ.update(aws.resolve_environment(self.resources))  # key ids may have changed
        for logical_id in _of_type("AWS::DynamoDB::Table"):
            counts["items"] += self._restore_table(logical_id)
        counts["journaled"] = self.journal.replay() if self.journal else 0
        for logical_id in _of_type("AWS::S3::Bucket"):
            counts["objects"] += self._restore_bucket(logical_id)
        counts["schedules"] = self._restore_schedules()
        self._saved_fingerprint = self._current_fingerprint()
        return counts

    def restart_executions(self) -> int:
        """Start again every execution that was running when the stack last stopped (call once
        their Lambda tasks can run). Each keeps its name and input, and the state it was waiting in
        keeps its clock: its timeout and heartbeat run on from where they were, downtime included."""
        saved = _read_json(self.directory / "executions.json") or []
        client = aws.client("stepfunctions")
        restarted = 0
        for execution in saved:
            arn = self.resources.arns.get(execution["state_machine"])
            if not arn:
                continue
            patches.resume_wait(arn, execution["name"], execution.get("wait"))
            try:
                client.start_execution(stateMachineArn=arn, name=execution["name"], input=execution["input"])
                restarted += 1
            except Exception as exc:
                log.warning("execution %s was not restarted: %s", execution["name"], exc)
        return restarted

    def _restore_kms(self) -> int:
        from moto.kms.models import kms_backends

        saved = _read_json(self.directory / "kms.json") or {}
        backend = kms_backends[aws.ACCOUNT][aws.REGION]
        restored = 0
        for logical_id, entry in saved.items():
            current_id = self.resources.names.get(logical_id)
            if not current_id or current_id not in backend.keys:
                continue
            key = backend.keys.pop(current_id)
            key.id = entry["key_id"]
            key.arn = entry["arn"]
            key.key_material = entry["material"]
            backend.keys[key.id] = key
            self.resources.names[logical_id] = key.id
            self.resources.arns[logical_id] = key.arn
            restored += 1
        return restored

    def _restore_table(self, logical_id: str) -> int:
        items = _read_json(self.directory / "dynamodb" / f"{logical_id}.json") or []
        table = aws.table(self.resources.names[logical_id])
        with aws._dynamodb_lock:
            for item in items:
                table.put_item(item)
        return len(items)

    def _restore_bucket(self, logical_id: str) -> int:
        folder = self.directory / "s3" / logical_id
        manifest = _read_json(folder / "manifest.json") or {}
        client = boto3.client("s3", region_name=aws.REGION)
        bucket = self.resources.names[logical_id]
        for key, entry in manifest.items():
            blob = folder / "objects" / entry["sha256"]
            if not blob.exists():
                log.warning("s3://%s/%s is missing its saved content", bucket, key)
                continue
            extra: dict[str, Any] = {"Metadata": entry.get("metadata") or {}}
            if entry.get("content_type"):
                extra["ContentType"] = entry["content_type"]
            client.put_object(Bucket=bucket, Key=key, Body=blob.read_bytes(), **extra)
            self._s3_cache[(bucket, key, entry["etag"])] = entry["sha256"]
        return len(manifest)

    def _restore_schedules(self) -> int:
        saved = _read_json(self.directory / "scheduler.json") or {}
        client = boto3.client("scheduler", region_name=aws.REGION)
        existing = {g["Name"] for g in client.list_schedule_groups().get("ScheduleGroups", [])}
        for group in saved.get("groups", []):
            if group not in existing:
                client.create_schedule_group(Name=group)
        now = datetime.now(UTC)
        restored = 0
        for schedule in saved.get("schedules", []):
            args = {k: v for k, v in schedule.items() if v is not None and k not in ("StartDate", "EndDate")}
            for bound in ("StartDate", "EndDate"):
                if schedule.get(bound) and datetime.fromisoformat(schedule[bound]) > now:
                    args[bound] = datetime.fromisoformat(schedule[bound])
            if schedule.get("EndDate") and "EndDate" not in args:
                continue  # ended while the stack was down
            try:
                client.create_schedule(**args)
                restored += 1
            except Exception as exc:
                log.warning("schedule %s was not restored: %s", schedule.get("Name"), exc)
        return restored

    # --- save

    def fingerprint(self) -> Any:
        """Cheap signs of change, read from moto's backends without copying data."""
        from moto.dynamodb.models import dynamodb_backends
        from moto.s3.models import s3_backends
        from moto.scheduler.models import scheduler_backends

        tables = dynamodb_backends[aws.ACCOUNT][aws.REGION].tables
        table_marks = []
        for logical_id in _of_type("AWS::DynamoDB::Table"):
            table = tables.get(self.resources.names.get(logical_id, ""))
            if table is None:
                continue
            table_marks.append((id(table), patches.write_count(table)))
        buckets = s3_backends[aws.ACCOUNT]["aws"].buckets
        object_marks = []
        for logical_id in _of_type("AWS::S3::Bucket"):
            bucket = buckets.get(self.resources.names.get(logical_id, ""))
            if bucket is not None:
                object_marks.append(tuple(sorted((k, v.etag) for k, v in list(bucket.keys.items()))))
        scheduler = scheduler_backends[aws.ACCOUNT][aws.REGION]
        schedule_marks = sorted(
            (s.arn, s.last_modified_date)
            for g in list(scheduler.schedule_groups.values())
            for s in list(g.schedules.values())
        )
        return (
            tuple(table_marks),
            tuple(object_marks),
            tuple(schedule_marks),
            len(scheduler.schedule_groups),
            tuple(sorted(execution.exec_arn for _, execution in self._running_executions())),
            patches.waits_changes(),
        )

    def _running_executions(self) -> list[tuple[str, Any]]:
        """(logical id of its state machine, moto's execution) for each running execution of the
        template's machines, read from moto itself (this also runs inside a StartExecution, where a
        call through boto3 would re-enter moto)."""
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        backend = stepfunctions_parser_backends[aws.ACCOUNT][aws.REGION]
        logical_ids = {self.resources.arns.get(m.logical_id): m.logical_id for m in template.state_machines()}
        return [
            (logical_ids[machine.arn], execution)
            for machine in list(backend.state_machines)
            if machine.arn in logical_ids
            for execution in list(machine.executions)
            if execution.status == "RUNNING"
        ]

    def save(self, tables: bool = True) -> None:
        """Save everything; with `tables` False, all but the tables (the journal holds their writes)."""
        with self._lock:
            fingerprint = self._current_fingerprint()
            self._save_kms()
            if tables or self.journal is None:
                cut = self.journal.cut() if self.journal else None
                for logical_id in _of_type("AWS::DynamoDB::Table"):
                    self._save_table(logical_id)
                if self.journal and cut is not None:
                    self.journal.discard_through(cut)
                self._tables_saved_at = time.monotonic()
            for logical_id in _of_type("AWS::S3::Bucket"):
                self._save_bucket(logical_id)
            self._save_schedules()
            self._save_executions()
            self._saved_fingerprint = fingerprint

    def _current_fingerprint(self) -> Any:
        for _ in range(5):
            try:
                return self.fingerprint()
            except RuntimeError:  # a write resized a dict while it was read; look again
                continue
        return None

    def save_if_changed(self) -> bool:
        fingerprint = self._current_fingerprint()
        if fingerprint is not None and fingerprint == self._saved_fingerprint:
            return False
        # Every table write is already on disk in the journal; the table files are rewritten (and
        # the journal compacted into them) once a minute or once the journal has grown.
        due = self.journal is None or time.monotonic() - self._tables_saved_at >= TABLE_SAVE_INTERVAL
        self.save(tables=due or (self.journal is not None and self.journal.size() > JOURNAL_COMPACT_BYTES))
        return True

    def _save_kms(self) -> None:
        from moto.kms.models import kms_backends

        backend = kms_backends[aws.ACCOUNT][aws.REGION]
        saved = {}
        for logical_id in _of_type("AWS::KMS::Key"):
            key = backend.keys.get(self.resources.names.get(logical_id, ""))
            if key is not None:
                saved[logical_id] = {"key_id": key.id, "arn": key.arn, "material": key.key_material}
        path = self.directory / "kms.json"
        _write_json(path, saved)
        path.chmod(0o600)

    def _save_table(self, logical_id: str) -> None:
        _write_json(
            self.directory / "dynamodb" / f"{logical_id}.json",
            aws.read_items(self.resources.names[logical_id], lambda _, item: item.to_json()["Attributes"]),
        )

    def _save_bucket(self, logical_id: str) -> None:
        client = boto3.client("s3", region_name=aws.REGION)
        bucket = self.resources.names[logical_id]
        folder = self.directory / "s3" / logical_id
        manifest: dict[str, Any] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for listed in page.get("Contents") or []:
                key, etag = listed["Key"], listed["ETag"]
                cache_key = (bucket, key, etag)
                head: dict[str, Any]
                if cache_key in self._s3_cache and (folder / "objects" / self._s3_cache[cache_key]).exists():
                    head = client.head_object(Bucket=bucket, Key=key)
                    digest = self._s3_cache[cache_key]
                else:
                    head = client.get_object(Bucket=bucket, Key=key)
                    body = head["Body"].read()
                    digest = hashlib.sha256(body).hexdigest()
                    blob = folder / "objects" / digest
                    if not blob.exists():
                        files.write_private(blob, body)
                    self._s3_cache[cache_key] = digest
                manifest[key] = {
                    "sha256": digest,
                    "etag": etag,
                    "content_type": head.get("ContentType"),
                    "metadata": head.get("Metadata") or {},
                }
        _write_json(folder / "manifest.json", manifest)
        kept = {entry["sha256"] for entry in manifest.values()}
        for blob in (folder / "objects").glob("*") if (folder / "objects").exists() else []:
            if blob.name not in kept and not blob.name.endswith(".tmp"):
                blob.unlink(missing_ok=True)

    _SCHEDULE_FIELDS = (
        "Name",
        "GroupName",
        "Description",
        "ScheduleExpression",
        "ScheduleExpressionTimezone",
        "FlexibleTimeWindow",
        "Target",
        "State",
        "ActionAfterCompletion",
        "StartDate",
        "EndDate",
    )

    def _save_schedules(self) -> None:
        client = boto3.client("scheduler", region_name=aws.REGION)
        groups = [g["Name"] for g in client.list_schedule_groups().get("ScheduleGroups", []) if g["Name"] != "default"]
        schedules = []
        for group in ["default", *groups]:
            for page in client.get_paginator("list_schedules").paginate(GroupName=group):
                for listed in page.get("Schedules", []):
                    full = client.get_schedule(GroupName=group, Name=listed["Name"])
                    schedules.append({name: full.get(name) for name in self._SCHEDULE_FIELDS})
        _write_json(self.directory / "scheduler.json", {"groups": groups, "schedules": schedules})

    def _save_executions(self) -> None:
        """Every running execution with its input and the wait it is in."""
        with self._executions_lock:
            running = [
                {
                    "state_machine": logical_id,
                    "name": execution.name,
                    "input": execution.execution_input,
                    "wait": patches.execution_wait(execution.exec_arn),
                }
                for logical_id, execution in self._running_executions()
            ]
            _write_json(self.directory / "executions.json", running)

    # --- the background saver

    def start(self, interval: float = 3.0) -> None:
        # A started execution is on disk before StartExecution answers: a crash right after a run
        # starts must not leave the run without its timers.
        patches.on_execution_started(self._save_executions)
        self._thread = threading.Thread(target=self._run, args=(interval,), name="persist", daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.save_if_changed()
            except Exception:
                log.exception("saving local data failed")

    def stop(self) -> None:
        """Stop the background saver and save one last time."""
        self._stop.set()
        patches.remove_execution_listener(self._save_executions)
        if self._thread:
            self._thread.join(timeout=10)
        self.save()

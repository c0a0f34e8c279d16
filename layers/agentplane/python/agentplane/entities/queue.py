"""Queue jobs, their counters and idempotency guards.

A job lives in its workspace's partition (newest first by id). Its status index (GSI1) lists the
jobs in one status; while it is unfinished (pending or claimed) it also sits on its queue's ready
index (GSI2), sorted by priority, then by when it can next be handed out (a pending job's
`available_at`, a claimed job's `claim_expires_at`), then by id: the jobs claimable now in one
priority are one key range. Completing or dead-lettering a job takes it off the ready index.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pynamodb.attributes import UnicodeAttribute

from agentplane import keys
from agentplane.entities.base import Entity, Keys, ListDocument, MapDocument, number, raw_item
from agentplane.entities.patterns import access_pattern
from agentplane.models.queue import DEFAULT_QUEUE, MAX_PRIORITY, MIN_PRIORITY, JobStatus, QueueJob
from agentplane.store import EntityPage, Item, QuerySpec, get_store

# The job statuses a counter shard counts; it counts unfinished jobs per priority too (`open_p<n>`).
COUNTED = tuple(status.value for status in JobStatus)


class QueueJobItem(Entity[QueueJob], discriminator="queue_job"):
    workspace_id = UnicodeAttribute()
    id = UnicodeAttribute()
    queue_name = UnicodeAttribute(null=True)  # jobs submitted before queues had names are the default's
    task_type = UnicodeAttribute()
    payload_json = UnicodeAttribute()  # JSON text: any object up to 64 KB round-trips exactly
    priority = number()
    status = UnicodeAttribute()
    attempts = number(default=0)
    max_attempts = number()
    timeout_seconds = number()
    available_at = UnicodeAttribute()
    idempotency_key = UnicodeAttribute(null=True)
    fingerprint = UnicodeAttribute(null=True)  # what the submission said, for a replayed idempotency_key
    source = MapDocument(null=True)
    worker_id = UnicodeAttribute(null=True)
    claimed_at = UnicodeAttribute(null=True)
    claim_expires_at = UnicodeAttribute(null=True)
    completed_at = UnicodeAttribute(null=True)
    dead_at = UnicodeAttribute(null=True)
    result_json = UnicodeAttribute(null=True)
    last_error = UnicodeAttribute(null=True)
    errors = ListDocument(null=True)
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()

    internal = frozenset({"fingerprint", "payload_json", "result_json"})

    @property
    def next_at(self) -> str | None:
        """When the job can next be handed out; None once it is finished."""
        if self.status == JobStatus.pending:
            return self.available_at
        if self.status == JobStatus.claimed:
            return self.claim_expires_at
        return None

    def where(self) -> Keys:
        ws, next_at = self.workspace_id, self.next_at
        ready = keys.queue_ready_gsi(ws, self.queue_name or DEFAULT_QUEUE)
        return Keys(
            keys.queue_job_key(ws, self.id),
            gsi1=(keys.queue_job_status_gsi(ws, self.status), self.id),
            gsi2=(ready, keys.queue_ready_sk(int(self.priority), next_at, self.id)) if next_at else None,
        )

    def to_model(self) -> QueueJob:
        fields: dict[str, Any] = self.fields()
        fields["payload"] = json.loads(self.payload_json or "{}")
        if self.result_json is not None:
            fields["result"] = json.loads(self.result_json)
        return QueueJob.model_validate(fields)


class QueueCounterItem(Entity, discriminator="queue_counter"):
    """One shard of a workspace's queue counters, moved by key (`Transaction.upsert`) in the same
    transaction as every job change, so they are exact."""

    pending = number(null=True)
    claimed = number(null=True)
    completed = number(null=True)
    dead = number(null=True)
    open_p0 = number(null=True)
    open_p1 = number(null=True)
    open_p2 = number(null=True)
    open_p3 = number(null=True)
    open_p4 = number(null=True)
    open_p5 = number(null=True)
    open_p6 = number(null=True)
    open_p7 = number(null=True)
    open_p8 = number(null=True)
    open_p9 = number(null=True)
    open_p10 = number(null=True)

    @staticmethod
    def open_counter(priority: int) -> str:
        """The counter of a priority's unfinished jobs."""
        return f"open_p{priority}"

    def counts(self) -> dict[str, int]:
        names = [*COUNTED, *(self.open_counter(p) for p in range(MIN_PRIORITY, MAX_PRIORITY + 1))]
        return {name: int(getattr(self, name)) for name in names if getattr(self, name) is not None}


class QueueIdempotencyItem(Entity, discriminator="queue_job_key"):
    """Guards an idempotency_key: put with the job it first created, in the submit's transaction."""

    workspace_id = UnicodeAttribute()
    idempotency_key = UnicodeAttribute()
    job_id = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(keys.queue_idempotency_key(self.workspace_id, self.idempotency_key))


def job_from_item(item: Item) -> QueueJobItem:
    """A job read as a plain dict (in a batch with the workspace's secrets)."""
    return QueueJobItem.from_raw_data(raw_item(item))


@access_pattern(QueueJobItem, partition=keys.queue_job_status_gsi, index=keys.GSI1)
def jobs_in_status(
    ws_id: str,
    status: str,
    *,
    task_type: str | None = None,
    newest_first: bool = False,
    limit: int,
    start: dict[str, Any] | None = None,
) -> EntityPage[QueueJobItem]:
    """A workspace's jobs in one status by id (one Query); `task_type` narrows the page, so a page
    may be short and still have a cursor."""
    spec = QuerySpec(
        keys.queue_job_status_gsi(ws_id, status),
        index=keys.GSI1,
        newest_first=newest_first,
        filter=QueueJobItem.task_type == task_type if task_type else None,
    )
    return get_store().select(QueueJobItem, spec, limit=limit, start=start)


@access_pattern(QueueJobItem, partition=keys.ws_pk, sort="prefix QJOB#, newest first")
def jobs_of_workspace(
    ws_id: str, *, task_type: str | None, limit: int, start: dict[str, Any] | None
) -> EntityPage[QueueJobItem]:
    """A workspace's jobs, newest first (one Query); `task_type` narrows the page."""
    spec = QuerySpec(
        keys.ws_pk(ws_id),
        sk_prefix=keys.QUEUE_JOB_PREFIX,
        newest_first=True,
        filter=QueueJobItem.task_type == task_type if task_type else None,
    )
    return get_store().select(QueueJobItem, spec, limit=limit, start=start)


@access_pattern(QueueJobItem, partition=keys.queue_ready_gsi, index=keys.GSI2, sort="range of a priority up to now")
def claimable_jobs(
    ws_id: str,
    queue_name: str,
    priority: int,
    now: str,
    *,
    task_types: Sequence[str],
    limit: int,
    start: dict[str, Any] | None,
) -> EntityPage[QueueJobItem]:
    """The jobs of one queue and priority claimable at `now`, oldest first: pending ones that are
    due and claimed ones whose claim expired (of `task_types` only, when given)."""
    spec = QuerySpec(
        keys.queue_ready_gsi(ws_id, queue_name),
        index=keys.GSI2,
        sk_between=keys.queue_ready_range(priority, now),
        filter=QueueJobItem.task_type.is_in(*task_types) if task_types else None,
    )
    return get_store().select(QueueJobItem, spec, limit=limit, start=start)


def counter_shards(ws_id: str) -> list[QueueCounterItem | None]:
    """Every counter shard of a workspace (one BatchGetItem; a shard never written is None)."""
    shards = [keys.queue_counter_key(ws_id, n) for n in range(keys.QUEUE_COUNTER_SHARDS)]
    return get_store().read_many(QueueCounterItem, shards)

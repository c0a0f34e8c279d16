"""The work queue (Orkosi's task queue): jobs submitted by anyone in the workspace, each handed to
exactly one worker at a time, retried with exponential backoff, dead-lettered when out of attempts.

Items (entities in `agentplane.entities.queue`, keys under `@keys:queue`):
- the job, `queue_job_key(ws, id)`, with its payload and result stored as JSON text (any JSON
  object up to 64 KB round-trips exactly). It waits in one of the workspace's queues, its
  `queue_name` (Orkosi's; `default` unless named), and sits on two indexes:
  - GSI1 `queue_job_status_gsi(ws, status)` / id: the jobs in one status (lists, health).
  - GSI2 `queue_ready_gsi(ws, queue_name)` / `queue_ready_sk(priority, next_at, id)`, while the job is
    unfinished (pending or claimed). `next_at` is when the job can next be handed out: a pending
    job's `available_at` (now, later when delayed or backing off), a claimed job's
    `claim_expires_at`. So one key range per priority, `queue_ready_range(priority, now)`, holds
    exactly the jobs claimable now: pending ones that are due and claimed ones whose worker went
    silent past the job's timeout. A claim re-keys the job to its claim expiry, moving it out of
    the range until then; completing or dead-lettering takes it off the index.
- counters, `queue_counter_key(ws, shard)`: jobs per status and unfinished jobs per priority,
  spread over QUEUE_COUNTER_SHARDS items by job id and moved in the same transaction as every job
  change, so they are exact; stats are one BatchGetItem.
- an idempotency guard, `queue_idempotency_key(ws, key)`, put (if absent) in the submit's
  transaction: the same key answers the job it first created, even under concurrent submits.

Claiming (from one queue, `default` unless the claim names another; `task_type`/`task_types` narrow
it): read the counters to learn which priorities have unfinished jobs (in any queue), then, from
priority 10 down, Query the queue's claimable key range (oldest first) and try each candidate with one conditional
UpdateItem that succeeds only if the job is still in the state the index showed (pending and due,
or claimed with an expired claim, at the same attempt count). A claimer that loses a candidate to
another moves on to the next one, so each job goes to exactly one worker, however many claim at
once. After its first loss a claimer takes the rest of that page in random order, so concurrent
claimers spread over the oldest jobs instead of all racing for the same next one (FIFO within a
priority is exact for one claimer, approximate within a page for many). A claim call reads at most
CLAIM_READ_BUDGET candidates. An expired claim that used the job's last attempt dead-letters the
job instead of handing it out again. No sweep is needed: expired claims are found by the claims
themselves (the dashboard's queue health counts them).

Claims are the hot path, raced by many workers that usually share one key, so they do not use a
transaction per candidate: that would make every lost race a cancelled transaction and make
concurrent claims conflict on the shared token and counter items. The caller's right to write
(live token, membership) is checked once per claim call with the usual guard transaction; each
candidate is then one conditional UpdateItem, and a won claim's counter move and audit row are
written right after it. Every other change (submit, complete, fail) writes the job, its counters
and its audit row in one transaction with those guards.

Completing and failing need the claiming worker's id and a job still claimed by it (a worker whose
claim expired may still finish, as long as no one else has claimed the job since). A failure with
attempts left puts the job back to pending, available again after RETRY_BASE_SECONDS * 2^attempts
(capped at RETRY_MAX_SECONDS); without attempts left, or when the worker says the failure is not
retryable, the job is dead (`dead`), kept with its error history. The worker's error and result
are stored redacted (agentplane.redact), with the workspace's secrets read in the job's own read.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from agentplane import audit, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.queue import (
    COUNTED,
    QueueCounterItem,
    QueueIdempotencyItem,
    QueueJobItem,
    claimable_jobs,
    counter_shards,
    jobs_in_status,
    jobs_of_workspace,
)
from agentplane.errors import Conflict, InvalidTransition, NotFound, Unprocessable
from agentplane.ids import iso, new_id
from agentplane.ids import now as _system_now
from agentplane.logic import known_secrets
from agentplane.models.queue import (
    DEFAULT_QUEUE,
    MAX_PRIORITY,
    MIN_PRIORITY,
    JobClaim,
    JobClaimResult,
    JobComplete,
    JobFail,
    JobStatus,
    JobSubmit,
    QueueJob,
    QueueStats,
)
from agentplane.redact import redact_text, redact_value
from agentplane.store import ConditionFailed, Item, Transaction, TransactionFailed, get_store, retrying

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition
    from pynamodb.expressions.update import Action

# The clock every queue decision reads (tests move it forward to see timeouts and backoff).
clock: Callable[[], datetime] = _system_now

RETRY_BASE_SECONDS = 5
RETRY_MAX_SECONDS = 3600
# Candidates one claim call reads at most (across priorities and pages).
CLAIM_READ_BUDGET = 200
_CONFLICT_RETRIES = 3
_ERROR_HISTORY = 20
_open_counter = QueueCounterItem.open_counter


class Writer(Protocol):
    """Who a queue write acts as and how its transaction is guarded and committed: a caller's
    `Access`, or a schedule firing as the schedule's creator."""

    @property
    def workspace_id(self) -> str: ...

    @property
    def actor_id(self) -> str: ...

    def transaction(self) -> Transaction: ...

    def commit(self, tx: Transaction) -> None: ...

    def audit(
        self, tx: Transaction, action: str, target_type: str, target_id: str, details: Mapping[str, Any] | None = None
    ) -> None: ...


# ------------------------------------------------------------------------------------- items


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def _fingerprint(body: JobSubmit) -> str:
    # The default queue is left out, so jobs submitted before queues had names keep their fingerprint.
    left_out = {"idempotency_key"} | ({"queue_name"} if body.queue_name == DEFAULT_QUEUE else set())
    canonical = json.dumps(body.model_dump(mode="json", exclude=left_out), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _new_job(ws: str, body: JobSubmit, created_by: str, at: datetime, source: Item | None) -> QueueJobItem:
    created_at = iso(at)
    return QueueJobItem(
        workspace_id=ws,
        id=new_id("job"),
        queue_name=body.queue_name,
        task_type=body.task_type,
        payload_json=_dump(body.payload),
        priority=int(body.priority),
        status=JobStatus.pending.value,
        attempts=0,
        max_attempts=body.max_attempts,
        timeout_seconds=body.timeout_seconds,
        available_at=iso(at + timedelta(seconds=body.delay_seconds)),
        errors=[],
        idempotency_key=body.idempotency_key,
        fingerprint=_fingerprint(body) if body.idempotency_key else None,
        source=source or None,
        created_by=created_by,
        created_at=created_at,
        updated_at=created_at,
    )


def _count(tx: Transaction, job: QueueJobItem, deltas: dict[str, int]) -> None:
    """Move the job's counter shard by `deltas` (status names and open_p<n>) in `tx`."""
    tx.upsert(QueueCounterItem, _counter_key(job), _moves(deltas))


def _counter_key(job: QueueJobItem) -> keys.Key:
    return keys.queue_counter_key(job.workspace_id, keys.queue_counter_shard(job.id))


def _moves(deltas: dict[str, int]) -> list[Action]:
    return [getattr(QueueCounterItem, name).add(delta) for name, delta in deltas.items()]


def _load(ws: str, job_id: str) -> QueueJobItem:
    return get_store().read_or_404(QueueJobItem, keys.queue_job_key(ws, job_id), f"queue job {job_id} not found")


def _load_with_secrets(ws: str, job_id: str) -> tuple[QueueJobItem, tuple[str, ...]]:
    """The job and the workspace's secret values (to redact what the worker wrote) in one BatchGetItem."""
    job, known = known_secrets.read_with(QueueJobItem, keys.queue_job_key(ws, job_id), ws)
    if job is None:
        raise NotFound(f"queue job {job_id} not found")
    return job, known


def _only_conflicts(failure: Exception) -> bool:
    return isinstance(failure, TransactionFailed) and failure.only_conflicts()


def _commit_retrying(writer: Writer, tx: Transaction) -> None:
    """Commit, retrying a transaction cancelled only by a concurrent transaction on one of its
    items (DynamoDB's TransactionConflict); any other failure is the caller's to interpret."""
    retrying(lambda: writer.commit(tx), retry_if=_only_conflicts, attempts=_CONFLICT_RETRIES, base_delay=0.02)


# ------------------------------------------------------------------------------------ submit


def enqueue(
    writer: Writer,
    body: JobSubmit,
    *,
    source: Item | None = None,
    extra: Callable[[Transaction, QueueJobItem], None] | None = None,
) -> tuple[QueueJobItem, bool]:
    """Put a new job (with its counters, idempotency guard, audit row and `extra` writes) in one
    transaction. Returns the job and whether it is new: an idempotency_key already used answers
    the job it created (a 422 when the submission differs)."""
    ws = writer.workspace_id
    job = _new_job(ws, body, writer.actor_id, clock(), source)
    tx = writer.transaction()
    tx.create(job)
    _count(tx, job, {JobStatus.pending.value: 1, _open_counter(int(job.priority)): 1})
    if body.idempotency_key:
        guard = QueueIdempotencyItem(workspace_id=ws, idempotency_key=body.idempotency_key, job_id=job.id)
        tx.create(guard, name="idempotency_key")
    if extra is not None:
        extra(tx, job)
    submitted = {"task_type": body.task_type, "priority": job.priority}
    writer.audit(tx, "queue_job.submitted", "queue_job", job.id, submitted)
    try:
        _commit_retrying(writer, tx)
    except TransactionFailed as failure:
        if failure.reason("idempotency_key") == "ConditionalCheckFailed":
            return _replay(ws, body), False
        raise
    return job, True


def _replay(ws: str, body: JobSubmit) -> QueueJobItem:
    assert body.idempotency_key is not None
    guard = get_store().read(QueueIdempotencyItem, keys.queue_idempotency_key(ws, body.idempotency_key))
    existing = get_store().read(QueueJobItem, keys.queue_job_key(ws, guard.job_id)) if guard else None
    if existing is None:  # pragma: no cover - the guard and its job are written together
        raise Conflict("the idempotency_key is in use by a job being submitted; retry")
    if existing.fingerprint != _fingerprint(body):
        raise Unprocessable(
            f"idempotency_key {body.idempotency_key!r} was already used for a different job ({existing.id})",
            errors=[{"field": "idempotency_key", "message": "already used with other fields"}],
            job_id=existing.id,
        )
    return existing


def submit_job(access: Access, body: JobSubmit) -> tuple[QueueJob, bool]:
    job, created = enqueue(access, body)
    return job.to_model(), created


# ------------------------------------------------------------------------------------- reads


def get_job(access: Access, job_id: str) -> QueueJob:
    return _load(access.workspace_id, job_id).to_model()


def list_jobs(
    access: Access, *, status: JobStatus | None, task_type: str | None, limit: int, cursor: str | None
) -> tuple[list[QueueJob], str | None]:
    """Newest first: one Query of the status index, or of the workspace's jobs when no status is
    given; `task_type` narrows that page (so a page may be short and still have a cursor)."""
    ws = access.workspace_id
    query = {"status": status, "task_type": task_type}
    scope = f"queue:{ws}"
    start = decode_cursor(cursor, scope, query)
    if status is not None:
        page = jobs_in_status(ws, status, task_type=task_type, newest_first=True, limit=limit, start=start)
    else:
        page = jobs_of_workspace(ws, task_type=task_type, limit=limit, start=start)
    return [job.to_model() for job in page.items], encode_cursor(page.last_key, scope, query)


def counters(ws: str) -> dict[str, int]:
    """The workspace's queue counters, summed over their shards (one BatchGetItem)."""
    total: dict[str, int] = {}
    for shard in counter_shards(ws):
        for name, value in (shard.counts() if shard else {}).items():
            total[name] = total.get(name, 0) + value
    return total


def stats(ws: str) -> QueueStats:
    counted = counters(ws)
    by_status = {status: max(0, counted.get(status, 0)) for status in COUNTED}
    open_by_priority = {
        str(p): counted[_open_counter(p)]
        for p in range(MAX_PRIORITY, MIN_PRIORITY - 1, -1)
        if counted.get(_open_counter(p), 0) > 0
    }
    return QueueStats(**by_status, total=sum(by_status.values()), open_by_priority=open_by_priority)


def queue_stats(access: Access) -> QueueStats:
    return stats(access.workspace_id)


def oldest_pending(ws: str) -> Item | None:
    """The pending job submitted first, as the table holds it (one Query of the pending index)."""
    page = jobs_in_status(ws, JobStatus.pending, limit=1)
    return page.items[0].as_item() if page.items else None


def claimed_jobs(ws: str, budget: int = 1000) -> tuple[list[Item], bool]:
    """The workspace's claimed jobs as the table holds them (reading at most `budget`), and whether
    the budget cut them short."""
    found: list[Item] = []
    start: dict[str, Any] | None = None
    while len(found) < budget:
        page = jobs_in_status(ws, JobStatus.claimed, limit=min(200, budget - len(found)), start=start)
        found += [job.as_item() for job in page.items]
        start = page.last_key
        if start is None:
            return found, False
    return found, True


# ------------------------------------------------------------------------------------- claim


def _ready(at: datetime) -> Condition:
    """A pending job that is due, or a claimed one whose claim has expired, at `at`."""
    moment = iso(at)
    due: Condition = (QueueJobItem.status == JobStatus.pending.value) & (QueueJobItem.available_at <= moment)
    expired: Condition = (QueueJobItem.status == JobStatus.claimed.value) & (QueueJobItem.claim_expires_at <= moment)
    ready: Condition = due | expired
    return ready


def _as_seen(job: QueueJobItem) -> Condition:
    """The job is still in the status, attempt and claim it was read with."""
    condition: Condition = (QueueJobItem.status == job.status) & (QueueJobItem.attempts == (job.attempts or 0))
    if job.worker_id:
        condition = condition & (QueueJobItem.worker_id == job.worker_id)
    return condition


def _error_entry(attempt: int, error: str, worker_id: str | None, at: datetime) -> Item:
    entry: Item = {"attempt": attempt, "error": error, "at": iso(at)}
    if worker_id:
        entry["worker_id"] = worker_id
    return entry


def _with_error(job: QueueJobItem, entry: Item) -> list[Item]:
    return [*(job.errors or []), entry][-_ERROR_HISTORY:]


def claim_jobs(access: Access, body: JobClaim) -> JobClaimResult:
    ws = access.workspace_id
    # The caller's right to write (live token, membership), checked once per claim call.
    _commit_retrying(access, access.transaction())
    at = clock()
    moment = iso(at)
    counted = counters(ws)
    wanted = body.wanted_task_types()
    claimed: list[QueueJobItem] = []
    budget = CLAIM_READ_BUDGET
    for priority in range(MAX_PRIORITY, MIN_PRIORITY - 1, -1):
        if counted.get(_open_counter(priority), 0) <= 0:
            continue
        start: dict[str, Any] | None = None
        while len(claimed) < body.batch_size and budget > 0:
            step = min(budget, max(10, 2 * (body.batch_size - len(claimed))))
            page = claimable_jobs(ws, body.queue_name, priority, moment, task_types=wanted, limit=step, start=start)
            budget -= step
            candidates = list(page.items)
            contended = False
            while candidates and len(claimed) < body.batch_size:
                # Oldest first; once a candidate was lost to another claimer, the rest of the page
                # in random order, so concurrent claimers spread out instead of racing in step.
                pick = random.randrange(len(candidates)) if contended else 0  # noqa: S311 - not a secret
                job = _claim_one(access, candidates.pop(pick), body.worker_id, at)
                if job is None:
                    contended = True
                else:
                    claimed.append(job)
            start = page.last_key
            if start is None:
                break
        if len(claimed) >= body.batch_size or budget <= 0:
            break
    return JobClaimResult(worker_id=body.worker_id, jobs=[job.to_model() for job in claimed])


def _record(access: Access, job: QueueJobItem, deltas: dict[str, int], action: str, details: Item) -> None:
    """A claim's bookkeeping, written right after the claim itself (see the module docstring)."""
    store = get_store()
    if deltas:
        store.upsert(QueueCounterItem, _counter_key(job), _moves(deltas))
    ws, actor = access.workspace_id, access.actor_id
    store.save(audit.new_event(ws, actor, action, "queue_job", job.id, access.request_id, details))


def _claim_one(access: Access, candidate: QueueJobItem, worker_id: str, at: datetime) -> QueueJobItem | None:
    """Hand one candidate to `worker_id` with one conditional UpdateItem; None when another
    claimer got it first (or it changed since the index was read)."""
    if candidate.status not in (JobStatus.pending, JobStatus.claimed):
        return None
    attempts = int(candidate.attempts or 0)
    expired_claim = candidate.status == JobStatus.claimed
    if expired_claim and attempts >= int(candidate.max_attempts):
        _dead_letter_expired(access, candidate, at)
        return None
    still_ready = _as_seen(candidate) & _ready(at)
    claim: Item = {
        "status": JobStatus.claimed.value,
        "worker_id": worker_id,
        "claimed_at": iso(at),
        "claim_expires_at": iso(at + timedelta(seconds=int(candidate.timeout_seconds))),
        "attempts": attempts + 1,
        "updated_at": iso(at),
    }
    if expired_claim:
        note = f"the claim by worker {candidate.worker_id} expired"
        claim["errors"] = _with_error(candidate, _error_entry(attempts, note, candidate.worker_id, at))
        claim["last_error"] = note
    try:
        job = get_store().change(candidate, candidate.assign(**claim), still_ready)
    except ConditionFailed:
        return None  # lost to another claimer (or to a change): move on to the next candidate
    deltas = {} if expired_claim else {JobStatus.pending.value: -1, JobStatus.claimed.value: 1}
    details = {"worker_id": worker_id, "attempt": attempts + 1, "reclaimed": expired_claim}
    _record(access, job, deltas, "queue_job.claimed", details)
    return job


def _dead_letter_expired(access: Access, candidate: QueueJobItem, at: datetime) -> None:
    """A claim expired on the job's last attempt: the job is dead rather than handed out again."""
    still_ready = _as_seen(candidate) & _ready(at)
    note = f"the claim by worker {candidate.worker_id} expired on the last attempt"
    attempts = int(candidate.attempts)
    dead: Item = {
        "status": JobStatus.dead.value,
        "dead_at": iso(at),
        "updated_at": iso(at),
        "last_error": note,
        "errors": _with_error(candidate, _error_entry(attempts, note, candidate.worker_id, at)),
    }
    try:
        job = get_store().change(candidate, candidate.assign(**dead), still_ready)
    except ConditionFailed:
        return  # someone else moved it first
    deltas = {JobStatus.claimed.value: -1, JobStatus.dead.value: 1, _open_counter(int(job.priority)): -1}
    _record(access, job, deltas, "queue_job.dead_lettered", {"reason": "claim_expired", "attempts": attempts})


# -------------------------------------------------------------------------- complete and fail


def _require_claim(job: QueueJobItem, worker_id: str, verb: str) -> None:
    if job.status != JobStatus.claimed:
        raise InvalidTransition(
            f"cannot {verb} queue job {job.id}: it is {job.status}, not claimed", current_status=job.status
        )
    if job.worker_id != worker_id:
        raise Conflict(f"cannot {verb} queue job {job.id}: it is claimed by another worker", current_status=job.status)


# What a worker's outcome does to the job it holds: the fields it sets (None clears one), the
# counter moves, and the audit action with its details.
_Outcome = tuple[Item, dict[str, int], str, Item]


def _finish(
    access: Access,
    job_id: str,
    worker_id: str,
    verb: str,
    build: Callable[[QueueJobItem, datetime, tuple[str, ...]], _Outcome],
    *,
    redacts: bool,
) -> QueueJob:
    """Apply a worker's outcome to the job it holds, as one conditional write: only if the job is
    still claimed by that worker at the attempt that was read. When the outcome carries the worker's
    text (`redacts`), the workspace's secrets are read with the job and `build` redacts with them."""
    ws = access.workspace_id
    known: tuple[str, ...] = ()
    if redacts:
        job, known = _load_with_secrets(ws, job_id)
    else:
        job = _load(ws, job_id)
    _require_claim(job, worker_id, verb)
    held = _as_seen(job)
    fields, deltas, action, details = build(job, clock(), known)
    tx = access.transaction()
    tx.change(job, job.assign(**fields), held)
    _count(tx, job, deltas)
    access.audit(tx, action, "queue_job", job_id, details)
    try:
        _commit_retrying(access, tx)
    except TransactionFailed as failure:
        _require_claim(_load(ws, job_id), worker_id, verb)  # explains a lost race, if it was one
        raise Conflict(f"queue job {job_id} changed while it was being updated; retry") from failure
    return job.to_model()


def complete_job(access: Access, job_id: str, body: JobComplete) -> QueueJob:
    def build(job: QueueJobItem, at: datetime, known: tuple[str, ...]) -> _Outcome:
        fields: Item = {"status": JobStatus.completed.value, "completed_at": iso(at), "updated_at": iso(at)}
        if body.result is not None:
            fields["result_json"] = _dump(redact_value(body.result, known))
        deltas = {JobStatus.claimed.value: -1, JobStatus.completed.value: 1, _open_counter(int(job.priority)): -1}
        return fields, deltas, "queue_job.completed", {"worker_id": body.worker_id, "attempt": job.attempts}

    return _finish(access, job_id, body.worker_id, "complete", build, redacts=body.result is not None)


def backoff_seconds(attempts: int) -> int:
    """How long a failed job waits before it is claimable again: base * 2^attempts, capped."""
    return int(min(RETRY_BASE_SECONDS * 2 ** min(attempts, 30), RETRY_MAX_SECONDS))


def fail_job(access: Access, job_id: str, body: JobFail) -> QueueJob:
    def build(job: QueueJobItem, at: datetime, known: tuple[str, ...]) -> _Outcome:
        attempts = int(job.attempts)
        error = redact_text(body.detail, known)
        reason = redact_text(body.reason, known)
        details: Item = {"worker_id": body.worker_id, "attempt": attempts, "reason": reason, "error": error[:500]}
        failed: Item = {
            "last_error": error,
            "errors": _with_error(job, _error_entry(attempts, error, body.worker_id, at)),
            "updated_at": iso(at),
        }
        if body.retryable and attempts < int(job.max_attempts):
            available_at = iso(at + timedelta(seconds=backoff_seconds(attempts)))
            retry = {"status": JobStatus.pending.value, "available_at": available_at}
            released = dict.fromkeys(("worker_id", "claimed_at", "claim_expires_at"))
            deltas = {JobStatus.claimed.value: -1, JobStatus.pending.value: 1}
            scheduled = {**details, "available_at": available_at}
            return {**failed, **retry, **released}, deltas, "queue_job.retry_scheduled", scheduled
        dead = {"status": JobStatus.dead.value, "dead_at": iso(at)}
        deltas = {JobStatus.claimed.value: -1, JobStatus.dead.value: 1, _open_counter(int(job.priority)): -1}
        return {**failed, **dead}, deltas, "queue_job.dead_lettered", details

    return _finish(access, job_id, body.worker_id, "fail", build, redacts=True)

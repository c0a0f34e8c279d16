"""The work queue (Orkosi's task queue): jobs submitted by anyone in the workspace, each handed to
exactly one worker at a time, retried with exponential backoff, dead-lettered when out of attempts.

Items (keys under `@keys:queue`):
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
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from agentplane import audit, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
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
from agentplane.store import (
    ConditionFailed,
    Expr,
    Transaction,
    TransactionFailed,
    Update,
    attr_eq,
    attr_in,
    exists,
    get_store,
)

Item = dict[str, Any]

# The clock every queue decision reads (tests move it forward to see timeouts and backoff).
clock: Callable[[], datetime] = _system_now

RETRY_BASE_SECONDS = 5
RETRY_MAX_SECONDS = 3600
# Candidates one claim call reads at most (across priorities and pages).
CLAIM_READ_BUDGET = 200
# Jobs with these statuses are counted; unfinished ones also per priority (`open_p<n>`).
_COUNTED = tuple(status.value for status in JobStatus)
_CONFLICT_RETRIES = 3
_ERROR_HISTORY = 20
JOB_ENTITY = "queue_job"


# ------------------------------------------------------------------------------------- items


def _open_counter(priority: int) -> str:
    return f"open_p{priority}"


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def to_job(item: Item) -> QueueJob:
    public = {k: v for k, v in item.items() if k not in ("payload_json", "result_json")}
    public["payload"] = json.loads(item.get("payload_json") or "{}")
    if item.get("result_json") is not None:
        public["result"] = json.loads(item["result_json"])
    return QueueJob.model_validate(public)


def _fingerprint(body: JobSubmit) -> str:
    # The default queue is left out, so jobs submitted before queues had names keep their fingerprint.
    left_out = {"idempotency_key"} | ({"queue_name"} if body.queue_name == DEFAULT_QUEUE else set())
    canonical = json.dumps(body.model_dump(mode="json", exclude=left_out), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_job_item(ws: str, body: JobSubmit, created_by: str, at: datetime, source: Item | None = None) -> Item:
    job_id = new_id("job")
    available_at = iso(at + timedelta(seconds=body.delay_seconds))
    created_at = iso(at)
    priority = int(body.priority)
    item: Item = {
        **keys.queue_job_key(ws, job_id),
        keys.ENTITY: JOB_ENTITY,
        keys.GSI1PK: keys.queue_job_status_gsi(ws, JobStatus.pending),
        keys.GSI1SK: job_id,
        keys.GSI2PK: keys.queue_ready_gsi(ws, body.queue_name),
        keys.GSI2SK: keys.queue_ready_sk(priority, available_at, job_id),
        "id": job_id,
        "workspace_id": ws,
        "queue_name": body.queue_name,
        "task_type": body.task_type,
        "payload_json": _dump(body.payload),
        "priority": priority,
        "status": JobStatus.pending.value,
        "attempts": 0,
        "max_attempts": body.max_attempts,
        "timeout_seconds": body.timeout_seconds,
        "available_at": available_at,
        "errors": [],
        "created_by": created_by,
        "created_at": created_at,
        "updated_at": created_at,
    }
    if body.idempotency_key:
        item["idempotency_key"] = body.idempotency_key
        item["fingerprint"] = _fingerprint(body)
    if source:
        item["source"] = source
    return item


def _count(tx: Transaction, ws: str, job: Item, deltas: dict[str, int]) -> None:
    """Move the job's counter shard by `deltas` (status names and open_p<n>) in `tx`."""
    tx.update(
        keys.queue_counter_key(ws, keys.queue_counter_shard(job["id"])),
        Update(set={keys.ENTITY: "queue_counter"}, add=deltas),
    )


def _load(ws: str, job_id: str) -> Item:
    item = get_store().get(keys.queue_job_key(ws, job_id))
    if item is None:
        raise NotFound(f"queue job {job_id} not found")
    return item


def _load_with_secrets(ws: str, job_id: str) -> tuple[Item, tuple[str, ...]]:
    """The job and the workspace's secret values (to redact what the worker wrote) in one BatchGetItem."""
    item, known = known_secrets.read_with(keys.queue_job_key(ws, job_id), ws)
    if item is None:
        raise NotFound(f"queue job {job_id} not found")
    return item, known


def _pause(attempt: int) -> None:
    time.sleep(random.uniform(0, 0.02 * (attempt + 1)))  # noqa: S311 - jitter, not a secret


def _commit_retrying(commit: Callable[[Transaction], None], tx: Transaction) -> None:
    """Commit, retrying a transaction cancelled only by a concurrent transaction on one of its
    items (DynamoDB's TransactionConflict); any other failure is the caller's to interpret."""
    for attempt in range(_CONFLICT_RETRIES):
        try:
            commit(tx)
            return
        except TransactionFailed as failure:
            conflicted = "TransactionConflict" in failure.reasons
            condition_failed = "ConditionalCheckFailed" in failure.reasons
            if not conflicted or condition_failed or attempt == _CONFLICT_RETRIES - 1:
                raise
            _pause(attempt)


# ------------------------------------------------------------------------------------ submit


def enqueue(
    ws: str,
    body: JobSubmit,
    actor_id: str,
    request_id: str,
    *,
    transaction: Callable[[], Transaction],
    commit: Callable[[Transaction], None],
    source: Item | None = None,
    extra: Callable[[Transaction, Item], None] | None = None,
) -> tuple[Item, bool]:
    """Put a new job (with its counters, idempotency guard, audit row and `extra` writes) in one
    transaction. Returns the job and whether it is new: an idempotency_key already used answers
    the job it created (a 422 when the submission differs)."""
    item = new_job_item(ws, body, actor_id, clock(), source)
    tx = transaction()
    tx.put(item, Expr("attribute_not_exists(PK)"))
    _count(tx, ws, item, {JobStatus.pending.value: 1, _open_counter(item["priority"]): 1})
    guard_index = -1
    if body.idempotency_key:
        guard_index = len(tx.operations)
        tx.put(
            {
                **keys.queue_idempotency_key(ws, body.idempotency_key),
                keys.ENTITY: "queue_job_key",
                "job_id": item["id"],
            },
            Expr("attribute_not_exists(PK)"),
        )
    if extra is not None:
        extra(tx, item)
    audit.record(tx, ws, actor_id, "queue_job.submitted", "queue_job", item["id"], request_id,
                 {"task_type": body.task_type, "priority": item["priority"]})  # fmt: skip
    try:
        _commit_retrying(commit, tx)
    except TransactionFailed as failure:
        if guard_index >= 0 and failure.reasons[guard_index] == "ConditionalCheckFailed":
            return _replay(ws, body), False
        raise
    return item, True


def _replay(ws: str, body: JobSubmit) -> Item:
    assert body.idempotency_key is not None
    guard = get_store().get(keys.queue_idempotency_key(ws, body.idempotency_key)) or {}
    existing = get_store().get(keys.queue_job_key(ws, str(guard.get("job_id", ""))))
    if existing is None:  # pragma: no cover - the guard and its job are written together
        raise Conflict("the idempotency_key is in use by a job being submitted; retry")
    if existing.get("fingerprint") != _fingerprint(body):
        raise Unprocessable(
            f"idempotency_key {body.idempotency_key!r} was already used for a different job ({existing['id']})",
            errors=[{"field": "idempotency_key", "message": "already used with other fields"}],
            job_id=existing["id"],
        )
    return existing


def submit_job(access: Access, body: JobSubmit, request_id: str = "") -> tuple[QueueJob, bool]:
    item, created = enqueue(
        access.workspace_id,
        body,
        access.actor_id,
        request_id,
        transaction=access.transaction,
        commit=access.commit,
    )
    return to_job(item), created


# ------------------------------------------------------------------------------------- reads


def get_job(access: Access, job_id: str) -> QueueJob:
    return to_job(_load(access.workspace_id, job_id))


def list_jobs(
    access: Access, *, status: JobStatus | None, task_type: str | None, limit: int, cursor: str | None
) -> tuple[list[QueueJob], str | None]:
    """Newest first: one Query of the status index, or of the workspace's jobs when no status is
    given; `task_type` narrows that page (so a page may be short and still have a cursor)."""
    ws = access.workspace_id
    query = {"status": status, "task_type": task_type}
    scope = f"queue:{ws}"
    start = decode_cursor(cursor, scope, query)
    condition = attr_eq("task_type", task_type) if task_type else None
    store = get_store()
    if status is not None:
        page = store.query(
            keys.queue_job_status_gsi(ws, status), index=keys.GSI1, limit=limit, start_key=start,
            newest_first=True, filter=condition,
        )  # fmt: skip
    else:
        page = store.query(
            keys.ws_pk(ws), sk_prefix=keys.QUEUE_JOB_PREFIX, limit=limit, start_key=start,
            newest_first=True, filter=condition,
        )  # fmt: skip
    return [to_job(item) for item in page.items], encode_cursor(page.last_key, scope, query)


def counters(ws: str) -> dict[str, int]:
    """The workspace's queue counters, summed over their shards (one BatchGetItem)."""
    shards = get_store().get_many([keys.queue_counter_key(ws, n) for n in range(keys.QUEUE_COUNTER_SHARDS)])
    total: dict[str, int] = {}
    for shard in shards:
        for name, value in (shard or {}).items():
            if isinstance(value, int) and name.startswith(("open_p", *_COUNTED)):
                total[name] = total.get(name, 0) + value
    return total


def stats(ws: str) -> QueueStats:
    counted = counters(ws)
    by_status = {status: max(0, counted.get(status, 0)) for status in _COUNTED}
    open_by_priority = {
        str(p): counted[_open_counter(p)]
        for p in range(MAX_PRIORITY, MIN_PRIORITY - 1, -1)
        if counted.get(_open_counter(p), 0) > 0
    }
    return QueueStats(**by_status, total=sum(by_status.values()), open_by_priority=open_by_priority)


def queue_stats(access: Access) -> QueueStats:
    return stats(access.workspace_id)


def oldest_pending(ws: str) -> Item | None:
    """The pending job submitted first (one Query of the pending index, oldest first)."""
    page = get_store().query(keys.queue_job_status_gsi(ws, JobStatus.pending), index=keys.GSI1, limit=1)
    return page.items[0] if page.items else None


def claimed_jobs(ws: str, budget: int = 1000) -> tuple[list[Item], bool]:
    """The workspace's claimed jobs (reading at most `budget`), and whether the budget cut them short."""
    found: list[Item] = []
    start: dict[str, Any] | None = None
    while len(found) < budget:
        page = get_store().query(
            keys.queue_job_status_gsi(ws, JobStatus.claimed), index=keys.GSI1, limit=min(200, budget - len(found)),
            start_key=start,
        )  # fmt: skip
        found += page.items
        start = page.last_key
        if start is None:
            return found, False
    return found, True


# ------------------------------------------------------------------------------------- claim


def _ready(at: datetime) -> Expr:
    """A pending job that is due, or a claimed one whose claim has expired, at `at`."""
    moment = iso(at)
    return Expr(
        "(#st = :pending AND #avail <= :ready_now) OR (#st = :claimed AND #exp <= :ready_now)",
        {"#st": "status", "#avail": "available_at", "#exp": "claim_expires_at"},
        {":pending": JobStatus.pending.value, ":claimed": JobStatus.claimed.value, ":ready_now": moment},
    )


def _as_seen(candidate: Item) -> Expr:
    """The job is still in the status, attempt and claim the index showed."""
    condition = exists() & attr_eq("status", candidate["status"]) & attr_eq("attempts", candidate.get("attempts", 0))
    if candidate.get("worker_id"):
        condition = condition & attr_eq("worker_id", candidate["worker_id"])
    return condition


def _error_entry(attempt: int, error: str, worker_id: str | None, at: datetime) -> Item:
    entry: Item = {"attempt": attempt, "error": error, "at": iso(at)}
    if worker_id:
        entry["worker_id"] = worker_id
    return entry


def _with_error(job: Item, entry: Item) -> list[Item]:
    return [*(job.get("errors") or []), entry][-_ERROR_HISTORY:]


def claim_jobs(access: Access, body: JobClaim, request_id: str = "") -> JobClaimResult:
    ws = access.workspace_id
    # The caller's right to write (live token, membership), checked once per claim call.
    _commit_retrying(access.commit, access.transaction())
    at = clock()
    moment = iso(at)
    counted = counters(ws)
    wanted = body.wanted_task_types()
    only = attr_in("task_type", wanted) if wanted else None
    claimed: list[Item] = []
    budget = CLAIM_READ_BUDGET
    for priority in range(MAX_PRIORITY, MIN_PRIORITY - 1, -1):
        if counted.get(_open_counter(priority), 0) <= 0:
            continue
        start: dict[str, Any] | None = None
        while len(claimed) < body.batch_size and budget > 0:
            step = min(budget, max(10, 2 * (body.batch_size - len(claimed))))
            page = get_store().query(
                keys.queue_ready_gsi(ws, body.queue_name), index=keys.GSI2,
                sk_between=keys.queue_ready_range(priority, moment),
                limit=step, start_key=start, filter=only,
            )  # fmt: skip
            budget -= step
            candidates = list(page.items)
            contended = False
            while candidates and len(claimed) < body.batch_size:
                # Oldest first; once a candidate was lost to another claimer, the rest of the page
                # in random order, so concurrent claimers spread out instead of racing in step.
                pick = random.randrange(len(candidates)) if contended else 0  # noqa: S311 - not a secret
                job = _claim_one(access, candidates.pop(pick), body.worker_id, at, request_id)
                if job is None:
                    contended = True
                else:
                    claimed.append(job)
            start = page.last_key
            if start is None:
                break
        if len(claimed) >= body.batch_size or budget <= 0:
            break
    return JobClaimResult(worker_id=body.worker_id, jobs=[to_job(job) for job in claimed])


def _record(ws: str, job: Item, deltas: dict[str, int], audit_row: Item) -> None:
    """A claim's bookkeeping, written right after the claim itself (see the module docstring)."""
    store = get_store()
    if deltas:
        store.update(
            keys.queue_counter_key(ws, keys.queue_counter_shard(job["id"])),
            Update(set={keys.ENTITY: "queue_counter"}, add=deltas),
        )
    store.put(audit_row)


def _claim_one(access: Access, candidate: Item, worker_id: str, at: datetime, request_id: str) -> Item | None:
    """Hand one candidate to `worker_id` with one conditional UpdateItem; None when another
    claimer got it first (or it changed since the index was read)."""
    ws = access.workspace_id
    status = candidate.get("status")
    if status not in (JobStatus.pending, JobStatus.claimed):
        return None
    attempts = int(candidate.get("attempts", 0))
    expired_claim = status == JobStatus.claimed
    if expired_claim and attempts >= int(candidate["max_attempts"]):
        _dead_letter_expired(access, candidate, at, request_id)
        return None
    expires = iso(at + timedelta(seconds=int(candidate["timeout_seconds"])))
    changes: Item = {
        "status": JobStatus.claimed.value,
        "worker_id": worker_id,
        "claimed_at": iso(at),
        "claim_expires_at": expires,
        "attempts": attempts + 1,
        "updated_at": iso(at),
        keys.GSI1PK: keys.queue_job_status_gsi(ws, JobStatus.claimed),
        keys.GSI2SK: keys.queue_ready_sk(int(candidate["priority"]), expires, candidate["id"]),
    }
    if expired_claim:
        note = f"the claim by worker {candidate.get('worker_id')} expired"
        changes["errors"] = _with_error(candidate, _error_entry(attempts, note, candidate.get("worker_id"), at))
        changes["last_error"] = note
    try:
        job = get_store().update(
            keys.queue_job_key(ws, candidate["id"]), Update(set=changes), _as_seen(candidate) & _ready(at)
        )
    except ConditionFailed:
        return None  # lost to another claimer (or to a change): move on to the next candidate
    deltas = {} if expired_claim else {JobStatus.pending.value: -1, JobStatus.claimed.value: 1}
    details = {"worker_id": worker_id, "attempt": attempts + 1, "reclaimed": expired_claim}
    row = audit.audit_item(ws, access.actor_id, "queue_job.claimed", "queue_job", job["id"], request_id, details)
    _record(ws, job, deltas, row)
    return job


def _dead_letter_expired(access: Access, candidate: Item, at: datetime, request_id: str) -> None:
    """A claim expired on the job's last attempt: the job is dead rather than handed out again."""
    ws = access.workspace_id
    note = f"the claim by worker {candidate.get('worker_id')} expired on the last attempt"
    attempts = int(candidate["attempts"])
    changes: Item = {
        "status": JobStatus.dead.value,
        "dead_at": iso(at),
        "updated_at": iso(at),
        "last_error": note,
        "errors": _with_error(candidate, _error_entry(attempts, note, candidate.get("worker_id"), at)),
        keys.GSI1PK: keys.queue_job_status_gsi(ws, JobStatus.dead),
    }
    try:
        job = get_store().update(
            keys.queue_job_key(ws, candidate["id"]),
            Update(set=changes, remove=[keys.GSI2PK, keys.GSI2SK]),
            _as_seen(candidate) & _ready(at),
        )
    except ConditionFailed:
        return  # someone else moved it first
    deltas = {JobStatus.claimed.value: -1, JobStatus.dead.value: 1, _open_counter(int(job["priority"])): -1}
    details = {"reason": "claim_expired", "attempts": attempts}
    row = audit.audit_item(ws, access.actor_id, "queue_job.dead_lettered", "queue_job", job["id"], request_id, details)
    _record(ws, job, deltas, row)


# -------------------------------------------------------------------------- complete and fail


def _require_claim(job: Item, worker_id: str, verb: str) -> None:
    if job["status"] != JobStatus.claimed:
        raise InvalidTransition(
            f"cannot {verb} queue job {job['id']}: it is {job['status']}, not claimed", current_status=job["status"]
        )
    if job.get("worker_id") != worker_id:
        raise Conflict(
            f"cannot {verb} queue job {job['id']}: it is claimed by another worker", current_status=job["status"]
        )


def _finish(
    access: Access,
    job_id: str,
    worker_id: str,
    verb: str,
    request_id: str,
    build: Callable[[Item, datetime, tuple[str, ...]], tuple[Item, list[str], dict[str, int], str, Item]],
    *,
    redacts: bool,
) -> QueueJob:
    """Apply a worker's outcome to the job it holds, as one conditional write: only if the job is
    still claimed by that worker at the attempt that was read. When the outcome carries the worker's
    text (`redacts`), the workspace's secrets are read with the job and `build` redacts with them."""
    ws = access.workspace_id
    known: tuple[str, ...] = ()
    if redacts:
        current, known = _load_with_secrets(ws, job_id)
    else:
        current = _load(ws, job_id)
    _require_claim(current, worker_id, verb)
    at = clock()
    changes, remove, deltas, action, details = build(current, at, known)
    tx = access.transaction()
    tx.update(keys.queue_job_key(ws, job_id), Update(set=changes, remove=remove), _as_seen(current))
    _count(tx, ws, current, deltas)
    audit.record(tx, ws, access.actor_id, action, "queue_job", job_id, request_id, details)
    try:
        _commit_retrying(access.commit, tx)
    except TransactionFailed as failure:
        _require_claim(_load(ws, job_id), worker_id, verb)  # explains a lost race, if it was one
        raise Conflict(f"queue job {job_id} changed while it was being updated; retry") from failure
    result = {k: v for k, v in {**current, **changes}.items() if k not in remove}
    return to_job(result)


def complete_job(access: Access, job_id: str, body: JobComplete, request_id: str = "") -> QueueJob:
    def build(job: Item, at: datetime, known: tuple[str, ...]) -> tuple[Item, list[str], dict[str, int], str, Item]:
        changes: Item = {
            "status": JobStatus.completed.value,
            "completed_at": iso(at),
            "updated_at": iso(at),
            keys.GSI1PK: keys.queue_job_status_gsi(access.workspace_id, JobStatus.completed),
        }
        if body.result is not None:
            changes["result_json"] = _dump(redact_value(body.result, known))
        deltas = {JobStatus.claimed.value: -1, JobStatus.completed.value: 1, _open_counter(int(job["priority"])): -1}
        details = {"worker_id": body.worker_id, "attempt": job["attempts"]}
        return changes, [keys.GSI2PK, keys.GSI2SK], deltas, "queue_job.completed", details

    return _finish(access, job_id, body.worker_id, "complete", request_id, build, redacts=body.result is not None)


def backoff_seconds(attempts: int) -> int:
    """How long a failed job waits before it is claimable again: base * 2^attempts, capped."""
    return int(min(RETRY_BASE_SECONDS * 2 ** min(attempts, 30), RETRY_MAX_SECONDS))


def fail_job(access: Access, job_id: str, body: JobFail, request_id: str = "") -> QueueJob:
    def build(job: Item, at: datetime, known: tuple[str, ...]) -> tuple[Item, list[str], dict[str, int], str, Item]:
        ws = access.workspace_id
        attempts = int(job["attempts"])
        error = redact_text(body.detail, known)
        errors = _with_error(job, _error_entry(attempts, error, body.worker_id, at))
        reason = redact_text(body.reason, known)
        details: Item = {"worker_id": body.worker_id, "attempt": attempts, "reason": reason, "error": error[:500]}
        if body.retryable and attempts < int(job["max_attempts"]):
            available_at = iso(at + timedelta(seconds=backoff_seconds(attempts)))
            changes: Item = {
                "status": JobStatus.pending.value,
                "available_at": available_at,
                "last_error": error,
                "errors": errors,
                "updated_at": iso(at),
                keys.GSI1PK: keys.queue_job_status_gsi(ws, JobStatus.pending),
                keys.GSI2SK: keys.queue_ready_sk(int(job["priority"]), available_at, job["id"]),
            }
            deltas = {JobStatus.claimed.value: -1, JobStatus.pending.value: 1}
            remove = ["worker_id", "claimed_at", "claim_expires_at"]
            return changes, remove, deltas, "queue_job.retry_scheduled", {**details, "available_at": available_at}
        changes = {
            "status": JobStatus.dead.value,
            "dead_at": iso(at),
            "last_error": error,
            "errors": errors,
            "updated_at": iso(at),
            keys.GSI1PK: keys.queue_job_status_gsi(ws, JobStatus.dead),
        }
        deltas = {JobStatus.claimed.value: -1, JobStatus.dead.value: 1, _open_counter(int(job["priority"])): -1}
        return changes, [keys.GSI2PK, keys.GSI2SK], deltas, "queue_job.dead_lettered", details

    return _finish(access, job_id, body.worker_id, "fail", request_id, build, redacts=True)

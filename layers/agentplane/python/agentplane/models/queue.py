"""Queue jobs (Orkosi's task queue): submitted, claimed by exactly one worker, then completed, or
failed and retried with backoff until they are dead-lettered."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, AliasChoices, Field, StringConstraints, field_validator

from agentplane.models.common import Input, ListQuery, Output

# Payloads and results are stored as JSON text of at most this many bytes (UTF-8).
MAX_DOCUMENT_BYTES = 64 * 1024
MIN_PRIORITY, MAX_PRIORITY, DEFAULT_PRIORITY = 0, 10, 5
MAX_ATTEMPTS_LIMIT = 20
MAX_CLAIM_BATCH = 25


class JobStatus(StrEnum):
    pending = "pending"
    claimed = "claimed"
    completed = "completed"
    dead = "dead"


class NamedPriority(StrEnum):
    """Orkosi's words for priorities; each stands for a number (higher is claimed first)."""

    low = "low"
    normal = "normal"
    high = "high"


PRIORITY_NUMBERS = {NamedPriority.low: 2, NamedPriority.normal: DEFAULT_PRIORITY, NamedPriority.high: 8}


def priority_number(value: int | str) -> int:
    """The number a priority stands for (names map through PRIORITY_NUMBERS)."""
    if isinstance(value, int):
        return value
    return PRIORITY_NUMBERS[NamedPriority(value)]


def document_size(value: Any) -> int:
    """Bytes of `value` as compact JSON; ValueError for NaN or Infinity, which JSON cannot carry."""
    return len(json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode())


def _bounded_document(value: dict[str, Any]) -> dict[str, Any]:
    try:
        size = document_size(value)
    except ValueError as exc:
        raise ValueError("must be JSON without NaN or Infinity") from exc
    if size > MAX_DOCUMENT_BYTES:
        raise ValueError(f"is {size} bytes as JSON; at most {MAX_DOCUMENT_BYTES} are allowed")
    return value


Document = Annotated[dict[str, Any], AfterValidator(_bounded_document)]
TaskType = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")]
WorkerId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
# A queue of the workspace (Orkosi's `queue_name`); part of a table key, so no '#'.
QueueName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
DEFAULT_QUEUE = "default"
# Printable ASCII without spaces: the key is part of a table key and of audit details.
IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
Priority = Annotated[int, Field(ge=MIN_PRIORITY, le=MAX_PRIORITY)] | NamedPriority


class JobSubmit(Input):
    task_type: TaskType
    queue_name: QueueName = Field(
        default=DEFAULT_QUEUE, description="The workspace's queue the job waits in; claims take from one queue"
    )
    payload: Document = Field(default_factory=dict, description="Any JSON object, at most 64 KB")
    priority: Priority = Field(
        default=DEFAULT_PRIORITY, description="0-10, higher is claimed first; or low (2), normal (5), high (8)"
    )
    max_attempts: int = Field(default=3, ge=1, le=MAX_ATTEMPTS_LIMIT, description="Deliveries before dead-lettering")
    timeout_seconds: int = Field(
        default=300, ge=5, le=86_400, description="How long a claim lasts before the job can be claimed again"
    )
    delay_seconds: int = Field(default=0, ge=0, le=7 * 86_400, description="Not claimable before this many seconds")
    idempotency_key: IdempotencyKey | None = Field(
        default=None, description="Submitting the same key again answers the job it first created"
    )

    @field_validator("priority", mode="after")
    @classmethod
    def _as_number(cls, value: int | NamedPriority) -> int:
        return priority_number(value)


class JobClaim(Input):
    worker_id: WorkerId
    batch_size: int = Field(default=1, ge=1, le=MAX_CLAIM_BATCH)
    queue_name: QueueName = Field(default=DEFAULT_QUEUE, description="The queue to claim from")
    task_types: list[TaskType] | None = Field(
        default=None, min_length=1, max_length=10, description="Only jobs of these task types"
    )
    task_type: TaskType | None = Field(
        default=None, description="Only jobs of this task type (Orkosi's form; adds to task_types)"
    )

    def wanted_task_types(self) -> list[str]:
        """The task types to claim (empty: any)."""
        wanted = [*(self.task_types or []), *([self.task_type] if self.task_type else [])]
        return list(dict.fromkeys(wanted))


class JobComplete(Input):
    worker_id: WorkerId
    result: Document | None = Field(default=None, description="Any JSON object, at most 64 KB")


class JobFail(Input):
    """A job's failure, in the words a run's failure uses: `reason` (a code) and `detail` (what
    happened); `error`, the queue's older name for `detail`, is accepted in its place."""

    worker_id: WorkerId
    reason: Annotated[str, StringConstraints(min_length=1, max_length=100)] = "job_error"
    detail: Annotated[str, StringConstraints(min_length=1, max_length=4000)] = Field(
        validation_alias=AliasChoices("detail", "error")
    )
    retryable: bool = Field(default=True, description="false dead-letters the job at once")


class JobError(Output):
    attempt: int
    error: str
    worker_id: str | None = None
    at: str


class JobSource(Output):
    type: str
    schedule_id: str | None = None


class QueueJob(Output):
    id: str
    workspace_id: str
    queue_name: str = DEFAULT_QUEUE
    task_type: str
    payload: dict[str, Any] = {}
    priority: int
    status: JobStatus
    attempts: int = 0
    max_attempts: int
    timeout_seconds: int
    available_at: str
    idempotency_key: str | None = None
    worker_id: str | None = None
    claimed_at: str | None = None
    claim_expires_at: str | None = None
    completed_at: str | None = None
    dead_at: str | None = None
    result: dict[str, Any] | None = None
    last_error: str | None = None
    errors: list[JobError] = []
    source: JobSource | None = None
    created_by: str
    created_at: str
    updated_at: str


class JobQuery(ListQuery):
    status: JobStatus | None = None
    task_type: TaskType | None = None


class JobClaimResult(Output):
    worker_id: str
    jobs: list[QueueJob] = Field(description="The jobs now claimed by this worker (empty when none is ready)")


class QueueStats(Output):
    pending: int = 0
    claimed: int = 0
    completed: int = 0
    dead: int = 0
    total: int = 0
    open_by_priority: dict[str, int] = Field(
        default_factory=dict, description="Unfinished (pending or claimed) jobs per priority"
    )

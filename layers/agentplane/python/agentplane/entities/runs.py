"""Runs and what they leave behind: the run itself, its reviews, the workspace's active-run counter
and monthly usage, the batches of its events, and what those events materialize (changed files,
commands, snapshots), its summary and its artifacts.

A run lives in its workspace's partition; GSI1 lists a workspace's runs and GSI2 one project's, by
id (so newest first, read backwards). Its events live in a partition of their own, one item per
batch keyed by the last id the batch holds, so "the events after N" is one Query; what they
materialize lives in the run's data partition, one sort-key prefix per kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pynamodb.attributes import BooleanAttribute, UnicodeAttribute, UnicodeSetAttribute, VersionAttribute

from agentplane import keys
from agentplane.entities.base import Entity, Keys, ListDocument, MapDocument, number, raw_item
from agentplane.entities.patterns import access_pattern
from agentplane.models.run_telemetry import Artifact, RunCommand, RunFile, RunFileDetail, RunSnapshot, RunSummary
from agentplane.models.runs import DEPLOY_KINDS, Run, RunActions, RunKind, RunReview, RunStatus
from agentplane.store import EntityPage, QuerySpec, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition
    from pynamodb.expressions.update import Action

E = TypeVar("E", bound=Entity)

# When a run entered each status after the draft (the draft's is its `created_at`).
STATUS_STAMPS = {
    RunStatus.queued: "queued_at",
    RunStatus.running: "started_at",
    RunStatus.paused: "paused_at",
    RunStatus.awaiting_approval: "awaiting_approval_at",
    RunStatus.completed: "completed_at",
    RunStatus.failed: "failed_at",
    RunStatus.cancelled: "cancelled_at",
    RunStatus.planned: "planned_at",
    RunStatus.discarded: "discarded_at",
    RunStatus.applied: "applied_at",
    RunStatus.destroyed: "destroyed_at",
}


class RunItem(Entity[Run], discriminator="run"):
    workspace_id = UnicodeAttribute()
    id = UnicodeAttribute()
    project_id = UnicodeAttribute(null=True)
    title = UnicodeAttribute()
    prompt = UnicodeAttribute(null=True)  # deploy runs have none
    agent = UnicodeAttribute(null=True)
    model = UnicodeAttribute(null=True)
    # The run's kind (agent, plan, …); `kind()` is the item's own, as for every entity.
    run_kind = UnicodeAttribute(attr_name="kind")
    rag_enabled = BooleanAttribute(null=True)
    safe_mode = BooleanAttribute(null=True)
    requires_approval = BooleanAttribute(null=True)
    heartbeat_timeout_seconds = number(null=True)
    queue_timeout_seconds = number(null=True)
    input_timeout_seconds = number(null=True)
    status = UnicodeAttribute()
    desired_state = UnicodeAttribute(null=True)
    branch = UnicodeAttribute()
    # Events are numbered 1, 2, 3… per run; every event recorded moves this counter (see run_events).
    last_event_id = number(default=0)
    last_event_at = UnicodeAttribute(null=True)
    queued_at = UnicodeAttribute(null=True)
    started_at = UnicodeAttribute(null=True)
    paused_at = UnicodeAttribute(null=True)
    resumed_at = UnicodeAttribute(null=True)
    awaiting_approval_at = UnicodeAttribute(null=True)
    completed_at = UnicodeAttribute(null=True)
    failed_at = UnicodeAttribute(null=True)
    cancelled_at = UnicodeAttribute(null=True)
    planned_at = UnicodeAttribute(null=True)
    discarded_at = UnicodeAttribute(null=True)
    applied_at = UnicodeAttribute(null=True)
    destroyed_at = UnicodeAttribute(null=True)
    failure_reason = UnicodeAttribute(null=True)
    failure_detail = UnicodeAttribute(null=True)
    worker_id = UnicodeAttribute(null=True)
    last_heartbeat_at = UnicodeAttribute(null=True)
    activity = UnicodeAttribute(null=True)
    progress = number(null=True)
    summary = UnicodeAttribute(null=True)
    retry_of = UnicodeAttribute(null=True)
    retried_by = UnicodeAttribute(null=True)
    schedule_id = UnicodeAttribute(null=True)  # the schedule whose firing created it
    maintenance_action = UnicodeAttribute(null=True)
    action = UnicodeAttribute(null=True)  # a maintenance run's action, as projects answer it
    version = number(null=True)  # a maintenance run's, as projects answer it
    review = MapDocument(null=True)
    committed_at = UnicodeAttribute(null=True)
    pushed_at = UnicodeAttribute(null=True)
    status_detail = UnicodeAttribute(null=True)
    # What the agent reported spending (`usage.tokens`), and how much of it the balance could not cover.
    usage_tokens = number(null=True)
    unbilled_tokens = number(null=True)
    # The question the run's agent waits on a person for (logic.run_input), and the answered ones
    # its next heartbeat hands over.
    input_request_id = UnicodeAttribute(null=True)
    answers_pending = UnicodeSetAttribute(null=True)
    # Deploy runs: the capsule, the plan an apply or destroy carries out, the apply that carried out
    # a plan (set once, conditionally: one apply per plan), and the record of what ran (DeployRecord).
    capsule_id = UnicodeAttribute(null=True)
    plan_run_id = UnicodeAttribute(null=True)
    is_destroy = BooleanAttribute(null=True)
    applied_by = UnicodeAttribute(null=True)
    cancel_requested_at = UnicodeAttribute(null=True)
    deploy = MapDocument(null=True)
    # Where a plan's saved plan is (ArtifactsBucket): {key, version_id}.
    plan_artifact = MapDocument(null=True)
    # The wait the run's execution is in (see logic.runs): its task token and phase.
    task_token = UnicodeAttribute(null=True)
    task_phase = UnicodeAttribute(null=True)
    finalized_at = UnicodeAttribute(null=True)
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()

    internal = frozenset({"task_token", "task_phase", "finalized_at", "plan_artifact", "cancel_requested_at"})

    def where(self) -> Keys:
        return Keys(
            keys.run_key(self.workspace_id, self.id),
            gsi1=(keys.run_list_gsi(self.workspace_id), self.id),
            gsi2=(keys.run_project_gsi(self.workspace_id, self.project_id), self.id) if self.project_id else None,
        )

    @property
    def state(self) -> RunStatus:
        return RunStatus(self.status)

    @property
    def approved(self) -> bool:
        return (self.review or {}).get("decision") == "approved"

    @property
    def kind_of_run(self) -> RunKind:
        return RunKind(self.run_kind)

    @property
    def is_deploy(self) -> bool:
        return self.kind_of_run in DEPLOY_KINDS

    @property
    def carries_out_plan(self) -> bool:
        """An apply or destroy: it holds its capsule while it runs (one at a time per capsule)."""
        return self.kind_of_run in (RunKind.apply, RunKind.destroy)

    @property
    def heartbeat_timeout(self) -> int:
        return int(self.heartbeat_timeout_seconds or 300)

    @property
    def input_timeout(self) -> int:
        return int(self.input_timeout_seconds or 86_400)

    @property
    def next_event_id(self) -> int:
        return int(self.last_event_id or 0) + 1

    def record_events(self, count: int, **changes: Any) -> tuple[list[Action], Condition]:
        """Take the next `count` event ids, setting `changes` with them: the actions, and the
        condition that no event was recorded since this run was read (those ids are still free)."""
        unchanged = RunItem.last_event_id == self.last_event_id
        return self.assign(last_event_id=int(self.last_event_id or 0) + count, **changes), unchanged

    def move(self, target: RunStatus, at: str, changes: Mapping[str, Any]) -> tuple[list[Action], Condition]:
        """Move to `target` with its `status_changed` event: the actions (the status, when it
        entered it unless it stays where it is, the event counter and `changes`), and the
        condition that the run is still in the status read, with no event recorded since."""
        still = RunItem.status == self.status
        stamp = {STATUS_STAMPS[target]: at} if target.value != self.status and target in STATUS_STAMPS else {}
        actions, unchanged = self.record_events(1, **{"status": target.value, "updated_at": at, **stamp, **changes})
        return actions, still & unchanged

    def timestamps(self) -> dict[str, str]:
        stamps = {RunStatus.draft.value: self.created_at}
        for status, name in STATUS_STAMPS.items():
            at = getattr(self, name)
            if at:
                stamps[status.value] = at
        return stamps

    def to_model(self, actions: RunActions | None = None) -> Run:
        """The run as the API shows it, with the `actions` its caller may take (see logic.runs)."""
        if actions is None:
            raise TypeError("a run's API model needs the actions its caller may take")
        fields = self.fields()
        fields["kind"] = fields.pop("run_kind")
        fields["usage"] = {
            "tokens": int(fields.pop("usage_tokens", 0)),
            "unbilled_tokens": int(fields.pop("unbilled_tokens", 0)),
        }
        if self.is_deploy:
            record = {
                **(self.deploy or {}),
                "capsule_id": self.capsule_id,
                "plan_run_id": self.plan_run_id,
                "is_destroy": bool(self.is_destroy),
                "applied_by": self.applied_by,
            }
            fields["deploy"] = record
        else:
            fields.pop("deploy", None)
        return Run.model_validate({**fields, "timestamps": self.timestamps(), "actions": actions})

    def request(self) -> dict[str, Any]:
        """What the run was asked to do, as a `RunCreate` takes it (a retry asks the same)."""
        fields = {name: getattr(self, name) for name in _REQUEST_FIELDS}
        fields["kind"] = self.run_kind
        return {name: value for name, value in fields.items() if value is not None}


_REQUEST_FIELDS = (
    "project_id",
    "title",
    "prompt",
    "agent",
    "model",
    "rag_enabled",
    "safe_mode",
    "requires_approval",
    "heartbeat_timeout_seconds",
    "queue_timeout_seconds",
    "input_timeout_seconds",
    "capsule_id",
    "plan_run_id",
    "is_destroy",
)


def from_item(entity: type[E], item: Mapping[str, Any]) -> E:
    """An item given as the table holds it (read beside another family's items, which the store
    answers as plain dicts), as `entity`."""
    return entity.from_raw_data(raw_item(item))


def run_from_item(item: Mapping[str, Any]) -> RunItem:
    """A run given as the table holds it (a draft built by another family, a read beside others)."""
    return from_item(RunItem, item)


class RunReviewItem(Entity[RunReview], discriminator="run_review"):
    workspace_id = UnicodeAttribute()
    run_id = UnicodeAttribute()
    id = UnicodeAttribute()
    decision = UnicodeAttribute()
    notes = UnicodeAttribute(null=True)
    reviewer_id = UnicodeAttribute()
    created_at = UnicodeAttribute()

    internal = frozenset({"workspace_id", "run_id"})

    def where(self) -> Keys:
        return Keys(keys.run_review_key(self.workspace_id, self.run_id, self.id))


class RunCounterItem(Entity, discriminator="run_counter"):
    """How many of a workspace's runs hold an active-run slot; kept by key alone (`tally`), so
    the item carries no kind of its own."""

    active = number(default=0)

    @classmethod
    def below(cls, cap: int) -> Condition:
        below: Condition = cls.active.does_not_exist() | (cls.active < cap)
        return below


class RunUsageItem(Entity, discriminator="run_usage"):
    """A workspace's finished runs of one month, by outcome; kept by key alone (`tally`)."""

    runs_completed = number(null=True)
    runs_failed = number(null=True)
    runs_cancelled = number(null=True)

    @classmethod
    def one_more(cls, status: RunStatus) -> Action:
        counters = {
            RunStatus.completed: cls.runs_completed,
            RunStatus.planned: cls.runs_completed,
            RunStatus.applied: cls.runs_completed,
            RunStatus.destroyed: cls.runs_completed,
            RunStatus.failed: cls.runs_failed,
            RunStatus.cancelled: cls.runs_cancelled,
            RunStatus.discarded: cls.runs_cancelled,
        }
        return counters[status].add(1)


# ------------------------------------------------------------------------- events and telemetry


class RunEventsItem(Entity, discriminator="run_events"):
    """Consecutive events of a run (ids `first_id`…`last_id`); the table's stream carries each new
    batch to the run's live subscribers."""

    workspace_id = UnicodeAttribute()
    run_id = UnicodeAttribute()
    first_id = number()
    last_id = number()
    events = ListDocument()

    def where(self) -> Keys:
        return Keys(keys.run_events_key(self.workspace_id, self.run_id, int(self.last_id)))


class RunFileItem(Entity[RunFileDetail], discriminator="run_file"):
    """The latest change of one path a run's events reported (`id` is a stable hash of the path)."""

    workspace_id = UnicodeAttribute()
    run_id = UnicodeAttribute()
    event_id = number()
    id = UnicodeAttribute()
    path = UnicodeAttribute()
    change = UnicodeAttribute()
    diff = UnicodeAttribute(default="")
    additions = number(default=0)
    deletions = number(default=0)
    updated_at = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(keys.run_file_key(self.workspace_id, self.run_id, self.id))

    def listed(self) -> RunFile:
        return RunFile.model_validate(self.fields())


class RunCommandItem(Entity[RunCommand], discriminator="run_command"):
    workspace_id = UnicodeAttribute()
    run_id = UnicodeAttribute()
    event_id = number()
    id = UnicodeAttribute()
    command = UnicodeAttribute()
    exit_code = number(null=True)
    duration_ms = number(null=True)
    stdout_bytes = number(default=0)
    stderr_bytes = number(default=0)
    created_at = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(keys.run_command_key(self.workspace_id, self.run_id, self.id))


class RunSnapshotItem(Entity[RunSnapshot], discriminator="run_snapshot"):
    workspace_id = UnicodeAttribute()
    run_id = UnicodeAttribute()
    event_id = number()
    id = UnicodeAttribute()
    label = UnicodeAttribute()
    files = ListDocument(default=list)
    created_at = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(keys.run_snapshot_key(self.workspace_id, self.run_id, self.id))


class RunSummaryItem(Entity[RunSummary], discriminator="run_summary"):
    """The run's structured summary, replaced whole by each PUT (versioned)."""

    workspace_id = UnicodeAttribute()
    run_id = UnicodeAttribute()
    text = UnicodeAttribute(null=True)
    changed_files = ListDocument(null=True)
    risks = ListDocument(null=True)
    tests = MapDocument(null=True)
    docs = ListDocument(null=True)
    updated_by = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()

    def where(self) -> Keys:
        return Keys(keys.run_summary_key(self.workspace_id, self.run_id))


class RunArtifactItem(Entity[Artifact], discriminator="run_artifact"):
    workspace_id = UnicodeAttribute()
    run_id = UnicodeAttribute()
    id = UnicodeAttribute()
    name = UnicodeAttribute()
    content_type = UnicodeAttribute()
    size = number()
    object_key = UnicodeAttribute()
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(keys.run_artifact_key(self.workspace_id, self.run_id, self.id))

    def to_model(self, upload_url: str = "", upload_expires_at: str = "") -> Artifact:
        return Artifact.model_validate(
            {**self.fields(), "upload_url": upload_url, "upload_expires_at": upload_expires_at}
        )


# ------------------------------------------------------------------------------ access patterns


def _narrowed(**equal: str | None) -> Condition | None:
    condition: Condition | None = None
    for name, value in equal.items():
        if value is not None:
            test = RunItem.get_attributes()[name] == value
            condition = test if condition is None else condition & test
    return condition


@access_pattern(RunItem, partition=keys.run_list_gsi, index=keys.GSI1, sort="all, newest first")
def runs_of_workspace(
    ws_id: str,
    *,
    status: str | None,
    agent: str | None,
    schedule_id: str | None,
    limit: int,
    start: dict[str, Any] | None,
) -> EntityPage[RunItem]:
    """A workspace's runs, newest first, in one Query; status, agent and schedule narrow what it
    read (a page may come back short, its cursor goes on)."""
    condition = _narrowed(status=status, agent=agent, schedule_id=schedule_id)
    spec = QuerySpec(keys.run_list_gsi(ws_id), index=keys.GSI1, filter=condition, newest_first=True)
    return get_store().select(RunItem, spec, limit=limit, start=start)


@access_pattern(RunItem, partition=keys.run_list_gsi, index=keys.GSI1, sort="range of run ids")
def runs_created_between(
    ws_id: str, window: tuple[str, str], *, limit: int, start: dict[str, Any] | None
) -> EntityPage[RunItem]:
    """A page of a workspace's runs whose ids (time-ordered) fall in `window`, oldest first."""
    spec = QuerySpec(keys.run_list_gsi(ws_id), index=keys.GSI1, sk_between=window)
    return get_store().select(RunItem, spec, limit=limit, start=start)


@access_pattern(RunItem, partition=keys.run_project_gsi, index=keys.GSI2, sort="all, newest first")
def runs_of_project(
    ws_id: str,
    project_id: str,
    *,
    status: str | None,
    agent: str | None,
    schedule_id: str | None,
    limit: int,
    start: dict[str, Any] | None,
) -> EntityPage[RunItem]:
    """One project's runs, newest first, in one Query, narrowed as `runs_of_workspace` is."""
    condition = _narrowed(status=status, agent=agent, schedule_id=schedule_id)
    spec = QuerySpec(keys.run_project_gsi(ws_id, project_id), index=keys.GSI2, filter=condition, newest_first=True)
    return get_store().select(RunItem, spec, limit=limit, start=start)


@access_pattern(RunEventsItem, partition=keys.run_events_pk, sort="range {after + 1} … the highest id")
def events_after(ws_id: str, run_id: str, after: int, *, limit: int) -> EntityPage[RunEventsItem]:
    """The batches holding a run's events with an id above `after`, oldest first, strongly
    consistent (REST backfill, SSE and WebSocket replay read the same sequence); `limit` batches."""
    spec = QuerySpec(
        keys.run_events_pk(ws_id, run_id),
        sk_between=(keys.run_events_sk(after + 1), keys.run_events_sk(keys.RUN_EVENTS_MAX_ID)),
        consistent=True,
    )
    return get_store().select(RunEventsItem, spec, limit=limit)


@access_pattern(RunFileItem, partition=keys.run_data_pk, sort=f"prefix {keys.RUN_FILE_PREFIX}")
def files_of_run(ws_id: str, run_id: str, *, limit: int, start: dict[str, Any] | None) -> EntityPage[RunFileItem]:
    """The files a run changed, by file id (a hash of the path)."""
    spec = QuerySpec(keys.run_data_pk(ws_id, run_id), sk_prefix=keys.RUN_FILE_PREFIX)
    return get_store().select(RunFileItem, spec, limit=limit, start=start)


@access_pattern(RunCommandItem, partition=keys.run_data_pk, sort=f"prefix {keys.RUN_COMMAND_PREFIX}")
def commands_of_run(ws_id: str, run_id: str, *, limit: int, start: dict[str, Any] | None) -> EntityPage[RunCommandItem]:
    """The commands a run executed, by command id (in the order they were reported)."""
    spec = QuerySpec(keys.run_data_pk(ws_id, run_id), sk_prefix=keys.RUN_COMMAND_PREFIX)
    return get_store().select(RunCommandItem, spec, limit=limit, start=start)


@access_pattern(RunSnapshotItem, partition=keys.run_data_pk, sort=f"prefix {keys.RUN_SNAPSHOT_PREFIX}")
def snapshots_of_run(
    ws_id: str, run_id: str, *, limit: int, start: dict[str, Any] | None
) -> EntityPage[RunSnapshotItem]:
    """The snapshots a run took, by snapshot id (in the order they were reported)."""
    spec = QuerySpec(keys.run_data_pk(ws_id, run_id), sk_prefix=keys.RUN_SNAPSHOT_PREFIX)
    return get_store().select(RunSnapshotItem, spec, limit=limit, start=start)

"""Runs: the lifecycle, as conditional writes, with a Step Functions execution owning the timers.

    draft → queued → running ⇄ paused → completed | failed | cancelled
                              running → awaiting_approval → completed | failed (rejected)

Every transition is one TransactWriteItems: the run moves only if it is still in the status we
read (and its event counter is where we read it), its `status_changed` event and its audit row go
in with it, and the workspace's active-run counter moves when a run takes or frees a slot. Two
concurrent callers therefore cannot both win; the loser gets a 409 carrying `current_status`.

The execution (statemachine/run.asl.json) waits on task tokens the lifecycle function records on
the run: "claim" (queue timeout), "work" (heartbeat timeout = a silent agent fails the run as
`stalled`), "input" (the agent waits for a person's answer: logic.run_input) and "approval". The
API resolves those waits with SendTaskSuccess/Failure after its own write has won, so the table is
always the source of truth and the execution only keeps time.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from agentplane import audit, clients, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.billing import TokenBalanceItem
from agentplane.entities.projects import ProjectItem
from agentplane.entities.runs import (
    RunCounterItem,
    RunItem,
    RunReviewItem,
    RunUsageItem,
    run_from_item,
    runs_of_project,
    runs_of_workspace,
)
from agentplane.entities.workspaces import WorkspaceItem
from agentplane.errors import (
    AppError,
    Conflict,
    Forbidden,
    InvalidTransition,
    MissingScope,
    NotFound,
    PaymentRequired,
    RateLimited,
)
from agentplane.ids import iso, new_id, now, parse_iso
from agentplane.lazy import lazy_module
from agentplane.logic import known_secrets, run_budget, run_input, run_waits
from agentplane.logic.billing import limits, tokens
from agentplane.logic.run_events import event_record, events_batch
from agentplane.models.runs import (
    ACTIVE,
    DEPLOY_KINDS,
    FINISHED,
    TERMINAL,
    AgentDirective,
    ApproveRequest,
    CommitRequest,
    Run,
    RunActions,
    RunClaim,
    RunComplete,
    RunCreate,
    RunDesiredState,
    RunFail,
    RunHeartbeat,
    RunKind,
    RunStatus,
)
from agentplane.observability import logger, run_finished, run_heartbeat, run_started
from agentplane.redact import redact_text, redact_value
from agentplane.settings import get_settings
from agentplane.store import ConditionFailed, Transaction, TransactionFailed, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition

    from agentplane.logic.deploy import runs as deploy_runs
else:
    # The deploy side of runs, loaded by the first deploy run a function sees: most runs are not
    # deploy runs, and it brings the capsules' and connections' modules.
    deploy_runs = lazy_module("agentplane.logic.deploy.runs")

# How often an agent should beat, relative to the run's heartbeat timeout.
HEARTBEAT_FRACTION = 3
_MAX_ATTEMPTS = 8
_LIVE = (RunStatus.running.value, RunStatus.paused.value)
_FINISHED_VALUES = tuple(sorted(status.value for status in FINISHED))
# The operations a run's transactions tell apart when one is cancelled: the run's own write, and
# the workspace's active-run counter taking a slot (refused at the cap: a 429); a deploy run's
# capsule and the run it passes the capsule to (logic.deploy.runs) move under it and are read again.
RUN, RUN_SLOT = "run", "run_slot"
_REREAD = (RUN, None, "capsule", "next_run")


class Actor(Protocol):
    """Who writes a transition: a caller's `Access`, or the run's execution acting on its own."""

    @property
    def workspace_id(self) -> str: ...

    @property
    def actor_id(self) -> str: ...

    def transaction(self) -> Transaction: ...

    def audit(
        self, tx: Transaction, action: str, target_type: str, target_id: str, details: Mapping[str, Any] | None = None
    ) -> None: ...

    def commit(self, tx: Transaction) -> None: ...


@dataclass(frozen=True)
class _Execution:
    """The run's execution acting on its own (a wait ran out): no caller's token or membership to
    re-check, and audited as the system."""

    workspace_id: str
    actor_id: str = "system"

    def transaction(self) -> Transaction:
        return get_store().transaction()

    def audit(
        self, tx: Transaction, action: str, target_type: str, target_id: str, details: Mapping[str, Any] | None = None
    ) -> None:
        audit.record(tx, self.workspace_id, self.actor_id, action, target_type, target_id, "", details)

    def commit(self, tx: Transaction) -> None:
        tx.commit()


# ------------------------------------------------------------------------------------- reading


def _load(ws: str, run_id: str) -> RunItem:
    return get_store().read_or_404(RunItem, keys.run_key(ws, run_id), f"run {run_id} not found")


def _load_with_workspace(ws: str, run_id: str, *, secrets: bool = False) -> tuple[RunItem, bool, tuple[str, ...]]:
    """The run and its workspace's auto-push setting in one BatchGetItem (reviews and git gates
    need both), with the workspace's secret values when what is recorded must be redacted."""
    extra = known_secrets.wanted(ws) if secrets else []
    found_run, found_workspace, *secret_items = get_store().read_each(
        [(RunItem, keys.run_key(ws, run_id)), (WorkspaceItem, keys.workspace_key(ws)), *extra]
    )
    run = RunItem.found(found_run)
    if run is None:
        raise NotFound(f"run {run_id} not found")
    known = known_secrets.values_in(ws, secret_items) if secrets else ()
    return run, _auto_push_of(WorkspaceItem.found(found_workspace)), known


def _load_with_secrets(ws: str, run_id: str) -> tuple[RunItem, tuple[str, ...]]:
    """The run and the workspace's secret values (to redact what the agent wrote) in one BatchGetItem."""
    run, known = known_secrets.read_with(RunItem, keys.run_key(ws, run_id), ws)
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return run, known


def _as_run(run: RunItem | Mapping[str, Any]) -> RunItem:
    """A run given by another family as the table holds it (a draft it built, an item it read)."""
    return run if isinstance(run, RunItem) else run_from_item(run)


def _auto_push_of(workspace: WorkspaceItem | None) -> bool:
    if workspace is None:
        return False
    return bool(workspace.auto_push or (workspace.settings or {}).get("auto_push"))


def _auto_push_for(ws: str, runs: Iterable[RunItem]) -> bool:
    """The workspace's auto-push setting as `to_run` needs it for `runs`: only an approved run can
    be pushed, so the workspace is read (once) only when one of them is approved."""
    return any(run.approved for run in runs) and _auto_push_of(get_store().read(WorkspaceItem, keys.workspace_key(ws)))


def execution_arn(run_id: str) -> str:
    """Each run's execution is named after the run, so its ARN is known without storing it."""
    machine = get_settings().run_state_machine_arn
    return f"{machine.replace(':stateMachine:', ':execution:')}:{run_id}" if machine else ""


def actions_for(run: RunItem, access: Access | None = None, auto_push: bool = False) -> RunActions:
    status = run.state

    def may(scope: str) -> bool:
        return access is None or access.may(scope)

    if run.is_deploy:
        return _deploy_actions(run, may)
    reviewable = status == RunStatus.awaiting_approval or (status == RunStatus.completed and not run.review)
    control = may("runs:control")
    return RunActions(
        can_start=status == RunStatus.draft and may("runs:start"),
        can_pause=status == RunStatus.running and control,
        can_resume=status == RunStatus.paused and control,
        can_cancel=status not in TERMINAL and control,
        can_retry=status == RunStatus.failed and not run.retried_by and may("runs:start"),
        can_approve=reviewable and control,
        can_reject=reviewable and control,
        can_commit=run.approved and not run.committed_at and may("git:commit"),
        can_push=run.approved and auto_push and not run.pushed_at and may("git:push"),
        can_answer=run_input.can_answer(run) and control,
    )


def _deploy_actions(run: RunItem, may: Callable[[str], bool]) -> RunActions:
    """A deploy run's actions: a plan is approved (`deploy:apply`), applied or discarded once
    planned; any deploy run is cancelled until it ends, and force-cancelled after a cool-off."""
    status, kind = run.state, run.kind_of_run
    scope = "deploy:plan" if kind == RunKind.plan else "deploy:apply"
    planned = status == RunStatus.planned and not run.applied_by
    reviewable = planned and not run.review
    live = status not in FINISHED
    return RunActions(
        can_start=status == RunStatus.draft and may(scope),
        can_pause=False,
        can_resume=False,
        can_cancel=live and not run.cancel_requested_at and may(scope),
        can_retry=kind == RunKind.plan and status == RunStatus.failed and not run.retried_by and may(scope),
        can_approve=reviewable and may("deploy:apply"),
        can_reject=reviewable and may("deploy:apply"),
        can_commit=False,
        can_push=False,
        can_discard=planned and may("deploy:plan"),
        can_apply=planned and run.approved and may("deploy:apply"),
        can_force_cancel=live and _force_cancel_due(run) and may(scope),
    )


def _force_cancel_due(run: RunItem) -> bool:
    return bool(run.cancel_requested_at) and _force_cancel_wait(run) <= 0


def _force_cancel_wait(run: RunItem) -> float:
    """Seconds until a requested cancel may be forced (the runner's time to stop its tool)."""
    waited = (now() - parse_iso(str(run.cancel_requested_at))).total_seconds()
    return get_settings().deploy_force_cancel_after_seconds - waited


def to_run(run: RunItem | Mapping[str, Any], access: Access | None = None, auto_push: bool = False) -> Run:
    """The run as the API shows it, with what `access` may do with it. Reads nothing: `auto_push`
    is the workspace's setting, which only an approved run's actions depend on (`_auto_push_for`)."""
    run = _as_run(run)
    return run.to_model(actions_for(run, access, auto_push))


def get_run(access: Access, run_id: str) -> Run:
    run = _load(access.workspace_id, run_id)
    return to_run(run, access, _auto_push_for(access.workspace_id, [run]))


def list_runs(
    access: Access,
    *,
    status: RunStatus | None,
    project_id: str | None,
    agent: str | None,
    limit: int,
    cursor: str | None,
    schedule_id: str | None = None,
) -> tuple[list[Run], str | None]:
    """Newest first, one Query on the workspace's (or the project's) run index; status, agent and
    schedule narrow that page (a page may come back short, its cursor goes on)."""
    ws = access.workspace_id
    query = {"status": status, "project_id": project_id, "agent": agent, "schedule_id": schedule_id}
    scope = f"runs:{ws}"
    start = decode_cursor(cursor, scope, query)
    narrowed = {"status": status.value if status else None, "agent": agent, "schedule_id": schedule_id}
    if project_id is not None:
        page = runs_of_project(ws, project_id, **narrowed, limit=limit, start=start)
    else:
        page = runs_of_workspace(ws, **narrowed, limit=limit, start=start)
    auto_push = _auto_push_for(ws, page.items)
    return [to_run(run, access, auto_push) for run in page.items], encode_cursor(page.last_key, scope, query)


# ------------------------------------------------------------------------------------ creating


def new_run(
    ws: str, body: RunCreate, created_by: str, *, retry_of: str | None = None, fields: Mapping[str, Any] | None = None
) -> RunItem:
    """A draft run of `body` (a retry names the run it retries; a deploy run's draft adds `fields`)."""
    run_id = new_id("run")
    at = iso()
    request = {**body.model_dump(mode="json", exclude_none=True), **(fields or {})}
    if body.kind not in DEPLOY_KINDS:
        request.pop("is_destroy", None)
    return RunItem(
        **{name: value for name, value in request.items() if name != "kind"},
        run_kind=request["kind"],
        id=run_id,
        workspace_id=ws,
        status=RunStatus.draft.value,
        desired_state=RunDesiredState.run.value,
        branch=f"agentplane/{run_id}",
        last_event_id=0,
        retry_of=retry_of,
        created_by=created_by,
        created_at=at,
        updated_at=at,
    )


def new_run_item(
    ws: str,
    body: RunCreate,
    created_by: str,
    *,
    status: RunStatus = RunStatus.draft,
    retry_of: str | None = None,
) -> dict[str, Any]:
    """A new run as the table holds it (schedules write the runs they fire in their own transaction)."""
    run = new_run(ws, body, created_by, retry_of=retry_of)
    run.status = status.value
    run.stamp()
    return run.as_item()


def _require_project(ws: str, project_id: str | None) -> None:
    if project_id is None:
        return
    project = get_store().read(ProjectItem, keys.project_key(ws, project_id))
    if project is None or project.deleted_at:
        raise NotFound(f"project {project_id} not found")


def create_run(access: Access, body: RunCreate) -> Run:
    """A draft run; a deploy run's is checked as its start will check it (capsule, bindings, plan)."""
    fields: dict[str, Any] | None = None
    if body.kind in DEPLOY_KINDS:
        fields = deploy_runs.draft_fields(access, body)
    else:
        access.require("runs:start")
    _require_project(access.workspace_id, (fields or {}).get("project_id", body.project_id))
    run = new_run(access.workspace_id, body, access.actor_id, fields=fields)
    tx = access.transaction()
    tx.create(run)
    access.audit(tx, "run.created", "run", run.id, {"title": run.title, "kind": body.kind.value})
    access.commit(tx)
    return to_run(run, access)


# --------------------------------------------------------------------------------- transitions


@dataclass
class Transition:
    """One status change: where it may come from, where it goes, and what else it writes."""

    action: str
    allowed_from: frozenset[RunStatus]
    to: RunStatus | Callable[[RunItem], RunStatus]
    fields: dict[str, Any] = field(default_factory=dict)
    event_data: dict[str, Any] = field(default_factory=dict)
    # Further writes of the same transaction, given the run as it will be and its new status.
    extra: Callable[[Transaction, RunItem, RunStatus], None] | None = None
    condition: Condition | None = None
    # Checked on the run as read, before writing (e.g. "this worker holds the run").
    guard: Callable[[RunItem], None] | None = None
    reads_workspace: bool = False
    # Fields that depend on the run as read (added to `fields`).
    fields_for: Callable[[RunItem], dict[str, Any]] | None = None
    # A further condition that depends on the run as read (added to `condition`).
    condition_for: Callable[[RunItem], Condition] | None = None
    # Fields (of `fields` and `event_data`) the agent wrote: redacted with the workspace's secrets,
    # which are read with the run.
    redacted: frozenset[str] = frozenset()
    # Reads what the writes depend on beyond the run (a deploy run's capsule, say), on every attempt.
    before: Callable[[RunItem], None] | None = None
    # Changes of the capsule an ending apply or destroy gives up, written with the release (the
    # state it leaves): the actions and their condition.
    capsule_changes: Callable[[], tuple[list[Any], Condition | None]] | None = None
    # Further changes of the run itself that depend on the run as read (counters it adds to).
    run_actions: Callable[[RunItem], list[Any]] | None = None

    def check(self, run: RunItem) -> RunStatus:
        """Where the run goes from here; refused (409 with the current status) if it may not."""
        if self.guard is not None:
            self.guard(run)
        if run.state not in self.allowed_from:
            raise InvalidTransition(f"run {run.id} cannot {self.action} while {run.status}", current_status=run.status)
        return self.to(run) if callable(self.to) else self.to

    def changes(self, run: RunItem, known: tuple[str, ...]) -> dict[str, Any]:
        changes = _redacted(self.fields, self.redacted, known)
        if self.fields_for is not None:
            changes.update(self.fields_for(run))
        return changes

    def conditions(self, run: RunItem) -> list[Condition]:
        found = [] if self.condition is None else [self.condition]
        return found if self.condition_for is None else [*found, self.condition_for(run)]


def _redacted(fields: dict[str, Any], names: frozenset[str], known: tuple[str, ...]) -> dict[str, Any]:
    return {name: redact_value(value, known) if name in names else value for name, value in fields.items()}


@dataclass(frozen=True)
class _Read:
    """A run as a transition reads it, with the workspace's auto-push setting and secret values
    when the transition needs them."""

    run: RunItem
    auto_push: bool | None = None
    known: tuple[str, ...] = ()


@dataclass(frozen=True)
class Moved:
    """A transition written: the run as it now is, the status it left, and the workspace's
    auto-push setting when the transition read it with the run."""

    run: RunItem
    was: RunStatus
    auto_push: bool | None = None


def _read_for(ws: str, run_id: str, transition: Transition) -> _Read:
    if transition.reads_workspace:
        run, auto_push, known = _load_with_workspace(ws, run_id, secrets=bool(transition.redacted))
        return _Read(run, auto_push, known)
    if transition.redacted:
        run, known = _load_with_secrets(ws, run_id)
        return _Read(run, known=known)
    return _Read(_load(ws, run_id))


def _apply(actor: Actor, run_id: str, transition: Transition, first: _Read | None = None) -> Moved:
    """Write `transition` as one transaction; read the run again and retry when it moved or took
    an event since it was read. `first` is the run as the caller read it already (to tell which
    transition to write), taken for the first attempt in place of reading it again."""
    for attempt in range(_MAX_ATTEMPTS):
        read = first if attempt == 0 and first is not None else _read_for(actor.workspace_id, run_id, transition)
        run, was = read.run, read.run.state
        target = transition.check(run)
        if transition.before is not None:
            transition.before(run)
        holding = deploy_runs.capsule_to_release(run, target) if run.carries_out_plan else None
        tx = actor.transaction()
        _write_move(tx, actor, transition, read, target)
        if holding is not None:
            changes = transition.capsule_changes() if transition.capsule_changes is not None else None
            deploy_runs.release_writes(tx, run, holding, changes)
        try:
            actor.commit(tx)
        except TransactionFailed as failure:
            if failure.failed == RUN_SLOT and _takes_slot(was, target):
                raise slot_refused(run.workspace_id, failure) from failure
            refused = deploy_runs.refused_start(failure.failed, run) if run.is_deploy else None
            if refused is not None:
                raise refused from failure
            if _lost_race(failure):
                continue
            raise
        return Moved(run, was, read.auto_push)
    raise Conflict(f"run {run_id} is changing too quickly; retry")


def _write_move(tx: Transaction, actor: Actor, transition: Transition, read: _Read, target: RunStatus) -> None:
    """The run's move, its slot, its `status_changed` event, what the transition adds and the audit row."""
    run, known = read.run, read.known
    was, at, event_id = run.state, iso(), run.next_event_id
    changes, conditions = transition.changes(run, known), transition.conditions(run)
    open_request = run.input_request_id
    changes = {**run_input.closing_changes(run, target), **changes}
    actions, unmoved = run.move(target, at, changes)
    if transition.run_actions is not None:
        actions = [*actions, *transition.run_actions(run)]
    for condition in conditions:
        unmoved &= condition
    tx.change(run, actions, unmoved, name=RUN)
    run_input.close_request(tx, run, open_request, target)
    if _takes_slot(was, target):
        _take_slot(tx, run.workspace_id)
    elif was in ACTIVE and target not in ACTIVE:
        _free_slot(tx, run.workspace_id)
    data = {"from": was.value, "to": target.value, **_redacted(transition.event_data, transition.redacted, known)}
    tx.save(events_batch(run.workspace_id, run.id, [event_record(event_id, "status_changed", data=data, at=at)]))
    if transition.extra is not None:
        transition.extra(tx, run, target)  # noqa: S610 - a callback, not Django
    actor.audit(tx, f"run.{transition.action}", "run", run.id, {"from": was.value, "to": target.value})


def _takes_slot(was: RunStatus, target: RunStatus) -> bool:
    return was not in ACTIVE and target in ACTIVE


def _lost_race(failure: TransactionFailed) -> bool:
    """The run moved or took an event since we read it, a concurrent write touched the same items,
    or what the transition adds (a notification landing in order, unnamed) lost a race: read again."""
    return failure.failed in _REREAD or "TransactionConflict" in failure.reasons


def _shown(access: Access, moved: Moved) -> Run:
    auto_push = moved.auto_push
    if auto_push is None:
        auto_push = _auto_push_for(access.workspace_id, [moved.run])
    return to_run(moved.run, access, auto_push)


# An agent's work includes waiting for a person's answer to its question (logic.run_input): what
# ends the one (a complete, a fail) ends the other.
_WAITS_OF_PHASE = {"work": ("work", run_input.INPUT_PHASE)}


def _signal(
    run: RunItem, phase: str, *, success: dict[str, Any] | None = None, error: str = "", fresh: bool = False
) -> None:
    """Resume the execution's wait for `phase`, if it is waiting on it.

    Called after our write committed, with a fresh read: either the execution recorded its token
    before our write (we see it here) or after (the lifecycle function then sees our new status
    and resolves the wait itself). A wait resolved twice is harmless."""
    phases = _WAITS_OF_PHASE.get(phase, (phase,))
    if not fresh and not (run.task_token and run.task_phase in phases):
        # The run as read before our write had no token for this wait: read it again (see above).
        run = get_store().read(RunItem, keys.run_key(run.workspace_id, run.id)) or run
    token = run.task_token
    if not token or run.task_phase not in phases:
        return
    run_waits.resolve(run.id, token, success=success, error=error)


# What a function that starts runs declares: `create_app(requires=runs.STARTS_RUNS)`.
STARTS_RUNS = ("run_state_machine_arn",)


def start_execution(run: RunItem | Mapping[str, Any]) -> None:
    run = _as_run(run)
    arn = get_settings().run_state_machine_arn  # required at cold start (STARTS_RUNS)
    execution_input = {
        "workspace_id": run.workspace_id,
        "run_id": run.id,
        "queue_timeout_seconds": int(run.queue_timeout_seconds or 3600),
        "heartbeat_timeout_seconds": run.heartbeat_timeout,
        "input_timeout_seconds": run.input_timeout,
        "approval_timeout_seconds": get_settings().approval_timeout_seconds,
    }
    try:
        clients.stepfunctions().start_execution(stateMachineArn=arn, name=run.id, input=json.dumps(execution_input))
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ExecutionAlreadyExists":
            raise
    else:
        run_started()


def start_run(access: Access, run_id: str) -> Run:
    start = Transition("start", frozenset({RunStatus.draft}), RunStatus.queued)
    run = _load(access.workspace_id, run_id)
    if run.is_deploy:
        _deploy_start(access, run, start)
    else:
        access.require("runs:start")
    moved = _apply(access, run_id, start, _Read(run))
    start_execution(moved.run)
    return _shown(access, moved)


def _deploy_start(access: Access | None, run: RunItem, start: Transition) -> None:
    """A deploy run starts as it was created: its capsule's bindings resolved (a plan), or its plan
    still the one to carry out (an apply or destroy, which then takes or waits for the capsule).
    `access` None: the system starts it (auto-apply)."""
    if access is not None:
        deploy_runs.require_scope(access, run.kind_of_run)
    context: list[Any] = []

    def read_capsule(current: RunItem) -> None:
        context[:] = [deploy_runs.read_for_start(current)]

    start.before = read_capsule
    start.fields_for = lambda current: deploy_runs.start_fields(current, context[0])
    start.extra = lambda tx, current, _target: deploy_runs.start_writes(tx, current, context[0])


def _not_deploy(action: str) -> Callable[[RunItem], None]:
    def guard(run: RunItem) -> None:
        if run.is_deploy:
            raise InvalidTransition(f"a deploy run cannot {action}: cancel it instead", current_status=run.status)

    return guard


def pause_run(access: Access, run_id: str) -> Run:
    pause = Transition(
        "pause",
        frozenset({RunStatus.running}),
        RunStatus.paused,
        fields={"desired_state": RunDesiredState.pause.value},
        guard=_not_deploy("pause"),
    )
    return _shown(access, _apply(access, run_id, pause))


def resume_run(access: Access, run_id: str) -> Run:
    run = _load(access.workspace_id, run_id)
    if run.status_detail == run_budget.BUDGET_EXHAUSTED:
        # Paused because the tokens ran out: resumable by hand once there are tokens again.
        balance = int(tokens.read_balance(access.workspace_id).balance or 0)
        if balance <= 0:
            raise PaymentRequired(
                f"run {run_id} is paused because the workspace's token balance is used up; add tokens to resume it",
                balance=balance,
                status_detail=run_budget.BUDGET_EXHAUSTED,
            )
        return _shown(access, _apply(access, run_id, _budget_resume(run_id), _Read(run)))
    resume = Transition(
        "resume",
        frozenset({RunStatus.paused}),
        RunStatus.running,
        fields={"desired_state": RunDesiredState.run.value, "resumed_at": iso()},
        guard=_not_deploy("resume"),
    )
    return _shown(access, _apply(access, run_id, resume, _Read(run)))


def cancel_run(access: Access, run_id: str) -> Run:
    run = _load(access.workspace_id, run_id)
    if run.is_deploy:
        deploy_runs.require_scope(access, run.kind_of_run)
        if run.state in (RunStatus.running, RunStatus.paused):
            return _request_cancel(access, run)
    else:
        access.require("runs:control")

    def tell_creator(tx: Transaction, run: RunItem, _target: RunStatus) -> None:
        # Someone else cancelled the creator's run: they hear of it, in the same transaction.
        if run.created_by != access.actor_id:
            _notify_in(tx, run, "finished", f"Run '{run.title}' cancelled")

    def same_wait(run: RunItem) -> Condition:
        # The cancel wins only if the execution still waits where we read it, so the wait we
        # release below is the one it is in; if it moved meanwhile, we read the run again.
        if run.task_token:
            return RunItem.task_token == run.task_token
        return RunItem.task_token.does_not_exist()

    cancel = Transition(
        "cancel",
        frozenset(RunStatus) - FINISHED,
        RunStatus.cancelled,
        fields={"desired_state": RunDesiredState.cancel.value},
        extra=tell_creator,
        condition_for=same_wait,
    )
    moved = _apply(access, run_id, cancel, _Read(run))
    _release_wait(moved.run)
    return _shown(access, moved)


def _request_cancel(access: Access, run: RunItem) -> Run:
    """A deploy run's tool is interrupted, not killed: the runner hears `cancel` on its next
    heartbeat and ends the run (recording any state it wrote) as cancelled. If it does not, the
    run can be force-cancelled once the cool-off has passed."""
    if run.cancel_requested_at:
        raise Conflict(f"run {run.id}'s cancel was requested at {run.cancel_requested_at}", current_status=run.status)
    request = Transition(
        "cancel",
        frozenset({RunStatus.running, RunStatus.paused}),
        lambda current: current.state,
        fields={
            "desired_state": RunDesiredState.cancel.value,
            "cancel_requested_at": iso(),
            "status_detail": deploy_runs.CANCEL_REQUESTED,
        },
        event_data={"cancel_requested": True},
        condition=RunItem.cancel_requested_at.does_not_exist(),
    )
    return _shown(access, _apply(access, run.id, request, _Read(run)))


def force_cancel_run(access: Access, run_id: str) -> Run:
    """End a deploy run whose runner did not answer its cancel, once the cool-off has passed; the
    capsule passes on. What the runner reports afterwards is refused."""
    run = _load(access.workspace_id, run_id)
    if not run.is_deploy:
        raise InvalidTransition("only deploy runs are force-cancelled; cancel this run", current_status=run.status)
    deploy_runs.require_scope(access, run.kind_of_run)
    if run.state in FINISHED:
        raise InvalidTransition(f"run {run_id} is {run.status}", current_status=run.status)
    if not run.cancel_requested_at:
        raise InvalidTransition(f"run {run_id} can be force-cancelled after a cancel", current_status=run.status)
    wait = _force_cancel_wait(run)
    if wait > 0:
        raise Conflict(
            f"run {run_id} can be force-cancelled in {int(wait) + 1} s (its runner may still be stopping its tool)",
            current_status=run.status,
            retry_after=int(wait) + 1,
        )
    force = Transition(
        "force_cancel",
        frozenset({RunStatus.running, RunStatus.paused, RunStatus.queued}),
        RunStatus.cancelled,
        fields={"desired_state": RunDesiredState.cancel.value, "status_detail": "force_cancelled"},
        condition=RunItem.cancel_requested_at.exists(),
    )
    moved = _apply(access, run_id, force)
    _release_wait(moved.run)
    return _shown(access, moved)


def discard_run(access: Access, run_id: str) -> Run:
    """A planned run that will not be applied: it ends discarded, and no apply can carry it out."""
    run = _load(access.workspace_id, run_id)
    if run.kind_of_run != RunKind.plan:
        raise InvalidTransition("only planned runs are discarded", current_status=run.status)
    deploy_runs.require_scope(access, RunKind.plan)
    discard = Transition(
        "discard",
        frozenset({RunStatus.planned}),
        RunStatus.discarded,
        condition=RunItem.applied_by.does_not_exist(),
        guard=_not_carried_out,
    )
    return _shown(access, _apply(access, run_id, discard, _Read(run)))


def _not_carried_out(run: RunItem) -> None:
    if run.applied_by:
        raise deploy_runs.carried_out(run)


def _release_wait(run: RunItem) -> None:
    """The table already says cancelled; fail the wait the execution was in when the cancel
    committed (the cancel's condition made sure it was still that one, and the cancel left its
    token as it was), so it goes straight to its final bookkeeping and ends. A wait recorded after
    the cancel sees the cancelled run and releases itself (see record_wait), so the execution is
    never left waiting and never needs StopExecution."""
    if run.task_token:
        _signal(run, str(run.task_phase), error="Cancelled", fresh=True)


def retry_run(access: Access, run_id: str) -> Run:
    """A failed run is retried as a new run (new branch) linked both ways to the old one."""
    ws = access.workspace_id
    old = _load(ws, run_id)
    if old.carries_out_plan:
        raise InvalidTransition(f"an {old.run_kind} run is not retried: plan again", current_status=old.status)
    if old.is_deploy:
        deploy_runs.require_scope(access, old.kind_of_run)
    else:
        access.require("runs:start")
    if old.state != RunStatus.failed or old.retried_by:
        raise InvalidTransition(
            f"run {run_id} cannot be retried while {old.status}" + (" (already retried)" if old.retried_by else ""),
            current_status=old.status,
        )
    body = RunCreate.model_validate(old.request())
    # The new run is written already queued: one transaction links both runs, takes the active-run
    # slot, records the new run's first event and the audit row; then its execution starts.
    new = new_run(ws, body, access.actor_id, retry_of=run_id)
    tx = access.transaction()
    not_retried = (RunItem.status == RunStatus.failed.value) & RunItem.retried_by.does_not_exist()
    tx.change(old, old.assign(retried_by=new.id, updated_at=new.created_at), not_retried)
    queue_new_run(tx, new, event_data={"retry_of": run_id})
    access.audit(tx, "run.retried", "run", run_id, {"new_run_id": new.id})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed == RUN_SLOT:
            raise slot_refused(ws, failure) from failure
        current = _load(ws, run_id)
        raise InvalidTransition(f"run {run_id} was retried already", current_status=current.status) from failure
    start_execution(new)
    return to_run(new, access)


def queue_new_run(tx: Transaction, run: RunItem | dict[str, Any], event_data: Mapping[str, Any] | None = None) -> None:
    """Add a new draft run to `tx` already queued, as `start` would leave it: the run, an active-run
    slot and its first event. The transaction failing at the slot (`failure.failed == RUN_SLOT`)
    means the workspace is at a cap (`slot_refused`), and then nothing of it was written.
    A draft given as the table holds it (a dict) is updated in place. After the commit,
    `start_execution` starts its timers."""
    queued = _as_run(run)
    at = iso()
    changes = {"status": RunStatus.queued.value, "queued_at": at, "updated_at": at, "last_event_id": 1}
    for name, value in changes.items():
        setattr(queued, name, value)
    if isinstance(run, dict):
        run.update(changes)
    tx.create(queued)
    _take_slot(tx, queued.workspace_id)
    data = {"from": RunStatus.draft.value, "to": RunStatus.queued.value, **(event_data or {})}
    tx.save(events_batch(queued.workspace_id, queued.id, [event_record(1, "status_changed", data=data, at=at)]))


def _take_slot(tx: Transaction, ws: str) -> None:
    """Count one more active run, refused (in the same transaction) at the site-wide cap or the
    workspace's tier's limit."""
    room = RunCounterItem.below(get_settings().max_active_runs) & limits.room_for_a_run()
    tx.upsert(RunCounterItem, keys.run_counter_key(ws), [RunCounterItem.active.add(1)], room, name=RUN_SLOT)


def _free_slot(tx: Transaction, ws: str) -> None:
    tx.upsert(RunCounterItem, keys.run_counter_key(ws), [RunCounterItem.active.add(-1)])


def slot_refused(ws: str, failure: TransactionFailed) -> AppError:
    """Why a transaction failed at the slot: the tier's active-run limit (a 402), or else the
    site-wide cap (a 429)."""
    counter = failure.current(RUN_SLOT, RunCounterItem)
    refused = limits.active_run_refusal(ws, counter, get_settings().max_active_runs)
    return refused if refused is not None else too_many_active()


def too_many_active() -> RateLimited:
    return RateLimited(
        f"the workspace already has {get_settings().max_active_runs} active runs; wait for one to finish or cancel one",
        retry_after=30,
    )


# ---------------------------------------------------------------------------------- agent side


def _heartbeat_interval(run: RunItem) -> int:
    return max(1, run.heartbeat_timeout // HEARTBEAT_FRACTION)


def _check_worker(run: RunItem, worker_id: str) -> None:
    if run.worker_id and run.worker_id != worker_id:
        raise Conflict(f"run {run.id} is claimed by another worker", current_status=run.status)


def _directive(run: RunItem, desired: RunDesiredState, shown: Run | None = None) -> AgentDirective:
    return AgentDirective(
        run_id=run.id,
        status=run.state,
        desired_state=desired,
        heartbeat_interval_seconds=_heartbeat_interval(run),
        run=shown.model_dump(mode="json") if shown is not None else None,
    )


def claim_run(access: Access, run_id: str, body: RunClaim) -> AgentDirective:
    run = _load(access.workspace_id, run_id)
    if run.is_deploy:
        return _claim_deploy(access, run, body)
    claim = Transition(
        "claim",
        frozenset({RunStatus.queued}),
        RunStatus.running,
        fields={"worker_id": body.worker_id, "last_heartbeat_at": iso()},
    )
    moved = _apply(access, run_id, claim, _Read(run))
    _signal(moved.run, "claim", success={"outcome": "claimed"})
    desired = RunDesiredState(moved.run.desired_state or RunDesiredState.run.value)
    return _directive(moved.run, desired, _shown(access, moved))


def _claim_deploy(access: Access, run: RunItem, body: RunClaim) -> AgentDirective:
    """A deploy runner's claim: the run must hold its capsule (an apply or destroy) with its plan
    still current, and its bindings must resolve; the answer carries the credentials of the
    resolved connections, for this answer only (the run records their names)."""
    deploy_runs.require_scope(access, run.kind_of_run)
    if run.state != RunStatus.queued:
        raise InvalidTransition(f"run {run.id} cannot claim while {run.status}", current_status=run.status)
    capsule = deploy_runs.capsule_of(run)
    waiting = deploy_runs.check_claim(run, capsule)
    if waiting:
        raise Conflict(waiting, current_status=run.status, status_detail=deploy_runs.WAITING_FOR_CAPSULE)
    stale = deploy_runs.stale_at_claim(run, capsule)
    if stale:
        _fail_unclaimed(access, run, "stale_plan", stale)
        raise Conflict(f"run {run.id} failed: {stale}; plan again", current_status=RunStatus.failed.value)
    try:
        claimed = deploy_runs.prepare_claim(run, capsule)
    except Conflict as blocked:
        _fail_unclaimed(access, run, "blocked_binding", blocked.detail)
        raise

    # The capsule needs no check in the claim's transaction: only this run's own end passes it on,
    # and that moves the run, which the claim's condition on the run's status refuses.
    def issued(tx: Transaction, current: RunItem, _target: RunStatus) -> None:
        evidence = {
            "connections": claimed.connection_ids,
            "env": claimed.record["injected_env"],
            "files": claimed.record["injected_files"],
        }
        access.audit(tx, "deploy.credentials_issued", "run", current.id, evidence)

    claim = Transition(
        "claim",
        frozenset({RunStatus.queued}),
        RunStatus.running,
        fields={"worker_id": body.worker_id, "last_heartbeat_at": iso(), "deploy": claimed.record},
        extra=issued,
    )
    moved = _apply(access, run.id, claim, _Read(run))
    _signal(moved.run, "claim", success={"outcome": "claimed"})
    directive = _directive(moved.run, RunDesiredState.run, _shown(access, moved))
    directive.deploy, directive.credentials = claimed.assignment, claimed.credentials
    return directive


def _fail_unclaimed(access: Access, run: RunItem, reason: str, detail: str) -> None:
    """A queued deploy run that can never be claimed as it is ends failed (its capsule passes on)."""
    fail = Transition(
        "fail",
        frozenset({RunStatus.queued}),
        RunStatus.failed,
        fields={"failure_reason": reason, "failure_detail": detail, "desired_state": RunDesiredState.stop.value},
        event_data={"failure_reason": reason},
    )
    moved = _apply(access, run.id, fail)
    _signal(moved.run, "claim", success={"outcome": "failed"})


def heartbeat_run(access: Access, run_id: str, body: RunHeartbeat) -> AgentDirective:
    """Record that the agent is alive; answer what it should do (run, pause, cancel or stop). The
    activity it reports is redacted, with the workspace's secrets read with the run; the usage it
    reports is charged to the workspace's balance, read with the run too (logic.run_budget)."""
    ws = access.workspace_id
    reported = body.usage.tokens if body.usage is not None else 0
    run, known, balance = _read_for_report(ws, run_id, secrets=body.activity is not None, charge=reported > 0)
    _check_worker(run, body.worker_id)
    run_heartbeat()
    if run.status in _LIVE:
        changes: dict[str, Any] = {"last_heartbeat_at": iso()}
        if body.activity is not None:
            changes["activity"] = redact_text(body.activity, known)
        if body.progress is not None:
            changes["progress"] = body.progress
        if reported:
            run = _charged_beat(access, run, balance, changes, reported)
        else:
            # Not a transition: a heartbeat only refreshes liveness, and only while the run is live.
            try:
                run = get_store().adjust(RunItem, run.key, run.assign(**changes), RunItem.status.is_in(*_LIVE))
            except ConditionFailed:  # the run left running/paused between our read and write
                run = _load(ws, run_id)
        if run.status in _LIVE:
            _heartbeat_execution(run)
    desired = RunDesiredState(run.desired_state or RunDesiredState.run.value)
    if run.state in FINISHED or run.state == RunStatus.awaiting_approval:
        desired = RunDesiredState.cancel if run.state == RunStatus.cancelled else RunDesiredState.stop
    directive = _directive(run, desired)
    directive.answers = run_input.deliver_answers(access, run)
    return directive


def _read_for_report(
    ws: str, run_id: str, *, secrets: bool, charge: bool
) -> tuple[RunItem, tuple[str, ...], TokenBalanceItem | None]:
    """The run, with the workspace's secrets (to redact what the agent wrote) and its token
    balance (to charge what it spent) when the report needs them: one read either way."""
    if not charge:
        if secrets:
            run, known = _load_with_secrets(ws, run_id)
            return run, known, None
        return _load(ws, run_id), (), None
    extra = known_secrets.wanted(ws) if secrets else []
    found_run, found_balance, *secret_items = run_budget.read_with_balance(keys.run_key(ws, run_id), ws, *extra)
    read = RunItem.found(found_run)
    if read is None:
        raise NotFound(f"run {run_id} not found")
    known = known_secrets.values_in(ws, secret_items) if secrets else ()
    return read, known, run_budget.balance_in(TokenBalanceItem.found(found_balance), ws)


def _reread_for_charge(ws: str, run_id: str) -> tuple[RunItem, TokenBalanceItem]:
    run, _, balance = _read_for_report(ws, run_id, secrets=False, charge=True)
    assert balance is not None
    return run, balance


def _charged_beat(
    access: Access, run: RunItem, balance: TokenBalanceItem | None, changes: dict[str, Any], reported: int
) -> RunItem:
    """A heartbeat with usage: the run's liveness and usage, and the charge, in one transaction.
    A report the balance cannot cover pauses a running run for budget instead."""
    ws = access.workspace_id
    assert balance is not None
    for _ in range(_MAX_ATTEMPTS):
        charge = run_budget.Charge(run, balance, reported)
        pausing = bool(charge.short) and run.state == RunStatus.running and not run.is_deploy
        try:
            if pausing:
                return _pause_for_budget(access, charge, changes)
            tx = get_store().transaction()
            actions = [*run.assign(**changes), *charge.run_actions(run)]
            tx.adjust(RunItem, run.key, actions, RunItem.status.is_in(*_LIVE), name=RUN)
            charge.writes(tx, pause=False)
            tx.commit()
        except TransactionFailed as failure:
            if not pausing and failure.reason(RUN) == "ConditionalCheckFailed":
                return _load(ws, run.id)  # the run is no longer live: nothing was charged
            if not (tokens.lost_to_another_change(failure) or _lost_race(failure)):
                raise
            run, balance = _reread_for_charge(ws, run.id)
            continue
        tokens.after_spending(balance, int(balance.balance or 0) - charge.covered)
        return _load(ws, run.id) if charge.short else run
    raise Conflict(f"run {run.id} is changing too quickly; retry")


def _charging(transition: Transition, charge: run_budget.Charge) -> Transition:
    """`transition` with the usage `charge` written in it: the run's counters and the ledger row."""
    extra = transition.extra

    def writes(tx: Transaction, run: RunItem, target: RunStatus) -> None:
        if extra is not None:
            extra(tx, run, target)
        charge.writes(tx, pause=False)

    return dataclasses.replace(transition, run_actions=charge.run_actions, extra=writes)


def _apply_charged(
    access: Access, transition: Transition, first: _Read, reported: int, balance: TokenBalanceItem
) -> Moved:
    """`transition` with the usage the agent reported charged in the same transaction; read
    again (run and balance) when the balance moved under it."""
    for _ in range(_MAX_ATTEMPTS):
        charge = run_budget.Charge(first.run, balance, reported)
        try:
            moved = _apply(access, first.run.id, _charging(transition, charge), first)
        except TransactionFailed as failure:
            if not tokens.lost_to_another_change(failure):
                raise
            run, balance = _reread_for_charge(access.workspace_id, first.run.id)
            first = _Read(run, first.auto_push, first.known)
            continue
        tokens.after_spending(balance, int(balance.balance or 0) - charge.covered)
        if charge.short:
            _notify_budget(moved.run, charge)
        return moved
    raise Conflict(f"run {first.run.id} is changing too quickly; retry")


def _pause_for_budget(access: Access, charge: run_budget.Charge, changes: dict[str, Any]) -> RunItem:
    """The balance cannot cover what the agent reported: charge what is left, pause the run and
    tell the workspace's owner (a grant resumes it: `resume_budget_paused`)."""
    pause = Transition(
        "pause",
        frozenset({RunStatus.running}),
        RunStatus.paused,
        fields={
            **changes,
            "desired_state": RunDesiredState.pause.value,
            "status_detail": run_budget.BUDGET_EXHAUSTED,
        },
        event_data={"status_detail": run_budget.BUDGET_EXHAUSTED},
        run_actions=charge.run_actions,
        extra=lambda tx, _run, _target: charge.writes(tx, pause=True),
    )
    # The balance was read with the run: a move of either makes the caller read both again.
    run = _apply_once(access, pause, _Read(charge.run))
    tokens.after_spending(charge.balance, 0)
    _notify_budget(run, charge)
    return run


def _apply_once(actor: Actor, transition: Transition, read: _Read) -> RunItem:
    """`transition` written on the run as read, without re-reading: for a caller that reads the
    run together with what else the write depends on, and retries on a TransactionFailed."""
    target = transition.check(read.run)
    tx = actor.transaction()
    _write_move(tx, actor, transition, read, target)
    actor.commit(tx)
    return read.run


def resume_budget_paused(ws: str) -> int:
    """Resume every run of the workspace paused because its budget ran out, if the balance is
    positive now (called after a grant). Answers how many resumed; a run that left its pause
    meanwhile (cancelled, say) is only forgotten."""
    balance = tokens.read_balance(ws)
    if int(balance.balance or 0) <= 0 or not balance.budget_paused:
        return 0
    resumed = 0
    for run_id in sorted(balance.budget_paused):
        try:
            _apply(_Execution(ws), run_id, _budget_resume(run_id))
            resumed += 1
        except (InvalidTransition, NotFound):
            forget = [TokenBalanceItem.budget_paused.delete({run_id})]
            get_store().adjust(TokenBalanceItem, keys.token_balance_key(ws), forget)
    return resumed


def _budget_resume(run_id: str) -> Transition:
    def paused_for_budget(run: RunItem) -> None:
        if run.status_detail != run_budget.BUDGET_EXHAUSTED:
            raise InvalidTransition(f"run {run.id} is not paused for budget", current_status=run.status)

    def forget(tx: Transaction, run: RunItem, _target: RunStatus) -> None:
        key = keys.token_balance_key(run.workspace_id)
        tx.adjust(TokenBalanceItem, key, [TokenBalanceItem.budget_paused.delete({run_id})])

    return Transition(
        "resume",
        frozenset({RunStatus.paused}),
        RunStatus.running,
        fields={"desired_state": RunDesiredState.run.value, "resumed_at": iso()},
        # A run that paused while it waited for an answer goes back to waiting for it.
        fields_for=lambda run: {"status_detail": run_input.NEEDS_INPUT if run.input_request_id else None},
        event_data={"reason": "budget_granted"},
        guard=paused_for_budget,
        extra=forget,
    )


def _heartbeat_execution(run: RunItem) -> None:
    if not run.task_token or run.task_phase != "work":
        return
    try:
        clients.stepfunctions().send_task_heartbeat(taskToken=run.task_token)
    except ClientError as exc:
        logger.info("heartbeat for a finished wait", extra={"run_id": run.id, "error": str(exc)})


def complete_run(access: Access, run_id: str, body: RunComplete) -> Run:
    # Read as the complete's transition reads: with the workspace's secrets when a summary is to
    # be redacted, and the balance when usage is to be charged (`_apply` takes this read for its
    # first attempt).
    reported = body.usage.tokens if body.usage is not None else 0
    found, known, balance = _read_for_report(
        access.workspace_id, run_id, secrets=body.summary is not None, charge=reported > 0
    )
    first = _Read(found, known=known)
    if first.run.is_deploy:
        return _complete_deploy(access, first, body, balance)

    def target(run: RunItem) -> RunStatus:
        return RunStatus.awaiting_approval if run.requires_approval else RunStatus.completed

    fields: dict[str, Any] = {"desired_state": RunDesiredState.stop.value}
    if body.summary is not None:
        fields["summary"] = body.summary
    complete = Transition(
        "complete",
        frozenset({RunStatus.running}),
        target,
        fields=fields,
        guard=lambda run: _check_worker(run, body.worker_id),
        redacted=frozenset({"summary"}) if body.summary is not None else frozenset(),
    )
    moved = _finish_reported(access, complete, first, reported, balance)
    run = moved.run
    _signal(run, "work", success={"outcome": run.status})
    if run.state == RunStatus.awaiting_approval:
        _notify(run, "needs_input", f"Run '{run.title}' is waiting for approval")
    return _shown(access, moved)


def _finish_reported(
    access: Access, transition: Transition, first: _Read, reported: int, balance: TokenBalanceItem | None
) -> Moved:
    """An agent's last word on a run, with what it spent charged (if it reported any)."""
    if reported and balance is not None:
        return _apply_charged(access, transition, first, reported, balance)
    return _apply(access, first.run.id, transition, first)


def _complete_deploy(access: Access, first: _Read, body: RunComplete, balance: TokenBalanceItem | None) -> Run:
    """A plan ends planned with its result and saved plan; an apply or destroy ends with the next
    state version and its outputs, written with the capsule it then gives up. A run whose cancel
    was requested ends cancelled, with whatever state it left recorded."""
    run = first.run
    deploy_runs.require_scope(access, run.kind_of_run)
    _check_worker(run, body.worker_id)
    if run.state != RunStatus.running:
        raise InvalidTransition(f"run {run.id} cannot complete while {run.status}", current_status=run.status)
    done = deploy_runs.completion(run, body)
    fields: dict[str, Any] = {"desired_state": RunDesiredState.stop.value, **done.fields}
    if body.summary is not None:
        fields["summary"] = body.summary
    data = {"plan": done.fields["deploy"].get("plan")} if run.kind_of_run == RunKind.plan else {}
    if done.state_version is not None:
        data = {"state_serial": int(done.state_version.serial)}
    complete = Transition(
        "complete",
        frozenset({RunStatus.running}),
        done.target,
        fields=fields,
        event_data=data,
        guard=lambda current: _check_worker(current, body.worker_id),
        extra=lambda tx, current, _target: deploy_runs.completion_writes(tx, current, done),
        capsule_changes=(lambda: (done.capsule_actions or [], done.capsule_condition))
        if done.capsule_actions
        else None,
        redacted=frozenset({"summary"}) if body.summary is not None else frozenset(),
    )
    reported = body.usage.tokens if body.usage is not None else 0
    moved = _finish_reported(access, complete, first, reported, balance)
    _signal(moved.run, "work", success={"outcome": moved.run.status})
    if moved.run.state == RunStatus.planned:
        if deploy_runs.capsule_of(moved.run).auto_apply:
            _auto_apply(moved.run)
        else:
            _notify_planned(moved.run)
    return _shown(access, moved)


def _notify_planned(run: RunItem) -> None:
    plan = dict((run.deploy or {}).get("plan") or {})
    counts = f"+{plan.get('add', 0)} ~{plan.get('change', 0)} -{plan.get('destroy', 0)}"
    _notify(run, "needs_input", f"Plan '{run.title}' is ready for review ({counts})", event="deploy.planned")


def _auto_apply(plan: RunItem) -> None:
    """A capsule with `auto_apply` goes from plan to apply without a person: the plan is approved
    as the system, and an apply (or destroy) of it is created for the plan's creator and started."""
    ws = plan.workspace_id
    system = _Execution(ws)
    approval = _review_transition(system, plan.id, "approved", "auto_apply", check_scope=None)
    moved = _apply(system, plan.id, approval)
    kind = RunKind.destroy if moved.run.is_destroy else RunKind.apply
    body = RunCreate(kind=kind, plan_run_id=plan.id, capsule_id=plan.capsule_id)
    fields = deploy_runs.carrying_out(kind, plan, deploy_runs.capsule_of(plan))
    run = new_run(ws, body, plan.created_by, fields=fields)
    tx = system.transaction()
    tx.create(run)
    system.audit(tx, "run.created", "run", run.id, {"title": run.title, "kind": kind.value, "auto_apply": True})
    system.commit(tx)
    start = Transition("start", frozenset({RunStatus.draft}), RunStatus.queued)
    _deploy_start(None, run, start)
    start_execution(_apply(system, run.id, start).run)


def fail_run(access: Access, run_id: str, body: RunFail) -> Run:
    def target(run: RunItem) -> RunStatus:
        # A deploy runner that stopped its tool on a cancel request reports it as a failure.
        return RunStatus.cancelled if run.is_deploy and run.cancel_requested_at else RunStatus.failed

    fail = Transition(
        "fail",
        frozenset({RunStatus.running, RunStatus.paused}),
        target,
        fields={
            "failure_reason": body.reason,
            "failure_detail": body.detail,
            "desired_state": RunDesiredState.stop.value,
        },
        event_data={"failure_reason": body.reason},
        guard=lambda run: _check_worker(run, body.worker_id),
        redacted=frozenset({"failure_reason", "failure_detail"}),
    )
    moved = _apply(access, run_id, fail)
    _signal(moved.run, "work", success={"outcome": "failed"})
    return _shown(access, moved)


# ------------------------------------------------------------------------ approvals and git


def _review(access: Access, run_id: str, decision: str, notes: str | None) -> Moved:
    moved = _apply(access, run_id, _review_transition(access, run_id, decision, notes, check_scope=access))
    if moved.was == RunStatus.awaiting_approval:
        _signal(moved.run, "approval", success={"outcome": decision})
    return moved


def _review_transition(
    actor: Actor, run_id: str, decision: str, notes: str | None, *, check_scope: Access | None
) -> Transition:
    """Approve or reject a run: a gated run waiting for it, a finished one (recorded), or a
    planned deploy run (`deploy:apply`: approving lets it be applied, rejecting discards it)."""
    review = RunReviewItem(
        workspace_id=actor.workspace_id,
        run_id=run_id,
        id=new_id("rev"),
        decision=decision,
        notes=notes,
        reviewer_id=actor.actor_id,
        created_at=iso(),
    )

    def record_review(tx: Transaction, _run: RunItem, _target: RunStatus) -> None:
        tx.save(review)

    def target(run: RunItem) -> RunStatus:
        if run.state == RunStatus.planned:
            return RunStatus.planned if decision == "approved" else RunStatus.discarded
        if run.state == RunStatus.completed:
            return RunStatus.completed  # a review of a finished run: recorded, status unchanged
        return RunStatus.completed if decision == "approved" else RunStatus.failed

    def failure(run: RunItem) -> dict[str, Any]:
        # Rejecting a gated run fails it; a rejected review of a finished run does not.
        gated = run.state == RunStatus.awaiting_approval
        return {"failure_reason": "rejected"} if decision == "rejected" and gated else {}

    def reviewed_once(run: RunItem) -> None:
        if check_scope is not None:
            check_scope.require("deploy:apply" if run.is_deploy else "runs:control")
        if run.review:
            raise InvalidTransition(f"run {run_id} was already {run.review['decision']}", current_status=run.status)
        _not_carried_out(run)

    return Transition(
        "approve" if decision == "approved" else "reject",
        frozenset({RunStatus.awaiting_approval, RunStatus.completed, RunStatus.planned}),
        target,
        fields={"review": review.to_model().model_dump()},
        fields_for=failure,
        event_data={"review": decision},
        extra=record_review,
        condition=RunItem.review.does_not_exist() & RunItem.applied_by.does_not_exist(),
        guard=reviewed_once,
        reads_workspace=True,
    )


def approve_run(access: Access, run_id: str, body: ApproveRequest) -> Run:
    moved = _review(access, run_id, "approved", body.notes)
    if body.commit:
        return commit_run(access, run_id, CommitRequest())
    return _shown(access, moved)


def reject_run(access: Access, run_id: str, notes: str | None) -> Run:
    return _shown(access, _review(access, run_id, "rejected", notes))


def _git_action(
    access: Access, run_id: str, action: str, scope: str, details: Callable[[RunItem], dict[str, Any]]
) -> Run:
    ws = access.workspace_id
    if not access.principal.has_scope(scope):
        raise MissingScope(scope)
    access.require(scope)
    # A commit message may be the agent's: it is recorded redacted.
    run, auto_push, known = _load_with_workspace(ws, run_id, secrets=action == "commit")
    if not run.approved:
        raise InvalidTransition(f"run {run_id} needs an approved review before {action}", current_status=run.status)
    if action == "push" and not auto_push:
        raise Forbidden("pushing is disabled by the workspace's auto_push setting", setting="auto_push")
    stamp = "committed_at" if action == "commit" else "pushed_at"
    if getattr(run, stamp):
        done = "committed" if action == "commit" else "pushed"
        raise Conflict(f"run {run_id} was already {done}", current_status=run.status)
    at, event_id = iso(), run.next_event_id
    data = redact_value(details(run), known)
    actions, unchanged = run.record_events(1, **{stamp: at, "updated_at": at})
    tx = access.transaction()
    tx.change(run, actions, unchanged & RunItem.get_attributes()[stamp].does_not_exist())
    tx.save(events_batch(ws, run_id, [event_record(event_id, f"git_{action}_requested", data=data, at=at)]))
    access.audit(tx, f"run.{action}", "run", run_id, data)
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise Conflict(f"run {run_id} changed while requesting {action}; retry", current_status=run.status) from failure
    return to_run(run, access, auto_push)


def commit_run(access: Access, run_id: str, body: CommitRequest) -> Run:
    return _git_action(access, run_id, "commit", "git:commit", lambda _run: {"message": body.message})


def push_run(access: Access, run_id: str) -> Run:
    return _git_action(access, run_id, "push", "git:push", lambda run: {"branch": run.branch})


# ------------------------------------------------------------- the execution's side (timers)


def record_wait(ws: str, run_id: str, phase: str, token: str) -> dict[str, Any]:
    """The execution is now waiting on `phase`: keep its token on the run, or resolve the wait at
    once if the run already moved past it (an agent may claim before the token is recorded)."""
    waiting = [RunItem.task_token.set(token), RunItem.task_phase.set(phase)]
    run = get_store().adjust(RunItem, keys.run_key(ws, run_id), waiting)
    status = run.state
    if status == RunStatus.cancelled:
        _signal(run, phase, error="Cancelled", fresh=True)
    elif phase == "claim" and status != RunStatus.queued:
        _signal(run, phase, success={"outcome": "claimed"}, fresh=True)
    elif phase == "work" and status not in (RunStatus.running, RunStatus.paused):
        _signal(run, phase, success={"outcome": status.value}, fresh=True)
    elif phase == "approval" and status != RunStatus.awaiting_approval:
        _signal(run, phase, success={"outcome": (run.review or {}).get("decision", status.value)}, fresh=True)
    else:
        run_input.settle_wait(run, phase)
    return {"recorded": phase, "status": status.value}


_TIMEOUT_REASONS = {
    "claim": ("queue_timeout", frozenset({RunStatus.queued})),
    "work": ("stalled", frozenset({RunStatus.running, RunStatus.paused})),
    "approval": ("approval_timeout", frozenset({RunStatus.awaiting_approval})),
    run_input.INPUT_PHASE: ("input_timeout", frozenset({RunStatus.running, RunStatus.paused})),
}


def expire_wait(ws: str, run_id: str, phase: str) -> dict[str, Any]:
    """A wait ran out of time: fail the run with the matching reason, if it is still in it."""
    reason, allowed = _TIMEOUT_REASONS[phase]
    expire = Transition(
        "expire",
        allowed,
        RunStatus.failed,
        fields={"failure_reason": reason, "desired_state": RunDesiredState.stop.value},
        event_data={"failure_reason": reason},
        guard=run_input.expiry_guard(phase),
    )
    try:
        run = _apply(_Execution(ws), run_id, expire).run
    except InvalidTransition as exc:
        # The run left the wait just as it timed out (the agent completed a gated run, say): the
        # execution goes on from the run's current status (statemachine/run.asl.json).
        return {"failed": False, "status": str(exc.extensions.get("current_status") or "")}
    if reason == "stalled":
        _notify(run, "stalled", f"Run '{run.title}' stopped: its agent went silent")
    return {"failed": True, "failure_reason": reason, "status": run.status}


def finalize_run(ws: str, run_id: str) -> dict[str, Any]:
    """Final bookkeeping once the run is over: usage metering and the `finished` notification.

    Only a finished run is finalized; a run that is still going (an execution that ended early on
    an error) keeps its token and its chance to be finalized."""
    finalized = [RunItem.finalized_at.set(iso()), RunItem.task_token.remove(), RunItem.task_phase.remove()]
    finished_once = RunItem.finalized_at.does_not_exist() & RunItem.status.is_in(*_FINISHED_VALUES)
    try:
        run = get_store().adjust(RunItem, keys.run_key(ws, run_id), finalized, finished_once)
    except ConditionFailed as refused:  # finalized already (a retried step), or not finished
        current = refused.current_as(RunItem)
        return {"finalized": False, "status": current.status if current is not None else None}
    month = str(run.finalized_at)[:7]
    get_store().upsert(RunUsageItem, keys.run_usage_key(ws, month), [RunUsageItem.one_more(run.state)])
    run_finished(run.status)
    if run.state != RunStatus.cancelled:
        _notify_finished(run)
    return {"finalized": True, "status": run.status}


def _notify_finished(run: RunItem) -> None:
    if run.is_deploy:
        _notify_deploy(run)
        return
    _notify(run, "finished", f"Run '{run.title}' {run.status}")


# What a deploy run's end is called to the people told of it (and, as `event`, in its notification).
_DEPLOY_EVENTS = {
    RunStatus.applied: "deploy.applied",
    RunStatus.destroyed: "deploy.applied",
    RunStatus.failed: "deploy.failed",
}


def _notify_deploy(run: RunItem) -> None:
    """A deploy run's end, as its creator hears of it (a ready plan was told when it completed)."""
    event = _DEPLOY_EVENTS.get(run.state)
    if event is not None:
        watchers = deploy_runs.watchers_of(run)
        _notify(run, "finished", f"Run '{run.title}' {run.status}", event=event, watchers=watchers)


def _notify_budget(run: RunItem, charge: run_budget.Charge) -> None:
    """The balance ran out under a run: its workspace's owner is told (and the run's creator)."""
    workspace = get_store().read(WorkspaceItem, keys.workspace_key(run.workspace_id))
    owner = [str(workspace.owner_id)] if workspace is not None else []
    paused = run.state == RunStatus.paused
    title = f"Run '{run.title}' paused: the token balance is used up" if paused else "The token balance is used up"
    detail = f"{charge.short} of the {charge.reported} tokens reported could not be charged"
    _notify(run, "budget_exhausted", title, body=detail, watchers=owner)


def _notify_in(tx: Transaction, run: RunItem, kind: str, title: str) -> None:
    from agentplane.logic import notifications

    notifications.notify(
        tx, run.workspace_id, [run.created_by], kind, title,
        data={"run_id": run.id}, link=f"/workspaces/{run.workspace_id}/runs/{run.id}", source="runs",
    )  # fmt: skip


def _notify(
    run: RunItem,
    kind: str,
    title: str,
    *,
    event: str | None = None,
    watchers: Sequence[str] = (),
    body: str | None = None,
) -> None:
    """Tell the run's creator (and `watchers`); a notification failure never fails the run."""
    from agentplane.logic import notifications

    data: dict[str, Any] = {"run_id": run.id, "status": run.status}
    if event is not None:
        data |= {"event": event, "capsule_id": run.capsule_id}
    told = list(dict.fromkeys([run.created_by, *(w for w in watchers if w and w != "system")]))
    try:
        notifications.notify(
            None, run.workspace_id, told, kind, title,
            body=body if body is not None else run.failure_reason or "", data=data,
            link=f"/workspaces/{run.workspace_id}/runs/{run.id}", source="runs",
        )  # fmt: skip
    except Exception:
        logger.exception("could not notify about run", extra={"run_id": run.id, "kind": kind})

"""Runs: the lifecycle, as conditional writes, with a Step Functions execution owning the timers.

    draft → queued → running ⇄ paused → completed | failed | cancelled
                              running → awaiting_approval → completed | failed (rejected)

Every transition is one TransactWriteItems: the run moves only if it is still in the status we
read (and its event counter is where we read it), its `status_changed` event and its audit row go
in with it, and the workspace's active-run counter moves when a run takes or frees a slot. Two
concurrent callers therefore cannot both win; the loser gets a 409 carrying `current_status`.

The execution (statemachine/run.asl.json) waits on task tokens the lifecycle function records on
the run: "claim" (queue timeout), "work" (heartbeat timeout = a silent agent fails the run as
`stalled`) and "approval". The API resolves those waits with SendTaskSuccess/Failure after its own
write has won, so the table is always the source of truth and the execution only keeps time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from agentplane import audit, clients, keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.errors import Conflict, Forbidden, InvalidTransition, MissingScope, NotFound, RateLimited
from agentplane.ids import iso, new_id
from agentplane.logic import known_secrets
from agentplane.logic.run_events import batch_item, event_record
from agentplane.models.runs import (
    ACTIVE,
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
    RunStatus,
)
from agentplane.observability import logger, run_finished, run_heartbeat, run_started
from agentplane.redact import redact_text, redact_value
from agentplane.settings import get_settings
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

# How often an agent should beat, relative to the run's heartbeat timeout.
HEARTBEAT_FRACTION = 3
_MAX_ATTEMPTS = 8
_LIVE = (RunStatus.running.value, RunStatus.paused.value)
_TERMINAL_VALUES = tuple(sorted(status.value for status in TERMINAL))
_TIMESTAMP_FIELDS = {
    RunStatus.queued: "queued_at",
    RunStatus.running: "started_at",
    RunStatus.paused: "paused_at",
    RunStatus.awaiting_approval: "awaiting_approval_at",
    RunStatus.completed: "completed_at",
    RunStatus.failed: "failed_at",
    RunStatus.cancelled: "cancelled_at",
}


# ------------------------------------------------------------------------------------- reading


def _load(ws: str, run_id: str) -> dict[str, Any]:
    item = get_store().get(keys.run_key(ws, run_id))
    if item is None:
        raise NotFound(f"run {run_id} not found")
    return item


def _load_with_workspace(
    ws: str, run_id: str, *, secrets: bool = False
) -> tuple[dict[str, Any], bool, tuple[str, ...]]:
    """The run and its workspace's auto-push setting in one BatchGetItem (reviews and git gates
    need both), with the workspace's secret values when what is recorded must be redacted."""
    extra = known_secrets.item_keys(ws) if secrets else []
    item, workspace, *secret_items = get_store().get_many([keys.run_key(ws, run_id), keys.workspace_key(ws), *extra])
    if item is None:
        raise NotFound(f"run {run_id} not found")
    return item, _auto_push_of(workspace), known_secrets.values_in(ws, secret_items) if secrets else ()


def _load_with_secrets(ws: str, run_id: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The run and the workspace's secret values (to redact what the agent wrote) in one BatchGetItem."""
    item, known = known_secrets.read_with(keys.run_key(ws, run_id), ws)
    if item is None:
        raise NotFound(f"run {run_id} not found")
    return item, known


def _auto_push_of(workspace: dict[str, Any] | None) -> bool:
    workspace = workspace or {}
    settings = workspace.get("settings") or {}
    return bool(workspace.get("auto_push") or settings.get("auto_push"))


def _approved(item: dict[str, Any]) -> bool:
    return (item.get("review") or {}).get("decision") == "approved"


def _auto_push_for(ws: str, items: list[dict[str, Any]]) -> bool:
    """The workspace's auto-push setting as `to_run` needs it for `items`: only an approved run can
    be pushed, so the workspace is read (once) only when one of them is approved."""
    return any(_approved(item) for item in items) and _auto_push_of(get_store().get(keys.workspace_key(ws)))


def execution_arn(run_id: str) -> str:
    """Each run's execution is named after the run, so its ARN is known without storing it."""
    machine = get_settings().run_state_machine_arn
    return f"{machine.replace(':stateMachine:', ':execution:')}:{run_id}" if machine else ""


def actions_for(item: dict[str, Any], access: Access | None = None, auto_push: bool = False) -> RunActions:
    status = RunStatus(item["status"])
    review = item.get("review") or {}
    approved = _approved(item)
    reviewable = status == RunStatus.awaiting_approval or (status == RunStatus.completed and not review)

    def may(scope: str) -> bool:
        return access is None or access.may(scope)

    control = may("runs:control")
    return RunActions(
        can_start=status == RunStatus.draft and may("runs:start"),
        can_pause=status == RunStatus.running and control,
        can_resume=status == RunStatus.paused and control,
        can_cancel=status not in TERMINAL and control,
        can_retry=status == RunStatus.failed and not item.get("retried_by") and may("runs:start"),
        can_approve=reviewable and control,
        can_reject=reviewable and control,
        can_commit=approved and not item.get("committed_at") and may("git:commit"),
        can_push=approved and auto_push and not item.get("pushed_at") and may("git:push"),
    )


def to_run(item: dict[str, Any], access: Access | None = None, auto_push: bool = False) -> Run:
    """The run as the API shows it. Reads nothing: `auto_push` is the workspace's setting, which
    only an approved run's actions depend on (see `_auto_push_for`), unless the transition that
    produced `item` read it with the run."""
    timestamps = {"draft": item["created_at"]}
    for status, field_name in _TIMESTAMP_FIELDS.items():
        if item.get(field_name):
            timestamps[status.value] = item[field_name]
    if "_auto_push" in item:
        auto_push = bool(item["_auto_push"])
    public = {k: v for k, v in item.items() if k not in ("task_token", "task_phase", "_auto_push")}
    return Run.model_validate({**public, "timestamps": timestamps, "actions": actions_for(item, access, auto_push)})


def get_run(access: Access, run_id: str) -> Run:
    item = _load(access.workspace_id, run_id)
    return to_run(item, access, _auto_push_for(access.workspace_id, [item]))


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
    condition: Expr | None = None
    for name, value in (("status", status), ("agent", agent), ("schedule_id", schedule_id)):
        if value is not None:
            expr = attr_eq(name, str(value))
            condition = expr if condition is None else condition & expr
    if project_id is not None:
        page = get_store().query(
            keys.run_project_gsi(ws, project_id), index=keys.GSI2, limit=limit, start_key=start,
            newest_first=True, filter=condition,
        )  # fmt: skip
    else:
        page = get_store().query(
            keys.run_list_gsi(ws), index=keys.GSI1, limit=limit, start_key=start, newest_first=True, filter=condition
        )
    auto_push = _auto_push_for(ws, page.items)
    return [to_run(item, access, auto_push) for item in page.items], encode_cursor(page.last_key, scope, query)


# ------------------------------------------------------------------------------------ creating


def new_run_item(
    ws: str,
    body: RunCreate,
    created_by: str,
    *,
    status: RunStatus = RunStatus.draft,
    retry_of: str | None = None,
) -> dict[str, Any]:
    run_id = new_id("run")
    at = iso()
    item: dict[str, Any] = {
        **keys.run_key(ws, run_id),
        keys.ENTITY: "run",
        keys.GSI1PK: keys.run_list_gsi(ws),
        keys.GSI1SK: run_id,
        **body.model_dump(exclude_none=True),
        "id": run_id,
        "workspace_id": ws,
        "status": status.value,
        "desired_state": RunDesiredState.run.value,
        "branch": f"agentplane/{run_id}",
        "last_event_id": 0,
        "created_by": created_by,
        "created_at": at,
        "updated_at": at,
    }
    if body.project_id:
        item[keys.GSI2PK] = keys.run_project_gsi(ws, body.project_id)
        item[keys.GSI2SK] = run_id
    if retry_of:
        item["retry_of"] = retry_of
    return item


def _require_project(ws: str, project_id: str | None) -> None:
    if project_id is None:
        return
    project = get_store().get(keys.project_key(ws, project_id))
    if project is None or project.get("deleted_at"):
        raise NotFound(f"project {project_id} not found")


def create_run(access: Access, body: RunCreate, request_id: str = "") -> Run:
    _require_project(access.workspace_id, body.project_id)
    item = new_run_item(access.workspace_id, body, access.actor_id)
    tx = access.transaction()
    tx.put(item, Expr("attribute_not_exists(PK)"))
    audit.record(tx, access.workspace_id, access.actor_id, "run.created", "run", item["id"], request_id,
                 {"title": body.title, "kind": body.kind.value})  # fmt: skip
    access.commit(tx)
    return to_run(item, access)


# --------------------------------------------------------------------------------- transitions


@dataclass
class Transition:
    """One status change: where it may come from, where it goes, and what else it writes."""

    action: str
    allowed_from: frozenset[RunStatus]
    to: RunStatus | Callable[[dict[str, Any]], RunStatus]
    fields: dict[str, Any] = field(default_factory=dict)
    event_data: dict[str, Any] = field(default_factory=dict)
    extra: Callable[[Transaction, dict[str, Any], RunStatus], None] | None = None
    condition: Expr | None = None
    # Checked on the run as read, before writing (e.g. "this worker holds the run").
    guard: Callable[[dict[str, Any]], None] | None = None
    reads_workspace: bool = False
    # Fields that depend on the run as read (added to `fields`).
    fields_for: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # A further condition that depends on the run as read (added to `condition`).
    condition_for: Callable[[dict[str, Any]], Expr] | None = None
    # Fields (of `fields` and `event_data`) the agent wrote: redacted with the workspace's secrets,
    # which are read with the run.
    redacted: frozenset[str] = frozenset()


def _target(transition: Transition, current: dict[str, Any]) -> RunStatus:
    return transition.to(current) if callable(transition.to) else transition.to


def _redacted(fields: dict[str, Any], names: frozenset[str], known: tuple[str, ...]) -> dict[str, Any]:
    return {name: redact_value(value, known) if name in names else value for name, value in fields.items()}


def _apply(
    ws: str,
    run_id: str,
    transition: Transition,
    *,
    access: Access | None,
    actor_id: str,
    request_id: str = "",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write `transition` as one transaction; returns (the run before, the run after), and the
    after-item carries `auto_push` in `_auto_push` when the transition read the workspace."""
    for _attempt in range(_MAX_ATTEMPTS):
        auto_push: bool | None = None
        known: tuple[str, ...] = ()
        if transition.reads_workspace:
            current, auto_push, known = _load_with_workspace(ws, run_id, secrets=bool(transition.redacted))
        elif transition.redacted:
            current, known = _load_with_secrets(ws, run_id)
        else:
            current = _load(ws, run_id)
        if transition.guard is not None:
            transition.guard(current)
        status = RunStatus(current["status"])
        if status not in transition.allowed_from:
            raise InvalidTransition(
                f"run {run_id} cannot {transition.action} while {status.value}", current_status=status.value
            )
        target = _target(transition, current)
        at = iso()
        event_id = int(current.get("last_event_id") or 0) + 1
        changes: dict[str, Any] = {"status": target.value, "updated_at": at, "last_event_id": event_id}
        if target != status and target in _TIMESTAMP_FIELDS:
            changes[_TIMESTAMP_FIELDS[target]] = at
        changes.update(_redacted(transition.fields, transition.redacted, known))
        if transition.fields_for is not None:
            changes.update(transition.fields_for(current))
        tx = access.transaction() if access else get_store().transaction()
        run_index = len(tx.operations)
        condition = exists() & attr_eq("status", status.value) & attr_eq("last_event_id", event_id - 1)
        if transition.condition is not None:
            condition = condition & transition.condition
        if transition.condition_for is not None:
            condition = condition & transition.condition_for(current)
        tx.update(keys.run_key(ws, run_id), Update(set=changes), condition)
        counter_index = len(tx.operations)
        takes_slot = status not in ACTIVE and target in ACTIVE
        frees_slot = status in ACTIVE and target not in ACTIVE
        if takes_slot:
            _take_slot(tx, ws)
        elif frees_slot:
            tx.update(keys.run_counter_key(ws), Update(add={"active": -1}))
        data = {"from": status.value, "to": target.value,
                **_redacted(transition.event_data, transition.redacted, known)}  # fmt: skip
        tx.put(batch_item(ws, run_id, [event_record(event_id, "status_changed", data=data, at=at)]))
        extra_from = len(tx.operations)
        if transition.extra is not None:
            transition.extra(tx, current, target)  # noqa: S610 - a callback, not Django
        extra_to = len(tx.operations)
        audit.record(tx, ws, actor_id, f"run.{transition.action}", "run", run_id, request_id,
                     {"from": status.value, "to": target.value})  # fmt: skip
        try:
            if access:
                access.commit(tx)
            else:
                tx.commit()
        except TransactionFailed as failure:
            failed = failure.failed_index()
            if failed == counter_index and takes_slot:
                raise too_many_active() from failure
            if failed == run_index or "TransactionConflict" in failure.reasons:
                continue  # the run moved or an event was appended since we read it: look again
            if failed is not None and extra_from <= failed < extra_to:
                continue  # what the transition adds (a notification landing in order) lost a race
            raise
        after = {**current, **changes}
        if auto_push is not None:
            after["_auto_push"] = auto_push
        return current, after
    raise Conflict(f"run {run_id} is changing too quickly; retry")


def _signal(
    item: dict[str, Any], phase: str, *, success: dict[str, Any] | None = None, error: str = "", fresh: bool = False
) -> None:
    """Resume the execution's wait for `phase`, if it is waiting on it.

    Called after our write committed, with a fresh read: either the execution recorded its token
    before our write (we see it here) or after (the lifecycle function then sees our new status
    and resolves the wait itself). A wait resolved twice is harmless."""
    if not fresh and not (item.get("task_token") and item.get("task_phase") == phase):
        # The run as read before our write had no token for this wait: read it again (see above).
        item = get_store().get(keys.run_key(item["workspace_id"], item["id"])) or item
    token = item.get("task_token")
    if not token or item.get("task_phase") != phase:
        return
    try:
        if success is not None:
            clients.stepfunctions().send_task_success(taskToken=token, output=json.dumps(success))
        else:
            clients.stepfunctions().send_task_failure(taskToken=token, error=error, cause=f"run {item['id']}")
    except ClientError as exc:
        logger.info("run wait already resolved", extra={"run_id": item["id"], "phase": phase, "error": str(exc)})


# What a function that starts runs declares: `create_app(requires=runs.STARTS_RUNS)`.
STARTS_RUNS = ("run_state_machine_arn",)


def start_execution(item: dict[str, Any]) -> None:
    arn = get_settings().run_state_machine_arn  # required at cold start (STARTS_RUNS)
    execution_input = {
        "workspace_id": item["workspace_id"],
        "run_id": item["id"],
        "queue_timeout_seconds": int(item.get("queue_timeout_seconds") or 3600),
        "heartbeat_timeout_seconds": int(item.get("heartbeat_timeout_seconds") or 300),
        "approval_timeout_seconds": get_settings().approval_timeout_seconds,
    }
    try:
        clients.stepfunctions().start_execution(stateMachineArn=arn, name=item["id"], input=json.dumps(execution_input))
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ExecutionAlreadyExists":
            raise
    else:
        run_started()


def start_run(access: Access, run_id: str, request_id: str = "") -> Run:
    _, after = _apply(
        access.workspace_id, run_id,
        Transition("start", frozenset({RunStatus.draft}), RunStatus.queued),
        access=access, actor_id=access.actor_id, request_id=request_id,
    )  # fmt: skip
    start_execution(after)
    return to_run(after, access)


def pause_run(access: Access, run_id: str, request_id: str = "") -> Run:
    _, after = _apply(
        access.workspace_id, run_id,
        Transition("pause", frozenset({RunStatus.running}), RunStatus.paused,
                   fields={"desired_state": RunDesiredState.pause.value}),
        access=access, actor_id=access.actor_id, request_id=request_id,
    )  # fmt: skip
    return to_run(after, access)


def resume_run(access: Access, run_id: str, request_id: str = "") -> Run:
    _, after = _apply(
        access.workspace_id, run_id,
        Transition("resume", frozenset({RunStatus.paused}), RunStatus.running,
                   fields={"desired_state": RunDesiredState.run.value, "resumed_at": iso()}),
        access=access, actor_id=access.actor_id, request_id=request_id,
    )  # fmt: skip
    return to_run(after, access)


def cancel_run(access: Access, run_id: str, request_id: str = "") -> Run:
    non_terminal = frozenset(RunStatus) - TERMINAL

    def tell_creator(tx: Transaction, current: dict[str, Any], _target: RunStatus) -> None:
        # Someone else cancelled the creator's run: they hear of it, in the same transaction.
        if current["created_by"] != access.actor_id:
            _notify_in(tx, current, "finished", f"Run '{current['title']}' cancelled")

    def same_wait(current: dict[str, Any]) -> Expr:
        # The cancel wins only if the execution still waits where we read it, so the wait we
        # release below is the one it is in; if it moved meanwhile, we read the run again.
        if current.get("task_token"):
            return attr_eq("task_token", current["task_token"])
        return Expr("attribute_not_exists(#token)", {"#token": "task_token"})

    before, after = _apply(
        access.workspace_id, run_id,
        Transition("cancel", non_terminal, RunStatus.cancelled,
                   fields={"desired_state": RunDesiredState.cancel.value}, extra=tell_creator,
                   condition_for=same_wait),
        access=access, actor_id=access.actor_id, request_id=request_id,
    )  # fmt: skip
    _release_wait(before)
    return to_run(after, access)


def _release_wait(item: dict[str, Any]) -> None:
    """The table already says cancelled; fail the wait the execution was in when the cancel
    committed (the cancel's condition made sure it was still that one), so it goes straight to its
    final bookkeeping and ends. A wait recorded after the cancel sees the cancelled run and releases
    itself (see record_wait), so the execution is never left waiting and never needs StopExecution."""
    if item.get("task_token"):
        _signal(item, str(item.get("task_phase")), error="Cancelled", fresh=True)


def retry_run(access: Access, run_id: str, request_id: str = "") -> Run:
    """A failed run is retried as a new run (new branch) linked both ways to the old one."""
    ws = access.workspace_id
    old = _load(ws, run_id)
    if old["status"] != RunStatus.failed.value or old.get("retried_by"):
        raise InvalidTransition(
            f"run {run_id} cannot be retried while {old['status']}"
            + (" (already retried)" if old.get("retried_by") else ""),
            current_status=old["status"],
        )
    body = RunCreate.model_validate({k: old[k] for k in RunCreate.model_fields if old.get(k) is not None})
    # The new run is written already queued: one transaction links both runs, takes the active-run
    # slot, records the new run's first event and the audit row; then its execution starts.
    new = new_run_item(ws, body, access.actor_id, retry_of=run_id)
    tx = access.transaction()
    tx.update(
        keys.run_key(ws, run_id),
        Update(set={"retried_by": new["id"], "updated_at": new["created_at"]}),
        attr_eq("status", RunStatus.failed.value) & Expr("attribute_not_exists(retried_by)"),
    )
    counter_index = queue_new_run(tx, new, event_data={"retry_of": run_id})
    audit.record(tx, ws, access.actor_id, "run.retried", "run", run_id, request_id, {"new_run_id": new["id"]})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed_index() == counter_index:
            raise too_many_active() from failure
        current = _load(ws, run_id)
        raise InvalidTransition(f"run {run_id} was retried already", current_status=current["status"]) from failure
    start_execution(new)
    return to_run(new, access)


def queue_new_run(tx: Transaction, item: dict[str, Any], event_data: dict[str, Any] | None = None) -> int:
    """Add a new run (a `new_run_item`-shaped draft) to `tx` already queued, as `start` would leave
    it: the run, an active-run slot and its first event. Returns the index of the slot's operation:
    the transaction failing there means the workspace is at its cap (`too_many_active`), and then
    nothing of it was written. After the commit, `start_execution` starts its timers."""
    ws = item["workspace_id"]
    at = iso()
    item.update({"status": RunStatus.queued.value, "queued_at": at, "updated_at": at, "last_event_id": 1})
    tx.put(item, Expr("attribute_not_exists(PK)"))
    slot_index = len(tx.operations)
    _take_slot(tx, ws)
    data = {"from": RunStatus.draft.value, "to": RunStatus.queued.value, **(event_data or {})}
    tx.put(batch_item(ws, item["id"], [event_record(1, "status_changed", data=data, at=at)]))
    return slot_index


def _take_slot(tx: Transaction, ws: str) -> None:
    """Count one more active run, refused (in the same transaction) at the workspace's cap."""
    tx.update(
        keys.run_counter_key(ws),
        Update(add={"active": 1}),
        Expr(
            "attribute_not_exists(#active) OR #active < :cap",
            {"#active": "active"},
            {":cap": get_settings().max_active_runs},
        ),
    )


def too_many_active() -> RateLimited:
    return RateLimited(
        f"the workspace already has {get_settings().max_active_runs} active runs; wait for one to finish or cancel one",
        retry_after=30,
    )


# ---------------------------------------------------------------------------------- agent side


def _heartbeat_interval(item: dict[str, Any]) -> int:
    return max(1, int(item.get("heartbeat_timeout_seconds") or 300) // HEARTBEAT_FRACTION)


def _check_worker(item: dict[str, Any], worker_id: str) -> None:
    if item.get("worker_id") and item["worker_id"] != worker_id:
        raise Conflict(f"run {item['id']} is claimed by another worker", current_status=item["status"])


def claim_run(access: Access, run_id: str, body: RunClaim, request_id: str = "") -> AgentDirective:
    _, after = _apply(
        access.workspace_id, run_id,
        Transition("claim", frozenset({RunStatus.queued}), RunStatus.running,
                   fields={"worker_id": body.worker_id, "last_heartbeat_at": iso()}),
        access=access, actor_id=access.actor_id, request_id=request_id,
    )  # fmt: skip
    _signal(after, "claim", success={"outcome": "claimed"})
    public = to_run(after, access).model_dump(mode="json")
    return AgentDirective(
        run_id=run_id,
        status=RunStatus(after["status"]),
        desired_state=RunDesiredState(after["desired_state"]),
        heartbeat_interval_seconds=_heartbeat_interval(after),
        run=public,
    )


def heartbeat_run(access: Access, run_id: str, body: RunHeartbeat) -> AgentDirective:
    """Record that the agent is alive; answer what it should do (run, pause, cancel or stop). The
    activity it reports is redacted, with the workspace's secrets read with the run."""
    ws = access.workspace_id
    known: tuple[str, ...] = ()
    if body.activity is not None:
        item, known = _load_with_secrets(ws, run_id)
    else:
        item = _load(ws, run_id)
    _check_worker(item, body.worker_id)
    run_heartbeat()
    status = RunStatus(item["status"])
    if status in (RunStatus.running, RunStatus.paused):
        changes: dict[str, Any] = {"last_heartbeat_at": iso()}
        if body.activity is not None:
            changes["activity"] = redact_text(body.activity, known)
        if body.progress is not None:
            changes["progress"] = body.progress
        # Not a transition: a heartbeat only refreshes liveness, and only while the run is live.
        try:
            item = get_store().update(
                keys.run_key(ws, run_id),
                Update(set=changes),
                attr_in("status", _LIVE),
            )
        except ConditionFailed:  # the run left running/paused between our read and write
            item = _load(ws, run_id)
        else:
            _heartbeat_execution(item)
    desired = RunDesiredState(item.get("desired_state") or "run")
    if RunStatus(item["status"]) in TERMINAL or item["status"] == RunStatus.awaiting_approval.value:
        desired = RunDesiredState.cancel if item["status"] == RunStatus.cancelled.value else RunDesiredState.stop
    return AgentDirective(
        run_id=run_id,
        status=RunStatus(item["status"]),
        desired_state=desired,
        heartbeat_interval_seconds=_heartbeat_interval(item),
    )


def _heartbeat_execution(item: dict[str, Any]) -> None:
    token = item.get("task_token")
    if not token or item.get("task_phase") != "work":
        return
    try:
        clients.stepfunctions().send_task_heartbeat(taskToken=token)
    except ClientError as exc:
        logger.info("heartbeat for a finished wait", extra={"run_id": item["id"], "error": str(exc)})


def complete_run(access: Access, run_id: str, body: RunComplete, request_id: str = "") -> Run:

    def target(current: dict[str, Any]) -> RunStatus:
        return RunStatus.awaiting_approval if current.get("requires_approval") else RunStatus.completed

    fields: dict[str, Any] = {"desired_state": RunDesiredState.stop.value}
    if body.summary is not None:
        fields["summary"] = body.summary
    _, after = _apply(
        access.workspace_id, run_id,
        Transition("complete", frozenset({RunStatus.running}), target, fields=fields,
                   guard=lambda current: _check_worker(current, body.worker_id),
                   redacted=frozenset({"summary"}) if body.summary is not None else frozenset()),
        access=access, actor_id=access.actor_id, request_id=request_id,
    )  # fmt: skip
    outcome = after["status"]
    _signal(after, "work", success={"outcome": outcome})
    if outcome == RunStatus.awaiting_approval.value:
        _notify(after, "needs_input", f"Run '{after['title']}' is waiting for approval")
    return to_run(after, access)


def fail_run(access: Access, run_id: str, body: RunFail, request_id: str = "") -> Run:
    _, after = _apply(
        access.workspace_id, run_id,
        Transition("fail", frozenset({RunStatus.running, RunStatus.paused}), RunStatus.failed,
                   fields={"failure_reason": body.reason, "failure_detail": body.detail,
                           "desired_state": RunDesiredState.stop.value},
                   event_data={"failure_reason": body.reason},
                   guard=lambda current: _check_worker(current, body.worker_id),
                   redacted=frozenset({"failure_reason", "failure_detail"})),
        access=access, actor_id=access.actor_id, request_id=request_id,
    )  # fmt: skip
    _signal(after, "work", success={"outcome": "failed"})
    return to_run(after, access)


# ------------------------------------------------------------------------ approvals and git


def _review_writer(decision: str, notes: str | None, reviewer: str) -> tuple[dict[str, Any], Callable[..., None]]:
    review_id = new_id("rev")
    review = {"id": review_id, "decision": decision, "notes": notes, "reviewer_id": reviewer, "created_at": iso()}

    def write(tx: Transaction, current: dict[str, Any], _target: RunStatus) -> None:
        tx.put({
            **keys.run_review_key(current["workspace_id"], current["id"], review_id),
            keys.ENTITY: "run_review", "run_id": current["id"], "workspace_id": current["workspace_id"], **review,
        })  # fmt: skip

    return review, write


def _review(access: Access, run_id: str, decision: str, notes: str | None, request_id: str) -> dict[str, Any]:
    review, write = _review_writer(decision, notes, access.actor_id)

    def target(current: dict[str, Any]) -> RunStatus:
        if current["status"] == RunStatus.completed.value:
            return RunStatus.completed  # a review of a finished run: recorded, status unchanged
        return RunStatus.completed if decision == "approved" else RunStatus.failed

    def failure(current: dict[str, Any]) -> dict[str, Any]:
        # Rejecting a gated run fails it; a rejected review of a finished run does not.
        gated = current["status"] == RunStatus.awaiting_approval.value
        return {"failure_reason": "rejected"} if decision == "rejected" and gated else {}

    def reviewed_once(current: dict[str, Any]) -> None:
        if current.get("review"):
            raise InvalidTransition(
                f"run {run_id} was already {current['review']['decision']}", current_status=current["status"]
            )

    transition = Transition(
        "approve" if decision == "approved" else "reject",
        frozenset({RunStatus.awaiting_approval, RunStatus.completed}),
        target,
        fields={"review": review},
        fields_for=failure,
        event_data={"review": decision},
        extra=write,
        condition=Expr("attribute_not_exists(#review)", {"#review": "review"}),
        guard=reviewed_once,
        reads_workspace=True,
    )
    before, after = _apply(access.workspace_id, run_id, transition, access=access, actor_id=access.actor_id,
                           request_id=request_id)  # fmt: skip
    if before["status"] == RunStatus.awaiting_approval.value:
        _signal(after, "approval", success={"outcome": decision})
    return after


def approve_run(access: Access, run_id: str, body: ApproveRequest, request_id: str = "") -> Run:
    after = _review(access, run_id, "approved", body.notes, request_id)
    if body.commit:
        return commit_run(access, run_id, CommitRequest(), request_id)
    return to_run(after, access)


def reject_run(access: Access, run_id: str, notes: str | None, request_id: str = "") -> Run:
    return to_run(_review(access, run_id, "rejected", notes, request_id), access)


def _git_action(
    access: Access,
    run_id: str,
    action: str,
    scope: str,
    request_id: str,
    details: Callable[[dict[str, Any]], dict[str, Any]],
) -> Run:
    ws = access.workspace_id
    if not access.principal.has_scope(scope):
        raise MissingScope(scope)
    access.require(scope)
    # A commit message may be the agent's: it is recorded redacted.
    item, auto_push, known = _load_with_workspace(ws, run_id, secrets=action == "commit")
    review = item.get("review") or {}
    if review.get("decision") != "approved":
        raise InvalidTransition(f"run {run_id} needs an approved review before {action}", current_status=item["status"])
    if action == "push" and not auto_push:
        raise Forbidden("pushing is disabled by the workspace's auto_push setting", setting="auto_push")
    stamp = "committed_at" if action == "commit" else "pushed_at"
    if item.get(stamp):
        raise Conflict(f"run {run_id} was already {'committed' if action == 'commit' else 'pushed'}",
                       current_status=item["status"])  # fmt: skip
    at = iso()
    event_id = int(item.get("last_event_id") or 0) + 1
    data = redact_value(details(item), known)
    tx = access.transaction()
    tx.update(
        keys.run_key(ws, run_id),
        Update(set={stamp: at, "updated_at": at, "last_event_id": event_id}),
        attr_eq("last_event_id", event_id - 1) & Expr(f"attribute_not_exists({stamp})"),
    )
    tx.put(batch_item(ws, run_id, [event_record(event_id, f"git_{action}_requested", data=data, at=at)]))
    audit.record(tx, ws, access.actor_id, f"run.{action}", "run", run_id, request_id, data)
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise Conflict(
            f"run {run_id} changed while requesting {action}; retry", current_status=item["status"]
        ) from failure
    return to_run({**item, stamp: at, "updated_at": at, "last_event_id": event_id}, access, auto_push)


def commit_run(access: Access, run_id: str, body: CommitRequest, request_id: str = "") -> Run:
    return _git_action(access, run_id, "commit", "git:commit", request_id, lambda _item: {"message": body.message})


def push_run(access: Access, run_id: str, request_id: str = "") -> Run:
    return _git_action(access, run_id, "push", "git:push", request_id, lambda item: {"branch": item["branch"]})


# ------------------------------------------------------------- the execution's side (timers)


def record_wait(ws: str, run_id: str, phase: str, token: str) -> dict[str, Any]:
    """The execution is now waiting on `phase`: keep its token on the run, or resolve the wait at
    once if the run already moved past it (an agent may claim before the token is recorded)."""
    item = get_store().update(
        keys.run_key(ws, run_id), Update(set={"task_token": token, "task_phase": phase}), exists()
    )
    status = RunStatus(item["status"])
    if status == RunStatus.cancelled:
        _signal(item, phase, error="Cancelled", fresh=True)
    elif phase == "claim" and status != RunStatus.queued:
        _signal(item, phase, success={"outcome": "claimed"}, fresh=True)
    elif phase == "work" and status not in (RunStatus.running, RunStatus.paused):
        _signal(item, phase, success={"outcome": status.value}, fresh=True)
    elif phase == "approval" and status != RunStatus.awaiting_approval:
        _signal(item, phase, success={"outcome": (item.get("review") or {}).get("decision", status.value)}, fresh=True)
    return {"recorded": phase, "status": status.value}


_TIMEOUT_REASONS = {
    "claim": ("queue_timeout", frozenset({RunStatus.queued})),
    "work": ("stalled", frozenset({RunStatus.running, RunStatus.paused})),
    "approval": ("approval_timeout", frozenset({RunStatus.awaiting_approval})),
}


def expire_wait(ws: str, run_id: str, phase: str) -> dict[str, Any]:
    """A wait ran out of time: fail the run with the matching reason, if it is still in it."""
    reason, allowed = _TIMEOUT_REASONS[phase]
    try:
        _, after = _apply(
            ws, run_id,
            Transition("expire", allowed, RunStatus.failed,
                       fields={"failure_reason": reason, "desired_state": RunDesiredState.stop.value},
                       event_data={"failure_reason": reason}),
            access=None, actor_id="system",
        )  # fmt: skip
    except InvalidTransition as exc:
        # The run left the wait just as it timed out (the agent completed a gated run, say): the
        # execution goes on from the run's current status (statemachine/run.asl.json).
        return {"failed": False, "status": str(exc.extensions.get("current_status") or "")}
    if reason == "stalled":
        _notify(after, "stalled", f"Run '{after['title']}' stopped: its agent went silent")
    return {"failed": True, "failure_reason": reason, "status": after["status"]}


def finalize_run(ws: str, run_id: str) -> dict[str, Any]:
    """Final bookkeeping once the run is over: usage metering and the `finished` notification.

    Only a finished run is finalized; a run that is still going (an execution that ended early on
    an error) keeps its token and its chance to be finalized."""
    try:
        item = get_store().update(
            keys.run_key(ws, run_id),
            Update(set={"finalized_at": iso()}, remove=["task_token", "task_phase"]),
            exists() & Expr("attribute_not_exists(finalized_at)") & attr_in("status", _TERMINAL_VALUES),
        )
    except ConditionFailed as refused:  # finalized already (a retried step), or not finished
        current = refused.current or {}
        return {"finalized": False, "status": current.get("status")}
    get_store().update(
        keys.run_usage_key(ws, item["finalized_at"][:7]),
        Update(add={f"runs_{item['status']}": 1}),
    )
    run_finished(item["status"])
    if item["status"] != RunStatus.cancelled.value:
        _notify_finished(item)
    return {"finalized": True, "status": item["status"]}


def _notify_finished(item: dict[str, Any]) -> None:
    _notify(item, "finished", f"Run '{item['title']}' {item['status']}")


def _notify_in(tx: Transaction, item: dict[str, Any], kind: str, title: str) -> None:
    from agentplane.logic import notifications

    notifications.notify(
        tx, item["workspace_id"], [item["created_by"]], kind, title,
        data={"run_id": item["id"]}, link=f"/workspaces/{item['workspace_id']}/runs/{item['id']}", source="runs",
    )  # fmt: skip


def _notify(item: dict[str, Any], kind: str, title: str) -> None:
    """Tell the run's creator; a notification failure never fails the run."""
    from agentplane.logic import notifications

    try:
        notifications.notify(
            None, item["workspace_id"], [item["created_by"]], kind, title,
            body=item.get("failure_reason") or "", data={"run_id": item["id"], "status": item["status"]},
            link=f"/workspaces/{item['workspace_id']}/runs/{item['id']}", source="runs",
        )  # fmt: skip
    except Exception:
        logger.exception("could not notify about run", extra={"run_id": item["id"], "kind": kind})

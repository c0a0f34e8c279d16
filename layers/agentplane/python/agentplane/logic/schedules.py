"""Schedules: a cron or rate expression, evaluated by EventBridge Scheduler, that submits a queue job
or creates a run draft each time it fires.

Orkosi's two recurring things are both schedules here:
- a discovery engine ("create new discovery engine with cron job", `schedule_interval_ms`, `layer`,
  `model`, `POST /discovery-engines/{slug}/run`) is a schedule whose target is a run draft of kind
  `agent` (its model, agent and prompt in the target); `schedule_interval_ms` becomes a rate
  expression, and the engine's run history is the runs carrying its `schedule_id`;
- an automation (a run script or LaunchAgent kept by an agent) is a schedule whose target is a
  queue job (`task_type` names the script, `payload` its arguments) that the agent's worker claims.
`POST …/schedules/{id}/run` is the "run now" of both.

Each schedule is one item, `schedule_key(ws, id)`, listed on GSI1 `schedule_list_gsi(ws)`, and one
EventBridge Scheduler schedule in the default group, named `agentplane-<stage>-<schedule id>`. Its
target is the ScheduleFired function (SCHEDULE_FIRED_FUNCTION_ARN), invoked with the role
SCHEDULER_ROLE_ARN and the Input `{"workspace_id", "schedule_id", "scheduled_time"}`, the last
being Scheduler's `<aws.scheduler.scheduled-time>` context attribute. A disabled schedule is
`State: DISABLED` there. The item and the Scheduler schedule are kept in step so that no failure
leaves a schedule firing that nobody can see or manage:
- create: the Scheduler schedule first, then the item; if the item cannot be written the Scheduler
  schedule is deleted again. A crash in between leaves a Scheduler schedule without an item, which
  the fired function deletes the first time it fires.
- update: the item first (conditional on its version, with its `schedule.updated` audit row), then
  the Scheduler schedule. Concurrent updates commit one after the other but may reach Scheduler in
  any order, so each reads the item again after its push and pushes again while the stored
  definition differs from its last push: Scheduler ends with the stored definition. If Scheduler
  refuses the change, the item is put back as it was together with a `schedule.update_reverted`
  audit row (one transaction), and the caller gets a 422.
- delete: the item first, then the Scheduler schedule (an orphan again deletes itself).

Who a firing acts as: `…/run`, the caller; a scheduled firing, the schedule's creator, who must
still be allowed what the target takes (`tasks:write` for a queue job, `runs:start` for a run): a
member whose role grants it, or the agent key that created the schedule, still active and holding
it. A scheduled firing of a schedule whose workspace was deleted, or whose creator lost that right,
makes nothing: the schedule is disabled with `last_error` saying why (audited as
`schedule.disabled`) and its Scheduler schedule deleted, so it stops being invoked. The firing's
transaction re-checks the workspace and the creator's right, so a change that lands meanwhile
stops it too.

Firing (the fired function, or `…/run`): the job or run draft, the schedule's `last_fired_at`,
`fire_count` and `last_result`, and the audit rows are one transaction. Scheduler delivers at least
once, and a retry carries the same scheduled time, so a scheduled firing also puts a firing mark,
`schedule_firing_key(ws, id, scheduled_time)` (kept a week), on the condition that it is new: a
repeated delivery makes nothing twice. A run target's project that has since been deleted makes
the firing record `last_error` instead (a manual run answers 422).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError
from pynamodb.expressions.operand import Path

from agentplane import audit, clients, keys
from agentplane.access import Access
from agentplane.auth.scopes import roles_with
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.api_keys import ApiKeyItem
from agentplane.entities.base import Entity
from agentplane.entities.projects import ProjectItem
from agentplane.entities.queue import QueueJobItem
from agentplane.entities.runs import RunItem, run_from_item
from agentplane.entities.schedules import ScheduleFiringItem, ScheduleItem, schedules_of_workspace
from agentplane.entities.workspaces import MemberItem, WorkspaceItem
from agentplane.errors import AppError, NotFound, PreconditionFailed, Unprocessable
from agentplane.ids import epoch, iso, new_id
from agentplane.keys import Key
from agentplane.logic import queue, runs
from agentplane.models.api_keys import ApiKeyStatus
from agentplane.models.queue import JobSubmit
from agentplane.models.runs import RunCreate
from agentplane.models.schedules import (
    QueueJobTarget,
    RunTarget,
    Schedule,
    ScheduleCreate,
    ScheduleFiredEvent,
    ScheduleFiring,
    ScheduleUpdate,
    target_fields,
)
from agentplane.observability import logger
from agentplane.settings import get_settings
from agentplane.store import ConditionFailed, Transaction, TransactionFailed, get_store

SCHEDULE_GROUP = "default"
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
FIRING_MARK_SECONDS = 7 * 24 * 3600
# Scheduler retries a failed invocation this often, for at most this long, before dropping it.
RETRY_POLICY = {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600}
# Fields whose change must reach the Scheduler schedule.
_SCHEDULER_FIELDS = ("name", "expression", "timezone", "enabled")
# Pushes one update makes at most to bring Scheduler in step with concurrent updates.
_CONVERGE_ATTEMPTS = 5
_RETIRE_ATTEMPTS = 3
# The names of a scheduled firing's two guards: the workspace lives, its creator still may.
_WORKSPACE_GUARD, _CREATOR_GUARD = "workspace", "creator"


# ------------------------------------------------------------------------ EventBridge Scheduler


def scheduler_name(schedule_id: str) -> str:
    return f"agentplane-{get_settings().stage}-{schedule_id}"


def _configured() -> tuple[str, str]:
    settings = get_settings()
    if not settings.schedule_fired_function_arn or not settings.scheduler_role_arn:
        raise AppError("schedules are not configured on this deployment")
    return settings.schedule_fired_function_arn, settings.scheduler_role_arn


def scheduler_definition(schedule: ScheduleItem) -> dict[str, Any]:
    """The CreateSchedule/UpdateSchedule arguments that make Scheduler fire `schedule`."""
    function_arn, role_arn = _configured()
    payload = {"workspace_id": schedule.workspace_id, "schedule_id": schedule.id, "scheduled_time": SCHEDULED_TIME}
    return {
        "Name": scheduler_name(schedule.id),
        "GroupName": SCHEDULE_GROUP,
        "ScheduleExpression": schedule.expression,
        "ScheduleExpressionTimezone": schedule.timezone,
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "State": "ENABLED" if schedule.enabled else "DISABLED",
        "Description": f"{schedule.workspace_id}: {schedule.name}"[:512],
        "ActionAfterCompletion": "NONE",
        "Target": {
            "Arn": function_arn,
            "RoleArn": role_arn,
            "Input": json.dumps(payload, separators=(",", ":")),
            "RetryPolicy": RETRY_POLICY,
        },
    }


def _push(schedule: ScheduleItem, *, create: bool) -> None:
    client = clients.scheduler()
    definition = scheduler_definition(schedule)
    try:
        if create:
            client.create_schedule(**definition)
        else:
            client.update_schedule(**definition)
    except ClientError as error:
        problem = error.response.get("Error", {})
        code = problem.get("Code")
        if code == "ValidationException":
            raise Unprocessable(
                f"EventBridge Scheduler refused the schedule: {problem.get('Message', 'invalid')}",
                errors=[{"field": "expression", "message": str(problem.get("Message", "invalid"))}],
            ) from error
        if code == "ResourceNotFoundException" and not create:
            client.create_schedule(**definition)  # gone from Scheduler: put it back as the item says
            return
        raise


def _remove_from_scheduler(schedule_id: str) -> None:
    try:
        clients.scheduler().delete_schedule(Name=scheduler_name(schedule_id), GroupName=SCHEDULE_GROUP)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise


# -------------------------------------------------------------------------------------- items


def _load(ws: str, schedule_id: str) -> ScheduleItem:
    key = keys.schedule_key(ws, schedule_id)
    return get_store().read_or_404(ScheduleItem, key, f"schedule {schedule_id} not found")


def _target_of(schedule: ScheduleItem) -> QueueJobTarget | RunTarget:
    return schedule.to_model().target


def _project_missing(ws: str, target: QueueJobTarget | RunTarget) -> str | None:
    """Why a run target cannot be created now (its project is gone), or None."""
    if not isinstance(target, RunTarget) or not target.project_id:
        return None
    project = get_store().read(ProjectItem, keys.project_key(ws, target.project_id))
    if project is None or project.deleted_at:
        return f"project {target.project_id} not found"
    return None


def _target_scope(target: QueueJobTarget | RunTarget) -> str:
    """The scope firing a target takes: submitting a queue job, or starting a run."""
    return "tasks:write" if isinstance(target, QueueJobTarget) else "runs:start"


def _require_target(access: Access, target: QueueJobTarget | RunTarget) -> None:
    """A schedule acts for the people who set it up: they need the scope its target needs
    (`tasks:write` to submit queue jobs, `runs:start` to create runs), and its project must exist."""
    access.require(_target_scope(target))
    missing = _project_missing(access.workspace_id, target)
    if missing:
        raise Unprocessable(missing, errors=[{"field": "target.project_id", "message": missing}])


def _target_json(target: QueueJobTarget | RunTarget) -> str:
    return json.dumps(target_fields(target), separators=(",", ":"))


def create_schedule(access: Access, body: ScheduleCreate) -> Schedule:
    ws = access.workspace_id
    _configured()
    _require_target(access, body.target)
    at = iso()
    schedule = ScheduleItem(
        workspace_id=ws,
        id=new_id("sch"),
        name=body.name,
        description=body.description,
        expression=body.expression,
        timezone=body.timezone,
        enabled=body.enabled,
        target_json=_target_json(body.target),
        fire_count=0,
        created_by=access.actor_id,
        created_at=at,
        updated_at=at,
    )
    _push(schedule, create=True)
    tx = access.transaction()
    tx.create(schedule)
    created = {"name": body.name, "expression": body.expression, "target": body.target.type}
    access.audit(tx, "schedule.created", "schedule", schedule.id, created)
    try:
        access.commit(tx)
    except Exception:
        try:
            _remove_from_scheduler(schedule.id)
        except Exception:  # the orphan deletes itself when it first fires
            logger.exception("could not remove the Scheduler schedule of a schedule never written")
        raise
    return schedule.to_model()


def get_schedule(access: Access, schedule_id: str) -> Schedule:
    return _load(access.workspace_id, schedule_id).to_model()


def list_schedules(
    access: Access, *, enabled: bool | None, limit: int, cursor: str | None
) -> tuple[list[Schedule], str | None]:
    """Creation order, one Query; `enabled` narrows the page (a short page may have a cursor)."""
    ws = access.workspace_id
    query = {"enabled": enabled}
    scope = f"schedules:{ws}"
    page = schedules_of_workspace(ws, enabled=enabled, limit=limit, start=decode_cursor(cursor, scope, query))
    return [schedule.to_model() for schedule in page.items], encode_cursor(page.last_key, scope, query)


def _definition(schedule: ScheduleItem) -> tuple[Any, ...]:
    """What the Scheduler schedule is made of."""
    return tuple(getattr(schedule, name) for name in _SCHEDULER_FIELDS)


def _copy(schedule: ScheduleItem) -> ScheduleItem:
    return ScheduleItem.from_raw_data(schedule.serialize())


def update_schedule(access: Access, schedule_id: str, body: ScheduleUpdate, if_match: int | None = None) -> Schedule:
    ws = access.workspace_id
    schedule = _load(ws, schedule_id)
    expected = body.version or if_match
    if expected is not None and expected != schedule.version:
        raise PreconditionFailed(
            f"schedule {schedule_id} is at version {schedule.version}, not {expected}",
            current_version=schedule.version,
        )
    changes: dict[str, Any] = body.model_dump(exclude_none=True, exclude={"version", "target"})
    if body.target is not None:
        _require_target(access, body.target)
        changes["target_json"] = _target_json(body.target)
    fields = sorted(name.removesuffix("_json") for name in changes)
    before = _copy(schedule)
    tx = access.transaction()
    tx.change(schedule, schedule.assign(**changes, updated_at=iso()))
    access.audit(tx, "schedule.updated", "schedule", schedule_id, {"fields": fields})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise PreconditionFailed(f"schedule {schedule_id} changed while it was being updated; reload and retry") from (
            failure
        )
    if _definition(schedule) != _definition(before):
        try:
            _push(schedule, create=False)
        except Exception as error:
            # Scheduler kept the old definition: so does the item, and the audit trail says so.
            _revert(access, before, schedule, [*changes, "updated_at"], fields, error)
            raise
        _converge(ws, schedule_id, schedule)
    return schedule.to_model()


def _converge(ws: str, schedule_id: str, pushed: ScheduleItem) -> None:
    """Make Scheduler hold the stored definition after a push. Concurrent updates commit in version
    order but may push in any order; each updater reads the item again after its push and pushes
    once more while the stored definition differs from its last push. The last push to land is
    therefore always followed by a read that saw it current."""
    for _ in range(_CONVERGE_ATTEMPTS):
        stored = get_store().read(ScheduleItem, keys.schedule_key(ws, schedule_id))
        if stored is None:
            _remove_from_scheduler(schedule_id)  # deleted meanwhile: a push may have put it back
            return
        if _definition(stored) == _definition(pushed):
            return
        try:
            _push(stored, create=False)
        except Unprocessable:
            return  # refused: the update that made it reverts itself
        except Exception:
            # Ours was accepted and is committed; the later update's own push still follows.
            logger.exception("could not bring Scheduler in step with a later update", extra={"id": schedule_id})
            return
        pushed = stored
    logger.warning("schedule kept changing while Scheduler was brought in step", extra={"id": schedule_id})


def _revert(
    access: Access,
    before: ScheduleItem,
    after: ScheduleItem,
    changed: list[str],
    fields: list[str],
    error: Exception,
) -> None:
    """Put back the fields (and the version) of an update Scheduler refused, with an audit row that
    says it was undone, in one transaction; only if nothing changed the schedule since."""
    schedule_id = before.id
    put_back = before.assign(**{name: getattr(before, name) for name in [*changed, "version"]})
    tx = get_store().transaction()
    tx.adjust(ScheduleItem, before.key, put_back, ScheduleItem.version == after.version)
    reverted = {"fields": fields, "version": after.version, "reason": str(error)[:500]}
    access.audit(tx, "schedule.update_reverted", "schedule", schedule_id, reverted)
    try:
        tx.commit()
    except TransactionFailed:
        logger.warning("schedule changed again before its update could be undone", extra={"id": schedule_id})


def delete_schedule(access: Access, schedule_id: str) -> None:
    schedule = _load(access.workspace_id, schedule_id)
    tx = access.transaction()
    tx.drop(ScheduleItem, schedule.key)
    access.audit(tx, "schedule.deleted", "schedule", schedule_id, {"name": schedule.name})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise NotFound(f"schedule {schedule_id} not found") from failure
    _remove_from_scheduler(schedule_id)


# ------------------------------------------------------------------------------------- firing


def _scheduled_time(value: str | None) -> str | None:
    """Scheduler's scheduled time when it substituted one (the literal placeholder otherwise)."""
    if not value:
        return None
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value


def _record_error(ws: str, schedule_id: str, error: str) -> None:
    recorded = [ScheduleItem.last_error.set(error), ScheduleItem.last_error_at.set(iso())]
    with contextlib.suppress(ConditionFailed):  # deleted meanwhile
        get_store().adjust(ScheduleItem, keys.schedule_key(ws, schedule_id), recorded)


class _NotAllowed(Exception):
    """A firing's guards failed at commit: the workspace was deleted or its creator lost access."""


@dataclass(frozen=True)
class _Actor:
    """Who a scheduled firing acts as (the schedule's creator), and whether they still may: the
    item that grants it and what must still hold of it when the firing commits."""

    refusal: str | None
    guard_key: Key | None = None
    guard: Any = None  # a condition on the guard item


@dataclass(frozen=True)
class _AsCreator:
    """What a scheduled firing writes as: the schedule's creator, in transactions that re-check
    the workspace lives and the creator still may do what the target takes (a queue writer)."""

    workspace_id: str
    actor_id: str
    request_id: str
    actor: _Actor

    def transaction(self) -> Transaction:
        assert self.actor.guard_key is not None
        tx = get_store().transaction()
        tx.require(WorkspaceItem, keys.workspace_key(self.workspace_id), WorkspaceItem.live(), name=_WORKSPACE_GUARD)
        tx.require(Entity, self.actor.guard_key, self.actor.guard, name=_CREATOR_GUARD)
        return tx

    def commit(self, tx: Transaction) -> None:
        try:
            tx.commit()
        except TransactionFailed as failure:
            lost = {failure.reason(_WORKSPACE_GUARD), failure.reason(_CREATOR_GUARD)}
            if "ConditionalCheckFailed" in lost:
                raise _NotAllowed from failure
            raise

    def audit(
        self, tx: Transaction, action: str, target_type: str, target_id: str, details: Mapping[str, Any] | None = None
    ) -> None:
        audit.record(tx, self.workspace_id, self.actor_id, action, target_type, target_id, self.request_id, details)


class _Firing:
    """The writes every firing adds to the transaction that makes its job or run."""

    def __init__(self, writer: queue.Writer, schedule: ScheduleItem, scheduled_time: str | None, manual: bool):
        self.writer, self.schedule = writer, schedule
        self.scheduled_time, self.manual = scheduled_time, manual
        self.at = iso()

    def write(self, tx: Transaction, kind: str, made_id: str) -> None:
        schedule = self.schedule
        if self.scheduled_time:
            mark = ScheduleFiringItem(
                workspace_id=schedule.workspace_id,
                schedule_id=schedule.id,
                scheduled_time=self.scheduled_time,
                made_type=kind,
                made_id=made_id,
                ttl=epoch() + FIRING_MARK_SECONDS,
            )
            tx.create(mark, name="firing_mark")
        result = {"type": kind, "id": made_id, "at": self.at, "manual": self.manual}
        fired = [
            ScheduleItem.last_fired_at.set(self.at),
            ScheduleItem.last_result.set(result),
            ScheduleItem.last_error.remove(),
            ScheduleItem.fire_count.add(1),
        ]
        tx.adjust(ScheduleItem, schedule.key, fired)
        details = {kind: made_id, "manual": self.manual, "scheduled_time": self.scheduled_time}
        self.writer.audit(tx, "schedule.fired", "schedule", schedule.id, details)

    def repeated(self, failure: TransactionFailed) -> ScheduleFiringItem | None:
        """The firing mark of an earlier delivery of this firing, when that is why `failure` happened."""
        if not self.scheduled_time or failure.reason("firing_mark") != "ConditionalCheckFailed":
            return None
        schedule = self.schedule
        mark_key = keys.schedule_firing_key(schedule.workspace_id, schedule.id, self.scheduled_time)
        return get_store().read(ScheduleFiringItem, mark_key)


def _job_fields(target: QueueJobTarget) -> dict[str, Any]:
    return {k: v for k, v in target_fields(target).items() if k != "type"}


def _fire(schedule: ScheduleItem, firing: _Firing, access: Access | None) -> ScheduleFiring:
    writer, ws, schedule_id = firing.writer, schedule.workspace_id, schedule.id
    target = _target_of(schedule)
    if isinstance(target, QueueJobTarget):
        body = JobSubmit.model_validate(_job_fields(target))
        source = {"type": "schedule", "schedule_id": schedule_id}
        try:
            job, _ = queue.enqueue(
                writer, body, source=source, extra=lambda tx, job: firing.write(tx, "queue_job", job.id)
            )
        except TransactionFailed as failure:
            return _after_failure(firing, failure)
        return ScheduleFiring(schedule_id=schedule_id, fired=True, job=job.to_model())
    missing = _project_missing(ws, target)
    if missing:
        if firing.manual:
            raise Unprocessable(missing, errors=[{"field": "target.project_id", "message": missing}])
        _record_error(ws, schedule_id, missing)
        return ScheduleFiring(schedule_id=schedule_id, fired=False, error=missing)
    run_body = RunCreate.model_validate({k: v for k, v in target_fields(target).items() if k != "type"})
    run = runs.new_run_item(ws, run_body, writer.actor_id)
    run["schedule_id"] = schedule_id
    tx = writer.transaction()
    tx.create(run_from_item(run))  # the runs family builds its new runs as plain items
    created = {"title": run_body.title, "kind": run_body.kind.value, "schedule_id": schedule_id}
    writer.audit(tx, "run.created", "run", run["id"], created)
    firing.write(tx, "run", run["id"])
    try:
        writer.commit(tx)
    except TransactionFailed as failure:
        return _after_failure(firing, failure)
    return ScheduleFiring(schedule_id=schedule_id, fired=True, run=runs.to_run(run, access))


def _after_failure(firing: _Firing, failure: TransactionFailed) -> ScheduleFiring:
    ws, schedule_id = firing.schedule.workspace_id, firing.schedule.id
    mark = firing.repeated(failure)
    if mark is None:
        if get_store().read(ScheduleItem, keys.schedule_key(ws, schedule_id)) is None:
            raise NotFound(f"schedule {schedule_id} not found") from failure
        raise failure
    result = ScheduleFiring(schedule_id=schedule_id, fired=False, duplicate=True)
    if mark.made_type == "queue_job":
        job = get_store().read(QueueJobItem, keys.queue_job_key(ws, mark.made_id))
        result.job = job.to_model() if job is not None else None
    else:
        made = get_store().read(RunItem, keys.run_key(ws, mark.made_id))
        result.run = runs.to_run(made) if made is not None else None
    return result


def run_schedule(access: Access, schedule_id: str) -> ScheduleFiring:
    """Fire now, whatever the expression and even when disabled; the caller is the actor."""
    schedule = _load(access.workspace_id, schedule_id)
    access.require(_target_scope(_target_of(schedule)))
    return _fire(schedule, _Firing(access, schedule, None, manual=True), access)


def _creator(ws: str, schedule: ScheduleItem) -> _Actor:
    """The creator must still be allowed what the target takes: a member whose role grants the
    scope, or (for a schedule an agent key created) that key, active with the scope. Members and
    keys are other families' items: their guards name the attributes they hold."""
    creator, scope = schedule.created_by, _target_scope(_target_of(schedule))
    member = get_store().read(MemberItem, keys.member_key(ws, creator))
    if member is not None:
        if member.role not in roles_with(scope):
            return _Actor(f"the schedule's creator {creator} is no longer allowed to use {scope} here")
        return _Actor(None, keys.member_key(ws, creator), Path("role").is_in(*roles_with(scope)))
    key_item = get_store().read(ApiKeyItem, keys.api_key_key(ws, creator))
    if key_item is not None and key_item.agent:
        usable = not key_item.deleted_at and key_item.status_at(int(time.time())) == ApiKeyStatus.active
        if usable and scope in (key_item.scopes or []):
            still_active = (Path("status") == ApiKeyStatus.active.value) & Path("deleted_at").does_not_exist()
            return _Actor(None, keys.api_key_key(ws, creator), still_active)
        return _Actor(f"the agent key {creator} that created the schedule can no longer use {scope}")
    return _Actor(f"the schedule's creator {creator} is no longer a member of the workspace")


def _retire(schedule: ScheduleItem, reason: str) -> ScheduleFiring:
    """A schedule that must not fire any more: disabled (with `last_error` saying why, and an audit
    row, in one conditional write) and removed from Scheduler. Enabling it again puts it back in
    Scheduler; it fires again only once its creator may do what it does."""
    ws, schedule_id = schedule.workspace_id, schedule.id
    current: ScheduleItem | None = schedule
    for _ in range(_RETIRE_ATTEMPTS):
        if current is None or not current.enabled:
            break  # deleted or disabled meanwhile
        at = iso()
        tx = get_store().transaction()
        tx.change(current, current.assign(enabled=False, last_error=reason, last_error_at=at, updated_at=at))
        audit.record(tx, ws, "system", "schedule.disabled", "schedule", schedule_id, "", {"reason": reason})
        try:
            tx.commit()
            break
        except TransactionFailed:
            current = get_store().read(ScheduleItem, keys.schedule_key(ws, schedule_id))
    _remove_from_scheduler(schedule_id)
    return ScheduleFiring(schedule_id=schedule_id, fired=False, error=reason)


def _workspace_deleted(ws: str) -> bool:
    workspace = get_store().read(WorkspaceItem, keys.workspace_key(ws))
    return workspace is None or bool(workspace.deleted_at)


def fire_scheduled(event: ScheduleFiredEvent) -> ScheduleFiring:
    """One firing delivered by EventBridge Scheduler, acting as the schedule's creator. A schedule
    of a deleted workspace, or whose creator may no longer do what it does, does not fire: it is
    disabled and leaves Scheduler (see `_retire`). The firing's transaction re-checks both, so
    access lost while it was being prepared stops it too."""
    ws, schedule_id = event.workspace_id, event.schedule_id
    schedule = get_store().read(ScheduleItem, keys.schedule_key(ws, schedule_id))
    if schedule is None:
        # A Scheduler schedule whose item is gone (deleted, or never written): remove it.
        _remove_from_scheduler(schedule_id)
        return ScheduleFiring(schedule_id=schedule_id, fired=False, error="schedule not found")
    if not schedule.enabled:
        return ScheduleFiring(schedule_id=schedule_id, fired=False, error="schedule is disabled")
    if _workspace_deleted(ws):
        return _retire(schedule, "the workspace was deleted")
    actor = _creator(ws, schedule)
    if actor.refusal is not None:
        return _retire(schedule, actor.refusal)
    scheduled_time = _scheduled_time(event.scheduled_time)
    writer = _AsCreator(ws, schedule.created_by, f"schedule:{scheduled_time or iso()}", actor)
    try:
        return _fire(schedule, _Firing(writer, schedule, scheduled_time, manual=False), None)
    except _NotAllowed:
        if _workspace_deleted(ws):
            return _retire(schedule, "the workspace was deleted")
        return _retire(schedule, _creator(ws, schedule).refusal or "the schedule's creator lost access meanwhile")

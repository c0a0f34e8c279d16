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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from agentplane import audit, clients, keys
from agentplane.access import Access
from agentplane.auth.scopes import roles_with
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.errors import AppError, NotFound, PreconditionFailed, Unprocessable
from agentplane.ids import epoch, iso, new_id
from agentplane.keys import Key
from agentplane.logic import api_keys, queue, runs
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


# ------------------------------------------------------------------------ EventBridge Scheduler


def scheduler_name(schedule_id: str) -> str:
    return f"agentplane-{get_settings().stage}-{schedule_id}"


def _configured() -> tuple[str, str]:
    settings = get_settings()
    if not settings.schedule_fired_function_arn or not settings.scheduler_role_arn:
        raise AppError("schedules are not configured on this deployment")
    return settings.schedule_fired_function_arn, settings.scheduler_role_arn


def scheduler_definition(item: Item) -> dict[str, Any]:
    """The CreateSchedule/UpdateSchedule arguments that make Scheduler fire `item`."""
    function_arn, role_arn = _configured()
    payload = {"workspace_id": item["workspace_id"], "schedule_id": item["id"], "scheduled_time": SCHEDULED_TIME}
    return {
        "Name": scheduler_name(item["id"]),
        "GroupName": SCHEDULE_GROUP,
        "ScheduleExpression": item["expression"],
        "ScheduleExpressionTimezone": item["timezone"],
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "State": "ENABLED" if item["enabled"] else "DISABLED",
        "Description": f"{item['workspace_id']}: {item['name']}"[:512],
        "ActionAfterCompletion": "NONE",
        "Target": {
            "Arn": function_arn,
            "RoleArn": role_arn,
            "Input": json.dumps(payload, separators=(",", ":")),
            "RetryPolicy": RETRY_POLICY,
        },
    }


def _push(item: Item, *, create: bool) -> None:
    client = clients.scheduler()
    definition = scheduler_definition(item)
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


def to_schedule(item: Item) -> Schedule:
    return Schedule.model_validate({**item, "target": json.loads(item["target_json"])})


def _load(ws: str, schedule_id: str) -> Item:
    item = get_store().get(keys.schedule_key(ws, schedule_id))
    if item is None:
        raise NotFound(f"schedule {schedule_id} not found")
    return item


def _project_missing(ws: str, target: QueueJobTarget | RunTarget) -> str | None:
    """Why a run target cannot be created now (its project is gone), or None."""
    if not isinstance(target, RunTarget) or not target.project_id:
        return None
    project = get_store().get(keys.project_key(ws, target.project_id))
    if project is None or project.get("deleted_at"):
        return f"project {target.project_id} not found"
    return None


def _require_target(access: Access, target: QueueJobTarget | RunTarget) -> None:
    """A schedule acts for the people who set it up: they need the scope its target needs
    (`tasks:write` to submit queue jobs, `runs:start` to create runs), and its project must exist."""
    access.require("tasks:write" if isinstance(target, QueueJobTarget) else "runs:start")
    missing = _project_missing(access.workspace_id, target)
    if missing:
        raise Unprocessable(missing, errors=[{"field": "target.project_id", "message": missing}])


def create_schedule(access: Access, body: ScheduleCreate, request_id: str = "") -> Schedule:
    ws = access.workspace_id
    _configured()
    _require_target(access, body.target)
    schedule_id = new_id("sch")
    at = iso()
    item: Item = {
        **keys.schedule_key(ws, schedule_id),
        keys.ENTITY: "schedule",
        keys.GSI1PK: keys.schedule_list_gsi(ws),
        keys.GSI1SK: schedule_id,
        "id": schedule_id,
        "workspace_id": ws,
        "name": body.name,
        "description": body.description,
        "expression": body.expression,
        "timezone": body.timezone,
        "enabled": body.enabled,
        "target_json": json.dumps(target_fields(body.target), separators=(",", ":")),
        "fire_count": 0,
        "created_by": access.actor_id,
        "created_at": at,
        "updated_at": at,
        "version": 1,
    }
    _push(item, create=True)
    tx = access.transaction()
    tx.put(item, Expr("attribute_not_exists(PK)"))
    audit.record(tx, ws, access.actor_id, "schedule.created", "schedule", schedule_id, request_id,
                 {"name": body.name, "expression": body.expression, "target": body.target.type})  # fmt: skip
    try:
        access.commit(tx)
    except Exception:
        try:
            _remove_from_scheduler(schedule_id)
        except Exception:  # the orphan deletes itself when it first fires
            logger.exception("could not remove the Scheduler schedule of a schedule never written")
        raise
    return to_schedule(item)


def get_schedule(access: Access, schedule_id: str) -> Schedule:
    return to_schedule(_load(access.workspace_id, schedule_id))


def list_schedules(
    access: Access, *, enabled: bool | None, limit: int, cursor: str | None
) -> tuple[list[Schedule], str | None]:
    """Creation order, one Query; `enabled` narrows the page (a short page may have a cursor)."""
    ws = access.workspace_id
    query = {"enabled": enabled}
    scope = f"schedules:{ws}"
    start = decode_cursor(cursor, scope, query)
    condition = attr_eq("enabled", enabled) if enabled is not None else None
    page = get_store().query(
        keys.schedule_list_gsi(ws), index=keys.GSI1, limit=limit, start_key=start, filter=condition
    )
    return [to_schedule(item) for item in page.items], encode_cursor(page.last_key, scope, query)


def update_schedule(
    access: Access, schedule_id: str, body: ScheduleUpdate, if_match: int | None = None, request_id: str = ""
) -> Schedule:
    ws = access.workspace_id
    current = _load(ws, schedule_id)
    expected = body.version or if_match
    if expected is not None and expected != current["version"]:
        raise PreconditionFailed(
            f"schedule {schedule_id} is at version {current['version']}, not {expected}",
            current_version=current["version"],
        )
    changes: Item = body.model_dump(exclude_none=True, exclude={"version", "target"})
    if body.target is not None:
        _require_target(access, body.target)
        changes["target_json"] = json.dumps(target_fields(body.target), separators=(",", ":"))
    changes["updated_at"] = iso()
    changes["version"] = current["version"] + 1
    key = keys.schedule_key(ws, schedule_id)
    tx = access.transaction()
    tx.update(key, Update(set=changes), exists() & attr_eq("version", current["version"]))
    fields = sorted(k.removesuffix("_json") for k in changes if k not in ("updated_at", "version"))
    audit.record(tx, ws, access.actor_id, "schedule.updated", "schedule", schedule_id, request_id, {"fields": fields})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        raise PreconditionFailed(f"schedule {schedule_id} changed while it was being updated; reload and retry") from (
            failure
        )
    updated = {**current, **changes}
    if _definition(updated) != _definition(current):
        try:
            _push(updated, create=False)
        except Exception as error:
            # Scheduler kept the old definition: so does the item, and the audit trail says so.
            _revert(access, current, changes, fields, request_id, error)
            raise
        _converge(ws, schedule_id, updated)
    return to_schedule(updated)


def _definition(item: Item) -> tuple[Any, ...]:
    """What the Scheduler schedule is made of."""
    return tuple(item.get(name) for name in _SCHEDULER_FIELDS)


def _converge(ws: str, schedule_id: str, pushed: Item) -> None:
    """Make Scheduler hold the stored definition after a push. Concurrent updates commit in version
    order but may push in any order; each updater reads the item again after its push and pushes
    once more while the stored definition differs from its last push. The last push to land is
    therefore always followed by a read that saw it current."""
    for _ in range(_CONVERGE_ATTEMPTS):
        stored = get_store().get(keys.schedule_key(ws, schedule_id))
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


def _revert(access: Access, current: Item, changes: Item, fields: list[str], request_id: str, error: Exception) -> None:
    """Put back the fields of an update Scheduler refused, with an audit row that says it was undone,
    in one transaction; only if nothing changed the schedule since."""
    ws, schedule_id = access.workspace_id, current["id"]
    previous = {name: current[name] for name in changes if name in current}
    absent = [name for name in changes if name not in current]
    tx = get_store().transaction()
    tx.update(
        keys.schedule_key(ws, schedule_id),
        Update(set=previous, remove=absent),
        exists() & attr_eq("version", changes["version"]),
    )
    reason = str(error)[:500]
    audit.record(tx, ws, access.actor_id, "schedule.update_reverted", "schedule", schedule_id, request_id,
                 {"fields": fields, "version": changes["version"], "reason": reason})  # fmt: skip
    try:
        tx.commit()
    except TransactionFailed:
        logger.warning("schedule changed again before its update could be undone", extra={"id": schedule_id})


def delete_schedule(access: Access, schedule_id: str, request_id: str = "") -> None:
    ws = access.workspace_id
    current = _load(ws, schedule_id)
    tx = access.transaction()
    tx.delete(keys.schedule_key(ws, schedule_id), exists())
    audit.record(tx, ws, access.actor_id, "schedule.deleted", "schedule", schedule_id, request_id,
                 {"name": current["name"]})  # fmt: skip
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
    with contextlib.suppress(ConditionFailed):  # deleted meanwhile
        get_store().update(
            keys.schedule_key(ws, schedule_id), Update(set={"last_error": error, "last_error_at": iso()}), exists()
        )


class _Firing:
    """The writes every firing adds to the transaction that makes its job or run."""

    def __init__(self, ws: str, item: Item, actor_id: str, request_id: str, scheduled_time: str | None, manual: bool):
        self.ws, self.item, self.actor_id, self.request_id = ws, item, actor_id, request_id
        self.scheduled_time, self.manual = scheduled_time, manual
        self.mark_index = -1
        self.at = iso()

    def write(self, tx: Transaction, kind: str, made_id: str) -> None:
        schedule_id = self.item["id"]
        if self.scheduled_time:
            self.mark_index = len(tx.operations)
            tx.put(
                {
                    **keys.schedule_firing_key(self.ws, schedule_id, self.scheduled_time),
                    keys.ENTITY: "schedule_firing",
                    "type": kind,
                    "made_id": made_id,
                    keys.TTL: epoch() + FIRING_MARK_SECONDS,
                },
                Expr("attribute_not_exists(PK)"),
            )
        result = {"type": kind, "id": made_id, "at": self.at, "manual": self.manual}
        tx.update(
            keys.schedule_key(self.ws, schedule_id),
            Update(set={"last_fired_at": self.at, "last_result": result}, remove=["last_error"], add={"fire_count": 1}),
            exists(),
        )
        details = {kind: made_id, "manual": self.manual, "scheduled_time": self.scheduled_time}
        audit.record(tx, self.ws, self.actor_id, "schedule.fired", "schedule", schedule_id, self.request_id, details)

    def repeated(self, failure: TransactionFailed) -> Item | None:
        """The firing mark of an earlier delivery of this firing, when that is why `failure` happened."""
        if self.mark_index < 0 or failure.reasons[self.mark_index] != "ConditionalCheckFailed":
            return None
        assert self.scheduled_time is not None
        return get_store().get(keys.schedule_firing_key(self.ws, self.item["id"], self.scheduled_time))


def _fire(
    ws: str,
    item: Item,
    firing: _Firing,
    *,
    transaction: Callable[[], Transaction],
    commit: Callable[[Transaction], None],
    access: Access | None,
) -> ScheduleFiring:
    schedule_id = item["id"]
    target = to_schedule(item).target
    if isinstance(target, QueueJobTarget):
        body = JobSubmit.model_validate(_job_fields(target))
        source = {"type": "schedule", "schedule_id": schedule_id}
        try:
            job, _ = queue.enqueue(
                ws, body, firing.actor_id, firing.request_id, transaction=transaction, commit=commit, source=source,
                extra=lambda tx, job_item: firing.write(tx, "queue_job", job_item["id"]),
            )  # fmt: skip
        except TransactionFailed as failure:
            return _after_failure(ws, schedule_id, firing, failure)
        return ScheduleFiring(schedule_id=schedule_id, fired=True, job=queue.to_job(job))
    missing = _project_missing(ws, target)
    if missing:
        if firing.manual:
            raise Unprocessable(missing, errors=[{"field": "target.project_id", "message": missing}])
        _record_error(ws, schedule_id, missing)
        return ScheduleFiring(schedule_id=schedule_id, fired=False, error=missing)
    run_body = RunCreate.model_validate({k: v for k, v in target_fields(target).items() if k != "type"})
    run = runs.new_run_item(ws, run_body, firing.actor_id)
    run["schedule_id"] = schedule_id
    tx = transaction()
    tx.put(run, Expr("attribute_not_exists(PK)"))
    audit.record(tx, ws, firing.actor_id, "run.created", "run", run["id"], firing.request_id,
                 {"title": run_body.title, "kind": run_body.kind.value, "schedule_id": schedule_id})  # fmt: skip
    firing.write(tx, "run", run["id"])
    try:
        commit(tx)
    except TransactionFailed as failure:
        return _after_failure(ws, schedule_id, firing, failure)
    return ScheduleFiring(schedule_id=schedule_id, fired=True, run=runs.to_run(run, access))


def _job_fields(target: QueueJobTarget) -> dict[str, Any]:
    return {k: v for k, v in target_fields(target).items() if k != "type"}


def _after_failure(ws: str, schedule_id: str, firing: _Firing, failure: TransactionFailed) -> ScheduleFiring:
    mark = firing.repeated(failure)
    if mark is None:
        if get_store().get(keys.schedule_key(ws, schedule_id)) is None:
            raise NotFound(f"schedule {schedule_id} not found") from failure
        raise failure
    made = get_store().get(
        keys.queue_job_key(ws, mark["made_id"]) if mark["type"] == "queue_job" else keys.run_key(ws, mark["made_id"])
    )
    result = ScheduleFiring(schedule_id=schedule_id, fired=False, duplicate=True)
    if made is not None and mark["type"] == "queue_job":
        result.job = queue.to_job(made)
    elif made is not None:
        result.run = runs.to_run(made)
    return result


def run_schedule(access: Access, schedule_id: str, request_id: str = "") -> ScheduleFiring:
    """Fire now, whatever the expression and even when disabled; the caller is the actor."""
    ws = access.workspace_id
    item = _load(ws, schedule_id)
    access.require("tasks:write" if to_schedule(item).target.type == "queue_job" else "runs:start")
    firing = _Firing(ws, item, access.actor_id, request_id, None, manual=True)
    return _fire(ws, item, firing, transaction=access.transaction, commit=access.commit, access=access)


def _target_scope(item: Item) -> str:
    """The scope firing the schedule's target takes: submitting a queue job, or starting a run."""
    return "tasks:write" if to_schedule(item).target.type == "queue_job" else "runs:start"


@dataclass(frozen=True)
class _Actor:
    """Who a scheduled firing acts as (the schedule's creator), and whether they still may."""

    refusal: str | None
    guard_key: Key | None = None
    guard: Expr | None = None


def _creator(ws: str, item: Item) -> _Actor:
    """The creator must still be allowed what the target takes: a member whose role grants the
    scope, or (for a schedule an agent key created) that key, active with the scope."""
    creator, scope = str(item["created_by"]), _target_scope(item)
    member = get_store().get(keys.member_key(ws, creator))
    if member is not None:
        if member.get("role") not in roles_with(scope):
            return _Actor(f"the schedule's creator {creator} is no longer allowed to use {scope} here")
        return _Actor(None, keys.member_key(ws, creator), attr_in("role", roles_with(scope)))
    key_item = get_store().get(keys.api_key_key(ws, creator))
    if key_item is not None and key_item.get("agent"):
        usable = not key_item.get("deleted_at") and api_keys.status_of(key_item) == ApiKeyStatus.active
        if usable and scope in (key_item.get("scopes") or []):
            guard = attr_eq("status", ApiKeyStatus.active.value) & Expr("attribute_not_exists(deleted_at)")
            return _Actor(None, keys.api_key_key(ws, creator), guard)
        return _Actor(f"the agent key {creator} that created the schedule can no longer use {scope}")
    return _Actor(f"the schedule's creator {creator} is no longer a member of the workspace")


class _NotAllowed(Exception):
    """A firing's guards failed at commit: the workspace was deleted or its creator lost access."""


def _retire(ws: str, item: Item, reason: str) -> ScheduleFiring:
    """A schedule that must not fire any more: disabled (with `last_error` saying why, and an audit
    row, in one conditional write) and removed from Scheduler. Enabling it again puts it back in
    Scheduler; it fires again only once its creator may do what it does."""
    schedule_id = item["id"]
    current: Item | None = item
    for _ in range(_RETIRE_ATTEMPTS):
        if current is None or not current.get("enabled"):
            break  # deleted or disabled meanwhile
        at = iso()
        tx = get_store().transaction()
        tx.update(
            keys.schedule_key(ws, schedule_id),
            Update(set={"enabled": False, "last_error": reason, "last_error_at": at, "updated_at": at},
                   add={"version": 1}),
            exists() & attr_eq("version", current["version"]),
        )  # fmt: skip
        audit.record(tx, ws, "system", "schedule.disabled", "schedule", schedule_id, "", {"reason": reason})
        try:
            tx.commit()
            break
        except TransactionFailed:
            current = get_store().get(keys.schedule_key(ws, schedule_id))
    _remove_from_scheduler(schedule_id)
    return ScheduleFiring(schedule_id=schedule_id, fired=False, error=reason)


def fire_scheduled(event: ScheduleFiredEvent) -> ScheduleFiring:
    """One firing delivered by EventBridge Scheduler, acting as the schedule's creator. A schedule
    of a deleted workspace, or whose creator may no longer do what it does, does not fire: it is
    disabled and leaves Scheduler (see `_retire`). The firing's transaction re-checks both, so
    access lost while it was being prepared stops it too."""
    ws, schedule_id = event.workspace_id, event.schedule_id
    store = get_store()
    item = store.get(keys.schedule_key(ws, schedule_id))
    if item is None:
        # A Scheduler schedule whose item is gone (deleted, or never written): remove it.
        _remove_from_scheduler(schedule_id)
        return ScheduleFiring(schedule_id=schedule_id, fired=False, error="schedule not found")
    if not item.get("enabled"):
        return ScheduleFiring(schedule_id=schedule_id, fired=False, error="schedule is disabled")
    workspace = store.get(keys.workspace_key(ws))
    if workspace is None or workspace.get("deleted_at"):
        return _retire(ws, item, "the workspace was deleted")
    actor = _creator(ws, item)
    if actor.refusal is not None:
        return _retire(ws, item, actor.refusal)
    assert actor.guard_key is not None and actor.guard is not None
    guard_key, guard = actor.guard_key, actor.guard

    def transaction() -> Transaction:
        tx = store.transaction()
        tx.check(keys.workspace_key(ws), exists() & Expr("attribute_not_exists(deleted_at)"))
        tx.check(guard_key, guard)
        return tx

    def commit(tx: Transaction) -> None:
        try:
            store.commit(tx)
        except TransactionFailed as failure:
            if "ConditionalCheckFailed" in failure.reasons[:2]:
                raise _NotAllowed from failure
            raise

    scheduled_time = _scheduled_time(event.scheduled_time)
    firing = _Firing(ws, item, item["created_by"], f"schedule:{scheduled_time or iso()}", scheduled_time, False)
    try:
        return _fire(ws, item, firing, transaction=transaction, commit=commit, access=None)
    except _NotAllowed:
        workspace = store.get(keys.workspace_key(ws))
        if workspace is None or workspace.get("deleted_at"):
            return _retire(ws, item, "the workspace was deleted")
        return _retire(ws, item, _creator(ws, item).refusal or "the schedule's creator lost access meanwhile")

"""The deploy side of runs: what a plan, apply or destroy run checks, holds, hands out and records.

The lifecycle is the runs' own (logic.runs: one conditional write per transition, the Step
Functions execution keeping time); this module adds what deploy runs need on top, as HCP
Terraform's run workflow does it:

- a plan needs every binding of its capsule resolved; it ends `planned` with its result and the
  saved plan (ArtifactsBucket), and waits for approval (`deploy:apply`) or a discard;
- an apply or destroy carries out one approved plan, only while the capsule's state serial is the
  one the plan was made against (else the plan is stale: 409), and consumes it (one apply per plan);
- one apply or destroy holds a capsule at a time (`CapsuleItem.active_run_id`); later ones wait
  `queued` with `status_detail: waiting_for_capsule` (`queued_run_ids`), and the capsule passes to
  the next when the holder ends, in the same transaction;
- the runner's claim answers the credentials of the resolved connections, for that answer only;
  its complete of an apply or destroy writes the next state version (the serial after the
  capsule's, else 409) and the outputs, sensitive values sealed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from agentplane import clients, crypto, keys
from agentplane.access import Access
from agentplane.entities.deploy import CapsuleItem, ConnectionItem, StateVersionItem
from agentplane.entities.runs import RunItem
from agentplane.entities.secrets import DeploySecretsItem
from agentplane.errors import Conflict, InvalidTransition, NotFound, Unprocessable
from agentplane.ids import iso, new_id
from agentplane.logic.deploy import capsules, connections
from agentplane.models.deploy import Binding, Resolution
from agentplane.models.runs import (
    DEPLOY_SCOPES,
    TERMINAL,
    DeployAssignment,
    DeployCredentials,
    RunComplete,
    RunCreate,
    RunKind,
    RunStatus,
)
from agentplane.settings import get_settings
from agentplane.store import Transaction, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition
    from pynamodb.expressions.update import Action

# The names of a deploy transition's further operations, told apart when a transaction fails.
PLAN, CAPSULE, NEXT_RUN = "plan", "capsule", "next_run"
WAITING_FOR_CAPSULE = "waiting_for_capsule"
CANCEL_REQUESTED = "cancel_requested"
MAX_STATE_BYTES = 4_000_000


def require_scope(access: Access, kind: RunKind) -> None:
    """Acting on a deploy run needs its kind's deploy scope (a 403 naming it)."""
    access.require(DEPLOY_SCOPES[kind])


# --------------------------------------------------------------------------------- creating


def _load_capsule(ws: str, capsule_id: str) -> CapsuleItem:
    capsule: CapsuleItem = capsules.load(ws, capsule_id)
    return capsule


def capsule_of(run: RunItem) -> CapsuleItem:
    """The capsule a deploy run plans, applies or destroys."""
    return _load_capsule(run.workspace_id, str(run.capsule_id))


def _resolved(ws: str, capsule: CapsuleItem) -> tuple[list[Binding], dict[str, ConnectionItem]]:
    """The capsule's bindings as resolved now and their connections, refused with a 409 that lists
    every blocked one."""
    bindings, connected = capsules.resolve_bindings(ws, capsule)
    blocked = [b for b in bindings if b.resolution != Resolution.resolved_provider_connection]
    if blocked:
        names = ", ".join(f"{b.provider} ({b.resolution.value})" for b in blocked)
        raise Conflict(
            f"capsule {capsule.id} has blocked bindings: {names}",
            blocked_bindings=[b.model_dump(mode="json") for b in blocked],
        )
    return bindings, connected


def _bound(bindings: list[Binding]) -> list[dict[str, Any]]:
    """Bindings as a run records them: which connection each provider was bound to."""
    return [{"provider": b.provider, "connection_id": b.connection_id} for b in bindings]


def refuse_blocked(ws: str, capsule: CapsuleItem) -> list[dict[str, Any]]:
    """The capsule's bindings, refused with a 409 that lists every blocked one."""
    return _bound(_resolved(ws, capsule)[0])


def _read_plan(ws: str, plan_run_id: str) -> RunItem | None:
    return get_store().read(RunItem, keys.run_key(ws, plan_run_id))


def _load_plan(ws: str, plan_run_id: str) -> RunItem:
    plan = _read_plan(ws, plan_run_id)
    if plan is None or plan.kind_of_run != RunKind.plan:
        raise NotFound(f"plan run {plan_run_id} not found")
    return plan


def carried_out(plan: RunItem) -> InvalidTransition:
    """The refusal of anything a plan that an apply or destroy carried out can no longer do."""
    return InvalidTransition(
        f"plan run {plan.id} was already carried out by run {plan.applied_by}", current_status=plan.status
    )


def check_plan_to_carry_out(run_kind: RunKind, plan: RunItem, capsule: CapsuleItem, capsule_id: str | None) -> None:
    """An apply or destroy starts only from a plan that is planned, approved, not carried out yet,
    of the same capsule and the same direction, made against the capsule's current state."""
    if capsule_id is not None and capsule_id != plan.capsule_id:
        raise Conflict(f"plan run {plan.id} is a plan of capsule {plan.capsule_id}, not {capsule_id}")
    wants_destroy = run_kind == RunKind.destroy
    if bool(plan.is_destroy) != wants_destroy:
        needed = "a destroy plan (is_destroy)" if wants_destroy else "a plan that is not a destroy plan"
        raise Conflict(f"a {run_kind.value} run carries out {needed}; plan run {plan.id} is not one")
    if plan.state != RunStatus.planned:
        raise InvalidTransition(f"plan run {plan.id} is {plan.status}, not planned", current_status=plan.status)
    if not plan.approved:
        raise InvalidTransition(
            f"plan run {plan.id} needs approval before it is carried out", current_status=plan.status
        )
    if plan.applied_by:
        raise carried_out(plan)
    base = _base_serial(plan)
    if base != int(capsule.state_serial or 0):
        raise Conflict(
            f"plan run {plan.id} is stale: it was made against state serial {base}, "
            f"and capsule {capsule.id} is at {int(capsule.state_serial or 0)}; plan again",
            plan_serial=base,
            state_serial=int(capsule.state_serial or 0),
        )


def _base_serial(run: RunItem) -> int:
    return int((run.deploy or {}).get("base_serial") or 0)


def draft_fields(access: Access, body: RunCreate) -> dict[str, Any]:
    """What a new deploy run's draft holds beyond what was asked, checked as it is created (and
    again when it starts): its capsule, title and the record it starts from."""
    ws, kind = access.workspace_id, body.kind
    require_scope(access, kind)
    if kind == RunKind.plan:
        assert body.capsule_id is not None  # the model requires it of a plan
        capsule = _load_capsule(ws, body.capsule_id)
        refuse_blocked(ws, capsule)
        what = "Destroy plan" if body.is_destroy else "Plan"
        return {
            "capsule_id": capsule.id,
            "title": body.title or f"{what} of {capsule.name}",
            "is_destroy": body.is_destroy,
        }
    assert body.plan_run_id is not None
    plan = _load_plan(ws, body.plan_run_id)
    capsule = _load_capsule(ws, str(plan.capsule_id))
    check_plan_to_carry_out(kind, plan, capsule, body.capsule_id)
    return carrying_out(kind, plan, capsule, title=body.title, project_id=body.project_id)


def carrying_out(
    kind: RunKind, plan: RunItem, capsule: CapsuleItem, *, title: str | None = None, project_id: str | None = None
) -> dict[str, Any]:
    """The draft fields of an apply or destroy of `plan`: its capsule, and by default a title
    saying what it does and the plan's project."""
    verb = "Destroy" if kind == RunKind.destroy else "Apply"
    return {
        "capsule_id": capsule.id,
        "title": title or f"{verb} {capsule.name}",
        "is_destroy": kind == RunKind.destroy,
        "project_id": project_id or plan.project_id,
    }


# --------------------------------------------------------------------------------- starting


@dataclass
class StartContext:
    """What a deploy run's start read beside the run (read again on each attempt)."""

    capsule: CapsuleItem
    plan: RunItem | None = None
    bindings: list[dict[str, Any]] | None = None


def read_for_start(run: RunItem) -> StartContext:
    ws = run.workspace_id
    capsule = _load_capsule(ws, str(run.capsule_id))
    if run.kind_of_run == RunKind.plan:
        return StartContext(capsule, bindings=refuse_blocked(ws, capsule))
    plan = _load_plan(ws, str(run.plan_run_id))
    check_plan_to_carry_out(run.kind_of_run, plan, capsule, run.capsule_id)
    return StartContext(capsule, plan=plan)


def start_fields(run: RunItem, context: StartContext) -> dict[str, Any]:
    """The record a deploy run starts with: for a plan, the capsule's tool, source, bindings and
    the state serial it plans against; an apply or destroy takes its plan's, and waits for the
    capsule when another run holds it."""
    capsule = context.capsule
    if context.plan is None:
        record = {
            "tool": capsule.tool,
            "tool_version": capsule.tool_version,
            "source": dict(capsule.source),
            "bindings": context.bindings or [],
            "base_serial": int(capsule.state_serial or 0),
        }
        return {"deploy": record}
    plan_record = dict(context.plan.deploy or {})
    record = {
        name: plan_record[name]
        for name in ("tool", "tool_version", "source", "bindings", "base_serial", "provider_lock_digest")
        if name in plan_record
    }
    fields: dict[str, Any] = {"deploy": record}
    if capsule.active_run_id and capsule.active_run_id != run.id:
        fields["status_detail"] = WAITING_FOR_CAPSULE
    return fields


def start_writes(tx: Transaction, run: RunItem, context: StartContext) -> None:
    """An apply or destroy consumes its plan and takes the capsule (or its place in the queue)."""
    plan, capsule = context.plan, context.capsule
    if plan is None:
        return
    consumed = (RunItem.status == RunStatus.planned.value) & RunItem.applied_by.does_not_exist()
    tx.adjust(RunItem, plan.key, [RunItem.applied_by.set(run.id), RunItem.updated_at.set(iso())], consumed, name=PLAN)
    same_state = CapsuleItem.state_serial == int(capsule.state_serial or 0)
    if not capsule.active_run_id:
        takes = same_state & CapsuleItem.active_run_id.does_not_exist()
        tx.adjust(CapsuleItem, capsule.key, [CapsuleItem.active_run_id.set(run.id)], takes, name=CAPSULE)
    else:
        waits = same_state & (CapsuleItem.active_run_id == capsule.active_run_id) & _queue_is(capsule)
        queue = [*capsule.queued_run_ids, run.id]
        tx.adjust(CapsuleItem, capsule.key, [CapsuleItem.queued_run_ids.set(queue)], waits, name=CAPSULE)


def refused_start(failure_name: str | None, run: RunItem) -> Exception | None:
    """Why a deploy start lost, when its plan is why (carried out or discarded meanwhile)."""
    if failure_name != PLAN:
        return None
    plan = _read_plan(run.workspace_id, str(run.plan_run_id))
    if plan is not None and plan.applied_by:
        return carried_out(plan)
    status = plan.status if plan is not None else "deleted"
    return InvalidTransition(f"plan run {run.plan_run_id} is {status}, not planned", current_status=status)


def _queue_is(capsule: CapsuleItem) -> Condition:
    """The capsule's queue is still the one read (so two runs joining or leaving it at once
    cannot both write over the same list)."""
    queue = list(capsule.queued_run_ids or [])
    same: Condition = CapsuleItem.queued_run_ids == queue
    return CapsuleItem.queued_run_ids.does_not_exist() | same if not queue else same


# ------------------------------------------------------------------ holding and passing the capsule


def capsule_to_release(run: RunItem, target: RunStatus) -> CapsuleItem | None:
    """The capsule an apply or destroy gives up (or leaves the queue of) as it ends here."""
    if not run.carries_out_plan or target not in TERMINAL or run.state in TERMINAL or not run.capsule_id:
        return None
    capsule = get_store().read(CapsuleItem, keys.capsule_key(run.workspace_id, run.capsule_id))
    if capsule is None:
        return None
    holds = capsule.active_run_id == run.id
    return capsule if holds or run.id in (capsule.queued_run_ids or []) else None


def release_writes(
    tx: Transaction,
    run: RunItem,
    capsule: CapsuleItem,
    also: tuple[list[Action], Condition | None] | None = None,
) -> None:
    """Give the capsule up (to the next run waiting, whose wait ends) or leave its queue, in the
    ending run's transaction; `also` adds changes to the same capsule write (the state an apply
    leaves), since a transaction writes each item once."""
    queue = [run_id for run_id in (capsule.queued_run_ids or []) if run_id != run.id]
    actions: list[Action] = []
    condition: Condition = _queue_is(capsule)
    next_run: str | None = None
    if capsule.active_run_id == run.id:
        condition &= CapsuleItem.active_run_id == run.id
        if queue:
            next_run, queue = queue[0], queue[1:]
            actions.append(CapsuleItem.active_run_id.set(next_run))
        else:
            actions.append(CapsuleItem.active_run_id.remove())
    actions.append(CapsuleItem.queued_run_ids.set(queue))
    if also is not None:
        actions += also[0]
        if also[1] is not None:
            condition &= also[1]
    tx.adjust(CapsuleItem, capsule.key, actions, condition, name=CAPSULE)
    if next_run is not None:
        waiting = RunItem.status_detail == WAITING_FOR_CAPSULE
        next_key = keys.run_key(run.workspace_id, next_run)
        tx.adjust(
            RunItem,
            next_key,
            [RunItem.status_detail.remove()],
            waiting | RunItem.status_detail.does_not_exist(),
            name=NEXT_RUN,
        )


def watchers_of(run: RunItem) -> list[str]:
    """Who follows an apply or destroy besides its creator: whoever made the plan it carries out,
    and whoever approved that plan."""
    if not run.carries_out_plan or not run.plan_run_id:
        return []
    plan = _read_plan(run.workspace_id, run.plan_run_id)
    if plan is None:
        return []
    return [plan.created_by, str((plan.review or {}).get("reviewer_id") or "")]


# ------------------------------------------------------------------------------- the runner


@dataclass
class Claimed:
    """What a deploy run's claim hands the runner, and what the run records of it (names only)."""

    assignment: DeployAssignment
    credentials: DeployCredentials
    record: dict[str, Any]
    connection_ids: list[str]


def check_claim(run: RunItem, capsule: CapsuleItem) -> str | None:
    """Why the run may not be claimed now (None: it may): an apply or destroy must hold its
    capsule (whether its plan is still current is `stale_at_claim`)."""
    if not run.carries_out_plan:
        return None
    if capsule.active_run_id != run.id:
        return f"run {run.id} waits for run {capsule.active_run_id} to finish on capsule {capsule.id}"
    return None


def stale_at_claim(run: RunItem, capsule: CapsuleItem) -> str | None:
    """The reason to fail an apply or destroy at its claim: its plan went stale while it waited."""
    if run.carries_out_plan and _base_serial(run) != int(capsule.state_serial or 0):
        return (
            f"the plan was made against state serial {_base_serial(run)}, "
            f"and capsule {capsule.id} is now at {int(capsule.state_serial or 0)}"
        )
    return None


def prepare_claim(run: RunItem, capsule: CapsuleItem) -> Claimed:
    """Resolve the bindings again and open the connections' credentials for this claim alone."""
    bindings, resolved = _resolved(run.workspace_id, capsule)
    env: dict[str, str] = {}
    files: dict[str, str] = {}
    for binding in bindings:
        connection = resolved[binding.connection_id]
        opened = connections.open_credentials(connection)
        recipe = dict(connection.recipe or {})
        for name, credential in dict(recipe.get("env") or {}).items():
            env[name] = opened[credential]
        for path, credential in dict(recipe.get("files") or {}).items():
            files[path] = opened[credential]
    record = dict(run.deploy or {})
    record["bindings"] = _bound(bindings)
    record["injected_env"] = sorted(env)
    record["injected_files"] = sorted(files)
    source = dict(record.get("source") or capsule.source)
    assignment = DeployAssignment(
        capsule_id=capsule.id,
        operation=run.kind_of_run,
        is_destroy=bool(run.is_destroy),
        source=source,
        tool=str(record.get("tool") or capsule.tool),
        tool_version=str(record.get("tool_version") or capsule.tool_version),
        state=_current_state(capsule),
        state_serial=int(capsule.state_serial or 0),
        state_lineage=capsule.state_lineage,
        plan_file=_saved_plan(run) if run.carries_out_plan else None,
    )
    return Claimed(assignment, DeployCredentials(env=env, files=files), record, sorted(resolved))


def _current_state(capsule: CapsuleItem) -> dict[str, Any] | None:
    if not capsule.state_serial:
        return None
    version = get_store().read(
        StateVersionItem, keys.state_version_key(capsule.workspace_id, capsule.id, int(capsule.state_serial))
    )
    if version is None:
        return None
    body = _state_body(version)
    if hashlib.sha256(body).hexdigest() != version.checksum:
        raise RuntimeError(f"the stored state of capsule {capsule.id} does not match state version {version.serial}")
    state: dict[str, Any] = json.loads(body)
    return state


def _state_body(version: StateVersionItem) -> bytes:
    """The state version's body: its own object version, else the object as it is now (a local
    stack keeps only the latest version of each object across restarts; the checksum tells)."""
    s3 = clients.s3()
    if version.object_version:
        try:
            found = s3.get_object(Bucket=_bucket(), Key=version.object_key, VersionId=version.object_version)
            return bytes(found["Body"].read())
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("NoSuchVersion", "InvalidArgument", "NoSuchKey"):
                raise
    return bytes(s3.get_object(Bucket=_bucket(), Key=version.object_key)["Body"].read())


def _saved_plan(run: RunItem) -> str | None:
    plan = _read_plan(run.workspace_id, str(run.plan_run_id))
    artifact = (plan.plan_artifact if plan is not None else None) or {}
    if not artifact.get("key"):
        return None
    # Each plan has a key of its own, written once: the object as it is is the saved plan.
    body = clients.s3().get_object(Bucket=_bucket(), Key=artifact["key"])["Body"].read()
    recorded = dict((plan.deploy if plan is not None else None) or {}).get("plan_file_sha256")
    if recorded and hashlib.sha256(body).hexdigest() != recorded:
        raise RuntimeError(f"the saved plan of run {run.plan_run_id} is not the one its plan run recorded")
    return base64.b64encode(body).decode()


def _bucket() -> str:
    bucket = get_settings().artifacts_bucket
    if not bucket:
        raise RuntimeError("ARTIFACTS_BUCKET is not set: deploy runs keep plans and state there")
    return bucket


# ------------------------------------------------------------------------------ completing


@dataclass
class Completion:
    """What a deploy run's complete records: fields of the run, and for an apply or destroy the
    state version and outputs it writes with the capsule."""

    fields: dict[str, Any]
    target: RunStatus
    state_version: StateVersionItem | None = None
    capsule_actions: list[Action] | None = None
    capsule_condition: Condition | None = None
    sealed_outputs: dict[str, str] | None = None


def completion(run: RunItem, body: RunComplete) -> Completion:
    """Check what the runner reports and store what must be stored before the transaction (the
    saved plan, the state body: ArtifactsBucket); answer what the transaction writes."""
    record = dict(run.deploy or {})
    if body.source_commit:
        record["source"] = {**dict(record.get("source") or {}), "commit": body.source_commit}
    if body.provider_lock_digest:
        record["provider_lock_digest"] = body.provider_lock_digest
    cancelled = bool(run.cancel_requested_at)
    if run.kind_of_run == RunKind.plan:
        if body.plan is None:
            raise Unprocessable("a plan run completes with its plan (add, change, destroy)", errors=[_missing("plan")])
        record["plan"] = body.plan.model_dump()
        fields: dict[str, Any] = {"deploy": record}
        if body.plan_file is not None:
            saved = _decoded(body.plan_file)
            key = keys.plan_object(run.workspace_id, str(run.capsule_id), run.id)
            put = clients.s3().put_object(Bucket=_bucket(), Key=key, Body=saved, ContentType="application/octet-stream")
            record["plan_file_sha256"] = hashlib.sha256(saved).hexdigest()
            fields["plan_artifact"] = {"key": key, "version_id": put.get("VersionId")}
        return Completion(fields, RunStatus.cancelled if cancelled else RunStatus.planned)
    if body.state is None:
        raise Unprocessable(f"an {run.run_kind} run completes with the state it left", errors=[_missing("state")])
    capsule = _load_capsule(run.workspace_id, str(run.capsule_id))
    expected = int(capsule.state_serial or 0) + 1
    if body.state.serial != expected:
        raise Conflict(
            f"state serial {body.state.serial} is not the next one: capsule {capsule.id} is at "
            f"{int(capsule.state_serial or 0)}, so the next is {expected}",
            state_serial=int(capsule.state_serial or 0),
        )
    if capsule.state_lineage and body.state.lineage != capsule.state_lineage:
        raise Conflict(f"state lineage {body.state.lineage} is not capsule {capsule.id}'s ({capsule.state_lineage})")
    document = json.dumps(body.state.body, sort_keys=True, separators=(",", ":")).encode()
    if len(document) > MAX_STATE_BYTES:
        raise Unprocessable(
            f"the state is {len(document)} bytes; at most {MAX_STATE_BYTES}", errors=[_missing("state.body")]
        )
    object_key = keys.state_object(run.workspace_id, capsule.id)
    put = clients.s3().put_object(Bucket=_bucket(), Key=object_key, Body=document, ContentType="application/json")
    at = iso()
    resources = body.state.body.get("resources")
    version = StateVersionItem(
        workspace_id=run.workspace_id,
        capsule_id=capsule.id,
        id=new_id("sv"),
        serial=expected,
        lineage=body.state.lineage,
        checksum=hashlib.sha256(document).hexdigest(),
        run_id=run.id,
        resources=len(resources) if isinstance(resources, list) else 0,
        object_key=object_key,
        object_version=put.get("VersionId"),
        created_at=at,
    )
    outputs, sensitive = _stored_outputs(run.workspace_id, body)
    record["state_serial"] = expected
    state_actions: list[Action] = [
        CapsuleItem.state_serial.set(expected),
        CapsuleItem.state_lineage.set(body.state.lineage),
        CapsuleItem.state_checksum.set(version.checksum),
        CapsuleItem.state_run_id.set(run.id),
        CapsuleItem.state_resources.set(version.resources),
        CapsuleItem.state_updated_at.set(at),
        CapsuleItem.outputs.set(outputs),
        CapsuleItem.updated_at.set(at),
    ]
    done = RunStatus.destroyed if run.kind_of_run == RunKind.destroy else RunStatus.applied
    sealed = crypto.seal(json.dumps(sensitive), run.workspace_id) if sensitive else None
    return Completion(
        {"deploy": record},
        RunStatus.cancelled if cancelled else done,
        state_version=version,
        capsule_actions=state_actions,
        capsule_condition=CapsuleItem.state_serial == int(capsule.state_serial or 0),
        sealed_outputs=sealed,
    )


def completion_writes(tx: Transaction, run: RunItem, done: Completion) -> None:
    """The state version, and the copy of the sensitive outputs redaction reads (logic.known_secrets)."""
    if done.state_version is None:
        return
    tx.create(done.state_version, name="state_version")
    holder = f"outputs_{run.capsule_id}"
    tx.upsert(
        DeploySecretsItem,
        keys.deploy_secrets_key(run.workspace_id),
        DeploySecretsItem.keeping(run.workspace_id, holder, done.sealed_outputs),
    )


def _stored_outputs(ws: str, body: RunComplete) -> tuple[dict[str, Any], list[Any]]:
    """The outputs as the capsule keeps them (sensitive values sealed) and the sensitive values as
    they are, for redaction (which reads every string and number they hold: known_secrets)."""
    stored: dict[str, Any] = {}
    sensitive: list[Any] = []
    for name, output in (body.outputs or {}).items():
        if output.sensitive:
            sensitive.append(output.value)
            stored[name] = {"sensitive": True, "sealed": crypto.seal(json.dumps(output.value), ws)}
        else:
            stored[name] = {"sensitive": False, "value": output.value}
    return stored, sensitive


def _decoded(encoded: str) -> bytes:
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Unprocessable(
            "plan_file is not base64", errors=[{"field": "plan_file", "message": "not base64"}]
        ) from exc


def _missing(field: str) -> dict[str, str]:
    return {"field": field, "message": "required"}

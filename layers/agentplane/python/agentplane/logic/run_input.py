"""Input requests: the agent working a run asks a person a question, and waits for the answer.

    open (the agent asks) → answered (a person) → delivered (the agent's next heartbeat)
    open → cancelled (the run ended first)

The run names its open request (`input_request_id`, shown as `status_detail: needs_input`) and the
answered ones its agent has not been handed yet (`answers_pending`). Asking and answering each write
the run and the request in one transaction with the run event and the audit row, conditional on
the run's event counter, so the two never disagree: one open request at a time, and of two
concurrent answers one wins and the other is a 409.

Timers (statemachine/run.asl.json): asking resolves the execution's `work` wait with the outcome
`needs_input`, and the execution waits in `input` instead, for at most the run's
`input_timeout_seconds` (then the run fails as `input_timeout`): no heartbeat timeout fires while a
person thinks. The answer resolves the `input` wait, and the execution waits for the agent again,
its heartbeat timer fresh. A write that resolves a wait takes the wait's token off the run with it
(conditional on it being the one read), so no later signal goes to a wait already left; a wait
recorded after the write sees what it wrote and resolves itself (`settle_wait`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from agentplane import keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.run_input import InputRequestItem, input_requests_of_run
from agentplane.entities.runs import RunItem
from agentplane.errors import Conflict, InvalidTransition, NotFound, Unprocessable
from agentplane.ids import iso, new_id
from agentplane.logic import known_secrets, run_waits
from agentplane.logic.run_events import event_record, events_batch
from agentplane.models.run_input import (
    DeliveredAnswer,
    InputAnswer,
    InputRequest,
    InputRequestCreate,
    InputRequestStatus,
)
from agentplane.models.runs import RunStatus
from agentplane.observability import logger
from agentplane.redact import redact_text
from agentplane.store import ConditionFailed, Transaction, TransactionFailed, get_store, retrying

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition
    from pynamodb.expressions.update import Action

NEEDS_INPUT = "needs_input"
# The execution's wait while a question is open (logic.runs records it like the others).
INPUT_PHASE = "input"
_LIVE = frozenset({RunStatus.running, RunStatus.paused})
_RUN, _REQUEST = "run", "input_request"
_ATTEMPTS = 8
T = TypeVar("T")


class _LostRace(Exception):
    """The run took an event (an append, a transition) or its execution moved between the read
    and the write: read it again."""


def _lost(failure: TransactionFailed) -> bool:
    return failure.failed == _RUN or "TransactionConflict" in failure.reasons


def _retried(attempt: Callable[[], T], run_id: str) -> T:
    try:
        return retrying(attempt, retry_if=lambda failure: isinstance(failure, _LostRace), attempts=_ATTEMPTS)
    except _LostRace as lost:
        raise Conflict(f"run {run_id} is changing too quickly; retry") from lost


def _same_wait(run: RunItem) -> Condition:
    """The execution still waits where the run was read (so the token cleared is the current one);
    taken before the run's changes are assigned."""
    if run.task_token:
        same: Condition = RunItem.task_token == run.task_token
        return same
    return RunItem.task_token.does_not_exist()


def _leaving(run: RunItem, phase: str) -> tuple[str | None, dict[str, Any]]:
    """The token of the wait this write resolves, if the execution is in it, and the changes that
    take it off the run."""
    if run.task_token and run.task_phase == phase:
        return run.task_token, {"task_token": None, "task_phase": None}
    return None, {}


def _resume(run_id: str, token: str | None, outcome: str) -> None:
    """Resolve the wait of `token` (after our write committed), if the write took one."""
    if token:
        run_waits.resolve(run_id, token, success={"outcome": outcome})


def _path(run: RunItem) -> str:
    return f"/workspaces/{run.workspace_id}/runs/{run.id}"


# ---------------------------------------------------------------------------------- reading


def get_input_request(access: Access, run_id: str, request_id: str) -> InputRequest:
    key = keys.run_input_key(access.workspace_id, run_id, request_id)
    return get_store().read_or_404(InputRequestItem, key, f"input request {request_id} not found").to_model()


def list_input_requests(
    access: Access, run_id: str, *, limit: int, cursor: str | None
) -> tuple[list[InputRequest], str | None]:
    """Newest first; an unknown run is a 404, not an empty page."""
    ws = access.workspace_id
    get_store().read_or_404(RunItem, keys.run_key(ws, run_id), f"run {run_id} not found")
    scope = f"run-input:{ws}:{run_id}"
    page = input_requests_of_run(ws, run_id, limit=limit, start=decode_cursor(cursor, scope, {}))
    return [request.to_model() for request in page.items], encode_cursor(page.last_key, scope, {})


# ------------------------------------------------------------------------------------ asking


def _check_askable(run: RunItem, worker_id: str) -> None:
    if run.is_deploy:
        raise InvalidTransition(f"run {run.id} is a deploy run: its runner asks nobody", current_status=run.status)
    if run.worker_id and run.worker_id != worker_id:
        raise Conflict(f"run {run.id} is claimed by another worker", current_status=run.status)
    if run.state != RunStatus.running:
        raise InvalidTransition(f"run {run.id} cannot ask for input while {run.status}", current_status=run.status)
    if run.input_request_id:
        raise Conflict(
            f"run {run.id} already waits for an answer to {run.input_request_id}",
            current_status=run.status,
            input_request_id=run.input_request_id,
        )


@dataclass
class _Ask:
    access: Access
    run_id: str
    body: InputRequestCreate

    def attempt(self) -> tuple[RunItem, InputRequestItem, str | None]:
        ws = self.access.workspace_id
        run, known = known_secrets.read_with(RunItem, keys.run_key(ws, self.run_id), ws)
        if run is None:
            raise NotFound(f"run {self.run_id} not found")
        _check_askable(run, self.body.worker_id)
        at = iso()
        choices = [redact_text(choice, known) for choice in self.body.choices] if self.body.choices else None
        request = InputRequestItem(
            workspace_id=ws,
            run_id=run.id,
            id=new_id("inp"),
            question=redact_text(self.body.question, known),
            choices=choices,
            status=InputRequestStatus.open.value,
            asked_by=self.body.worker_id,
            asked_at=at,
        )
        token, cleared = _leaving(run, "work")
        event_id, same_wait = run.next_event_id, _same_wait(run)
        actions, unchanged = run.record_events(
            1, input_request_id=request.id, status_detail=NEEDS_INPUT, updated_at=at, **cleared
        )
        waiting_for_none = RunItem.input_request_id.does_not_exist() & (RunItem.status == RunStatus.running.value)
        data = {"input_request_id": request.id, "question": request.question, "choices": choices}
        tx = self.access.transaction()
        tx.change(run, actions, unchanged & waiting_for_none & same_wait, name=_RUN)
        tx.create(request, name=_REQUEST)
        tx.save(events_batch(ws, run.id, [event_record(event_id, "input_requested", data=data, at=at)], known=known))
        self.access.audit(tx, "run.input_requested", "run", run.id, {"input_request_id": request.id})
        try:
            self.access.commit(tx)
        except TransactionFailed as failure:
            if _lost(failure):
                raise _LostRace from failure
            raise
        return run, request, token


def ask_input(access: Access, run_id: str, body: InputRequestCreate) -> InputRequest:
    """The agent asks; the run shows `needs_input`, its creator is told, and the execution stops
    counting heartbeats until the answer (see the module's docstring)."""
    run, request, token = _retried(_Ask(access, run_id, body).attempt, run_id)
    _resume(run.id, token, NEEDS_INPUT)
    _tell_creator(run, request)
    return request.to_model()


def _tell_creator(run: RunItem, request: InputRequestItem) -> None:
    """A `needs_input` notification to the run's creator; a notification failure never fails the ask."""
    from agentplane.logic import notifications

    data = {"event": "run.needs_input", "run_id": run.id, "input_request_id": request.id, "status": run.status}
    try:
        notifications.notify(
            None, run.workspace_id, [run.created_by], "needs_input", f"Run '{run.title}' needs your input",
            body=request.question, data=data, link=_path(run), source="runs",
        )  # fmt: skip
    except Exception:
        logger.exception("could not notify about an input request", extra={"run_id": run.id})


# --------------------------------------------------------------------------------- answering


@dataclass
class _Answer:
    access: Access
    run_id: str
    request_id: str
    body: InputAnswer

    def attempt(self) -> tuple[RunItem, InputRequestItem, str | None]:
        ws = self.access.workspace_id
        found_run, found_request = get_store().read_each(
            [
                (RunItem, keys.run_key(ws, self.run_id)),
                (InputRequestItem, keys.run_input_key(ws, self.run_id, self.request_id)),
            ]
        )
        run, request = RunItem.found(found_run), InputRequestItem.found(found_request)
        if run is None:
            raise NotFound(f"run {self.run_id} not found")
        if request is None:
            raise NotFound(f"input request {self.request_id} not found")
        if request.state != InputRequestStatus.open:
            raise Conflict(f"input request {request.id} is {request.status}", status=request.status)
        answer = self.body.answer
        if not request.accepts(answer):
            raise Unprocessable(
                "the answer must be one of the request's choices",
                errors=[{"field": "answer", "message": "not one of the choices"}],
                choices=request.choices,
            )
        at = iso()
        token, cleared = _leaving(run, INPUT_PHASE)
        detail = {"status_detail": None} if run.status_detail == NEEDS_INPUT else {}
        event_id, same_wait = run.next_event_id, _same_wait(run)
        actions, unchanged = run.record_events(1, input_request_id=None, updated_at=at, **detail, **cleared)
        actions.append(RunItem.answers_pending.add({request.id}))
        waited = RunItem.input_request_id == request.id
        tx = self.access.transaction()
        tx.change(run, actions, unchanged & waited & same_wait, name=_RUN)
        answered = request.assign(
            status=InputRequestStatus.answered.value, answer=answer, answered_by=self.access.actor_id, answered_at=at
        )
        tx.change(request, answered, InputRequestItem.status == InputRequestStatus.open.value, name=_REQUEST)
        data = {"input_request_id": request.id, "answer": answer}
        tx.save(events_batch(ws, run.id, [event_record(event_id, "input_answered", data=data, at=at)]))
        self.access.audit(tx, "run.input_answered", "run", run.id, {"input_request_id": request.id})
        try:
            self.access.commit(tx)
        except TransactionFailed as failure:
            if _lost(failure) or failure.failed == _REQUEST:
                raise _LostRace from failure  # read again: an answer that came first is then a 409
            raise
        return run, request, token


def answer_input(access: Access, run_id: str, request_id: str, body: InputAnswer) -> InputRequest:
    """A person answers an open request (one of its choices, when it has some): the run no longer
    needs input, the execution waits for the agent again, and the agent's next heartbeat carries
    the answer."""
    run, request, token = _retried(_Answer(access, run_id, request_id, body).attempt, run_id)
    _resume(run.id, token, "answered")
    return request.to_model()


# ------------------------------------------------------------------ the heartbeat's delivery


def deliver_answers(access: Access, run: RunItem) -> list[DeliveredAnswer]:
    """The answers the agent has not been handed, marked delivered (conditionally: of two
    concurrent heartbeats, one takes them). Reads and writes nothing when there are none."""
    pending = sorted(run.answers_pending or ())
    if not pending:
        return []
    ws = run.workspace_id
    found = get_store().read_many(InputRequestItem, [keys.run_input_key(ws, run.id, rid) for rid in pending])
    answered = [r for r in found if r is not None and r.state == InputRequestStatus.answered and not r.delivered_at]
    at = iso()
    tx = access.transaction()
    tx.adjust(RunItem, run.key, [RunItem.answers_pending.delete(set(pending))])
    for request in answered:
        tx.change(request, request.assign(delivered_at=at), InputRequestItem.delivered_at.does_not_exist())
    try:
        access.commit(tx)
    except TransactionFailed:
        return []  # another heartbeat handed them over
    return [
        DeliveredAnswer(id=r.id, question=r.question, answer=str(r.answer), answered_at=str(r.answered_at))
        for r in answered
    ]


# ------------------------------------------------------- what the run's lifecycle asks of it


def can_answer(run: RunItem) -> bool:
    return bool(run.input_request_id) and run.state in _LIVE


def closing_changes(run: RunItem, target: RunStatus) -> dict[str, Any]:
    """A run leaving running/paused no longer waits for input: the changes of its own write."""
    if not run.input_request_id or target in _LIVE:
        return {}
    return {"input_request_id": None, **({"status_detail": None} if run.status_detail == NEEDS_INPUT else {})}


def close_request(tx: Transaction, run: RunItem, request_id: str | None, target: RunStatus) -> None:
    """Cancel the open request `request_id` of a run leaving running/paused, in the same transaction."""
    if not request_id or target in _LIVE:
        return
    cancelled: list[Action] = [
        InputRequestItem.status.set(InputRequestStatus.cancelled.value),
        InputRequestItem.cancelled_at.set(iso()),
    ]
    open_still = InputRequestItem.status == InputRequestStatus.open.value
    tx.adjust(InputRequestItem, keys.run_input_key(run.workspace_id, run.id, request_id), cancelled, open_still)


def settle_wait(run: RunItem, phase: str) -> None:
    """The execution just recorded its wait `phase` (the run as that write left it): resolve it at
    once if the run is already past it (a question asked before the `work` wait was recorded, or
    answered before the `input` wait was), taking its token off the run first."""
    if phase == "work" and run.input_request_id and run.state in _LIVE:
        outcome = NEEDS_INPUT
    elif phase == INPUT_PHASE and run.state not in _LIVE:
        outcome = run.status
    elif phase == INPUT_PHASE and not run.input_request_id:
        outcome = "answered"
    else:
        return
    token = run.task_token
    try:
        cleared = [RunItem.task_token.remove(), RunItem.task_phase.remove()]
        get_store().adjust(RunItem, run.key, cleared, RunItem.task_token == token)
    except ConditionFailed:
        return  # the execution already waits elsewhere
    _resume(run.id, token, outcome)


def expiry_guard(phase: str) -> Callable[[RunItem], None] | None:
    """When a wait that ran out of time must not fail the run: an agent that went silent while a
    person thinks has not stalled, and a question answered as its time ran out has not timed out.
    The execution then goes on from the run's status (statemachine/run.asl.json)."""

    def not_waiting_for_input(run: RunItem) -> None:
        if run.input_request_id:
            raise InvalidTransition(f"run {run.id} waits for input", current_status=run.status)

    def waiting_for_input(run: RunItem) -> None:
        if not run.input_request_id:
            raise InvalidTransition(f"run {run.id} no longer waits for input", current_status=run.status)

    guards: Mapping[str, Callable[[RunItem], None]] = {"work": not_waiting_for_input, INPUT_PHASE: waiting_for_input}
    return guards.get(phase)

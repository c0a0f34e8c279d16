"""Input requests' rules that need no execution: which waits resolve themselves when the execution
records them, which timeouts must not fail a run, and what a run leaving running closes."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from agentplane import raw_items

WS = "ws_input"


def _run(**fields: Any) -> Any:
    from agentplane.entities.runs import RunItem

    values = {
        "workspace_id": WS,
        "id": "run_1",
        "title": "Add login",
        "prompt": "Build it",
        "run_kind": "agent",
        "status": "running",
        "branch": "agentplane/run_1",
        "created_by": "usr_1",
        "created_at": "2026-12-01T00:00:00Z",
        "updated_at": "2026-12-01T00:00:00Z",
        **fields,
    }
    return RunItem(**values)


@pytest.fixture
def resumed(monkeypatch) -> list[tuple[str | None, str]]:
    from agentplane.logic import run_input

    calls: list[tuple[str | None, str]] = []
    monkeypatch.setattr(run_input, "_resume", lambda _run_id, token, outcome: calls.append((token, outcome)))
    return calls


@pytest.mark.parametrize(
    ("phase", "fields", "outcome"),
    [
        ("work", {"input_request_id": "inp_1", "status_detail": "needs_input"}, "needs_input"),
        ("input", {}, "answered"),
        ("input", {"status": "completed"}, "completed"),
    ],
    ids=["asked before the work wait", "answered before the input wait", "ended before the input wait"],
)
def test_a_wait_recorded_after_the_run_moved_past_it_resolves_itself_and_leaves_no_token(
    store, resumed, phase, fields, outcome
) -> None:
    from agentplane import keys
    from agentplane.logic import run_input

    run = _run(task_token="tok-1", task_phase=phase, **fields)
    store.create(run)

    run_input.settle_wait(run, phase)

    assert resumed == [("tok-1", outcome)]
    item = raw_items.get(keys.run_key(WS, "run_1"))
    assert "task_token" not in item and "task_phase" not in item


@pytest.mark.parametrize(
    ("phase", "fields"),
    [("work", {}), ("input", {"input_request_id": "inp_1"})],
    ids=["working", "waiting for an answer"],
)
def test_a_wait_the_run_is_still_in_is_left_waiting(store, resumed, phase, fields) -> None:
    from agentplane import keys
    from agentplane.logic import run_input

    run = _run(task_token="tok-1", task_phase=phase, **fields)
    store.create(run)

    run_input.settle_wait(run, phase)

    assert resumed == []
    assert raw_items.get(keys.run_key(WS, "run_1"))["task_token"] == "tok-1"


def test_a_wait_the_execution_already_left_is_not_resolved_again(store, resumed) -> None:
    from agentplane.logic import run_input

    store.create(_run(task_token="tok-2", task_phase="input", input_request_id="inp_1"))
    recorded = _run(task_token="tok-1", task_phase="work", input_request_id="inp_1")
    recorded.stamp()

    run_input.settle_wait(recorded, "work")

    assert resumed == []


def test_a_silent_agent_waiting_for_an_answer_is_not_stalled_and_an_answered_question_does_not_time_out() -> None:
    from agentplane.errors import InvalidTransition
    from agentplane.logic import run_input

    stalled, input_timeout = run_input.expiry_guard("work"), run_input.expiry_guard("input")
    assert stalled is not None and input_timeout is not None
    with pytest.raises(InvalidTransition):
        stalled(_run(input_request_id="inp_1"))
    stalled(_run())
    with pytest.raises(InvalidTransition):
        input_timeout(_run())
    input_timeout(_run(input_request_id="inp_1"))
    assert run_input.expiry_guard("claim") is None and run_input.expiry_guard("approval") is None


def test_a_run_leaving_running_no_longer_needs_input_but_a_pause_keeps_the_question_open() -> None:
    from agentplane.logic import run_input
    from agentplane.models.runs import RunStatus

    waiting = _run(input_request_id="inp_1", status_detail="needs_input")

    assert run_input.closing_changes(waiting, RunStatus.paused) == {}
    assert run_input.closing_changes(waiting, RunStatus.completed) == {"input_request_id": None, "status_detail": None}
    other_detail = _run(input_request_id="inp_1", status_detail="budget_exhausted")
    assert run_input.closing_changes(other_detail, RunStatus.cancelled) == {"input_request_id": None}
    assert run_input.closing_changes(_run(), RunStatus.failed) == {}


def test_choices_are_distinct_and_an_answer_must_be_one_of_them() -> None:
    from agentplane.entities.run_input import InputRequestItem
    from agentplane.models.run_input import InputRequestCreate

    with pytest.raises(ValidationError, match="distinct"):
        InputRequestCreate(worker_id="w1", question="Which?", choices=["a", "a"])
    request = InputRequestItem(question="Which?", choices=["main", "develop"])
    assert request.accepts("develop") and not request.accepts("staging")
    assert InputRequestItem(question="Anything?").accepts("whatever you like")

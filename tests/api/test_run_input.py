"""Input requests: a run's agent asks a person, the run waits on the answer (with no heartbeat
timeout), and the answer reaches the agent on its next heartbeat; the real state machine keeps
the timers."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from agentplane.auth.tokens import resolve_principal
from agentplane.logic import runs as run_logic
from agentplane.logic.workspaces import create_workspace
from agentplane.models.workspaces import WorkspaceCreate
from agentplane.redact import MASK
from tests.api.test_runs import (
    ENV_SECRET,
    act,
    execution_status,
    new_run,
    running_run,
    runs_path,
    status_of,
    stored_events,
    stored_run,
    wait_for,
)
from tests.conftest import Client, put_common_env, register_and_login
from tests.fixtures.secret_corpus import fake

pytestmark = pytest.mark.usefixtures("executions")


def inputs_path(ws: dict[str, Any], run: dict[str, Any]) -> str:
    return f"{runs_path(ws)}/{run['id']}/input-requests"


def ask(api: Client, ws: dict[str, Any], run: dict[str, Any], question: str, **fields: Any) -> Any:
    return api.post(inputs_path(ws, run), {"worker_id": "w1", "question": question, **fields})


def answer(api: Client, ws: dict[str, Any], run: dict[str, Any], request_id: str, text: str) -> Any:
    return api.post(f"{inputs_path(ws, run)}/{request_id}/answer", {"answer": text})


def beat(api: Client, ws: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    response = act(api, ws, run, "heartbeat", {"worker_id": "w1"})
    assert response.status == 200, response.body
    return dict(response.json["data"])


def waiting_in(ws: dict[str, Any], run: dict[str, Any], phase: str) -> bool:
    return stored_run(ws, run).get("task_phase") == phase


def notifications_of(api: Client, ws: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return list(api.get(f"/api/v1/workspaces/{ws['id']}/notifications?type={kind}").json["data"])


def test_a_question_with_choices_is_answered_and_handed_to_the_agent_once(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)

    asked = ask(api, workspace, run, "Which branch should I target?", choices=["main", "develop"])

    assert asked.status == 201, asked.body
    request = asked.json["data"]
    assert request["id"].startswith("inp_") and request["run_id"] == run["id"]
    assert (request["status"], request["choices"], request["answer"]) == ("open", ["main", "develop"], None)
    assert request["asked_at"] and request["answered_at"] is None
    waiting = status_of(api, workspace, run)
    assert (waiting["status"], waiting["status_detail"]) == ("running", "needs_input")
    assert waiting["input_request_id"] == request["id"] and waiting["actions"]["can_answer"] is True
    told = notifications_of(api, workspace, "needs_input")
    assert [n["data"] for n in told] == [
        {"event": "run.needs_input", "run_id": run["id"], "input_request_id": request["id"], "status": "running"}
    ]
    assert told[0]["body"] == "Which branch should I target?"
    assert notifications_of(api, workspace, "finished") == []
    assert wait_for(lambda: waiting_in(workspace, run, "input"), timeout=20)

    wrong = answer(api, workspace, run, request["id"], "staging")
    assert wrong.status == 422, wrong.body
    assert api.get(f"{inputs_path(workspace, run)}/{request['id']}").json["data"]["status"] == "open"
    assert status_of(api, workspace, run)["status_detail"] == "needs_input"

    answered = answer(api, workspace, run, request["id"], "develop")
    assert answered.status == 200, answered.body
    shown = answered.json["data"]
    assert (shown["status"], shown["answer"], shown["answered_by"]) == ("answered", "develop", user["user"]["id"])
    after = status_of(api, workspace, run)
    assert (after["status"], after["status_detail"], after["input_request_id"]) == ("running", None, None)
    assert after["actions"]["can_answer"] is False

    handed = beat(api, workspace, run)["answers"]
    assert handed == [
        {"id": request["id"], "question": request["question"], "answer": "develop", "answered_at": shown["answered_at"]}
    ]
    assert beat(api, workspace, run)["answers"] == []
    again = api.get(f"{inputs_path(workspace, run)}/{request['id']}").json["data"]
    assert again["answer"] == "develop" and again["delivered_at"]
    assert wait_for(lambda: waiting_in(workspace, run, "work"), timeout=20)

    events = api.get(f"{runs_path(workspace)}/{run['id']}/events").json["data"]
    seen = [(e["event_type"], e["data"].get("input_request_id")) for e in events if e["event_type"].startswith("input")]
    assert seen == [("input_requested", request["id"]), ("input_answered", request["id"])]
    audited = api.get(f"/api/v1/workspaces/{workspace['id']}/audit-logs?action=run.input_answered").json["data"]
    assert [a["target_id"] for a in audited] == [run["id"]]
    act(api, workspace, run, "complete", {"worker_id": "w1"})


def test_requests_list_newest_first_and_one_may_be_open_at_a_time(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    first = ask(api, workspace, run, "Run the migrations?").json["data"]

    second = ask(api, workspace, run, "And the seed data?")
    assert second.status == 409, second.body
    assert second.json["input_request_id"] == first["id"]

    assert answer(api, workspace, run, first["id"], "yes, any text will do").status == 200
    later = ask(api, workspace, run, "And the seed data?").json["data"]
    listed = api.get(inputs_path(workspace, run)).json["data"]
    assert [(r["id"], r["status"]) for r in listed] == [(later["id"], "open"), (first["id"], "answered")]
    paged = api.get(f"{inputs_path(workspace, run)}?limit=1").json
    assert [r["id"] for r in paged["data"]] == [later["id"]]
    rest = api.get(f"{inputs_path(workspace, run)}?limit=1&cursor={paged['meta']['next_cursor']}").json["data"]
    assert [r["id"] for r in rest] == [first["id"]]
    act(api, workspace, run, "complete", {"worker_id": "w1"})


def test_two_concurrent_answers_give_one_200_and_one_409(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    request = ask(api, workspace, run, "Ship it?", choices=["yes", "no"]).json["data"]
    results: list[Any] = []
    barrier = threading.Barrier(2)

    def answering(text: str) -> None:
        barrier.wait()
        results.append(answer(api, workspace, run, request["id"], text))

    threads = [threading.Thread(target=answering, args=(text,)) for text in ("yes", "no")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(r.status for r in results) == [200, 409]
    won = next(r for r in results if r.status == 200).json["data"]["answer"]
    stored = api.get(f"{inputs_path(workspace, run)}/{request['id']}").json["data"]
    assert (stored["status"], stored["answer"]) == ("answered", won)
    assert [a["answer"] for a in beat(api, workspace, run)["answers"]] == [won]
    act(api, workspace, run, "complete", {"worker_id": "w1"})


def test_only_the_runs_own_agent_asks_and_only_while_it_runs(api, user, workspace):
    api.token = user["token"]
    queued = new_run(api, workspace)
    act(api, workspace, queued, "start")
    refused = ask(api, workspace, queued, "Ready?")
    assert refused.status == 409 and refused.json["current_status"] == "queued"

    run = running_run(api, workspace)
    stranger = api.post(inputs_path(workspace, run), {"worker_id": "w2", "question": "Mine?"})
    assert stranger.status == 409, stranger.body
    assert ask(api, workspace, run, "").status == 422
    assert ask(api, workspace, run, "x" * 4001).status == 422
    assert ask(api, workspace, run, "Which?", choices=["a", "a"]).status == 422
    assert ask(api, workspace, run, "Which?", choices=[str(n) for n in range(21)]).status == 422
    assert ask(api, workspace, run, "Which?", choices=[]).status == 422
    assert api.get(inputs_path(workspace, run)).json["data"] == []
    assert status_of(api, workspace, run)["status_detail"] is None
    act(api, workspace, queued, "cancel")
    act(api, workspace, run, "complete", {"worker_id": "w1"})


def test_finishing_or_cancelling_a_run_cancels_its_open_request_and_ends_the_execution(api, user, workspace):
    api.token = user["token"]
    completed = running_run(api, workspace)
    asked = ask(api, workspace, completed, "Keep going?").json["data"]
    assert wait_for(lambda: waiting_in(workspace, completed, "input"), timeout=20)

    done = act(api, workspace, completed, "complete", {"worker_id": "w1"}).json["data"]

    assert (done["status"], done["status_detail"], done["input_request_id"]) == ("completed", None, None)
    assert api.get(f"{inputs_path(workspace, completed)}/{asked['id']}").json["data"]["status"] == "cancelled"
    assert wait_for(lambda: execution_status(workspace, completed) == "SUCCEEDED", timeout=20)
    assert stored_run(workspace, completed).get("finalized_at")
    assert answer(api, workspace, completed, asked["id"], "yes").status == 409

    cancelled = running_run(api, workspace)
    question = ask(api, workspace, cancelled, "Keep going?").json["data"]
    assert act(api, workspace, cancelled, "cancel").json["data"]["status"] == "cancelled"
    assert api.get(f"{inputs_path(workspace, cancelled)}/{question['id']}").json["data"]["status"] == "cancelled"
    assert wait_for(lambda: execution_status(workspace, cancelled) == "SUCCEEDED", timeout=20)


def test_a_silent_agent_waiting_for_an_answer_is_not_stalled_but_is_once_answered(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace, heartbeat_timeout_seconds=5)
    request = ask(api, workspace, run, "Which database?").json["data"]
    assert wait_for(lambda: waiting_in(workspace, run, "input"), timeout=20)

    time.sleep(6)  # past the heartbeat timeout, without a beat
    assert status_of(api, workspace, run)["status"] == "running"
    assert execution_status(workspace, run) == "RUNNING"

    answered_at = time.monotonic()
    assert answer(api, workspace, run, request["id"], "postgres").status == 200
    failed = wait_for(lambda: (r := status_of(api, workspace, run))["status"] == "failed" and r, timeout=20)
    assert failed["failure_reason"] == "stalled"
    assert time.monotonic() - answered_at >= 4  # the heartbeat timer started over at the answer
    assert wait_for(lambda: execution_status(workspace, run) == "SUCCEEDED", timeout=20)


def test_a_question_asked_as_the_heartbeat_runs_out_keeps_the_run_waiting_for_its_answer(
    api, user, workspace, monkeypatch
):
    """The heartbeat timeout fires, and the agent's question lands before the execution marks the
    run stalled: the run waits for the answer, and the execution with it."""
    api.token = user["token"]
    expire_wait = run_logic.expire_wait
    run: dict[str, Any] = {}
    asked: list[int] = []

    def ask_first(ws: str, run_id: str, phase: str) -> dict[str, Any]:
        if phase == "work" and not asked:
            asked.append(ask(api, workspace, run, "Still there?").status)
        return expire_wait(ws, run_id, phase)

    monkeypatch.setattr(run_logic, "expire_wait", ask_first)
    run.update(running_run(api, workspace, heartbeat_timeout_seconds=5))

    assert wait_for(lambda: waiting_in(workspace, run, "input"), timeout=30)
    assert asked == [201]
    waiting = status_of(api, workspace, run)
    assert (waiting["status"], waiting["status_detail"], waiting["failure_reason"]) == ("running", "needs_input", None)
    assert execution_status(workspace, run) == "RUNNING"
    act(api, workspace, run, "complete", {"worker_id": "w1"})
    assert wait_for(lambda: execution_status(workspace, run) == "SUCCEEDED", timeout=20)


def test_an_unanswered_question_fails_the_run_at_its_input_timeout(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace, input_timeout_seconds=5)
    request = ask(api, workspace, run, "Anyone there?").json["data"]

    failed = wait_for(lambda: (r := status_of(api, workspace, run))["status"] == "failed" and r, timeout=20)

    assert failed["failure_reason"] == "input_timeout" and failed["status_detail"] is None
    assert api.get(f"{inputs_path(workspace, run)}/{request['id']}").json["data"]["status"] == "cancelled"
    assert wait_for(lambda: execution_status(workspace, run) == "SUCCEEDED", timeout=20)
    assert [n["data"]["status"] for n in notifications_of(api, workspace, "finished")] == ["failed"]


def test_a_question_is_stored_served_and_told_redacted(api, user, workspace):
    api.token = user["token"]
    put_common_env(api, workspace, DB_PASSWORD=ENV_SECRET)
    token = fake("github ghp")
    run = running_run(api, workspace)

    asked = ask(api, workspace, run, f"May I use {ENV_SECRET} or TOKEN_{token}?", choices=[f"use {ENV_SECRET}", "no"])

    assert asked.status == 201, asked.body
    request = asked.json["data"]
    assert request["question"] == f"May I use {MASK} or TOKEN_{MASK}?"
    assert request["choices"] == [f"use {MASK}", "no"]
    served = "".join(
        [
            asked.body,
            api.get(inputs_path(workspace, run)).body,
            api.get(f"{runs_path(workspace)}/{run['id']}/events").body,
            api.get(f"/api/v1/workspaces/{workspace['id']}/notifications").body,
        ]
    )
    stored = stored_events(workspace, run) + str(api.get(f"{inputs_path(workspace, run)}/{request['id']}").json)
    for secret in (ENV_SECRET, token):
        assert secret not in served and secret not in stored
    act(api, workspace, run, "complete", {"worker_id": "w1"})


def test_another_workspace_sees_no_input_requests(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    request = ask(api, workspace, run, "Which region?").json["data"]
    outsider = register_and_login(api)
    elsewhere = create_workspace(resolve_principal(outsider["token"]), WorkspaceCreate(name="Other")).model_dump()
    api.token = outsider["token"]

    for ws in (workspace, elsewhere):
        assert api.get(inputs_path(ws, run)).status == 404
        assert api.get(f"{inputs_path(ws, run)}/{request['id']}").status == 404
        assert answer(api, ws, run, request["id"], "eu-west-1").status == 404
        assert ask(api, ws, run, "Mine now?").status == 404

    api.token = user["token"]
    assert api.get(f"{inputs_path(workspace, run)}/{request['id']}").json["data"]["status"] == "open"
    act(api, workspace, run, "complete", {"worker_id": "w1"})

"""Budget caps: what agents report spending is charged to the workspace's balance; a run whose
report the balance cannot cover pauses for budget, and a grant resumes it."""

from __future__ import annotations

from typing import Any

import pytest

from agentplane.logic import runs as run_logic
from agentplane.logic.billing import tokens
from tests.api.test_runs import act, running_run, status_of, wait_for
from tests.api.test_tokens import balance, ledger
from tests.conftest import Client

pytestmark = pytest.mark.usefixtures("executions")


def beat(api: Client, ws: dict[str, Any], run: dict[str, Any], used: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"worker_id": "w1"}
    if used is not None:
        body["usage"] = {"tokens": used}
    answer = act(api, ws, run, "heartbeat", body)
    assert answer.status == 200, answer.body
    return dict(answer.json["data"])


def notifications(api: Client, ws: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    listed = api.get(f"/api/v1/workspaces/{ws['id']}/notifications?limit=50").json["data"]
    return [n for n in listed if n["type"] == kind]


def test_a_run_that_exhausts_its_budget_pauses_and_resumes_on_a_top_up(api, user, workspace):
    api.token = user["token"]
    tokens.grant(workspace["id"], 100, reason="welcome")
    run = running_run(api, workspace)

    assert beat(api, workspace, run, 60)["desired_state"] == "run"
    assert balance(api, workspace) == 40
    assert status_of(api, workspace, run)["usage"] == {"tokens": 60, "unbilled_tokens": 0}

    # 50 more than the 40 left: the 40 are charged, the run pauses, the agent is told to pause.
    assert beat(api, workspace, run, 50)["desired_state"] == "pause"
    assert balance(api, workspace) == 0
    shown = status_of(api, workspace, run)
    assert (shown["status"], shown["status_detail"]) == ("paused", "budget_exhausted")
    assert shown["usage"] == {"tokens": 110, "unbilled_tokens": 10}
    assert beat(api, workspace, run)["desired_state"] == "pause"
    told = notifications(api, workspace, "budget_exhausted")
    assert len(told) == 1 and told[0]["data"]["run_id"] == run["id"]

    # Resuming by hand needs tokens first.
    refused = act(api, workspace, run, "resume")
    assert refused.status == 402 and refused.json["balance"] == 0
    assert status_of(api, workspace, run)["status"] == "paused"

    tokens.grant(workspace["id"], 500, reason="top-up")
    assert run_logic.resume_budget_paused(workspace["id"]) == 1
    shown = status_of(api, workspace, run)
    assert (shown["status"], shown["status_detail"]) == ("running", None)
    assert beat(api, workspace, run)["desired_state"] == "run"
    assert run_logic.resume_budget_paused(workspace["id"]) == 0  # nothing left paused

    done = act(api, workspace, run, "complete", {"worker_id": "w1", "usage": {"tokens": 20}})
    assert done.status == 200, done.body
    assert done.json["data"]["usage"] == {"tokens": 130, "unbilled_tokens": 10}
    assert balance(api, workspace) == 480
    usage_rows = [r for r in ledger(api, workspace) if r["type"] == "run_usage"]
    assert [(r["amount"], r["run_id"]) for r in usage_rows] == [(-20, run["id"]), (-40, run["id"]), (-60, run["id"])]
    assert sum(r["amount"] for r in ledger(api, workspace)) == 480


def test_a_covered_report_on_completion_is_charged_and_a_short_one_still_completes(api, user, workspace):
    api.token = user["token"]
    tokens.grant(workspace["id"], 30, reason="welcome")
    run = running_run(api, workspace)
    done = act(api, workspace, run, "complete", {"worker_id": "w1", "usage": {"tokens": 45}})
    assert done.status == 200, done.body
    assert done.json["data"]["status"] == "completed"
    assert done.json["data"]["usage"] == {"tokens": 45, "unbilled_tokens": 15}
    assert balance(api, workspace) == 0
    assert len(notifications(api, workspace, "budget_exhausted")) == 1


def test_a_grant_resumes_every_run_paused_for_budget_and_no_other(api, user, workspace):
    api.token = user["token"]
    first, second, by_hand = (running_run(api, workspace, title=f"run {n}") for n in range(3))
    for run in (first, second):
        assert beat(api, workspace, run, 5)["desired_state"] == "pause"
    assert act(api, workspace, by_hand, "pause").status == 200
    tokens.grant(workspace["id"], 1000, reason="top-up")
    assert run_logic.resume_budget_paused(workspace["id"]) == 2
    assert [status_of(api, workspace, r)["status"] for r in (first, second, by_hand)] == [
        "running",
        "running",
        "paused",
    ]


def test_a_cancelled_run_paused_for_budget_is_forgotten_by_the_next_grant(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    beat(api, workspace, run, 5)
    assert act(api, workspace, run, "cancel").status == 200
    tokens.grant(workspace["id"], 10, reason="top-up")
    assert run_logic.resume_budget_paused(workspace["id"]) == 0
    assert tokens.read_balance(workspace["id"]).budget_paused is None
    assert wait_for(lambda: status_of(api, workspace, run)["status"] == "cancelled")


def test_a_usage_report_must_be_a_count_of_tokens(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    for usage in ({"tokens": -1}, {"tokens": "lots"}, {"dollars": 3}):
        answer = act(api, workspace, run, "heartbeat", {"worker_id": "w1", "usage": usage})
        assert answer.status == 422, usage
    assert status_of(api, workspace, run)["usage"] == {"tokens": 0, "unbilled_tokens": 0}


def test_a_run_waiting_for_an_answer_that_exhausts_its_budget_waits_for_it_again_once_resumed(api, user, workspace):
    from tests.api.test_run_input import answer, ask

    api.token = user["token"]
    run = running_run(api, workspace)
    asked = ask(api, workspace, run, "Which database?")
    assert asked.status == 201, asked.body
    assert beat(api, workspace, run, 10)["desired_state"] == "pause"
    assert status_of(api, workspace, run)["status_detail"] == "budget_exhausted"
    tokens.grant(workspace["id"], 100, reason="top-up")
    assert run_logic.resume_budget_paused(workspace["id"]) == 1
    shown = status_of(api, workspace, run)
    assert (shown["status"], shown["status_detail"]) == ("running", "needs_input")
    assert answer(api, workspace, run, asked.json["data"]["id"], "postgres").status == 200
    assert status_of(api, workspace, run)["status_detail"] is None

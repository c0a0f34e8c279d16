"""Runs: lifecycle through the HTTP API, with the real state machine keeping the timers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import boto3
import pytest

from agentplane import keys, raw_items
from agentplane.logic import runs as run_logic
from agentplane.raw_items import Update
from agentplane.redact import MASK
from agentplane.settings import get_settings
from tests.conftest import Client, put_common_env, register_and_login
from tests.fixtures.secret_corpus import fake
from tests.plans import put_on_tier

pytestmark = pytest.mark.usefixtures("executions")

ENV_SECRET = "hunter2/database+password"


def runs_path(ws: dict[str, Any]) -> str:
    return f"/api/v1/workspaces/{ws['id']}/runs"


def wait_for(check: Callable[[], Any], timeout: float = 45.0, interval: float = 0.1) -> Any:
    # Generous: the state machine runs in background threads, which a loaded machine slows.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def new_run(api: Client, ws: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = {"title": "Add login page", "prompt": "Build the login page", "agent": "builder", **fields}
    created = api.post(runs_path(ws), body)
    assert created.status == 201, created.body
    return created.json["data"]


def act(api: Client, ws: dict[str, Any], run: dict[str, Any], action: str, body: Any = None) -> Any:
    return api.post(f"{runs_path(ws)}/{run['id']}/{action}", body)


def status_of(api: Client, ws: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    return api.get(f"{runs_path(ws)}/{run['id']}").json["data"]


def execution_status(ws: dict[str, Any], run: dict[str, Any]) -> str:
    from agentplane.logic.runs import execution_arn

    try:
        described = boto3.client("stepfunctions").describe_execution(executionArn=execution_arn(run["id"]))
    except boto3.client("stepfunctions").exceptions.ExecutionDoesNotExist:
        return "NONE"
    return str(described["status"])


def running_run(api: Client, ws: dict[str, Any], **fields: Any) -> dict[str, Any]:
    run = new_run(api, ws, **fields)
    assert act(api, ws, run, "start").status == 200
    claimed = act(api, ws, run, "claim", {"worker_id": "w1"})
    assert claimed.status == 200, claimed.body
    return run


def approved_run(api: Client, ws: dict[str, Any], *, auto_push: bool = False) -> dict[str, Any]:
    """A run completed and approved, so commit (and with `auto_push`, push) may follow."""
    if auto_push:
        raw_items.update(keys.workspace_key(ws["id"]), Update(set={"auto_push": True}))
    run = running_run(api, ws)
    act(api, ws, run, "complete", {"worker_id": "w1"})
    act(api, ws, run, "approve")
    return run


def stored_run(ws: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    return raw_items.get(keys.run_key(ws["id"], run["id"])) or {}


def running_executions() -> list[str]:
    machine = get_settings().run_state_machine_arn
    listed = boto3.client("stepfunctions").list_executions(stateMachineArn=machine, statusFilter="RUNNING")
    return [e["name"] for e in listed["executions"]]


def device_token(api: Client, user: dict[str, Any], *abilities: str) -> str:
    issued = api.post(
        "/api/v1/auth/token",
        {"email": user["email"], "password": user["password"], "name": "phone", "abilities": list(abilities)},
        token="",
    )
    assert issued.status == 201, issued.body
    return str(issued.json["data"]["token"])


def test_draft_carries_status_timestamps_and_allowed_actions(api, user, workspace):
    api.token = user["token"]
    run = new_run(api, workspace)
    assert run["id"].startswith("run_")
    assert run["status"] == "draft"
    assert run["timestamps"] == {"draft": run["created_at"]}
    assert run["actions"]["can_start"] is True
    assert run["actions"]["can_pause"] is False
    assert run["actions"]["can_cancel"] is True
    assert run["branch"] == f"agentplane/{run['id']}"


def test_full_lifecycle_start_claim_pause_resume_complete(api, user, workspace):
    api.token = user["token"]
    run = new_run(api, workspace)
    started = act(api, workspace, run, "start")
    assert started.status == 200
    assert started.json["data"]["status"] == "queued"
    assert wait_for(lambda: execution_status(workspace, run) == "RUNNING")

    claimed = act(api, workspace, run, "claim", {"worker_id": "w1"}).json["data"]
    assert claimed["status"] == "running"
    assert claimed["desired_state"] == "run"
    assert claimed["run"]["prompt"] == "Build the login page"

    paused = act(api, workspace, run, "pause").json["data"]
    assert paused["status"] == "paused" and paused["actions"]["can_resume"] is True
    beat = act(api, workspace, run, "heartbeat", {"worker_id": "w1"}).json["data"]
    assert beat["desired_state"] == "pause"

    resumed = act(api, workspace, run, "resume").json["data"]
    assert resumed["status"] == "running"
    assert act(api, workspace, run, "heartbeat", {"worker_id": "w1"}).json["data"]["desired_state"] == "run"

    done = act(api, workspace, run, "complete", {"worker_id": "w1", "summary": "done"}).json["data"]
    assert done["status"] == "completed"
    assert set(done["timestamps"]) == {"draft", "queued", "running", "paused", "completed"}
    assert wait_for(lambda: execution_status(workspace, run) == "SUCCEEDED")
    assert wait_for(lambda: raw_items.get(keys.run_key(workspace["id"], run["id"])).get("finalized_at"))


def test_five_concurrent_starts_give_one_success_and_four_409s(api, user, workspace):
    api.token = user["token"]
    run = new_run(api, workspace)
    results: list[Any] = []
    barrier = threading.Barrier(5)

    def start() -> None:
        barrier.wait()
        results.append(act(api, workspace, run, "start"))

    threads = [threading.Thread(target=start) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r.status for r in results)
    assert statuses == [200, 409, 409, 409, 409]
    assert all(r.json["current_status"] == "queued" for r in results if r.status == 409)
    machine = get_settings().run_state_machine_arn
    executions = boto3.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"]
    assert [e["name"] for e in executions] == [run["id"]]
    act(api, workspace, run, "cancel")


def test_silent_agent_fails_the_run_as_stalled_on_its_own(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace, heartbeat_timeout_seconds=5)
    failed = wait_for(lambda: (r := status_of(api, workspace, run))["status"] == "failed" and r, timeout=20)
    assert failed["failure_reason"] == "stalled"
    assert failed["actions"]["can_retry"] is True
    beat = act(api, workspace, run, "heartbeat", {"worker_id": "w1"}).json["data"]
    assert beat["desired_state"] == "stop"


def test_heartbeats_keep_a_run_alive_past_its_timeout(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace, heartbeat_timeout_seconds=5)
    for _ in range(4):
        time.sleep(2)
        assert act(api, workspace, run, "heartbeat", {"worker_id": "w1"}).status == 200
    assert status_of(api, workspace, run)["status"] == "running"
    act(api, workspace, run, "complete", {"worker_id": "w1"})


def test_unclaimed_run_fails_with_queue_timeout(api, user, workspace):
    api.token = user["token"]
    run = new_run(api, workspace, queue_timeout_seconds=5)
    act(api, workspace, run, "start")
    failed = wait_for(lambda: (r := status_of(api, workspace, run))["status"] == "failed" and r, timeout=20)
    assert failed["failure_reason"] == "queue_timeout"


def test_cancel_mid_run_reaches_the_agent_and_ends_the_execution(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    wait_for(lambda: raw_items.get(keys.run_key(workspace["id"], run["id"])).get("task_phase") == "work")
    cancelled = act(api, workspace, run, "cancel")
    assert cancelled.status == 200 and cancelled.json["data"]["status"] == "cancelled"
    assert act(api, workspace, run, "heartbeat", {"worker_id": "w1"}).json["data"]["desired_state"] == "cancel"
    # The execution ends at once, through its final bookkeeping, not when a timer runs out.
    assert wait_for(lambda: execution_status(workspace, run) == "SUCCEEDED", timeout=15)
    assert stored_run(workspace, run).get("finalized_at")
    assert running_executions() == []
    again = act(api, workspace, run, "cancel")
    assert again.status == 409
    assert again.json["current_status"] == "cancelled"


def test_cancelling_a_queued_run_ends_its_execution_at_once(api, user, workspace):
    api.token = user["token"]
    run = new_run(api, workspace, queue_timeout_seconds=3600)
    assert act(api, workspace, run, "start").status == 200
    wait_for(lambda: stored_run(workspace, run).get("task_phase") == "claim")
    assert act(api, workspace, run, "cancel").json["data"]["status"] == "cancelled"
    assert wait_for(lambda: execution_status(workspace, run) == "SUCCEEDED", timeout=15)
    assert running_executions() == []


def test_cancel_releases_the_wait_the_execution_is_in_after_the_cancel_is_written(api, user, workspace, monkeypatch):
    """The execution moves from the claim wait to the work wait between the cancel's read of the
    run and its write: the cancel must end the work wait, not the claim wait it first saw."""
    api.token = user["token"]
    work_wait_entered, work_wait_may_record, work_wait_recorded = (threading.Event() for _ in range(3))
    record_wait, load = run_logic.record_wait, run_logic._load

    def delayed_record_wait(ws: str, run_id: str, phase: str, token: str) -> dict[str, Any]:
        if phase != "work":
            return record_wait(ws, run_id, phase, token)
        work_wait_entered.set()
        work_wait_may_record.wait(20)
        try:
            return record_wait(ws, run_id, phase, token)
        finally:
            work_wait_recorded.set()

    monkeypatch.setattr(run_logic, "record_wait", delayed_record_wait)
    run = running_run(api, workspace)
    assert work_wait_entered.wait(20)
    assert stored_run(workspace, run).get("task_phase") == "claim"

    def load_then_let_the_execution_move_on(ws: str, run_id: str) -> dict[str, Any]:
        item = load(ws, run_id)
        if not work_wait_may_record.is_set():
            work_wait_may_record.set()
            assert work_wait_recorded.wait(20)
        return item

    monkeypatch.setattr(run_logic, "_load", load_then_let_the_execution_move_on)
    cancelled = act(api, workspace, run, "cancel")
    assert cancelled.status == 200 and cancelled.json["data"]["status"] == "cancelled"
    assert wait_for(lambda: execution_status(workspace, run) == "SUCCEEDED", timeout=15)
    assert running_executions() == []


def test_executions_still_waiting_end_with_the_emulation(api, user, workspace, monkeypatch):
    from devstack import stepfunctions

    api.token = user["token"]
    run = new_run(api, workspace, queue_timeout_seconds=3600)
    act(api, workspace, run, "start")
    wait_for(lambda: stored_run(workspace, run).get("task_phase") == "claim")
    later_calls: list[str] = []
    monkeypatch.setattr(run_logic, "finalize_run", lambda ws, run_id: later_calls.append(run_id) or {})
    monkeypatch.setattr(run_logic, "expire_wait", lambda ws, run_id, phase: later_calls.append(run_id) or {})

    started = time.monotonic()
    ended = stepfunctions.end_running_executions()
    assert time.monotonic() - started < 3
    assert [arn.rsplit(":", 1)[1] for arn in ended] == [run["id"]]
    assert execution_status(workspace, run) != "RUNNING"
    time.sleep(0.5)
    assert later_calls == []  # the aborted execution runs none of its remaining states


def test_illegal_transitions_are_409_with_current_status(api, user, workspace):
    api.token = user["token"]
    run = new_run(api, workspace)
    for action in ("pause", "resume"):
        refused = act(api, workspace, run, action)
        assert refused.status == 409
        assert refused.header("content-type") == "application/problem+json"
        assert refused.json["current_status"] == "draft"
    assert act(api, workspace, run, "claim", {"worker_id": "w"}).status == 409
    assert status_of(api, workspace, run)["status"] == "draft"


def test_retry_of_a_failed_run_creates_a_linked_run_once(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    failed = act(api, workspace, run, "fail", {"worker_id": "w1", "reason": "tests_failed"}).json["data"]
    assert failed["status"] == "failed" and failed["failure_reason"] == "tests_failed"
    retried = act(api, workspace, run, "retry")
    assert retried.status == 201
    new = retried.json["data"]
    assert new["retry_of"] == run["id"] and new["status"] == "queued" and new["id"] != run["id"]
    assert new["branch"] != failed["branch"] and new["prompt"] == failed["prompt"]
    assert status_of(api, workspace, run)["retried_by"] == new["id"]
    assert act(api, workspace, run, "retry").status == 409
    # The new run has its own execution, waiting for an agent to claim it.
    assert wait_for(lambda: execution_status(workspace, new) == "RUNNING")
    assert wait_for(lambda: stored_run(workspace, new).get("task_phase") == "claim")
    assert act(api, workspace, new, "claim", {"worker_id": "w2"}).status == 200
    assert wait_for(lambda: stored_run(workspace, new).get("task_phase") == "work")
    assert act(api, workspace, new, "complete", {"worker_id": "w2"}).json["data"]["status"] == "completed"
    assert wait_for(lambda: execution_status(workspace, new) == "SUCCEEDED", timeout=15)


def test_gated_run_waits_for_approval_then_commit_and_push_are_gated(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace, requires_approval=True)
    assert act(api, workspace, run, "commit").status == 409  # no approved review yet
    waiting = act(api, workspace, run, "complete", {"worker_id": "w1"}).json["data"]
    assert waiting["status"] == "awaiting_approval"
    assert waiting["actions"]["can_approve"] is True
    asks = api.get(f"/api/v1/workspaces/{workspace['id']}/notifications?type=needs_input").json["data"]
    assert [n["data"]["run_id"] for n in asks] == [run["id"]]
    finished = f"/api/v1/workspaces/{workspace['id']}/notifications?type=finished"
    assert api.get(finished).json["data"] == []  # needing input is not finishing
    wait_for(lambda: raw_items.get(keys.run_key(workspace["id"], run["id"])).get("task_phase") == "approval")

    approved = act(api, workspace, run, "approve", {"notes": "looks good"}).json["data"]
    assert approved["status"] == "completed"
    assert approved["review"]["decision"] == "approved" and approved["review"]["notes"] == "looks good"
    assert approved["actions"]["can_commit"] is True and approved["actions"]["can_push"] is False
    assert wait_for(lambda: execution_status(workspace, run) == "SUCCEEDED")
    assert [n["data"]["status"] for n in api.get(finished).json["data"]] == ["completed"]

    committed = act(api, workspace, run, "commit", {"message": "Add login page"})
    assert committed.status == 200 and committed.json["data"]["committed_at"]
    assert act(api, workspace, run, "commit").status == 409

    refused = act(api, workspace, run, "push")
    assert refused.status == 403 and "auto_push" in refused.json["detail"]
    raw_items.update(keys.workspace_key(workspace["id"]), Update(set={"auto_push": True}))
    pushed = act(api, workspace, run, "push")
    assert pushed.status == 200 and pushed.json["data"]["pushed_at"]


def test_rejected_gated_run_fails_as_rejected(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace, requires_approval=True)
    act(api, workspace, run, "complete", {"worker_id": "w1"})
    rejected = act(api, workspace, run, "reject", {"notes": "wrong approach"}).json["data"]
    assert rejected["status"] == "failed" and rejected["failure_reason"] == "rejected"
    assert rejected["review"]["decision"] == "rejected"
    assert act(api, workspace, run, "approve").status == 409


def test_device_token_without_git_commit_ability_gets_403_naming_it(api, user, workspace):
    api.token = user["token"]
    run = approved_run(api, workspace)
    device = api.post(
        "/api/v1/auth/token",
        {"email": user["email"], "password": user["password"], "name": "phone",
         "abilities": ["runs:read", "runs:start", "runs:control"]},
        token="",
    ).json["data"]  # fmt: skip
    refused = api.post(f"{runs_path(workspace)}/{run['id']}/commit", token=device["token"])
    assert refused.status == 403
    assert "git:commit" in refused.json["detail"]
    assert raw_items.get(keys.run_key(workspace["id"], run["id"])).get("committed_at") is None


def test_device_token_without_git_push_ability_gets_403_naming_it(api, user, workspace):
    api.token = user["token"]
    run = approved_run(api, workspace, auto_push=True)
    token = device_token(api, user, "runs:read", "runs:start", "runs:control", "git:commit")
    assert api.post(f"{runs_path(workspace)}/{run['id']}/commit", token=token).status == 200
    refused = api.post(f"{runs_path(workspace)}/{run['id']}/push", token=token)
    assert refused.status == 403
    assert "git:push" in refused.json["detail"]
    assert stored_run(workspace, run).get("pushed_at") is None
    # The same push with the ability goes through: the ability was the only thing missing.
    assert api.post(f"{runs_path(workspace)}/{run['id']}/push").status == 200


def test_a_device_token_with_exactly_the_git_abilities_commits_and_pushes(api, user, workspace):
    api.token = user["token"]
    run = approved_run(api, workspace, auto_push=True)
    committer = device_token(api, user, "git:commit")
    pusher = device_token(api, user, "git:push")
    assert api.post(f"{runs_path(workspace)}/{run['id']}/commit", token=committer).status == 200
    assert api.post(f"{runs_path(workspace)}/{run['id']}/push", token=pusher).status == 200
    stored = stored_run(workspace, run)
    assert stored.get("committed_at") and stored.get("pushed_at")


@pytest.mark.parametrize("answer_lands", ["before the wait is recorded", "while the wait is recorded"])
def test_an_agent_finishing_while_the_work_wait_is_set_up_moves_the_execution_on(
    api, user, workspace, monkeypatch, answer_lands
):
    """The agent's `complete` can beat the execution to recording its work wait (or land while it
    does): the execution must still go on at once, not after the heartbeat timeout."""
    api.token = user["token"]
    entered, release = threading.Event(), threading.Event()
    record_wait = run_logic.record_wait

    def slow_record_wait(ws: str, run_id: str, phase: str, token: str) -> dict[str, Any]:
        if phase != "work":
            return record_wait(ws, run_id, phase, token)
        if answer_lands == "before the wait is recorded":
            entered.set()
            release.wait(20)
            return record_wait(ws, run_id, phase, token)
        recorded = record_wait(ws, run_id, phase, token)
        entered.set()
        release.wait(20)
        return recorded

    monkeypatch.setattr(run_logic, "record_wait", slow_record_wait)
    run = running_run(api, workspace, heartbeat_timeout_seconds=300)
    assert entered.wait(20)
    done = act(api, workspace, run, "complete", {"worker_id": "w1", "summary": "done"})
    assert done.status == 200 and done.json["data"]["status"] == "completed"
    release.set()
    assert wait_for(lambda: execution_status(workspace, run) == "SUCCEEDED", timeout=15)
    assert stored_run(workspace, run).get("finalized_at")


def test_a_gated_run_completed_as_its_heartbeat_runs_out_still_waits_for_approval(api, user, workspace, monkeypatch):
    """The heartbeat timeout fires, and the agent's `complete` lands before the execution marks the
    run stalled: the run waits for approval, and the execution with it."""
    api.token = user["token"]
    expire_wait = run_logic.expire_wait
    run: dict[str, Any] = {}
    completed: list[int] = []

    def complete_first(ws: str, run_id: str, phase: str) -> dict[str, Any]:
        if phase == "work" and not completed:
            completed.append(act(api, workspace, run, "complete", {"worker_id": "w1"}).status)
        return expire_wait(ws, run_id, phase)

    monkeypatch.setattr(run_logic, "expire_wait", complete_first)
    run.update(running_run(api, workspace, requires_approval=True, heartbeat_timeout_seconds=5))
    assert wait_for(lambda: stored_run(workspace, run).get("task_phase") == "approval", timeout=30)
    assert completed == [200]
    waiting = status_of(api, workspace, run)
    assert waiting["status"] == "awaiting_approval" and waiting["failure_reason"] is None
    assert execution_status(workspace, run) == "RUNNING"
    assert "finalized_at" not in stored_run(workspace, run)

    assert act(api, workspace, run, "approve").json["data"]["status"] == "completed"
    assert wait_for(lambda: execution_status(workspace, run) == "SUCCEEDED", timeout=15)
    assert stored_run(workspace, run).get("finalized_at")
    finished = api.get(f"/api/v1/workspaces/{workspace['id']}/notifications?type=finished").json["data"]
    assert [n["data"]["status"] for n in finished] == ["completed"]


def test_final_bookkeeping_leaves_a_run_that_is_still_going_alone(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    wait_for(lambda: stored_run(workspace, run).get("task_phase") == "work")
    assert run_logic.finalize_run(workspace["id"], run["id"])["finalized"] is False
    item = stored_run(workspace, run)
    assert "finalized_at" not in item and item["task_phase"] == "work" and item["task_token"]
    act(api, workspace, run, "complete", {"worker_id": "w1"})
    assert wait_for(lambda: stored_run(workspace, run).get("finalized_at"), timeout=15)


def test_runs_fired_by_a_schedule_show_and_filter_by_it(api, user, workspace):
    api.token = user["token"]
    schedule = api.post(
        f"/api/v1/workspaces/{workspace['id']}/schedules",
        {"name": "Nightly", "expression": "rate(1 day)",
         "target": {"type": "run", "title": "Nightly audit", "prompt": "Audit", "agent": "auditor"}},
    )  # fmt: skip
    assert schedule.status == 201, schedule.body
    schedule_id = schedule.json["data"]["id"]
    fired = api.post(f"/api/v1/workspaces/{workspace['id']}/schedules/{schedule_id}/run").json["data"]["run"]
    by_hand = new_run(api, workspace)
    assert by_hand["schedule_id"] is None
    assert status_of(api, workspace, fired)["schedule_id"] == schedule_id
    listed = api.get(f"{runs_path(workspace)}?schedule_id={schedule_id}")
    assert listed.status == 200, listed.body
    assert [r["id"] for r in listed.json["data"]] == [fired["id"]]
    assert api.get(f"{runs_path(workspace)}?schedule_id=sch_other").json["data"] == []
    assert {r["id"] for r in api.get(runs_path(workspace)).json["data"]} == {fired["id"], by_hand["id"]}


def test_maintenance_runs_at_the_active_run_cap_are_429_and_write_nothing(api, user, workspace, monkeypatch):
    monkeypatch.setenv("MAX_ACTIVE_RUNS", "1")
    get_settings.cache_clear()
    api.token = user["token"]
    project = api.post(f"/api/v1/workspaces/{workspace['id']}/projects", {"name": "Repo"}).json["data"]
    project_path = f"/api/v1/workspaces/{workspace['id']}/projects/{project['id']}"
    busy = new_run(api, workspace)
    assert act(api, workspace, busy, "start").status == 200
    for action in ("clone", "pull", "index"):
        refused = api.post(f"{project_path}/{action}")
        assert refused.status == 429, refused.body
        assert refused.header("retry-after")
    assert [r["id"] for r in api.get(runs_path(workspace)).json["data"]] == [busy["id"]]
    changelog = api.get(f"{project_path}/changelog").json["data"]
    assert "maintenance.requested" not in [entry["event"] for entry in changelog]
    act(api, workspace, busy, "cancel")  # frees the slot: the same request now goes through
    queued = api.post(f"{project_path}/clone")
    assert queued.status == 202 and queued.json["data"]["status"] == "queued"
    assert wait_for(lambda: execution_status(workspace, queued.json["data"]) == "RUNNING")
    act(api, workspace, queued.json["data"], "cancel")
    get_settings.cache_clear()


def test_maintenance_runs_count_against_the_start_limit(api, user, workspace):
    put_on_tier(workspace)  # six active runs: more than the free tier's three
    api.token = user["token"]
    project = api.post(f"/api/v1/workspaces/{workspace['id']}/projects", {"name": "Repo"}).json["data"]
    project_path = f"/api/v1/workspaces/{workspace['id']}/projects/{project['id']}"
    started = []
    for _ in range(3):
        run = new_run(api, workspace)
        assert act(api, workspace, run, "start").status == 200
        started.append(run)
    for action in ("clone", "pull", "index"):
        response = api.post(f"{project_path}/{action}")
        assert response.status == 202, response.body
        started.append(response.json["data"])
    refused = api.post(f"{project_path}/clone")
    assert refused.status == 429 and int(refused.header("retry-after")) > 0
    assert len(api.get(runs_path(workspace)).json["data"]) == 6
    late = new_run(api, workspace)
    assert act(api, workspace, late, "start").status == 429
    for run in started:
        act(api, workspace, run, "cancel")


def test_seventh_start_in_a_minute_is_429_with_retry_after(api, user, workspace):
    put_on_tier(workspace)  # six active runs: more than the free tier's three
    api.token = user["token"]
    started = []
    for _ in range(7):
        run = new_run(api, workspace, queue_timeout_seconds=3600)
        started.append((run, act(api, workspace, run, "start")))
    assert [r.status for _, r in started[:6]] == [200] * 6
    refused = started[6][1]
    assert refused.status == 429
    assert int(refused.header("retry-after")) > 0
    assert status_of(api, workspace, started[6][0])["status"] == "draft"
    for run, _ in started[:6]:
        act(api, workspace, run, "cancel")


def test_workspace_cap_on_active_runs_is_429_not_eviction(api, user, workspace, monkeypatch):
    monkeypatch.setenv("MAX_ACTIVE_RUNS", "2")
    get_settings.cache_clear()
    api.token = user["token"]
    first, second, third = (new_run(api, workspace) for _ in range(3))
    assert act(api, workspace, first, "start").status == 200
    assert act(api, workspace, second, "start").status == 200
    refused = act(api, workspace, third, "start")
    assert refused.status == 429 and refused.header("retry-after")
    assert status_of(api, workspace, first)["status"] == "queued"
    assert status_of(api, workspace, third)["status"] == "draft"
    act(api, workspace, first, "cancel")  # frees a slot
    assert act(api, workspace, third, "start").status == 200
    for run in (second, third):
        act(api, workspace, run, "cancel")
    get_settings.cache_clear()


def test_list_runs_filters_by_status_and_project(api, user, workspace):
    api.token = user["token"]
    a = new_run(api, workspace)
    b = new_run(api, workspace)
    act(api, workspace, b, "start")
    queued = api.get(f"{runs_path(workspace)}?status=queued").json["data"]
    assert [r["id"] for r in queued] == [b["id"]]
    everything = api.get(f"{runs_path(workspace)}?limit=1")
    assert len(everything.json["data"]) == 1 and everything.json["meta"]["next_cursor"]
    rest = api.get(f"{runs_path(workspace)}?limit=1&cursor={everything.json['meta']['next_cursor']}")
    assert {everything.json["data"][0]["id"], rest.json["data"][0]["id"]} == {a["id"], b["id"]}
    act(api, workspace, b, "cancel")


def test_a_list_of_approved_runs_reads_the_workspace_setting_once_not_per_run(api, user, workspace):
    from tests.dynamo_calls import counted_calls

    api.token = user["token"]
    approved = {approved_run(api, workspace, auto_push=True)["id"] for _ in range(3)}
    wait_for(lambda: not running_executions())  # their executions' final writes are done
    assert api.get(runs_path(workspace)).status == 200  # the caller's token is seen from here on

    with counted_calls() as calls:
        listed = api.get(runs_path(workspace)).json["data"]

    assert {run["id"] for run in listed if run["actions"]["can_push"]} == approved
    assert sorted(call.operation for call in calls) == ["BatchGetItem", "GetItem", "Query"]


def test_bad_input_and_strangers(api, user, workspace):
    api.token = user["token"]
    assert api.post(runs_path(workspace), {"title": "x", "prompt": "y", "kind": "nope"}).status == 422
    assert api.post(runs_path(workspace), {"title": "x", "prompt": "y", "heartbeat_timeout_seconds": 1}).status == 422
    assert api.post(runs_path(workspace), {"title": "x", "prompt": "y", "surprise": 1}).status == 422
    assert api.get(f"{runs_path(workspace)}/run_missing").status == 404
    assert api.get(runs_path(workspace)).json["data"] == []
    run = new_run(api, workspace)
    stranger = register_and_login(api)
    api.token = stranger["token"]
    assert api.get(f"{runs_path(workspace)}/{run['id']}").status == 404
    assert act(api, workspace, run, "start").status == 404


# --------------------------------------------------------------------------- redaction


def stored_events(ws: dict[str, Any], run: dict[str, Any]) -> str:
    return str(raw_items.query(keys.run_events_pk(ws["id"], run["id"]), limit=1000, consistent=True).items)


def test_heartbeat_activity_and_fail_detail_are_stored_and_served_redacted(api, user, workspace):
    api.token = user["token"]
    put_common_env(api, workspace, DB_PASSWORD=ENV_SECRET)
    token = fake("github ghp")
    run = running_run(api, workspace)

    beat = act(api, workspace, run, "heartbeat", {"worker_id": "w1", "activity": f"pushing TOKEN_{token} {ENV_SECRET}"})
    assert beat.status == 200, beat.body
    assert status_of(api, workspace, run)["activity"] == f"pushing TOKEN_{MASK} {MASK}"
    failed = act(api, workspace, run, "fail", {
        "worker_id": "w1", "reason": f"auth_{token}",
        "detail": f"GET /health?db={quote(ENV_SECRET, safe='')} failed\nremote: bad token {token}",
    })  # fmt: skip
    assert failed.status == 200, failed.body

    run_path = f"{runs_path(workspace)}/{run['id']}"
    served = "".join([failed.body, api.get(run_path).body, api.get(runs_path(workspace)).body,
                      api.get(f"{run_path}/events").body])  # fmt: skip
    stored = str(stored_run(workspace, run)) + stored_events(workspace, run)
    for secret in (token, ENV_SECRET, quote(ENV_SECRET, safe="")):
        assert secret not in served, secret
        assert secret not in stored, secret
    shown = failed.json["data"]
    assert shown["failure_reason"] == f"auth_{MASK}" and "remote: bad token" in shown["failure_detail"]


def test_a_completed_runs_summary_is_redacted_with_the_workspace_secrets(api, user, workspace):
    api.token = user["token"]
    put_common_env(api, workspace, DB_PASSWORD=ENV_SECRET)
    run = running_run(api, workspace)

    done = act(api, workspace, run, "complete", {"worker_id": "w1", "summary": f"migrated with {ENV_SECRET}"})

    assert done.status == 200, done.body
    assert done.json["data"]["summary"] == f"migrated with {MASK}"
    assert ENV_SECRET not in str(stored_run(workspace, run))

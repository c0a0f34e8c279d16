"""The dashboard: overview counts, agent efficiency and per-agent queue health, each section shown
only to callers who may read it."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from agentplane import raw_items
from tests.conftest import register_and_login


def ws_path(ws: dict, rest: str) -> str:
    return f"/api/v1/workspaces/{ws['id']}{rest}"


def add_member(api, ws: dict, role: str) -> dict:
    from agentplane.auth.scopes import Role
    from agentplane.ids import iso
    from agentplane.logic.workspaces import member_item

    person = register_and_login(api)
    raw_items.put(member_item(ws["id"], ws["name"], person["user"]["id"], Role(role), iso()))
    return person


def task(api, ws: dict, **fields) -> dict:
    response = api.post(ws_path(ws, "/tasks"), {"title": "Some work", **fields})
    assert response.status == 201, response.body
    return response.json["data"]


def set_times(ws: dict, task_id: str, **times: str) -> None:
    """Pin a task's timestamps, so durations are exact."""
    from agentplane import keys
    from agentplane.raw_items import Update

    raw_items.update(keys.task_key(ws["id"], task_id), Update(set=times))


def finished_run(ws: dict, agent: str, status: str, tokens: int = 0) -> None:
    from agentplane.logic.runs import new_run_item
    from agentplane.models.runs import RunCreate

    item = new_run_item(ws["id"], RunCreate(title="r", prompt="p", agent=agent), "usr_test")
    item["status"] = status
    if tokens:
        item["usage_tokens"] = tokens  # what its agent reported (charged to the balance)
    raw_items.put(item)


class Clock:
    def __init__(self) -> None:
        from agentplane.ids import now

        self.now: datetime = now()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    from agentplane.logic import dashboard, queue

    fake = Clock()
    monkeypatch.setattr(queue, "clock", fake)
    monkeypatch.setattr(dashboard, "clock", fake)
    return fake


# ---------------------------------------------------------------------------------------- stats


def test_stats_count_tasks_agents_runs_projects_and_queue(api, user, workspace):
    api.token = user["token"]
    task(api, workspace)
    task(api, workspace)
    task(api, workspace, status="in_progress")
    task(api, workspace, status="review")
    api.post(ws_path(workspace, "/agents"), {"name": "builder", "status": "active"})
    api.post(ws_path(workspace, "/agents"), {"name": "reviewer"})
    api.post(ws_path(workspace, "/projects"), {"name": "api"})
    api.post(ws_path(workspace, "/runs"), {"title": "t", "prompt": "p"})
    finished_run(workspace, "builder", "completed")
    api.post(ws_path(workspace, "/queue/jobs"), {"task_type": "build"})
    response = api.get(ws_path(workspace, "/dashboard/stats"))
    assert response.status == 200, response.body
    stats = response.json["data"]
    assert stats["tasks"] == {
        "by_status": {"todo": 2, "in_progress": 1, "review": 1, "done": 0, "blocked": 0},
        "total": 4,
        "capped": False,
    }
    assert stats["pending_review"] == 1
    assert stats["agents"]["by_status"] == {"active": 1, "idle": 1}
    assert stats["agents"]["total"] == 2
    assert stats["runs"]["by_status"] == {"draft": 1, "completed": 1}
    assert (stats["runs"]["active"], stats["runs"]["window"]) == (0, 500)
    assert stats["projects"] == {"total": 1, "capped": False}
    assert (stats["queue"]["pending"], stats["queue"]["total"]) == (1, 1)
    assert stats["generated_at"].endswith("Z")


def test_stats_of_an_empty_workspace_are_zero(api, user, workspace):
    api.token = user["token"]
    stats = api.get(ws_path(workspace, "/dashboard/stats")).json["data"]
    assert stats["tasks"]["total"] == 0
    assert stats["agents"] == {"by_status": {}, "total": 0, "capped": False}
    assert stats["queue"]["total"] == 0


def test_a_count_that_reaches_its_read_budget_says_so(api, user, workspace, monkeypatch):
    from agentplane.logic import dashboard

    monkeypatch.setattr(dashboard, "READ_BUDGET", 2)
    api.token = user["token"]
    for _ in range(3):
        task(api, workspace)
    tasks = api.get(ws_path(workspace, "/dashboard/stats")).json["data"]["tasks"]
    assert tasks["capped"] is True
    assert tasks["by_status"]["todo"] >= 2


def scoped_token(api, user: dict, *abilities: str) -> str:
    response = api.post("/api/v1/auth/token", {
        "email": user["email"], "password": user["password"], "name": "cli", "abilities": list(abilities),
    })  # fmt: skip
    assert response.status in (200, 201), response.body
    return str(response.json["data"]["token"])


def test_sections_the_caller_may_not_read_are_null(api, user, workspace):
    api.token = scoped_token(api, user, "tasks:read")
    stats = api.get(ws_path(workspace, "/dashboard/stats")).json["data"]
    assert stats["tasks"] is not None and stats["queue"] is not None
    assert (stats["agents"], stats["runs"], stats["projects"]) == (None, None, None)


# ----------------------------------------------------------------------------------- efficiency


def test_agent_efficiency_counts_done_tasks_and_cycle_times_in_the_window(api, user, workspace, clock):
    from agentplane.ids import iso

    api.token = user["token"]
    api.post(ws_path(workspace, "/agents"), {"name": "idle-agent"})
    now = clock.now
    for hours in (2, 4):
        done = task(api, workspace, assignee="builder", status="done")
        set_times(workspace, done["id"], started_at=iso(now - timedelta(hours=hours + 1)),
                  completed_at=iso(now - timedelta(hours=1)))  # fmt: skip
    old = task(api, workspace, assignee="builder", status="done")
    long_ago = now - timedelta(days=40)
    set_times(workspace, old["id"], started_at=iso(long_ago), completed_at=iso(long_ago + timedelta(days=1)))
    task(api, workspace, owner="reviewer", status="done")  # no assignee: its owner's; no started_at: no cycle
    task(api, workspace, assignee="builder", status="in_progress")
    finished_run(workspace, "builder", "completed", tokens=1200)
    finished_run(workspace, "builder", "completed", tokens=300)
    finished_run(workspace, "builder", "failed", tokens=500)
    clock.now += timedelta(minutes=1)  # the runs just created are inside the window
    response = api.get(ws_path(workspace, "/dashboard/agent-efficiency?days=30"))
    assert response.status == 200, response.body
    report = response.json["data"]
    assert report["days"] == 30
    assert report["since"] == iso(clock.now - timedelta(days=30))
    rows = {row["agent"]: row for row in report["agents"]}
    assert [row["agent"] for row in report["agents"]] == ["builder", "reviewer", "idle-agent"]
    builder = rows["builder"]
    assert builder["tasks_done"] == 2
    assert builder["avg_cycle_seconds"] == 3 * 3600.0  # 2 h and 4 h
    assert builder["median_cycle_seconds"] == 3 * 3600.0
    assert builder["tasks_in_progress"] == 1
    assert (builder["runs_completed"], builder["runs_failed"], builder["run_success_rate"]) == (2, 1, 0.6667)
    # Every token its runs reported, failed runs included, over the tasks it finished.
    assert (builder["tokens_used"], builder["tokens_per_task"]) == (2000, 1000.0)
    assert (rows["reviewer"]["tokens_used"], rows["reviewer"]["tokens_per_task"]) == (0, 0.0)
    assert rows["idle-agent"]["tokens_per_task"] is None  # no task finished: no ratio
    assert rows["reviewer"]["tasks_done"] == 1
    assert rows["reviewer"]["avg_cycle_seconds"] is None
    assert rows["idle-agent"]["tasks_done"] == 0


@pytest.mark.parametrize("days", ["0", "91", "soon"])
def test_agent_efficiency_window_is_validated(api, user, workspace, days):
    api.token = user["token"]
    assert api.get(ws_path(workspace, f"/dashboard/agent-efficiency?days={days}")).status == 422


# --------------------------------------------------------------------------------- queue health


def test_queue_health_reports_counts_oldest_pending_and_expired_claims(api, user, workspace, clock):
    api.token = user["token"]
    first = api.post(ws_path(workspace, "/queue/jobs"), {"task_type": "a", "timeout_seconds": 60}).json["data"]
    api.post(ws_path(workspace, "/queue/jobs"), {"task_type": "a", "timeout_seconds": 60})
    api.post(ws_path(workspace, "/queue/jobs"), {"task_type": "a", "priority": 10, "timeout_seconds": 60})
    claimed = api.post(ws_path(workspace, "/queue/claim"), {"worker_id": "builder"}).json["data"]["jobs"]
    assert len(claimed) == 1
    clock.now += timedelta(seconds=90)
    report = api.get(ws_path(workspace, "/dashboard/agent-queue-health")).json["data"]
    health = report["queue"]
    assert (health["pending"], health["claimed"], health["dead"]) == (2, 1, 0)
    assert health["oldest_pending_job_id"] == first["id"]
    assert health["oldest_pending_age_seconds"] >= 90
    assert health["expired_claims"] == 1
    rows = {row["agent"]: row for row in report["agents"]}
    assert (rows["builder"]["claimed_jobs"], rows["builder"]["expired_claims"]) == (1, 1)


def test_queue_health_reports_each_agents_waiting_tasks(api, user, workspace, clock):
    from agentplane.ids import iso

    api.token = user["token"]
    for hours in (1, 3):
        waiting = task(api, workspace, assignee="builder")
        set_times(workspace, waiting["id"], created_at=iso(clock.now - timedelta(hours=hours)))
    task(api, workspace, assignee="builder", status="in_progress")
    fresh = task(api, workspace, assignee="tester")
    set_times(workspace, fresh["id"], created_at=iso(clock.now - timedelta(minutes=5)))
    report = api.get(ws_path(workspace, "/dashboard/agent-queue-health")).json["data"]
    assert [row["agent"] for row in report["agents"]] == ["builder", "tester"]
    builder = report["agents"][0]
    assert (builder["queued_tasks"], builder["in_progress_tasks"]) == (2, 1)
    assert builder["oldest_wait_seconds"] == 3 * 3600.0
    assert builder["avg_wait_seconds"] == 2 * 3600.0
    assert report["agents"][1]["oldest_wait_seconds"] == 300.0
    assert report["queue"]["oldest_pending_job_id"] is None


# ------------------------------------------------------------------------------------- access


def test_non_member_gets_404_from_every_dashboard_route(api, user, workspace):
    api.token = register_and_login(api)["token"]
    for route in ("stats", "agent-efficiency", "agent-queue-health"):
        assert api.get(ws_path(workspace, f"/dashboard/{route}")).status == 404


def test_viewer_reads_the_dashboard(api, user, workspace):
    api.token = add_member(api, workspace, "viewer")["token"]
    for route in ("stats", "agent-efficiency", "agent-queue-health"):
        assert api.get(ws_path(workspace, f"/dashboard/{route}")).status == 200


def test_a_token_without_the_routes_scope_gets_403_naming_it(api, user, workspace):
    api.token = scoped_token(api, user, "runs:read")
    refused = api.get(ws_path(workspace, "/dashboard/stats"))
    assert refused.status == 403
    assert refused.json["required_scope"] == "tasks:read"

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from agentplane import raw_items
from tests.conftest import register_and_login


def sprints_path(ws: dict) -> str:
    return f"/api/v1/workspaces/{ws['id']}/sprints"


def tasks_path(ws: dict) -> str:
    return f"/api/v1/workspaces/{ws['id']}/tasks"


def new_sprint(api, ws: dict, **body: Any) -> dict:
    response = api.post(sprints_path(ws), body)
    assert response.status == 201, response.body
    return response.json["data"]


def new_task(api, ws: dict, sprint: int | None, **body: Any) -> dict:
    body.setdefault("title", "Some work")
    if sprint is not None:
        body["sprint"] = sprint
    response = api.post(tasks_path(ws), body)
    assert response.status == 201, response.body
    return response.json["data"]


def move_task(api, ws: dict, task: dict, status: str) -> dict:
    """PATCH the status; done is reached through review, as the workflow requires."""
    if status == "done":
        current = api.get(f"{tasks_path(ws)}/{task['id']}").json["data"]
        if current["status"] not in ("review", "done"):
            assert api.patch(f"{tasks_path(ws)}/{task['id']}", {"status": "review"}).status == 200
    response = api.patch(f"{tasks_path(ws)}/{task['id']}", {"status": status})
    assert response.status == 200, response.body
    return response.json["data"]


def move_sprint(api, ws: dict, number: int, *statuses: str) -> dict:
    body: dict = {}
    for status in statuses:
        response = api.patch(f"{sprints_path(ws)}/{number}", {"status": status})
        assert response.status == 200, response.body
        body = response.json["data"]
    return body


def complete_sprint(api, ws: dict, number: int) -> dict:
    return move_sprint(api, ws, number, "review", "retrospective", "completed")


def add_member(api, ws: dict, role: str) -> dict:
    from agentplane.auth.scopes import Role
    from agentplane.ids import iso
    from agentplane.logic.workspaces import member_item

    person = register_and_login(api)
    raw_items.put(member_item(ws["id"], ws["name"], person["user"]["id"], Role(role), iso()))
    return person


def audit_rows(ws: dict) -> list[dict]:
    from agentplane import keys

    return raw_items.query(keys.audit_pk(ws["id"]), limit=500).items


def sprint_items(ws: dict) -> list[dict]:
    from agentplane import keys

    return raw_items.query(keys.ws_pk(ws["id"]), sk_prefix=keys.SPRINT_PREFIX, limit=500).items


class Clock:
    """Moves the API's clock (timestamps, time-ordered ids, 'today') across the last few days."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from agentplane import ids

        today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
        self.start = today - timedelta(days=3)
        self.moment = self.start
        ticks = itertools.count()
        monkeypatch.setattr(ids, "now", lambda: self.moment)
        # Ids minted at one frozen moment still sort in the order they were made.
        monkeypatch.setattr(ids, "time", SimpleNamespace(time=lambda: self.moment.timestamp() + next(ticks) / 1000))

    def day(self, n: int, hour: int = 12) -> str:
        self.moment = (self.start + timedelta(days=n)).replace(hour=hour)
        return self.moment.date().isoformat()


@pytest.fixture
def serialized_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies each call and transaction atomically; the in-process emulation does not
    under threads, so its calls are made one at a time, as the service would order them."""
    from agentplane.store import Store

    lock = threading.RLock()

    def locked(method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return method(*args, **kwargs)

        return call

    # Every call the store makes to the table goes through one of these.
    for name in ("get_raw", "_get_raw", "_query_raw", "_conditional", "discard", "commit"):
        monkeypatch.setattr(Store, name, locked(getattr(Store, name)))


def race_on(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, parties: int) -> None:
    """Hold every thread's first call of `module.name` until all have made it, so each reads the
    same state before any of them writes."""
    original = getattr(module, name)
    barrier = threading.Barrier(parties, timeout=10)
    seen = threading.local()

    def held(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if not getattr(seen, "done", False):
            seen.done = True
            barrier.wait()
        return result

    monkeypatch.setattr(module, name, held)


def run_together(calls: list[Callable[[], Any]]) -> list[Any]:
    results: list[Any] = [None] * len(calls)

    def runner(i: int) -> None:
        results[i] = calls[i]()

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


# --- numbering and creation -----------------------------------------------------------------------


def test_sprints_are_numbered_in_order_and_start_active(api, user, workspace):
    api.token = user["token"]
    first = new_sprint(api, workspace, goal="Ship login")
    assert first["number"] == first["id"] == 1
    assert first["status"] == "active"
    assert first["started_at"] == first["created_at"]
    assert first["goal"] == "Ship login"
    second = new_sprint(api, workspace, status="planning", deadline="2030-01-31")
    assert second["number"] == 2 and second["status"] == "planning"
    assert second["deadline"] == "2030-01-31" and second["started_at"] is None
    assert api.get(f"{sprints_path(workspace)}/2").json["data"] == second


def test_a_second_active_sprint_is_refused_with_the_active_one_named(api, user, workspace):
    api.token = user["token"]
    new_sprint(api, workspace)
    refused = api.post(sprints_path(workspace), {})
    assert refused.status == 409
    assert refused.json["active_sprint"] == 1
    assert [s["number"] for s in api.get(sprints_path(workspace)).json["data"]] == [1]


def test_explicit_number_is_kept_and_a_taken_number_is_409(api, user, workspace):
    api.token = user["token"]
    zero = new_sprint(api, workspace, number=0, status="planning")
    assert zero["number"] == 0
    assert new_sprint(api, workspace, status="planning")["number"] == 1
    assert new_sprint(api, workspace, number=5, status="planning")["number"] == 5
    assert new_sprint(api, workspace, status="planning")["number"] == 6
    taken = api.post(sprints_path(workspace), {"number": 5, "status": "planning"})
    assert taken.status == 409
    assert [s["number"] for s in api.get(sprints_path(workspace)).json["data"]] == [0, 1, 5, 6]


def test_concurrent_creates_get_distinct_numbers(api, user, workspace, monkeypatch, serialized_store):
    from agentplane.logic import sprints

    api.token = user["token"]
    parties = 5
    race_on(monkeypatch, sprints, "_read_counter", parties)
    results = run_together([lambda: api.post(sprints_path(workspace), {"status": "planning"}) for _ in range(parties)])
    assert [r.status for r in results] == [201] * parties
    numbers = sorted(r.json["data"]["number"] for r in results)
    assert numbers == [1, 2, 3, 4, 5]
    assert sorted(item["number"] for item in sprint_items(workspace)) == [1, 2, 3, 4, 5]
    assert sum(1 for row in audit_rows(workspace) if row["action"] == "sprint.created") == parties


def test_list_sprints_filters_by_status_and_paginates(api, user, workspace):
    api.token = user["token"]
    for _ in range(4):
        new_sprint(api, workspace, status="planning")
    move_sprint(api, workspace, 3, "active")
    first = api.get(f"{sprints_path(workspace)}?limit=3")
    assert [s["number"] for s in first.json["data"]] == [1, 2, 3]
    cursor = first.json["meta"]["next_cursor"]
    rest = api.get(f"{sprints_path(workspace)}?limit=3&cursor={cursor}")
    assert [s["number"] for s in rest.json["data"]] == [4]
    assert [s["number"] for s in api.get(f"{sprints_path(workspace)}?status=active").json["data"]] == [3]
    assert api.get(f"{sprints_path(workspace)}?status=active&cursor={cursor}").status == 400


# --- the phase flow ---------------------------------------------------------------------------------


def test_sprint_moves_through_every_allowed_phase_and_each_move_is_audited(api, user, workspace):
    api.token = user["token"]
    new_sprint(api, workspace, status="planning")
    active = move_sprint(api, workspace, 1, "active")
    assert active["status"] == "active" and active["started_at"] is not None
    assert api.get(f"{sprints_path(workspace)}/current").json["data"]["number"] == 1
    move_sprint(api, workspace, 1, "review", "active", "review", "retrospective")
    done = move_sprint(api, workspace, 1, "completed")
    assert done["status"] == "completed" and done["completed_at"] is not None
    assert done["started_at"] == active["started_at"]
    assert done["version"] == 7
    moves = [
        (row["details"]["from"], row["details"]["to"])
        for row in sorted(audit_rows(workspace), key=lambda r: r["id"])
        if row["action"] == "sprint.status_changed"
    ]
    assert moves == [
        ("planning", "active"),
        ("active", "review"),
        ("review", "active"),
        ("active", "review"),
        ("review", "retrospective"),
        ("retrospective", "completed"),
    ]
    assert api.get(f"{sprints_path(workspace)}/current").status == 404


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ([], "completed"),
        ([], "retrospective"),
        ([], "planning"),
        (["review"], "completed"),
        (["review", "retrospective"], "active"),
        (["review", "retrospective", "completed"], "active"),
        (["review", "retrospective", "completed"], "review"),
    ],
)
def test_illegal_transition_is_409_with_current_status_and_changes_nothing(api, user, workspace, path, target):
    api.token = user["token"]
    new_sprint(api, workspace)
    before = move_sprint(api, workspace, 1, *path) if path else api.get(f"{sprints_path(workspace)}/1").json["data"]
    refused = api.patch(f"{sprints_path(workspace)}/1", {"status": target, "goal": "sneaky"})
    assert refused.status == 409
    assert refused.header("content-type") == "application/problem+json"
    assert refused.json["type"].endswith("/invalid-transition")
    assert refused.json["current_status"] == before["status"]
    assert api.get(f"{sprints_path(workspace)}/1").json["data"] == before


def test_reopening_while_another_sprint_is_active_is_409(api, user, workspace):
    api.token = user["token"]
    new_sprint(api, workspace)
    move_sprint(api, workspace, 1, "review")
    new_sprint(api, workspace)
    refused = api.patch(f"{sprints_path(workspace)}/1", {"status": "active"})
    assert refused.status == 409
    assert refused.json["active_sprint"] == 2
    assert api.get(f"{sprints_path(workspace)}/1").json["data"]["status"] == "review"


def test_concurrent_transitions_give_one_winner_and_one_409(api, user, workspace, monkeypatch, serialized_store):
    from agentplane.logic import sprints

    api.token = user["token"]
    new_sprint(api, workspace)
    race_on(monkeypatch, sprints, "_load_sprint", 2)
    results = run_together([lambda: api.patch(f"{sprints_path(workspace)}/1", {"status": "review"})] * 2)
    assert sorted(r.status for r in results) == [200, 409]
    loser = next(r for r in results if r.status == 409)
    assert loser.json["current_status"] == "review"
    assert sum(1 for row in audit_rows(workspace) if row["action"] == "sprint.status_changed") == 1


def test_patch_fields_with_stale_version_is_412(api, user, workspace):
    api.token = user["token"]
    new_sprint(api, workspace)
    renamed = api.patch(f"{sprints_path(workspace)}/1", {"name": "Sprint One", "version": 1})
    assert renamed.status == 200 and renamed.json["data"]["version"] == 2
    stale = api.patch(f"{sprints_path(workspace)}/1", {"goal": "x"}, headers={"If-Match": "1"})
    assert stale.status == 412
    assert api.get(f"{sprints_path(workspace)}/1").json["data"]["goal"] is None


# --- current sprint -----------------------------------------------------------------------------------


def test_start_current_sprint_activates_the_latest_planned_one_then_answers_it_as_is(api, user, workspace):
    api.token = user["token"]
    new_sprint(api, workspace)
    complete_sprint(api, workspace, 1)
    new_sprint(api, workspace, status="planning")
    task = new_task(api, workspace, 2, title="Build it")
    started = api.post(f"{sprints_path(workspace)}/current/start")
    assert started.status == 200, started.body
    body = started.json["data"]
    assert body["started"] is True
    assert body["sprint"]["number"] == 2 and body["sprint"]["status"] == "active"
    assert [t["id"] for t in body["tasks"]] == [task["id"]]
    again = api.post(f"{sprints_path(workspace)}/current/start").json["data"]
    assert again["started"] is False and again["sprint"]["version"] == body["sprint"]["version"]
    starts = [r for r in audit_rows(workspace) if r["action"] == "sprint.status_changed" and r["target_id"] == "2"]
    assert len(starts) == 1


def test_start_with_no_open_sprint_is_404(api, user, workspace):
    api.token = user["token"]
    assert api.post(f"{sprints_path(workspace)}/current/start").status == 404
    new_sprint(api, workspace)
    complete_sprint(api, workspace, 1)
    assert api.post(f"{sprints_path(workspace)}/current/start").status == 404


def test_start_sets_the_sprints_agents_to_starting_and_names_the_skipped_ones(api, user, workspace):
    agents = f"/api/v1/workspaces/{workspace['id']}/agents"
    api.token = user["token"]
    for name, status in (("builder", "idle"), ("tester", "working"), ("stopper", "idle"), ("finisher", "idle")):
        assert api.put(agents, {"name": name, "status": status}).status == 200
    assert api.post(f"{agents}/stopper/stop", {}).status == 200
    new_sprint(api, workspace, status="planning")
    new_task(api, workspace, 1, title="Build", assignee="builder")
    new_task(api, workspace, 1, title="Test", owner="tester", status="in_progress")
    new_task(api, workspace, 1, title="Halt", owner="stopper")
    new_task(api, workspace, 1, title="Haunt", owner="ghost")
    new_task(api, workspace, 1, title="Nobody's")
    finished = new_task(api, workspace, 1, title="Finished", owner="finisher")
    move_task(api, workspace, finished, "done")  # no open work left: not started
    new_task(api, workspace, 2, title="Next sprint", owner="later")

    started = api.post(f"{sprints_path(workspace)}/current/start")
    assert started.status == 200, started.body
    body = started.json["data"]
    assert body["started"] is True
    assert [(a["name"], a["status"]) for a in body["agents"]] == [("builder", "starting")]
    assert body["skipped_agents"] == [
        {"name": "ghost", "reason": "not_registered"},
        {"name": "stopper", "reason": "stopped"},
        {"name": "tester", "reason": "already_running"},
    ]
    assert api.get(f"{agents}/builder").json["data"]["status"] == "starting"
    assert api.get(f"{agents}/tester").json["data"]["status"] == "working"
    assert api.get(f"{agents}/finisher").json["data"]["status"] == "idle"
    changes = [r for r in audit_rows(workspace) if r["action"] == "agent.updated"]
    assert [r["details"].get("to") for r in changes] == ["starting"]

    again = api.post(f"{sprints_path(workspace)}/current/start").json["data"]
    assert again["started"] is False
    assert [(a["name"], a["status"]) for a in again["agents"]] == [("builder", "starting")]
    assert len([r for r in audit_rows(workspace) if r["action"] == "agent.updated"]) == 1


def test_start_refuses_a_sprint_in_retrospective(api, user, workspace):
    api.token = user["token"]
    new_sprint(api, workspace)
    move_sprint(api, workspace, 1, "review", "retrospective")
    refused = api.post(f"{sprints_path(workspace)}/current/start")
    assert refused.status == 409
    assert refused.json["current_status"] == "retrospective"


def test_current_tasks_lists_only_live_tasks_of_the_active_sprint(api, user, workspace):
    api.token = user["token"]
    assert api.get(f"{sprints_path(workspace)}/current/tasks").status == 404
    new_sprint(api, workspace)
    mine = [new_task(api, workspace, 1, title=f"T{i}")["id"] for i in range(3)]
    new_task(api, workspace, 2, title="later")
    new_task(api, workspace, None, title="backlog")
    gone = new_task(api, workspace, 1, title="dropped")
    assert api.delete(f"{tasks_path(workspace)}/{gone['id']}").status == 204
    first = api.get(f"{sprints_path(workspace)}/current/tasks?limit=2")
    assert first.status == 200
    seen = [t["id"] for t in first.json["data"]["tasks"]]
    rest = api.get(f"{sprints_path(workspace)}/current/tasks?limit=2&cursor={first.json['meta']['next_cursor']}")
    seen += [t["id"] for t in rest.json["data"]["tasks"]]
    assert seen == mine
    assert rest.json["meta"]["next_cursor"] is None
    other = api.get(f"{sprints_path(workspace)}/current/tasks?sprint=2").json["data"]
    assert [t["title"] for t in other["tasks"]] == ["later"]
    assert other["number"] == 2 and other["sprint"] is None  # planned ahead: no sprint 2 yet


def test_current_tasks_carries_the_board_toban_shows_around_the_tasks(api, user, workspace):
    ws = f"/api/v1/workspaces/{workspace['id']}"
    api.token = user["token"]
    new_sprint(api, workspace)
    complete_sprint(api, workspace, 1)
    new_sprint(api, workspace, goal="Ship it")
    task = new_task(api, workspace, 2, title="Build", owner="builder")
    assert api.put(f"{ws}/agents", {"name": "builder", "status": "active"}).status == 200
    progress = api.post(f"{ws}/agents/progress", {"agent_name": "builder", "step": "writing tests"})
    assert progress.status == 201, progress.body
    project = api.post(f"{ws}/projects", {"name": "web-app", "repository_url": "https://github.com/acme/web"})
    assert project.status == 201, project.body

    board = api.get(f"{sprints_path(workspace)}/current/tasks")
    assert board.status == 200, board.body
    data = board.json["data"]
    assert data["sprint"]["number"] == 2 and data["sprint"]["goal"] == "Ship it"
    assert [t["id"] for t in data["tasks"]] == [task["id"]]
    assert [a["name"] for a in data["agents"]] == ["builder"]
    assert [p["agent_name"] for p in data["progress"]] == ["builder"]
    assert [s["number"] for s in data["sprints"]] == [2, 1]
    assert [p["name"] for p in data["projects"]] == ["web-app"]
    assert board.json["meta"] == {"next_cursor": None, "limit": 50}

    # A token that can read tasks but not agents or projects sees the tasks and sprints only.
    issued = api.post(
        "/api/v1/auth/token",
        {"email": user["email"], "password": user["password"], "name": "ro", "abilities": ["tasks:read"]},
        token="",
    )
    assert issued.status == 201, issued.body
    narrow = api.get(f"{sprints_path(workspace)}/current/tasks", token=issued.json["data"]["token"]).json["data"]
    assert (narrow["agents"], narrow["progress"], narrow["projects"]) == ([], [], [])
    assert [t["id"] for t in narrow["tasks"]] == [task["id"]]


# --- analytics ----------------------------------------------------------------------------------------


def test_sprint_analytics_numbers_are_exact(api, user, workspace):
    api.token = user["token"]
    new_sprint(api, workspace)
    new_sprint(api, workspace, status="planning")
    t1 = new_task(api, workspace, 1, assignee="builder", type="feature", priority="p0", story_points=3)
    t2 = new_task(api, workspace, 1, assignee="builder", type="bug", priority="p1", story_points=5)
    t3 = new_task(api, workspace, 1, owner="tester", type="test", priority="p1", story_points=2)
    t4 = new_task(api, workspace, 1, type="feature", priority="p2")
    t5 = new_task(api, workspace, 1, assignee="builder", type="feature", priority="p1", story_points=1)
    new_task(api, workspace, 2, assignee="builder", type="feature", story_points=8)
    dropped = new_task(api, workspace, 1, assignee="builder", story_points=13)
    api.delete(f"{tasks_path(workspace)}/{dropped['id']}")
    move_task(api, workspace, t1, "done")
    move_task(api, workspace, t2, "review")
    move_task(api, workspace, t3, "done")
    move_task(api, workspace, t5, "in_progress")

    response = api.get(f"{sprints_path(workspace)}/1/analytics")
    assert response.status == 200, response.body
    data = response.json["data"]
    assert data["sprint"]["number"] == 1
    assert data["summary"] == {
        "total": 5,
        "done": 2,
        "review": 1,
        "in_progress": 1,
        "todo": 1,
        "blocked": 0,
        "completion_rate": 40,
        "total_points": 11,
        "done_points": 5,
    }
    assert data["by_agent"] == {
        "builder": {"total": 3, "done": 1, "points": 9, "done_points": 3},
        "tester": {"total": 1, "done": 1, "points": 2, "done_points": 2},
        "unassigned": {"total": 1, "done": 0, "points": 0, "done_points": 0},
    }
    assert data["by_type"] == {"bug": 1, "feature": 3, "test": 1}
    assert data["by_priority"] == {"p0": 1, "p1": 3, "p2": 1}
    today = datetime.now(UTC).date().isoformat()
    assert data["burndown"] == [{"date": today, "remaining": 3, "remaining_points": 6, "done": 2}]
    assert sorted(t["id"] for t in data["tasks"]) == sorted(t["id"] for t in (t1, t2, t3, t4, t5))
    assert all(t["completed_at"] for t in data["tasks"] if t["status"] == "done")
    assert data["truncated"] is False


def test_sprint_figures_follow_tasks_moved_reopened_repointed_reassigned_and_deleted(api, user, workspace, monkeypatch):
    from agentplane.logic import sprints

    # The figures are counters, not a read of the tasks: they stay whole however few tasks are listed.
    monkeypatch.setattr(sprints, "SPRINT_TASK_CAP", 1)
    api.token = user["token"]
    new_sprint(api, workspace)
    new_sprint(api, workspace, status="planning")
    a = new_task(api, workspace, 1, title="A", assignee="builder", type="feature", priority="p1", story_points=3)
    b = new_task(api, workspace, 1, title="B", assignee="builder", type="bug", priority="p0", story_points=5)
    c = new_task(api, workspace, 1, title="C", owner="tester", type="test", priority="p1", story_points=2)
    d = new_task(api, workspace, 1, title="D", owner="tester", type="chore", priority="p2", story_points=13)
    for task in (a, b, c):
        move_task(api, workspace, task, "done")
    assert api.patch(f"{tasks_path(workspace)}/{a['id']}", {"sprint": 2}).status == 200  # done, moved on
    move_task(api, workspace, b, "in_progress")  # reopened
    assert api.patch(f"{tasks_path(workspace)}/{c['id']}", {"story_points": 8, "owner": "reviewer"}).status == 200
    assert api.delete(f"{tasks_path(workspace)}/{d['id']}").status == 204

    first = api.get(f"{sprints_path(workspace)}/1/analytics").json["data"]
    assert first["summary"] == {
        "total": 2,
        "done": 1,
        "review": 0,
        "in_progress": 1,
        "todo": 0,
        "blocked": 0,
        "completion_rate": 50,
        "total_points": 13,
        "done_points": 8,
    }
    assert first["by_agent"] == {
        "builder": {"total": 1, "done": 0, "points": 5, "done_points": 0},
        "reviewer": {"total": 1, "done": 1, "points": 8, "done_points": 8},
    }
    assert first["by_type"] == {"bug": 1, "test": 1}
    assert first["by_priority"] == {"p0": 1, "p1": 1}
    today = datetime.now(UTC).date().isoformat()
    assert first["burndown"] == [{"date": today, "remaining": 1, "remaining_points": 5, "done": 1}]
    assert len(first["tasks"]) == 1 and first["truncated"] is True

    second = api.get(f"{sprints_path(workspace)}/2/analytics").json["data"]
    assert (second["summary"]["total"], second["summary"]["done"], second["summary"]["done_points"]) == (1, 1, 3)
    assert second["burndown"] == [{"date": today, "remaining": 0, "remaining_points": 0, "done": 1}]

    complete_sprint(api, workspace, 1)
    assert api.get(f"{sprints_path(workspace)}/1/review").json["data"]["summary"]["done_points"] == 8
    move_task(api, workspace, b, "done")  # finished after the sprint closed: velocity still counts it
    row, still_open = api.get(f"{sprints_path(workspace)}/analytics/velocity").json["data"]["velocity"]
    assert still_open["sprint"] == 2 and still_open["status"] != "completed"
    assert {k: v for k, v in row.items() if k != "completed_at"} == {
        "sprint": 1,
        "status": "completed",
        "total": 2,
        "done": 2,
        "total_points": 13,
        "done_points": 13,
    }


def test_completion_rate_rounds_half_up(api, user, workspace):
    api.token = user["token"]
    new_sprint(api, workspace)
    tasks = [new_task(api, workspace, 1, title=f"T{i}") for i in range(8)]
    move_task(api, workspace, tasks[0], "done")
    assert api.get(f"{sprints_path(workspace)}/1/analytics").json["data"]["summary"]["completion_rate"] == 13


def test_burndown_counts_down_day_by_day_from_the_sprint_start(api, user, workspace, monkeypatch):
    clock = Clock(monkeypatch)
    api.token = user["token"]
    day0 = clock.day(0, hour=9)
    new_sprint(api, workspace)
    a, b, c, d = (
        new_task(api, workspace, 1, title=t, story_points=p) for t, p in zip("ABCD", (1, 2, 5, 3), strict=True)
    )
    clock.day(0, hour=15)
    move_task(api, workspace, a, "done")
    day1 = clock.day(1)
    move_task(api, workspace, b, "done")
    day2 = clock.day(2)
    move_task(api, workspace, d, "in_progress")
    day3 = clock.day(3)
    move_task(api, workspace, c, "done")

    burndown = api.get(f"{sprints_path(workspace)}/1/analytics").json["data"]["burndown"]
    assert burndown == [
        {"date": day0, "remaining": 3, "remaining_points": 10, "done": 1},
        {"date": day1, "remaining": 2, "remaining_points": 8, "done": 1},
        {"date": day2, "remaining": 2, "remaining_points": 8, "done": 0},
        {"date": day3, "remaining": 1, "remaining_points": 3, "done": 1},
    ]

    # A completed sprint's burndown stops on the day it completed.
    complete_sprint(api, workspace, 1)
    clock.day(5)
    assert [day["date"] for day in api.get(f"{sprints_path(workspace)}/1/analytics").json["data"]["burndown"]] == [
        day0,
        day1,
        day2,
        day3,
    ]


def test_velocity_lists_the_last_sprints_of_any_status_and_averages_the_completed(api, user, workspace):
    api.token = user["token"]
    new_sprint(api, workspace)
    s1 = [new_task(api, workspace, 1, title=f"S1-{p}", story_points=p) for p in (3, 5, 8)]
    move_task(api, workspace, s1[0], "done")
    move_task(api, workspace, s1[1], "done")
    complete_sprint(api, workspace, 1)
    new_sprint(api, workspace)
    for task in [new_task(api, workspace, 2, title=f"S2-{p}", story_points=p) for p in (2, 3)]:
        move_task(api, workspace, task, "done")
    complete_sprint(api, workspace, 2)
    new_sprint(api, workspace)
    move_task(api, workspace, new_task(api, workspace, 3, title="open", story_points=40), "done")

    response = api.get(f"{sprints_path(workspace)}/analytics/velocity")
    assert response.status == 200, response.body
    data = response.json["data"]
    rows = [{k: v for k, v in row.items() if k != "completed_at"} for row in data["velocity"]]
    open_status = api.get(f"{sprints_path(workspace)}/3").json["data"]["status"]
    assert open_status != "completed"
    assert rows == [
        {"sprint": 1, "status": "completed", "total": 3, "done": 2, "total_points": 16, "done_points": 8},
        {"sprint": 2, "status": "completed", "total": 2, "done": 2, "total_points": 5, "done_points": 5},
        {"sprint": 3, "status": open_status, "total": 1, "done": 1, "total_points": 40, "done_points": 40},
    ]
    assert [bool(row["completed_at"]) for row in data["velocity"]] == [True, True, False]
    assert data["average_done_points"] == 6.5  # the completed sprints' average
    latest = api.get(f"/api/v1/workspaces/{workspace['id']}/analytics/velocity?limit=2").json["data"]
    assert [row["sprint"] for row in latest["velocity"]] == [2, 3]
    assert api.get(f"{sprints_path(workspace)}/analytics/velocity?limit=0").status == 422


def test_daily_analytics_counts_created_started_and_completed_tasks_per_day(api, user, workspace, monkeypatch):
    clock = Clock(monkeypatch)
    api.token = user["token"]
    clock.day(-40, hour=8)
    ancient = new_task(api, workspace, None, title="ancient", story_points=1)
    old = new_task(api, workspace, None, title="old", assignee="tester", type="chore", story_points=5)
    clock.day(-40, hour=9)
    move_task(api, workspace, ancient, "done")
    day0 = clock.day(0, hour=8)
    first = new_task(api, workspace, None, title="one", story_points=3)
    new_task(api, workspace, None, title="two")
    day1 = clock.day(1)
    day2 = clock.day(2, hour=10)
    third = new_task(api, workspace, None, title="three", assignee="builder", type="bug", story_points=2)
    move_task(api, workspace, first, "in_progress")
    move_task(api, workspace, first, "done")
    clock.day(3, hour=9)
    move_task(api, workspace, third, "in_progress")
    clock.day(3, hour=14)
    move_task(api, workspace, third, "done")
    day3 = clock.day(3, hour=16)
    move_task(api, workspace, old, "done")  # created weeks ago, finished today

    response = api.get(f"{sprints_path(workspace)}/analytics/daily?days=4")
    assert response.status == 200, response.body
    data = response.json["data"]
    assert data["date"] == day3 and data["days"] == 4
    assert data["daily"] == [
        {"date": day0, "created": 2, "started": 0, "completed": 0, "points": 0},
        {"date": day1, "created": 0, "started": 0, "completed": 0, "points": 0},
        {"date": day2, "created": 1, "started": 1, "completed": 1, "points": 3},
        {"date": day3, "created": 0, "started": 1, "completed": 2, "points": 7},
    ]
    # A running total of every task done so far, the one done weeks before the window included.
    assert data["cumulative"] == [
        {"date": day0, "total": 1, "daily": 0},
        {"date": day1, "total": 1, "daily": 0},
        {"date": day2, "total": 2, "daily": 1},
        {"date": day3, "total": 4, "daily": 2},
    ]
    assert data["scorecard"] == {"tasks_done": 2, "points": 7, "agents_active": 2, "types": {"bug": 1, "chore": 1}}
    assert len(data["hourly"]) == 24
    assert data["hourly"][9] == {"hour": 9, "done": 0, "started": 1, "total": 0, "created": 0}
    assert data["hourly"][14] == {"hour": 14, "done": 1, "started": 0, "total": 1, "created": 0}
    assert data["hourly"][16] == {"hour": 16, "done": 1, "started": 0, "total": 2, "created": 0}
    assert data["hourly"][23]["total"] == 2
    assert [t["id"] for t in data["tasks"]] == [third["id"], old["id"]]
    assert data["truncated"] is False

    earlier = api.get(f"/api/v1/workspaces/{workspace['id']}/analytics/daily?date={day2}&days=1").json["data"]
    assert earlier["daily"] == [{"date": day2, "created": 1, "started": 1, "completed": 1, "points": 3}]
    assert earlier["cumulative"] == [{"date": day2, "total": 2, "daily": 1}]
    assert earlier["hourly"][10] == {"hour": 10, "done": 1, "started": 1, "total": 1, "created": 1}

    # Reopened, a task no longer counts as done on the day it had been finished.
    move_task(api, workspace, old, "todo")
    again = api.get(f"{sprints_path(workspace)}/analytics/daily?days=1").json["data"]
    assert again["daily"] == [{"date": day3, "created": 0, "started": 1, "completed": 1, "points": 2}]
    assert again["cumulative"] == [{"date": day3, "total": 3, "daily": 1}]
    assert [t["id"] for t in again["tasks"]] == [third["id"]]
    assert api.get(f"{sprints_path(workspace)}/analytics/daily?days=91").status == 422
    assert api.get(f"{sprints_path(workspace)}/analytics/daily?date=yesterday").status == 422


# --- review and retrospective ---------------------------------------------------------------------------


def test_retro_comments_are_kept_in_order_and_shown_in_the_review(api, user, workspace):
    api.token = user["token"]
    new_sprint(api, workspace)
    task = new_task(api, workspace, 1, assignee="builder", story_points=2)
    move_task(api, workspace, task, "done")
    first = api.post(
        f"{sprints_path(workspace)}/1/retro",
        {
            "agent_name": "builder",
            "went_well": "Fast auth flow",
            "to_improve": "Test coverage",
            "suggested_tasks": [{"title": "Add e2e tests", "priority": "p0"}],
        },
    )
    assert first.status == 201, first.body
    comment = first.json["data"]
    assert comment["author"] == "builder" and comment["sprint"] == 1
    assert comment["suggested_tasks"] == [{"title": "Add e2e tests", "priority": "p0"}]
    second = api.post(f"{sprints_path(workspace)}/1/retro", {"action_item": "Pair on reviews"}).json["data"]
    assert second["author"] == user["user"]["id"]

    listed = api.get(f"{sprints_path(workspace)}/1/retro?limit=1")
    assert [c["id"] for c in listed.json["data"]] == [comment["id"]]
    more = api.get(f"{sprints_path(workspace)}/1/retro?cursor={listed.json['meta']['next_cursor']}")
    assert [c["id"] for c in more.json["data"]] == [second["id"]]

    review = api.get(f"{sprints_path(workspace)}/1/review").json["data"]
    assert review["summary"]["done"] == 1 and review["summary"]["done_points"] == 2
    assert [t["id"] for t in review["by_owner"]["builder"]] == [task["id"]]
    assert [c["id"] for c in review["retro"]] == [comment["id"], second["id"]]
    assert any(r["action"] == "sprint.retro_added" and r["target_id"] == "1" for r in audit_rows(workspace))


def test_retro_must_say_something_and_needs_an_existing_sprint(api, user, workspace):
    api.token = user["token"]
    assert api.post(f"{sprints_path(workspace)}/9/retro", {"went_well": "x"}).status == 404
    new_sprint(api, workspace)
    empty = api.post(f"{sprints_path(workspace)}/1/retro", {"agent_name": "builder"})
    assert empty.status == 422
    assert api.get(f"{sprints_path(workspace)}/1/retro").json["data"] == []
    assert api.get(f"{sprints_path(workspace)}/9/retro").status == 404


def test_unknown_sprint_is_404_everywhere(api, user, workspace):
    api.token = user["token"]
    for path in ("/7", "/7/review", "/7/analytics"):
        response = api.get(f"{sprints_path(workspace)}{path}")
        assert response.status == 404, path
        assert response.header("content-type") == "application/problem+json"
    assert api.patch(f"{sprints_path(workspace)}/7", {"status": "active"}).status == 404


# --- access and input -------------------------------------------------------------------------------------


def test_bad_input_is_a_problem_and_writes_nothing(api, user, workspace):
    api.token = user["token"]
    for body in ({"status": "review"}, {"colour": "red"}, {"number": -1}, {"number": "one"}, {"goal": "x" * 2001}):
        response = api.post(sprints_path(workspace), body)
        assert response.status == 422, body
    malformed = api.post(sprints_path(workspace), raw="{nope", headers={"Content-Type": "application/json"})
    assert malformed.status == 400
    assert sprint_items(workspace) == []
    new_sprint(api, workspace)
    assert api.get(f"{sprints_path(workspace)}/one").status == 422
    assert api.patch(f"{sprints_path(workspace)}/1", {"status": "finished"}).status == 422
    assert api.patch(f"{sprints_path(workspace)}/1", {"deadline": "soon"}).status == 422
    assert api.get(f"{sprints_path(workspace)}?status=done").status == 422


def test_non_member_gets_404_and_viewer_cannot_write(api, user, workspace):
    api.token = user["token"]
    new_sprint(api, workspace)
    stranger = register_and_login(api)
    api.token = stranger["token"]
    assert api.get(sprints_path(workspace)).status == 404
    assert api.get(f"{sprints_path(workspace)}/1/analytics").status == 404
    assert api.post(sprints_path(workspace), {}).status == 404
    viewer = add_member(api, workspace, "viewer")
    api.token = viewer["token"]
    assert api.get(f"{sprints_path(workspace)}/1").status == 200
    assert api.get(f"{sprints_path(workspace)}/analytics/velocity").status == 200
    for response in (
        api.post(sprints_path(workspace), {"status": "planning"}),
        api.patch(f"{sprints_path(workspace)}/1", {"status": "review"}),
        api.post(f"{sprints_path(workspace)}/current/start"),
        api.post(f"{sprints_path(workspace)}/1/retro", {"went_well": "x"}),
    ):
        assert response.status == 403
        assert response.json["required_scope"] == "tasks:write"
    assert api.get(f"{sprints_path(workspace)}/1").json["data"]["status"] == "active"


def test_missing_token_is_401(api, workspace):
    assert api.get(sprints_path(workspace), token="").status == 401


# --- a sprint, end to end ---------------------------------------------------------------------------------


def test_a_team_runs_a_sprint_end_to_end_through_the_api(api, user, workspace, monkeypatch):
    clock = Clock(monkeypatch)
    ws = f"/api/v1/workspaces/{workspace['id']}"
    api.token = user["token"]

    def call(method: str, path: str, body: Any = None, status: int = 200) -> Any:
        response = api.request(method, f"{ws}{path}", body)
        assert response.status == status, (method, path, response.body)
        return response.json["data"] if response.body else None

    def next_for(agent: str) -> list[str]:
        return [t["title"] for t in call("GET", f"/tasks?next=true&assignee={agent}")]

    def review(task: dict, summary: str) -> None:
        call("PATCH", f"/tasks/{task['id']}", {"status": "in_progress"})
        assert call("POST", f"/tasks/{task['id']}/review-report", {"summary": summary})["status"] == "review"

    day0 = clock.day(0, hour=9)
    for agent in ("builder", "tester"):
        call("PUT", "/agents", {"name": agent, "status": "idle"})
    sprint = call("POST", "/sprints", {"goal": "Ship the API", "status": "planning"}, status=201)
    plan = {"sprint": sprint["number"]}
    design = call("POST", "/tasks", {"title": "Design the API", "owner": "builder", "priority": "p0",
                                     "story_points": 3, **plan}, status=201)  # fmt: skip
    build = call("POST", "/tasks", {"title": "Build the API", "owner": "builder", "story_points": 5,
                                    "status": "blocked", "blocked_by": [design["id"]], **plan}, status=201)  # fmt: skip
    check = call("POST", "/tasks", {"title": "Test the API", "owner": "tester", "story_points": 2,
                                    "status": "blocked", "blocked_by": [build["id"]], **plan}, status=201)  # fmt: skip
    call("POST", "/tasks", {"title": "Write the docs", "owner": "tester", "priority": "p2", "story_points": 1, **plan},
         status=201)  # fmt: skip

    started = call("POST", "/sprints/current/start")
    assert started["sprint"]["status"] == "active"
    assert [(a["name"], a["status"]) for a in started["agents"]] == [("builder", "starting"), ("tester", "starting")]
    assert next_for("builder") == ["Design the API"]
    assert next_for("tester") == ["Write the docs"]  # its p1 test waits on the build

    # Day 0: the design is reviewed and approved, which frees the build.
    clock.day(0, hour=15)
    review(design, "API sketched in the ADR")
    approved = call("POST", f"/tasks/{design['id']}/review-action", {"action": "approve", "comment": "good"})
    assert approved["status"] == "done"
    assert [(c["id"], c["status"]) for c in approved["unblocked_children"]] == [(build["id"], "todo")]
    assert next_for("builder") == ["Build the API"]

    # Day 1: the build is rejected once, then sent back with a fix sub-task, fixed and approved.
    clock.day(1, hour=10)
    review(build, "Endpoints done")
    rejected = call("POST", f"/tasks/{build['id']}/reject", {"reason": "No tests for the error paths"})
    assert (rejected["status"], rejected["rejection_reason"]) == ("in_progress", "No tests for the error paths")
    assert call("POST", f"/tasks/{build['id']}/review-report", {"summary": "Error paths tested"})["status"] == "review"
    fixing = call("POST", f"/tasks/{build['id']}/review-action", {"action": "fix", "fix_description": "Rename ids"})
    fix = fixing["fix_task"]
    assert (fixing["status"], fix["title"], fix["owner"], fix["sprint"]) == (
        "review",
        "Fix: Build the API",
        "builder",
        sprint["number"],
    )
    assert next_for("builder") == ["Fix: Build the API"]
    clock.day(1, hour=16)
    review(fix, "Ids renamed")
    assert call("POST", f"/tasks/{fix['id']}/approve")["status"] == "done"
    freed = call("POST", f"/tasks/{build['id']}/review-action", {"action": "approve"})
    assert [c["id"] for c in freed["unblocked_children"]] == [check["id"]]
    assert next_for("builder") == []
    assert next_for("tester") == ["Test the API"]

    # Day 2: the tests pass review; the docs stay open.
    day2 = clock.day(2, hour=11)
    review(check, "All green")
    call("POST", f"/tasks/{check['id']}/approve")

    analytics = call("GET", f"/sprints/{sprint['number']}/analytics")
    assert analytics["summary"] == {
        "total": 5,
        "done": 4,
        "review": 0,
        "in_progress": 0,
        "todo": 1,
        "blocked": 0,
        "completion_rate": 80,
        "total_points": 11,
        "done_points": 10,
    }
    assert analytics["by_agent"] == {
        "builder": {"total": 3, "done": 3, "points": 8, "done_points": 8},
        "tester": {"total": 2, "done": 1, "points": 3, "done_points": 2},
    }
    day1 = (clock.start + timedelta(days=1)).date().isoformat()
    expected_burndown = [
        {"date": day0, "remaining": 4, "remaining_points": 8, "done": 1},
        {"date": day1, "remaining": 2, "remaining_points": 3, "done": 2},
        {"date": day2, "remaining": 1, "remaining_points": 1, "done": 1},
    ]
    assert analytics["burndown"][:3] == expected_burndown
    [failure] = call("GET", f"/failures?task_id={build['id']}")
    assert failure["cause"] == "No tests for the error paths" and failure["agent"] == "builder"

    for phase in ("review", "retrospective", "completed"):
        call("PATCH", f"/sprints/{sprint['number']}", {"status": phase})
    assert call("GET", f"/sprints/{sprint['number']}/analytics")["burndown"] == expected_burndown
    velocity = call("GET", "/analytics/velocity")
    assert [{k: v for k, v in row.items() if k != "completed_at"} for row in velocity["velocity"]] == [
        {"sprint": 1, "status": "completed", "total": 5, "done": 4, "total_points": 11, "done_points": 10}
    ]
    assert velocity["average_done_points"] == 10.0

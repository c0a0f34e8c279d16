from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest

from agentplane import raw_items
from agentplane.redact import MASK
from tests.conftest import put_common_env, register_and_login
from tests.fixtures.secret_corpus import fake


def ws_path(ws: dict, tail: str) -> str:
    return f"/api/v1/workspaces/{ws['id']}/{tail}"


def add_member(api, ws: dict, role: str) -> dict:
    from agentplane.auth.scopes import Role
    from agentplane.ids import iso
    from agentplane.logic.workspaces import member_item

    person = register_and_login(api)
    raw_items.put(member_item(ws["id"], ws["name"], person["user"]["id"], Role(role), iso()))
    return person


def post_activity(api, ws: dict, **body: Any) -> dict:
    body.setdefault("type", "agent.note")
    body.setdefault("message", "working on it")
    response = api.post(ws_path(ws, "activity"), body)
    assert response.status == 201, response.body
    return response.json["data"]


def new_task(api, ws: dict, title: str) -> dict:
    response = api.post(ws_path(ws, "tasks"), {"title": title})
    assert response.status == 201, response.body
    return response.json["data"]


def activity_items(ws: dict) -> list[dict]:
    from agentplane import keys

    return raw_items.query(keys.activity_pk(ws["id"]), limit=500).items


def stamp() -> str:
    """A moment strictly between what was written before and what is written after."""
    time.sleep(0.005)
    moment = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    time.sleep(0.005)
    return quote(moment)


# --- audit logs -------------------------------------------------------------------------------------


def test_audit_logs_list_every_change_newest_first(api, user, workspace):
    api.token = user["token"]
    a = new_task(api, workspace, "A")
    b = new_task(api, workspace, "B")
    api.patch(ws_path(workspace, f"tasks/{a['id']}"), {"title": "A2"})
    response = api.get(ws_path(workspace, "audit-logs"))
    assert response.status == 200, response.body
    rows = response.json["data"]
    assert [(r["action"], r["target_id"]) for r in rows[:3]] == [
        ("task.updated", a["id"]),
        ("task.created", b["id"]),
        ("task.created", a["id"]),
    ]
    assert rows == sorted(rows, key=lambda r: r["id"], reverse=True)
    first = rows[0]
    assert first["actor_id"] == user["user"]["id"]
    assert first["workspace_id"] == workspace["id"]
    assert first["target_type"] == "task" and first["request_id"]
    assert first["created_at"].endswith("Z")


def test_audit_logs_filter_by_action_target_and_actor(api, user, workspace):
    api.token = user["token"]
    a = new_task(api, workspace, "A")
    new_task(api, workspace, "B")
    api.patch(ws_path(workspace, f"tasks/{a['id']}"), {"title": "A2"})
    created = api.get(ws_path(workspace, "audit-logs?action=task.created")).json["data"]
    assert len(created) == 2 and {r["action"] for r in created} == {"task.created"}
    about_a = api.get(ws_path(workspace, f"audit-logs?target_type=task&target_id={a['id']}")).json["data"]
    assert [r["action"] for r in about_a] == ["task.updated", "task.created"]
    mine = api.get(ws_path(workspace, f"audit-logs?actor={user['user']['id']}&action=task.updated")).json["data"]
    assert [r["target_id"] for r in mine] == [a["id"]]
    assert api.get(ws_path(workspace, "audit-logs?actor=usr_nobody")).json["data"] == []


def test_audit_logs_time_window_uses_from_and_to(api, user, workspace):
    api.token = user["token"]
    early = new_task(api, workspace, "early")
    middle = stamp()
    late = new_task(api, workspace, "late")
    after = api.get(ws_path(workspace, f"audit-logs?action=task.created&from={middle}")).json["data"]
    assert [r["target_id"] for r in after] == [late["id"]]
    before = api.get(ws_path(workspace, f"audit-logs?action=task.created&to={middle}")).json["data"]
    assert [r["target_id"] for r in before] == [early["id"]]
    backwards = api.get(ws_path(workspace, f"audit-logs?from={middle}&to=2000-01-01T00:00:00Z"))
    assert backwards.status == 422
    assert api.get(ws_path(workspace, "audit-logs?from=yesterday")).status == 422


def test_filtered_audit_pages_fill_up_and_resume_with_a_cursor(api, user, workspace):
    api.token = user["token"]
    tasks = [new_task(api, workspace, f"T{i}") for i in range(5)]
    for task in tasks:
        api.patch(ws_path(workspace, f"tasks/{task['id']}"), {"title": task["title"] + "!"})
    seen: list[str] = []
    cursor = None
    while True:
        tail = "audit-logs?action=task.created&limit=2" + (f"&cursor={cursor}" if cursor else "")
        response = api.get(ws_path(workspace, tail))
        assert response.status == 200
        seen += [r["target_id"] for r in response.json["data"]]
        cursor = response.json["meta"]["next_cursor"]
        if not cursor:
            break
        assert len(response.json["data"]) == 2
    assert seen == [t["id"] for t in reversed(tasks)]
    first = api.get(ws_path(workspace, "audit-logs?action=task.created&limit=2")).json["meta"]["next_cursor"]
    assert api.get(ws_path(workspace, f"audit-logs?action=task.updated&cursor={first}")).status == 400


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_audit_logs_need_the_admin_scope(api, user, workspace, role):
    person = add_member(api, workspace, role)
    api.token = person["token"]
    refused = api.get(ws_path(workspace, "audit-logs"))
    assert refused.status == 403
    assert refused.json["required_scope"] == "admin"


def test_workspace_admin_reads_audit_logs_and_strangers_get_404(api, user, workspace):
    admin = add_member(api, workspace, "admin")
    api.token = admin["token"]
    assert api.get(ws_path(workspace, "audit-logs")).status == 200
    stranger = register_and_login(api)
    api.token = stranger["token"]
    assert api.get(ws_path(workspace, "audit-logs")).status == 404


# --- activity ---------------------------------------------------------------------------------------


def test_posted_activity_is_listed_newest_first_and_audited(api, user, workspace):
    api.token = user["token"]
    task = new_task(api, workspace, "Login")
    first = post_activity(
        api, workspace, type="task.started", message="Starting login", agent="builder", task_id=task["id"]
    )
    assert first["id"].startswith("act_")
    assert first["actor_id"] == user["user"]["id"] and first["actor_type"] == "user"
    assert first["level"] == "info" and first["metadata"] == {}
    second = post_activity(
        api, workspace, type="agent.note", message="Tests green", metadata={"passed": 12, "ratio": 0.5}
    )
    assert second["metadata"] == {"passed": 12, "ratio": 0.5}
    listed = api.get(ws_path(workspace, "activity")).json["data"]
    assert [a["id"] for a in listed] == [second["id"], first["id"]]
    assert listed[1] == first
    audited = api.get(ws_path(workspace, "audit-logs?action=activity.created")).json["data"]
    assert {r["target_id"] for r in audited} == {first["id"], second["id"]}


def test_activity_filters_by_type_agent_task_actor_and_time(api, user, workspace):
    api.token = user["token"]
    a = post_activity(api, workspace, type="task.started", agent="builder", task_id="task_1")
    b = post_activity(api, workspace, type="task.done", agent="builder", task_id="task_2")
    middle = stamp()
    c = post_activity(api, workspace, type="task.started", agent="tester", task_id="task_2")

    def ids(query: str) -> list[str]:
        response = api.get(ws_path(workspace, f"activity?{query}"))
        assert response.status == 200, response.body
        return [item["id"] for item in response.json["data"]]

    assert ids("type=task.started") == [c["id"], a["id"]]
    assert ids("agent=builder") == [b["id"], a["id"]]
    assert ids("task_id=task_2") == [c["id"], b["id"]]
    assert ids(f"actor={user['user']['id']}&agent=tester") == [c["id"]]
    assert ids(f"from={middle}") == [c["id"]]
    assert ids(f"to={middle}&type=task.started") == [a["id"]]
    page = api.get(ws_path(workspace, "activity?limit=2")).json
    rest = api.get(ws_path(workspace, f"activity?limit=2&cursor={page['meta']['next_cursor']}")).json
    assert [x["id"] for x in page["data"] + rest["data"]] == [c["id"], b["id"], a["id"]]


def test_bad_activity_is_a_problem_and_writes_nothing(api, user, workspace):
    api.token = user["token"]
    for body in (
        {"message": "no type"},
        {"type": "Not A Slug", "message": "x"},
        {"type": "note", "message": ""},
        {"type": "note", "message": "x" * 2001},
        {"type": "note", "message": "x", "level": "fatal"},
        {"type": "note", "message": "x", "colour": "red"},
        {"type": "note", "message": "x", "metadata": {"blob": "x" * 5000}},
        {"type": "note", "message": "x", "metadata": {"": 1}},
    ):
        response = api.post(ws_path(workspace, "activity"), body)
        assert response.status == 422, body
        assert response.header("content-type") == "application/problem+json"
    malformed = api.post(ws_path(workspace, "activity"), raw="{x", headers={"Content-Type": "application/json"})
    assert malformed.status == 400
    assert activity_items(workspace) == []


def test_viewer_reads_activity_but_cannot_post_and_strangers_get_404(api, user, workspace):
    api.token = user["token"]
    post_activity(api, workspace)
    viewer = add_member(api, workspace, "viewer")
    api.token = viewer["token"]
    assert len(api.get(ws_path(workspace, "activity")).json["data"]) == 1
    assert api.get(ws_path(workspace, "activity/stats")).status == 200
    assert api.get(ws_path(workspace, "logs")).status == 200
    refused = api.post(ws_path(workspace, "activity"), {"type": "note", "message": "x"})
    assert refused.status == 403 and refused.json["required_scope"] == "agents:write"
    member = add_member(api, workspace, "member")
    api.token = member["token"]
    assert post_activity(api, workspace)["actor_id"] == member["user"]["id"]
    stranger = register_and_login(api)
    api.token = stranger["token"]
    for path in ("activity", "activity/stats", "logs"):
        assert api.get(ws_path(workspace, path)).status == 404
    assert api.post(ws_path(workspace, "activity"), {"type": "note", "message": "x"}).status == 404
    assert len(activity_items(workspace)) == 2


# --- stats and logs ---------------------------------------------------------------------------------


def test_activity_stats_count_by_type_actor_agent_level_and_day(api, user, workspace):
    api.token = user["token"]
    post_activity(api, workspace, type="task.started", agent="builder")
    post_activity(api, workspace, type="task.started", agent="tester", level="warn")
    post_activity(api, workspace, type="task.done", agent="builder")
    post_activity(api, workspace, type="agent.note")
    response = api.get(ws_path(workspace, "activity/stats?days=3"))
    assert response.status == 200, response.body
    stats = response.json["data"]
    assert stats["total"] == 4
    assert stats["by_type"] == {"agent.note": 1, "task.done": 1, "task.started": 2}
    assert stats["by_actor"] == {user["user"]["id"]: 4}
    assert stats["by_agent"] == {"builder": 2, "tester": 1}
    assert stats["by_level"] == {"info": 3, "warn": 1}
    assert len(stats["by_day"]) in (3, 4)
    assert stats["by_day"][-1] == {"date": datetime.now(UTC).date().isoformat(), "count": 4}
    assert sum(day["count"] for day in stats["by_day"]) == 4
    assert stats["truncated"] is False


def test_activity_stats_window_is_bounded(api, user, workspace):
    api.token = user["token"]
    post_activity(api, workspace)
    later = stamp()
    assert api.get(ws_path(workspace, f"activity/stats?from={later}")).json["data"]["total"] == 0
    assert api.get(ws_path(workspace, "activity/stats?days=0")).status == 422
    assert api.get(ws_path(workspace, "activity/stats?days=91")).status == 422
    assert api.get(ws_path(workspace, "activity/stats?from=2020-01-01T00:00:00Z")).status == 422
    backwards = api.get(ws_path(workspace, f"activity/stats?from={later}&to=2020-01-01T00:00:00Z"))
    assert backwards.status == 422


def test_logs_show_activity_as_lines_filtered_by_agent_minimum_level_and_text(api, user, workspace):
    api.token = user["token"]
    info = post_activity(api, workspace, agent="builder", message="Compiling the app")
    warn = post_activity(api, workspace, agent="builder", message="Flaky TEST retried", level="warn")
    error = post_activity(api, workspace, agent="tester", message="Test suite failed", level="error", task_id="task_9")
    post_activity(api, workspace, message="A person wrote this")

    def lines(query: str = "") -> list[dict]:
        response = api.get(ws_path(workspace, f"logs?{query}"))
        assert response.status == 200, response.body
        return response.json["data"]

    everything = lines()
    assert len(everything) == 4
    assert everything[0]["source"] == user["user"]["id"]
    assert everything[1] == {
        "id": error["id"],
        "at": error["created_at"],
        "level": "error",
        "source": "tester",
        "type": "agent.note",
        "message": "Test suite failed",
        "task_id": "task_9",
        "actor_id": user["user"]["id"],
    }
    assert [x["id"] for x in lines("level=warn")] == [error["id"], warn["id"]]
    assert [x["id"] for x in lines("level=error")] == [error["id"]]
    assert [x["id"] for x in lines("agent=builder")] == [warn["id"], info["id"]]
    assert [x["id"] for x in lines("q=test")] == [error["id"], warn["id"]]
    assert [x["id"] for x in lines("q=test&agent=builder&level=info")] == [warn["id"]]
    assert api.get(ws_path(workspace, "logs?level=loud")).status == 422
    assert api.get(ws_path(workspace, "logs?q=")).status == 422


def test_log_lines_are_stored_and_served_redacted(api, user, workspace):
    api.token = user["token"]
    put_common_env(api, workspace, DB_PASSWORD="hunter2-database-password")
    token = fake("stripe live secret key")
    posted = post_activity(
        api, workspace, agent="builder", message=f"Charging with {token}",
        metadata={"env": {"DB_PASSWORD": "hunter2-database-password"}, "cmd": f"curl -u {token}:"},
    )  # fmt: skip
    assert posted["message"] == f"Charging with {MASK}"
    assert posted["metadata"] == {"env": {"DB_PASSWORD": MASK}, "cmd": f"curl -u {MASK}:"}

    served = "".join(api.get(ws_path(workspace, path)).body for path in ("activity", "logs", "logs?q=charging"))
    stored = str(activity_items(workspace)).lower()
    for secret in (token, "hunter2-database-password"):
        assert secret not in served, secret
        assert secret.lower() not in stored, secret

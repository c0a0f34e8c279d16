from __future__ import annotations

import json
import math
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentplane import raw_items
from agentplane.redact import MASK
from tests.conftest import put_common_env, register_and_login
from tests.fixtures.secret_corpus import fake

ENV_SECRET = "hunter2-database-password"


def agents_path(ws: dict) -> str:
    return f"/api/v1/workspaces/{ws['id']}/agents"


def templates_path(ws: dict) -> str:
    return f"/api/v1/workspaces/{ws['id']}/agent-templates"


def new_agent(api, ws: dict, name: str = "builder", **fields: Any) -> dict:
    created = api.post(agents_path(ws), {"name": name, **fields})
    assert created.status == 201, created.body
    return created.json["data"]


def heartbeat(api, ws: dict, name: str = "builder", **fields: Any) -> dict:
    response = api.put(agents_path(ws), {"name": name, **fields})
    assert response.status == 200, response.body
    return response.json["data"]


def raw_agent(ws: dict, name: str) -> dict | None:
    from agentplane import keys

    return raw_items.get(keys.agent_key(ws["id"], name))


def audit_rows(ws: dict) -> list[dict]:
    from agentplane import keys

    return raw_items.query(keys.audit_pk(ws["id"]), limit=500).items


def add_member(api, ws: dict, role: str) -> dict:
    from agentplane.auth.scopes import Role
    from agentplane.ids import iso
    from agentplane.logic.workspaces import member_item

    person = register_and_login(api)
    raw_items.put(member_item(ws["id"], ws["name"], person["user"]["id"], Role(role), iso()))
    return person


def agent_key_for(ws: dict, name: str) -> str:
    """A secret of kind agent_key bound to the workspace, acting as agent `name`."""
    from agentplane.auth import tokens
    from agentplane.ids import new_id
    from agentplane.store import get_store

    tx = get_store().transaction()
    key_id = new_id("agk")
    secret = tokens.issue(
        tx,
        "agent_key",
        token_id=key_id,
        principal_id=key_id,
        user_id=None,
        workspace_id=ws["id"],
        extra={"agent_name": name},
    )
    tx.commit()
    return secret


@pytest.fixture
def heartbeat_in_the_past(monkeypatch):
    """Heartbeats recorded while this is active are dated `minutes` ago."""
    from agentplane.ids import iso
    from agentplane.logic.agents import registry, stalls

    def set_minutes(minutes: float) -> None:
        moment = datetime.now(UTC) - timedelta(minutes=minutes)
        for module in (registry, stalls):
            monkeypatch.setattr(module, "iso", lambda value=None: iso(value or moment))

    def restore() -> None:
        for module in (registry, stalls):
            monkeypatch.setattr(module, "iso", iso)

    set_minutes.restore = restore  # type: ignore[attr-defined]
    return set_minutes


def notifications_of(api, ws: dict) -> list[dict]:
    response = api.get(f"/api/v1/workspaces/{ws['id']}/notifications")
    assert response.status == 200, response.body
    return response.json["data"]


# --- registry -----------------------------------------------------------------------------------
def test_create_then_get_agent_round_trips_fields(api, user, workspace):
    api.token = user["token"]
    agent = new_agent(api, workspace, "builder", display_name="Builder", model="claude-sonnet", color="#3b82f6")
    assert agent["id"].startswith("agt_")
    assert agent["name"] == "builder"
    assert agent["role"] == "builder"
    assert agent["status"] == "idle"
    assert agent["desired_state"] == "running"
    assert agent["has_api_key"] is False
    assert agent["version"] == 1
    assert agent["workspace_id"] == workspace["id"]
    fetched = api.get(f"{agents_path(workspace)}/builder")
    assert fetched.status == 200
    assert fetched.json["data"] == agent
    assert "agent.created" in [r["action"] for r in audit_rows(workspace)]


def test_agent_items_carry_what_the_search_indexer_reads(api, user, workspace):
    api.token = user["token"]
    new_agent(api, workspace, "felix", display_name="Felix", role="engineer", description="Ships things")
    item = raw_agent(workspace, "felix")
    assert item is not None
    assert item["entity"] == "agent"
    assert item["workspace_id"] == workspace["id"]
    assert (item["name"], item["display_name"], item["role"]) == ("felix", "Felix", "engineer")


def test_creating_an_existing_name_is_409(api, user, workspace):
    api.token = user["token"]
    new_agent(api, workspace, "builder")
    again = api.post(agents_path(workspace), {"name": "builder"})
    assert again.status == 409
    assert again.header("content-type") == "application/problem+json"


def test_bad_or_reserved_names_are_422_and_write_nothing(api, user, workspace):
    api.token = user["token"]
    for name in ("Builder", "has space", "a#b", "", "x" * 65, "progress", "check-stalls"):
        response = api.post(agents_path(workspace), {"name": name})
        assert response.status == 422, (name, response.body)
        assert response.header("content-type") == "application/problem+json"
    assert api.post(agents_path(workspace), {"name": "ok", "surprise": 1}).status == 422
    assert api.post(agents_path(workspace), raw="{oops", headers={"Content-Type": "application/json"}).status == 400
    assert api.get(f"{agents_path(workspace)}?all=true").json["data"] == []
    assert [r for r in audit_rows(workspace) if r["target_type"] == "agent"] == []


def test_list_hides_finished_child_agents_unless_all(api, user, workspace):
    api.token = user["token"]
    new_agent(api, workspace, "builder")
    new_agent(api, workspace, "helper-1", parent_agent="builder", status="finished")
    new_agent(api, workspace, "tester", status="done")  # no parent: still listed
    listed = [a["name"] for a in api.get(agents_path(workspace)).json["data"]]
    assert listed == ["builder", "tester"]
    everything = [a["name"] for a in api.get(f"{agents_path(workspace)}?all=true").json["data"]]
    assert everything == ["builder", "helper-1", "tester"]
    # Back at work, the child is listed again.
    heartbeat(api, workspace, "helper-1", status="working")
    assert "helper-1" in [a["name"] for a in api.get(agents_path(workspace)).json["data"]]


def test_list_paginates_by_name_with_a_cursor_bound_to_the_workspace(api, user, workspace):
    api.token = user["token"]
    names = [f"agent-{i}" for i in range(5)]
    for name in reversed(names):
        new_agent(api, workspace, name)
    seen: list[str] = []
    cursor = None
    while True:
        url = f"{agents_path(workspace)}?limit=2" + (f"&cursor={cursor}" if cursor else "")
        response = api.get(url)
        assert response.status == 200
        seen += [a["name"] for a in response.json["data"]]
        cursor = response.json["meta"]["next_cursor"]
        if not cursor:
            break
    assert seen == names
    first = api.get(f"{agents_path(workspace)}?limit=2").json["meta"]["next_cursor"]
    other = api.post("/api/v1/workspaces", {"name": "Other"}).json["data"]
    assert api.get(f"{agents_path(other)}?limit=2&cursor={first}").status == 400
    assert api.get(f"{agents_path(workspace)}?limit=2&cursor=forged.cursor").status == 400


def test_list_filters_by_status_and_role(api, user, workspace):
    api.token = user["token"]
    new_agent(api, workspace, "builder", role="engineer")
    new_agent(api, workspace, "tester", role="qa", status="working")
    working = api.get(f"{agents_path(workspace)}?status=working").json["data"]
    assert [a["name"] for a in working] == ["tester"]
    engineers = api.get(f"{agents_path(workspace)}?role=engineer").json["data"]
    assert [a["name"] for a in engineers] == ["builder"]
    assert api.get(f"{agents_path(workspace)}?status=sleeping").status == 422


def test_list_takes_several_comma_separated_statuses(api, user, workspace):
    api.token = user["token"]
    new_agent(api, workspace, "builder", status="working")
    new_agent(api, workspace, "tester", status="blocked")
    new_agent(api, workspace, "writer", status="idle")
    either = api.get(f"{agents_path(workspace)}?status=working,blocked")
    assert either.status == 200, either.body
    assert [a["name"] for a in either.json["data"]] == ["builder", "tester"]
    spaced = api.get(f"{agents_path(workspace)}?status=idle,%20blocked&limit=1")
    assert [a["name"] for a in spaced.json["data"]] == ["tester"]
    rest = api.get(
        f"{agents_path(workspace)}?status=idle,%20blocked&limit=1&cursor={spaced.json['meta']['next_cursor']}"
    )
    assert [a["name"] for a in rest.json["data"]] == ["writer"]
    refused = api.get(f"{agents_path(workspace)}?status=working,sleeping")
    assert refused.status == 422
    assert refused.header("content-type") == "application/problem+json"
    assert "sleeping" in refused.body
    assert api.get(f"{agents_path(workspace)}?status=,").status == 422


def test_orkosi_create_body_with_interval_sec_is_kept(api, user, workspace):
    api.token = user["token"]
    created = api.post(
        agents_path(workspace),
        {"name": "felix", "display_name": "Felix", "model": "claude-haiku-4-5", "interval_sec": 3600,
         "emoji": "📦", "color": "#3b82f6"},
    )  # fmt: skip
    assert created.status == 201, created.body
    assert created.json["data"]["interval_sec"] == 3600
    assert api.get(f"{agents_path(workspace)}/felix").json["data"]["interval_sec"] == 3600
    patched = api.patch(f"{agents_path(workspace)}/felix", {"interval_sec": 600})
    assert patched.json["data"]["interval_sec"] == 600
    assert api.patch(f"{agents_path(workspace)}/felix", {"interval_sec": None}).json["data"]["interval_sec"] is None
    assert api.post(agents_path(workspace), {"name": "bad", "interval_sec": 0}).status == 422


def test_patch_updates_fields_and_a_stale_version_is_412(api, user, workspace):
    api.token = user["token"]
    new_agent(api, workspace, "builder", emoji="🔨")
    patched = api.patch(f"{agents_path(workspace)}/builder", {"display_name": "Bob", "emoji": None, "version": 1})
    assert patched.status == 200, patched.body
    assert patched.json["data"]["display_name"] == "Bob"
    assert patched.json["data"]["emoji"] is None
    assert patched.json["data"]["version"] == 2
    stale = api.patch(f"{agents_path(workspace)}/builder", {"display_name": "Carl"}, headers={"If-Match": "1"})
    assert stale.status == 412
    assert stale.json["current_version"] == 2
    assert api.get(f"{agents_path(workspace)}/builder").json["data"]["display_name"] == "Bob"
    assert api.patch(f"{agents_path(workspace)}/ghost", {"display_name": "x"}).status == 404


def test_delete_refuses_the_manager_active_agents_and_task_holders(api, user, workspace):
    api.token = user["token"]
    new_agent(api, workspace, "manager")
    manager = api.delete(f"{agents_path(workspace)}/manager")
    assert manager.status == 409
    new_agent(api, workspace, "worker", status="active")
    active = api.delete(f"{agents_path(workspace)}/worker")
    assert active.status == 409
    assert active.json["current_status"] == "active"
    new_agent(api, workspace, "holder")
    task = api.post(
        f"/api/v1/workspaces/{workspace['id']}/tasks", {"title": "Busy", "assignee": "holder", "status": "in_progress"}
    ).json["data"]
    holding = api.delete(f"{agents_path(workspace)}/holder")
    assert holding.status == 409
    assert holding.json["tasks"] == [task["id"]]
    for name in ("manager", "worker", "holder"):
        assert api.get(f"{agents_path(workspace)}/{name}").status == 200


@pytest.mark.parametrize(
    ("field", "status"), [("assignee", "todo"), ("owner", "todo"), ("assignee", "review"), ("owner", "blocked")]
)
def test_delete_refuses_an_agent_with_an_open_task_of_any_status(api, user, workspace, field, status):
    api.token = user["token"]
    new_agent(api, workspace, "holder")
    tasks = f"/api/v1/workspaces/{workspace['id']}/tasks"
    task = api.post(tasks, {"title": "Later", field: "holder", "status": status})
    assert task.status == 201, task.body
    refused = api.delete(f"{agents_path(workspace)}/holder")
    assert refused.status == 409, refused.body
    assert refused.header("content-type") == "application/problem+json"
    assert refused.json["tasks"] == [task.json["data"]["id"]]
    assert api.get(f"{agents_path(workspace)}/holder").status == 200
    assert "agent.deleted" not in [r["action"] for r in audit_rows(workspace)]
    # Once the task is handed to someone else the agent holds nothing and can go.
    handed = api.patch(f"{tasks}/{task.json['data']['id']}", {field: "someone-else"})
    assert handed.status == 200, handed.body
    assert api.delete(f"{agents_path(workspace)}/holder").status == 204


def test_delete_refuses_when_the_open_tasks_are_too_many_to_check(api, user, workspace, monkeypatch):
    from agentplane.logic.agents import registry

    api.token = user["token"]
    new_agent(api, workspace, "holder")
    for n in range(3):
        api.post(f"/api/v1/workspaces/{workspace['id']}/tasks", {"title": f"Someone else's {n}", "assignee": "x"})
    monkeypatch.setattr(registry, "HELD_TASKS_READ_BUDGET", 2)
    monkeypatch.setattr(registry, "_HELD_TASKS_PAGE", 1)
    refused = api.delete(f"{agents_path(workspace)}/holder")
    assert refused.status == 409, refused.body
    assert api.get(f"{agents_path(workspace)}/holder").status == 200


def test_delete_removes_an_idle_agent_and_its_latest_progress(api, user, workspace):
    api.token = user["token"]
    new_agent(api, workspace, "builder")
    api.post(f"{agents_path(workspace)}/progress", {"agent": "builder", "message": "hi"})
    assert api.delete(f"{agents_path(workspace)}/builder").status == 204
    assert api.get(f"{agents_path(workspace)}/builder").status == 404
    assert api.delete(f"{agents_path(workspace)}/builder").status == 404
    assert api.get(f"{agents_path(workspace)}/progress/latest").json["data"] == []
    assert "agent.deleted" in [r["action"] for r in audit_rows(workspace)]
    assert new_agent(api, workspace, "builder")["version"] == 1  # the name is free again


def test_non_member_gets_404_everywhere(api, user, workspace):
    api.token = user["token"]
    new_agent(api, workspace, "builder")
    stranger = register_and_login(api)
    api.token = stranger["token"]
    assert api.get(agents_path(workspace)).status == 404
    assert api.get(f"{agents_path(workspace)}/builder").status == 404
    assert api.put(agents_path(workspace), {"name": "builder"}).status == 404
    assert api.post(f"{agents_path(workspace)}/check-stalls").status == 404
    assert api.get(f"{agents_path(workspace)}/builder/context").status == 404
    assert api.get(templates_path(workspace)).status == 404


def test_viewer_reads_but_cannot_write(api, user, workspace):
    api.token = user["token"]
    new_agent(api, workspace, "builder")
    viewer = add_member(api, workspace, "viewer")
    api.token = viewer["token"]
    assert api.get(f"{agents_path(workspace)}/builder").status == 200
    refused = api.post(agents_path(workspace), {"name": "sneaky"})
    assert refused.status == 403
    assert refused.json["required_scope"] == "agents:write"
    assert api.put(f"{agents_path(workspace)}/builder/config", {"model": "x"}).status == 403
    assert api.post(f"{agents_path(workspace)}/builder/stop").status == 403


def test_read_only_token_is_403_naming_the_scope(api, user, workspace):
    api.token = user["token"]
    new_agent(api, workspace, "builder")
    issued = api.post(
        "/api/v1/auth/token",
        {"email": user["email"], "password": user["password"], "name": "ro", "abilities": ["agents:read"]},
        token="",
    )
    assert issued.status == 201, issued.body
    api.token = issued.json["data"]["token"]
    assert api.get(agents_path(workspace)).status == 200
    refused = api.put(agents_path(workspace), {"name": "builder"})
    assert refused.status == 403
    assert refused.json["required_scope"] == "agents:write"


# --- heartbeats and desired state ---------------------------------------------------------------
def test_upsert_registers_a_new_agent_and_records_its_heartbeat(api, user, workspace):
    api.token = user["token"]
    agent = heartbeat(api, workspace, "builder", activity="Working on task-1", ws_port=4000)
    assert agent["status"] == "active"
    assert agent["last_seen_at"] is not None
    assert agent["ws_port"] == 4000
    assert agent["desired_state"] == "running"
    assert "agent.registered" in [r["action"] for r in audit_rows(workspace)]


def test_plain_heartbeats_move_last_seen_but_not_the_version_nor_the_audit(api, user, workspace):
    api.token = user["token"]
    first = heartbeat(api, workspace, "builder", status="working")
    audited = len(audit_rows(workspace))
    second = heartbeat(api, workspace, "builder", activity="still going")
    assert second["last_seen_at"] >= first["last_seen_at"]
    assert second["activity"] == "still going"
    assert second["version"] == first["version"]
    assert second["status"] == "working"  # left out: unchanged
    assert len(audit_rows(workspace)) == audited
    changed = heartbeat(api, workspace, "builder", status="blocked")
    assert changed["version"] == first["version"] + 1
    reported = [r for r in audit_rows(workspace) if r["action"] == "agent.reported"]
    assert reported[-1]["details"]["from"] == "working" and reported[-1]["details"]["to"] == "blocked"


def test_concurrent_heartbeats_of_one_agent_all_succeed_and_keep_the_latest(api, user, workspace):
    api.token = user["token"]
    heartbeat(api, workspace, "builder")
    answers: list[Any] = []

    def beat(n: int) -> None:
        answers.append(api.put(agents_path(workspace), {"name": "builder", "activity": f"beat {n}"}))

    threads = [threading.Thread(target=beat, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status for a in answers] == [200] * 10, [a.body for a in answers if a.status != 200]
    latest = max(a.json["data"]["last_seen_at"] for a in answers)
    stored = raw_agent(workspace, "builder")
    assert stored is not None
    assert stored["last_seen_at"] == latest
    # The live index follows the stored heartbeat.
    assert stored["GSI2SK"] == f"{latest}#builder"


def test_a_status_report_that_waited_behind_a_later_heartbeat_is_still_applied(
    api, user, workspace, heartbeat_in_the_past
):
    api.token = user["token"]
    heartbeat(api, workspace, "builder", status="working")
    latest = raw_agent(workspace, "builder")["last_seen_at"]  # type: ignore[index]
    # A report dated before the stored heartbeat (it was held up, then retried).
    heartbeat_in_the_past(1)
    report = api.put(
        agents_path(workspace),
        {"name": "builder", "status": "finished", "activity": "done", "parent_agent": "lead", "ws_port": 4100},
    )
    heartbeat_in_the_past.restore()
    assert report.status == 200, report.body
    answered = report.json["data"]
    assert (answered["status"], answered["activity"], answered["parent_agent"], answered["ws_port"]) == (
        "finished", "done", "lead", 4100
    )  # fmt: skip
    stored = api.get(f"{agents_path(workspace)}/builder").json["data"]
    assert (stored["status"], stored["activity"], stored["parent_agent"], stored["ws_port"]) == (
        "finished", "done", "lead", 4100
    )  # fmt: skip
    assert stored["last_seen_at"] == latest  # never moved backwards
    reported = [r for r in audit_rows(workspace) if r["action"] == "agent.reported"]
    assert reported[-1]["details"]["to"] == "finished"
    # A finished child agent leaves the plain list.
    assert "builder" not in [a["name"] for a in api.get(agents_path(workspace)).json["data"]]


def test_concurrent_reports_heartbeats_patches_and_config_lose_no_update(api, user, workspace):
    api.token = user["token"]
    heartbeat(api, workspace, "builder")
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("PUT", agents_path(workspace), {"name": "builder", "status": "blocked"}),
        ("PUT", agents_path(workspace), {"name": "builder", "parent_agent": "lead"}),
        ("PUT", agents_path(workspace), {"name": "builder", "ws_port": 4321}),
        ("PUT", agents_path(workspace), {"name": "builder", "current_task": "task_42"}),
        ("PATCH", f"{agents_path(workspace)}/builder", {"display_name": "Builder Bob"}),
        ("PATCH", f"{agents_path(workspace)}/builder", {"color": "#112233"}),
        ("PUT", f"{agents_path(workspace)}/builder/config", {"model": "claude-opus", "engine": "claude-code"}),
        ("POST", f"{agents_path(workspace)}/builder/stop", {"note": "after this task"}),
    ]
    requests += [("PUT", agents_path(workspace), {"name": "builder"})] * 16  # plain heartbeats
    answers: list[Any] = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def send(n: int) -> None:
        method, path, body = requests[n]
        start.wait()
        answers[n] = api.request(method, path, body)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status for a in answers] == [200] * len(requests), [a.body for a in answers if a.status != 200]
    agent = api.get(f"{agents_path(workspace)}/builder").json["data"]
    assert agent["status"] == "blocked"
    assert (agent["parent_agent"], agent["ws_port"], agent["current_task"]) == ("lead", 4321, "task_42")
    assert (agent["display_name"], agent["color"]) == ("Builder Bob", "#112233")
    assert (agent["model"], agent["engine"]) == ("claude-opus", "claude-code")
    assert (agent["desired_state"], agent["desired_state_note"]) == ("stopped", "after this task")
    assert agent["last_seen_at"] == max(a.json["data"]["last_seen_at"] for a in answers)
    # Each change moved the version once (heartbeats do not): 1 + status, parent, 2 patches,
    # config, stop (current_task and ws_port are telemetry).
    assert agent["version"] == 7
    stored = raw_agent(workspace, "builder")
    assert stored is not None and stored["GSI2SK"] == f"{agent['last_seen_at']}#builder"


def test_start_stop_restart_set_the_state_the_agent_reads_back(api, user, workspace):
    api.token = user["token"]
    heartbeat(api, workspace, "builder")
    stopped = api.post(f"{agents_path(workspace)}/builder/stop", {"note": "maintenance"})
    assert stopped.status == 200, stopped.body
    assert stopped.json["data"]["desired_state"] == "stopped"
    assert stopped.json["data"]["desired_state_note"] == "maintenance"
    assert heartbeat(api, workspace, "builder")["desired_state"] == "stopped"
    assert api.post(f"{agents_path(workspace)}/builder/start").json["data"]["desired_state"] == "running"
    assert api.post(f"{agents_path(workspace)}/builder/restart").json["data"]["desired_state"] == "restart"
    # The agent sees the restart on its next heartbeat, restarts, and reports it is starting.
    assert heartbeat(api, workspace, "builder", status="active")["desired_state"] == "restart"
    assert heartbeat(api, workspace, "builder", status="starting")["desired_state"] == "running"
    actions = [r["action"] for r in audit_rows(workspace)]
    for action in ("agent.stop_requested", "agent.start_requested", "agent.restart_requested"):
        assert action in actions
    assert api.post(f"{agents_path(workspace)}/ghost/start").status == 404


# --- engine configuration -----------------------------------------------------------------------
def test_config_seals_the_api_key_and_never_returns_it(api, user, workspace):
    from agentplane import crypto
    from agentplane.logic.agents import API_KEY_ATTR

    api.token = user["token"]
    new_agent(api, workspace, "builder")
    secret = "sk-live-0123456789abcdef"
    response = api.put(
        f"{agents_path(workspace)}/builder/config",
        {"engine": "claude-api", "model": "claude-opus", "execution_mode": "byok", "api_key": secret},
    )
    assert response.status == 200, response.body
    agent = response.json["data"]
    assert agent["has_api_key"] is True
    assert (agent["engine"], agent["model"], agent["execution_mode"]) == ("claude-api", "claude-opus", "byok")
    assert secret not in response.body
    assert "api_key" not in agent
    for path in (f"{agents_path(workspace)}/builder", agents_path(workspace)):
        assert secret not in api.get(path).body
    stored = raw_agent(workspace, "builder")
    assert stored is not None
    assert secret not in json.dumps(stored, default=str)
    assert crypto.unseal(stored[API_KEY_ATTR], workspace["id"]) == secret
    configured = [r for r in audit_rows(workspace) if r["action"] == "agent.configured"]
    assert configured and secret not in json.dumps(configured, default=str)
    assert "api_key" in configured[0]["details"]["fields"]
    cleared = api.put(f"{agents_path(workspace)}/builder/config", {"api_key": None}).json["data"]
    assert cleared["has_api_key"] is False
    assert API_KEY_ATTR not in (raw_agent(workspace, "builder") or {})


def test_config_refuses_bad_input_and_unknown_agents(api, user, workspace):
    api.token = user["token"]
    new_agent(api, workspace, "builder")
    assert api.put(f"{agents_path(workspace)}/builder/config", {"engine": "skynet"}).status == 422
    assert api.put(f"{agents_path(workspace)}/builder/config", {"api_key": ""}).status == 422
    assert api.put(f"{agents_path(workspace)}/builder/config", {"api_key": "x" * 501}).status == 422
    assert api.put(f"{agents_path(workspace)}/ghost/config", {"model": "m"}).status == 404
    assert raw_agent(workspace, "builder")["version"] == 1  # type: ignore[index]


# --- stalls -------------------------------------------------------------------------------------
def test_check_stalls_marks_silent_agents_once_and_notifies_the_workspace(api, user, workspace, heartbeat_in_the_past):
    api.token = user["token"]
    heartbeat_in_the_past(30)
    heartbeat(api, workspace, "builder")
    heartbeat_in_the_past.restore()
    heartbeat(api, workspace, "tester")  # fresh
    new_agent(api, workspace, "idle-one")  # never heartbeated: not watched
    checked = api.post(f"{agents_path(workspace)}/check-stalls")
    assert checked.status == 200, checked.body
    result = checked.json["data"]
    assert [s["name"] for s in result["stalled"]] == ["builder"]
    assert result["count"] == 1
    assert result["timeout_seconds"] == 600
    assert api.get(f"{agents_path(workspace)}/builder").json["data"]["status"] == "stalled"
    assert api.get(f"{agents_path(workspace)}/tester").json["data"]["status"] == "active"
    [note] = [n for n in notifications_of(api, workspace) if n["type"] == "stalled"]
    assert "builder" in note["title"]
    assert note["data"]["agents"][0]["name"] == "builder"
    assert "agent.stalled" in [r["action"] for r in audit_rows(workspace)]
    # Reported once: a second check finds nothing new.
    assert api.post(f"{agents_path(workspace)}/check-stalls").json["data"]["count"] == 0
    # Its next heartbeat makes it active again.
    assert heartbeat(api, workspace, "builder")["status"] == "active"


def test_check_stalls_takes_a_timeout_from_the_body(api, user, workspace, heartbeat_in_the_past):
    api.token = user["token"]
    heartbeat_in_the_past(2)
    heartbeat(api, workspace, "builder")
    heartbeat_in_the_past.restore()
    assert api.post(f"{agents_path(workspace)}/check-stalls", {}).json["data"]["count"] == 0
    quick = api.post(f"{agents_path(workspace)}/check-stalls", {"timeout_seconds": 60}).json["data"]
    assert [s["name"] for s in quick["stalled"]] == ["builder"]
    assert api.post(f"{agents_path(workspace)}/check-stalls", {"timeout_seconds": 1}).status == 422


def test_a_heartbeat_after_the_index_was_read_wins_over_the_stall_mark(api, user, workspace, heartbeat_in_the_past):
    from agentplane.entities.agents import silent_agents
    from agentplane.logic.agents import stalls
    from agentplane.store import TransactionFailed, get_store

    api.token = user["token"]
    heartbeat_in_the_past(30)
    heartbeat(api, workspace, "builder")
    heartbeat_in_the_past.restore()
    [seen] = silent_agents(workspace["id"], "9999", limit=10, start=None).items
    heartbeat(api, workspace, "builder")  # lands between the check's read and its write
    tx = get_store().transaction()
    stalls._mark_silent(tx, seen, "2030-01-01T00:00:00.000Z")
    with pytest.raises(TransactionFailed):
        tx.commit()
    assert api.get(f"{agents_path(workspace)}/builder").json["data"]["status"] == "active"


def test_a_silent_agent_asked_to_stop_is_marked_stopped_without_an_alarm(api, user, workspace, heartbeat_in_the_past):
    api.token = user["token"]
    heartbeat_in_the_past(30)
    heartbeat(api, workspace, "builder")
    heartbeat_in_the_past.restore()
    api.post(f"{agents_path(workspace)}/builder/stop")
    assert api.post(f"{agents_path(workspace)}/check-stalls").json["data"]["count"] == 0
    assert api.get(f"{agents_path(workspace)}/builder").json["data"]["status"] == "stopped"
    assert [n for n in notifications_of(api, workspace) if n["type"] == "stalled"] == []


def test_the_scheduled_stall_check_flags_a_silent_agent_in_every_workspace(
    api, user, workspace, lambdas, stack, heartbeat_in_the_past
):
    from devstack.schedules import Scheduler

    api.token = user["token"]
    other = api.post("/api/v1/workspaces", {"name": "Other"}).json["data"]
    heartbeat_in_the_past(15)
    heartbeat(api, workspace, "builder")
    heartbeat(api, other, "scout")
    heartbeat_in_the_past.restore()
    heartbeat(api, workspace, "tester")

    class Clock:
        now = datetime.now(UTC)

        def __call__(self) -> datetime:
            return self.now

    clock = Clock()
    scheduler = Scheduler(lambdas, stack, clock=clock, inline=True)
    fired = scheduler.tick(clock.now + timedelta(seconds=61))
    assert "template:AgentStallCheckFunction:EveryMinute" in fired
    assert api.get(f"{agents_path(workspace)}/builder").json["data"]["status"] == "stalled"
    assert api.get(f"{agents_path(other)}/scout").json["data"]["status"] == "stalled"
    assert api.get(f"{agents_path(workspace)}/tester").json["data"]["status"] == "active"
    assert [n["type"] for n in notifications_of(api, workspace)].count("stalled") == 1
    assert [n["type"] for n in notifications_of(api, other)].count("stalled") == 1
    stalled = [r for r in audit_rows(workspace) if r["action"] == "agent.stalled"]
    assert stalled[0]["actor_id"] == "system"


def test_stall_sweep_reads_only_the_silent_range_of_each_shard(api, user, workspace, heartbeat_in_the_past):
    from agentplane import keys
    from agentplane.logic import agents
    from agentplane.store import get_store

    api.token = user["token"]
    heartbeat_in_the_past(30)
    heartbeat(api, workspace, "old")
    heartbeat_in_the_past.restore()
    heartbeat(api, workspace, "fresh")
    calls: list[tuple[str, str | None]] = []
    store = get_store()
    original = store.select

    def recording(entity: Any, spec: Any, **kwargs: Any) -> Any:
        calls.append((spec.partition, spec.index))
        return original(entity, spec, **kwargs)

    store.select = recording  # type: ignore[method-assign]
    try:
        result = agents.sweep_stalled_agents()
    finally:
        store.select = original  # type: ignore[method-assign]
    assert result["stalled"] == 1
    watched = [c for c in calls if c[1] == keys.GSI3]
    assert len(watched) == keys.AGENT_WATCH_SHARDS
    assert all(partition.startswith("AGENTWATCH#") for partition, _ in watched)


# --- progress -----------------------------------------------------------------------------------
def test_progress_reports_list_newest_first_up_to_twenty_and_expire_in_a_day(api, user, workspace):
    api.token = user["token"]
    new_agent(api, workspace, "builder")
    for n in range(22):
        created = api.post(
            f"{agents_path(workspace)}/progress",
            {"agent": "builder", "message": f"step {n}", "percent": n * 4, "task_id": "task_1"},
        )
        assert created.status == 201, created.body
    report = created.json["data"]
    assert report["agent_name"] == "builder" and report["percent"] == 84
    assert "agent" not in report
    created_at = datetime.fromisoformat(report["created_at"].replace("Z", "+00:00"))
    expires_at = datetime.fromisoformat(report["expires_at"].replace("Z", "+00:00"))
    assert expires_at - created_at == timedelta(hours=24)
    listed = api.get(f"{agents_path(workspace)}/builder/progress")
    assert listed.status == 200
    messages = [p["message"] for p in listed.json["data"]]
    assert messages == [f"step {n}" for n in range(21, 1, -1)]
    assert api.get(f"{agents_path(workspace)}/builder/progress?limit=21").status == 422


def test_progress_items_carry_a_ttl_24_hours_out(api, user, workspace):
    from agentplane import keys
    from agentplane.ids import epoch

    api.token = user["token"]
    new_agent(api, workspace, "builder")
    api.post(f"{agents_path(workspace)}/progress", {"agent_name": "builder", "step": "tests"})
    [item] = raw_items.query(keys.agent_progress_pk(workspace["id"], "builder")).items
    assert abs(item["ttl"] - (epoch() + 86400)) < 60
    [latest] = raw_items.query(keys.agent_latest_progress_pk(workspace["id"])).items
    assert latest["ttl"] == item["ttl"]


def test_latest_progress_is_one_entry_per_agent_and_the_newest(api, user, workspace):
    api.token = user["token"]
    for name in ("builder", "tester"):
        new_agent(api, workspace, name)
    for message in ("one", "two", "three"):
        api.post(f"{agents_path(workspace)}/progress", {"agent": "builder", "message": message})
    api.post(f"{agents_path(workspace)}/progress", {"agent": "tester", "message": "only"})
    latest = api.get(f"{agents_path(workspace)}/progress/latest")
    assert latest.status == 200
    assert [(p["agent_name"], p["message"]) for p in latest.json["data"]] == [("builder", "three"), ("tester", "only")]


def test_an_older_report_never_replaces_the_latest(api, user, workspace):
    from agentplane.access import workspace_access
    from agentplane.auth.tokens import resolve_principal
    from agentplane.ids import new_id
    from agentplane.logic import agents
    from agentplane.logic.agents import progress
    from agentplane.models.agents import ProgressCreate

    api.token = user["token"]
    new_agent(api, workspace, "builder")
    older_id = new_id("prg")
    api.post(f"{agents_path(workspace)}/progress", {"agent": "builder", "message": "newer"})
    access = workspace_access(resolve_principal(user["token"]), workspace["id"], "agents:write")
    original = progress.new_id
    progress.new_id = lambda prefix: older_id  # type: ignore[assignment]
    try:
        agents.report_progress(access, ProgressCreate(agent_name="builder", message="older"))
    finally:
        progress.new_id = original  # type: ignore[assignment]
    latest = api.get(f"{agents_path(workspace)}/progress/latest").json["data"]
    assert [p["message"] for p in latest] == ["newer"]
    assert {p["message"] for p in api.get(f"{agents_path(workspace)}/builder/progress").json["data"]} == {
        "newer",
        "older",
    }


def test_expired_progress_is_hidden_before_ttl_removes_it(api, user, workspace):
    from agentplane import keys
    from agentplane.raw_items import Update

    api.token = user["token"]
    new_agent(api, workspace, "builder")
    api.post(f"{agents_path(workspace)}/progress", {"agent": "builder", "message": "old"})
    for item in [
        *raw_items.query(keys.agent_progress_pk(workspace["id"], "builder")).items,
        *raw_items.query(keys.agent_latest_progress_pk(workspace["id"])).items,
    ]:
        raw_items.update(keys.key(item["PK"], item["SK"]), Update(set={"ttl": 1}))
    assert api.get(f"{agents_path(workspace)}/builder/progress").json["data"] == []
    assert api.get(f"{agents_path(workspace)}/progress/latest").json["data"] == []


def test_progress_refuses_unknown_agents_and_bad_fields(api, user, workspace):
    api.token = user["token"]
    new_agent(api, workspace, "builder")
    unknown = api.post(f"{agents_path(workspace)}/progress", {"agent": "ghost", "message": "x"})
    assert unknown.status == 422
    assert api.post(f"{agents_path(workspace)}/progress", {"message": "whose?"}).status == 422
    assert api.post(f"{agents_path(workspace)}/progress", {"agent": "builder", "percent": 101}).status == 422
    assert api.post(f"{agents_path(workspace)}/progress", {"agent": "builder", "detail": "x" * 2001}).status == 422
    assert api.get(f"{agents_path(workspace)}/progress/latest").json["data"] == []


def test_an_agent_key_reports_as_its_own_agent(api, user, workspace):
    api.token = user["token"]
    new_agent(api, workspace, "builder")
    api.token = agent_key_for(workspace, "builder")
    created = api.post(f"{agents_path(workspace)}/progress", {"message": "from the agent"})
    assert created.status == 201, created.body
    assert created.json["data"]["agent_name"] == "builder"
    assert heartbeat(api, workspace, "builder")["last_seen_at"] is not None


# --- context and prompt preview -----------------------------------------------------------------
def test_context_assembles_workspace_sprint_tasks_adrs_rules_and_memories(api, user, workspace):
    ws = workspace["id"]
    api.token = user["token"]
    assert api.patch(f"/api/v1/workspaces/{ws}", {"spec": "A todo app in Rust"}).status == 200
    new_agent(api, workspace, "builder", system_prompt="Be terse.")
    new_agent(api, workspace, "tester")
    sprint = api.post(f"/api/v1/workspaces/{ws}/sprints", {"name": "Launch", "goal": "Ship v1"})
    assert sprint.status == 201, sprint.body
    mine = api.post(
        f"/api/v1/workspaces/{ws}/tasks", {"title": "Build login", "assignee": "builder", "status": "in_progress"}
    ).json["data"]
    api.post(f"/api/v1/workspaces/{ws}/tasks", {"title": "Someone else's", "assignee": "tester"})
    adr = api.post(
        f"/api/v1/workspaces/{ws}/adrs",
        {
            "title": "Use SQLite",
            "context": "c",
            "decision": "SQLite everywhere",
            "rationale": "r",
            "status": "accepted",
        },
    )
    assert adr.status == 201, adr.body
    api.post(f"/api/v1/workspaces/{ws}/rules", {"content": "Never push to main", "scope": "builder"})
    api.post(f"/api/v1/workspaces/{ws}/rules", {"content": "Tester only", "scope": "tester"})
    api.put(f"{agents_path(workspace)}/builder/memories/framework", {"content": "Use Axum", "type": "project"})
    api.put(
        f"{agents_path(workspace)}/tester/memories/ci",
        {"content": "CI runs on push", "type": "reference", "shared": True},
    )
    api.put(f"{agents_path(workspace)}/tester/memories/private", {"content": "Tester secret", "type": "identity"})

    response = api.get(f"{agents_path(workspace)}/builder/context")
    assert response.status == 200, response.body
    context = response.json["data"]
    text = context["context"]
    assert context["agent_name"] == "builder"
    for expected in ("A todo app in Rust", "Launch", "Ship v1", mine["id"], "Build login", "SQLite everywhere"):
        assert expected in text
    for expected in ("Never push to main", "Use Axum", "CI runs on push"):
        assert expected in text
    for absent in ("Someone else's", "Tester only", "Tester secret", "Be terse."):
        assert absent not in text
    parts = context["parts"]
    assert [t["id"] for t in parts["tasks"]] == [mine["id"]]
    assert parts["sprint"]["goal"] == "Ship v1"
    assert parts["rules"] == ["Never push to main"]
    assert sorted(m["key"] for m in parts["memories"]) == ["ci", "framework"]
    assert context["length"] == len(text)
    assert context["token_estimate"] == math.ceil(len(text) / 4)


def test_prompt_preview_puts_the_system_prompt_first_and_compact_is_shorter(api, user, workspace):
    ws = workspace["id"]
    api.token = user["token"]
    new_agent(api, workspace, "builder", role="engineer", system_prompt="Be terse.")
    api.post(f"/api/v1/workspaces/{ws}/tasks", {"title": "Long one", "assignee": "builder", "description": "y" * 2000})
    full = api.get(f"{agents_path(workspace)}/builder/prompt-preview?mode=full").json["data"]
    compact = api.get(f"{agents_path(workspace)}/builder/prompt-preview").json["data"]
    assert compact["mode"] == "compact" and full["mode"] == "full"
    assert full["prompt"].startswith("Be terse.")
    assert full["role"] == "engineer"
    assert "y" * 2000 in full["prompt"] and "y" * 2000 not in compact["prompt"]
    assert compact["length"] < full["length"]
    assert full["token_estimate"] == math.ceil(full["length"] / 4)
    assert api.get(f"{agents_path(workspace)}/builder/prompt-preview?mode=huge").status == 422
    assert api.get(f"{agents_path(workspace)}/ghost/prompt-preview").status == 404


# --- templates ----------------------------------------------------------------------------------
def test_template_crud_with_unique_slugs_and_soft_delete(api, user, workspace):
    api.token = user["token"]
    created = api.post(
        templates_path(workspace),
        {"name": "Code Reviewer", "model": "claude-opus", "role": "reviewer", "tools": ["git"], "is_featured": True},
    )
    assert created.status == 201, created.body
    template = created.json["data"]
    assert template["id"].startswith("atpl_")
    assert template["slug"] == "code-reviewer"
    assert api.post(templates_path(workspace), {"name": "Code reviewer"}).status == 409
    api.post(templates_path(workspace), {"name": "Writer", "category": "docs"})
    featured = api.get(f"{templates_path(workspace)}?featured=true").json["data"]
    assert [t["name"] for t in featured] == ["Code Reviewer"]
    docs = api.get(f"{templates_path(workspace)}?category=docs").json["data"]
    assert [t["name"] for t in docs] == ["Writer"]
    path = f"{templates_path(workspace)}/{template['id']}"
    patched = api.patch(path, {"description": "Reviews PRs", "version": 1})
    assert patched.status == 200 and patched.json["data"]["version"] == 2
    assert api.patch(path, {"description": "stale", "version": 1}).status == 412
    assert api.get(path).json["data"]["description"] == "Reviews PRs"
    assert api.delete(path).status == 204
    assert api.get(path).status == 404
    assert api.delete(path).status == 404
    assert [t["name"] for t in api.get(templates_path(workspace)).json["data"]] == ["Writer"]
    assert api.post(templates_path(workspace), {"name": "Code Reviewer"}).status == 201  # slug free again
    actions = [r["action"] for r in audit_rows(workspace)]
    assert {"agent_template.created", "agent_template.updated", "agent_template.deleted"} <= set(actions)


def test_an_agent_created_from_a_template_takes_its_settings(api, user, workspace):
    api.token = user["token"]
    template = api.post(
        templates_path(workspace),
        {
            "name": "Reviewer",
            "role": "reviewer",
            "model": "claude-opus",
            "engine": "claude-code",
            "system_prompt": "Review",
        },
    ).json["data"]
    agent = new_agent(api, workspace, "rev", template_id=template["id"], model="claude-haiku")
    assert (agent["role"], agent["engine"], agent["system_prompt"]) == ("reviewer", "claude-code", "Review")
    assert agent["model"] == "claude-haiku"  # what the request says wins
    unknown = api.post(agents_path(workspace), {"name": "x", "template_id": "atpl_" + "0" * 26})
    assert unknown.status == 422


def test_template_bad_input_is_422(api, user, workspace):
    api.token = user["token"]
    assert api.post(templates_path(workspace), {"name": ""}).status == 422
    assert api.post(templates_path(workspace), {"name": "x", "slug": "Bad Slug"}).status == 422
    assert api.post(templates_path(workspace), {"name": "x", "config": {"blob": "z" * 9000}}).status == 422
    assert api.get(templates_path(workspace)).json["data"] == []
    assert api.get(f"{templates_path(workspace)}/atpl_missing").status == 404


# --- deployment: the stall timeout parameter and the scheduled check's sample event -------------
def test_the_stall_timeout_is_a_template_parameter_both_stall_checks_read(
    api, user, workspace, monkeypatch, heartbeat_in_the_past
):
    from agentplane.settings import get_settings
    from devstack import template

    parameter = template.load()["Parameters"]["AgentStallTimeoutSeconds"]
    assert int(parameter["Default"]) == 600
    for function in ("AgentsFunction", "AgentStallCheckFunction"):
        variables = template.function_environment(function)
        assert variables["AGENT_STALL_TIMEOUT_SECONDS"] == {"Ref": "AgentStallTimeoutSeconds"}, function
    # Deployed with a two-minute timeout, an agent silent for three minutes is stalled.
    monkeypatch.setenv("AGENT_STALL_TIMEOUT_SECONDS", "120")
    get_settings.cache_clear()
    try:
        api.token = user["token"]
        heartbeat_in_the_past(3)
        heartbeat(api, workspace, "builder")
        heartbeat_in_the_past.restore()
        result = api.post(f"{agents_path(workspace)}/check-stalls").json["data"]
        assert (result["count"], result["timeout_seconds"]) == (1, 120)
    finally:
        monkeypatch.delenv("AGENT_STALL_TIMEOUT_SECONDS")
        get_settings.cache_clear()


def test_the_scheduled_stall_check_sample_event_is_current_and_runs(
    api, user, workspace, lambdas, heartbeat_in_the_past, tmp_path
):
    from tools import events

    generated = events.scheduled_events()
    function, event = generated["agent-stall-check.json"]
    assert function.logical_id == "AgentStallCheckFunction"
    events.write(tmp_path)  # what `make events` writes to events/
    path = tmp_path / "agent-stall-check.json"
    assert path.is_file(), f"regenerate with: {events.REGENERATE}"
    on_disk = json.loads(path.read_text())
    assert on_disk == event, f"stale; regenerate with: {events.REGENERATE}"
    assert (on_disk["source"], on_disk["detail-type"]) == ("aws.scheduler", "Scheduled Event")
    api.token = user["token"]
    heartbeat_in_the_past(30)
    heartbeat(api, workspace, "builder")
    heartbeat_in_the_past.restore()
    # What `sam local invoke AgentStallCheckFunction -e events/agent-stall-check.json` does.
    result = lambdas.invoke(function, on_disk)
    assert result == {"marked": 1, "stalled": 1, "workspaces": 1}
    assert api.get(f"{agents_path(workspace)}/builder").json["data"]["status"] == "stalled"


# --- redaction ----------------------------------------------------------------------------------
def test_activity_and_progress_reports_are_stored_and_served_redacted(api, user, workspace):
    from agentplane import keys

    api.token = user["token"]
    put_common_env(api, workspace, DB_PASSWORD=ENV_SECRET)
    token = fake("slack bot token")
    new_agent(api, workspace, "builder")
    reported = heartbeat(api, workspace, "builder", activity=f"posting with x{token}")
    assert reported["activity"] == f"posting with x{MASK}"
    patched = api.patch(f"{agents_path(workspace)}/builder", {"activity": f"migrating {ENV_SECRET}"})
    assert patched.status == 200 and patched.json["data"]["activity"] == f"migrating {MASK}"
    report = api.post(
        f"{agents_path(workspace)}/progress",
        {"agent": "builder", "message": f"notified {token}", "detail": ENV_SECRET, "step": f"TOKEN_{token}"},
    )
    assert report.status == 201, report.body
    assert (report.json["data"]["message"], report.json["data"]["detail"]) == (f"notified {MASK}", MASK)

    paths = ("/builder/progress", "/progress/latest", "/builder", "")
    served = "".join(api.get(f"{agents_path(workspace)}{path}").body for path in paths)
    progress = raw_items.query(keys.agent_progress_pk(workspace["id"], "builder")).items
    stored = str(raw_agent(workspace, "builder")) + str(progress)
    for secret in (token, ENV_SECRET):
        assert secret not in served + report.body, secret
        assert secret not in stored, secret

"""User tasks: work for people, and the agent tasks they hold up."""

from __future__ import annotations

from typing import Any

from agentplane import raw_items
from tests.conftest import register_and_login


def user_tasks_path(ws: dict) -> str:
    return f"/api/v1/workspaces/{ws['id']}/user-tasks"


def tasks_path(ws: dict) -> str:
    return f"/api/v1/workspaces/{ws['id']}/tasks"


def new_user_task(api, ws: dict, **fields: Any) -> dict:
    response = api.post(user_tasks_path(ws), {"title": "Review deployment guide", **fields})
    assert response.status == 201, response.body
    return response.json["data"]


def new_task(api, ws: dict, **fields: Any) -> dict:
    response = api.post(tasks_path(ws), {"title": "Agent task", **fields})
    assert response.status == 201, response.body
    return response.json["data"]


def test_create_list_update_delete_round_trip(api, user, workspace):
    api.token = user["token"]
    agent_task = new_task(api, workspace)
    created = new_user_task(api, workspace, description="Read it", related_tasks=[agent_task["id"]])
    assert created["id"].startswith("utask_")
    assert created["status"] == "todo" and created["completed_at"] is None
    assert created["related_tasks"] == [agent_task["id"]]
    assert created["created_by"] == user["user"]["id"]

    listed = api.get(user_tasks_path(workspace)).json["data"]
    assert listed == [created]

    path = f"{user_tasks_path(workspace)}/{created['id']}"
    done = api.put(path, {"status": "done"})
    assert done.status == 200, done.body
    assert done.json["data"]["completed_at"] is not None
    assert done.json["data"]["version"] == 2
    reopened = api.put(path, {"status": "in_progress", "title": "Reread"}).json["data"]
    assert reopened["completed_at"] is None and reopened["title"] == "Reread"

    assert api.delete(path).status == 204
    assert api.get(user_tasks_path(workspace)).json["data"] == []
    assert api.delete(path).status == 404
    assert api.put(path, {"title": "gone"}).status == 404


def test_list_filters_by_status_and_paginates(api, user, workspace):
    api.token = user["token"]
    made = [new_user_task(api, workspace, title=f"U{i}", status="done" if i % 2 else "todo") for i in range(5)]
    assert [u["title"] for u in api.get(f"{user_tasks_path(workspace)}?status=done").json["data"]] == ["U1", "U3"]
    seen: list[str] = []
    cursor = None
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        response = api.get(f"{user_tasks_path(workspace)}{query}")
        assert response.status == 200
        seen += [u["id"] for u in response.json["data"]]
        cursor = response.json["meta"]["next_cursor"]
        if not cursor:
            break
    assert seen == [u["id"] for u in made]
    assert api.get(f"{user_tasks_path(workspace)}?status=blocked").status == 422


def test_user_tasks_are_not_agent_tasks(api, user, workspace):
    api.token = user["token"]
    new_user_task(api, workspace)
    assert api.get(tasks_path(workspace)).json["data"] == []


def test_stale_version_is_412_and_changes_nothing(api, user, workspace):
    api.token = user["token"]
    created = new_user_task(api, workspace)
    path = f"{user_tasks_path(workspace)}/{created['id']}"
    assert api.put(path, {"title": "B", "version": 1}).status == 200
    stale = api.put(path, {"title": "C"}, headers={"If-Match": "1"})
    assert stale.status == 412
    assert api.get(user_tasks_path(workspace)).json["data"][0]["title"] == "B"


def test_unknown_related_task_is_422_and_writes_nothing(api, user, workspace):
    api.token = user["token"]
    ghost = "task_" + "0" * 26
    response = api.post(user_tasks_path(workspace), {"title": "x", "related_tasks": [ghost]})
    assert response.status == 422
    assert response.json["errors"][0]["field"] == "related_tasks"
    assert api.get(user_tasks_path(workspace)).json["data"] == []
    created = new_user_task(api, workspace)
    assert api.put(f"{user_tasks_path(workspace)}/{created['id']}", {"related_tasks": [ghost]}).status == 422


def test_bad_input_is_a_problem_and_writes_nothing(api, user, workspace):
    api.token = user["token"]
    assert api.post(user_tasks_path(workspace), {}).status == 422
    assert api.post(user_tasks_path(workspace), {"title": "x" * 201}).status == 422
    assert api.post(user_tasks_path(workspace), {"title": "x", "description": "y" * 2001}).status == 422
    assert api.post(user_tasks_path(workspace), {"title": "x", "status": "review"}).status == 422
    assert api.post(user_tasks_path(workspace), {"title": "x", "related_tasks": ["nope"]}).status == 422
    assert api.post(user_tasks_path(workspace), raw="{", headers={"Content-Type": "application/json"}).status == 400
    assert api.get(user_tasks_path(workspace)).json["data"] == []


def test_blockers_are_open_user_tasks_holding_up_open_tasks_of_the_active_sprint(api, user, workspace):
    api.token = user["token"]
    # No active sprint and none asked for: nothing is held up.
    assert api.get(f"{user_tasks_path(workspace)}/blockers").json["data"] == []
    for number in (1, 2):
        assert api.post(f"/api/v1/workspaces/{workspace['id']}/sprints", {"status": "planning"}).status == 201
    assert api.post(f"/api/v1/workspaces/{workspace['id']}/sprints", {"number": 3}).status == 201
    deploy = new_task(api, workspace, title="Deploy to prod", owner="builder", sprint=3)
    docs = new_task(api, workspace, title="Docs", sprint=4)
    finished = new_task(api, workspace, title="Finished", status="done")
    holding = new_user_task(api, workspace, title="Get prod credentials", related_tasks=[deploy["id"], finished["id"]])
    new_user_task(api, workspace, title="Already done", status="done", related_tasks=[docs["id"]])
    new_user_task(api, workspace, title="Only a done task", related_tasks=[finished["id"]])
    new_user_task(api, workspace, title="Unrelated")
    other = new_user_task(api, workspace, title="Write docs outline", related_tasks=[docs["id"]])

    response = api.get(f"{user_tasks_path(workspace)}/blockers")
    assert response.status == 200, response.body
    blockers = response.json["data"]
    assert [b["id"] for b in blockers] == [holding["id"]]  # sprint 3 is the active one
    held = blockers[0]["blocked_sprint_tasks"]
    assert held == [
        {
            "id": deploy["id"],
            "title": "Deploy to prod",
            "status": "todo",
            "priority": "p1",
            "owner": "builder",
            "assignee": None,
            "sprint": 3,
        }
    ]
    in_sprint_four = api.get(f"{user_tasks_path(workspace)}/blockers?sprint=4").json["data"]
    assert [b["id"] for b in in_sprint_four] == [other["id"]]

    api.put(f"{user_tasks_path(workspace)}/{holding['id']}", {"status": "done"})
    assert api.get(f"{user_tasks_path(workspace)}/blockers").json["data"] == []
    api.delete(f"{tasks_path(workspace)}/{docs['id']}")
    assert api.get(f"{user_tasks_path(workspace)}/blockers?sprint=4").json["data"] == []


def test_blockers_paginate_with_a_bound_cursor(api, user, workspace):
    api.token = user["token"]
    assert api.post(f"/api/v1/workspaces/{workspace['id']}/sprints", {}).status == 201
    task = new_task(api, workspace, sprint=1)
    made = [new_user_task(api, workspace, title=f"U{i}", related_tasks=[task["id"]])["id"] for i in range(3)]
    first = api.get(f"{user_tasks_path(workspace)}/blockers?limit=2")
    assert first.json["meta"]["limit"] == 2
    cursor = first.json["meta"]["next_cursor"]
    second = api.get(f"{user_tasks_path(workspace)}/blockers?limit=2&cursor={cursor}")
    assert [b["id"] for b in first.json["data"] + second.json["data"]] == made
    assert api.get(f"{user_tasks_path(workspace)}?limit=2&cursor={cursor}").status == 400
    assert api.get(f"{user_tasks_path(workspace)}/blockers?limit=51").status == 422


def test_user_task_changes_are_audited(api, user, workspace):
    from agentplane import keys

    api.token = user["token"]
    created = new_user_task(api, workspace)
    api.put(f"{user_tasks_path(workspace)}/{created['id']}", {"status": "done"})
    api.delete(f"{user_tasks_path(workspace)}/{created['id']}")
    rows = raw_items.query(keys.audit_pk(workspace["id"]), limit=50).items
    actions = [r["action"] for r in rows if r["target_id"] == created["id"]]
    assert actions == ["user_task.created", "user_task.updated", "user_task.deleted"]


def test_non_member_gets_404_and_viewer_cannot_write(api, user, workspace):
    from agentplane.auth.scopes import Role
    from agentplane.ids import iso
    from agentplane.logic.workspaces import member_item

    api.token = user["token"]
    created = new_user_task(api, workspace)
    path = f"{user_tasks_path(workspace)}/{created['id']}"
    stranger = register_and_login(api)
    api.token = stranger["token"]
    assert api.get(user_tasks_path(workspace)).status == 404
    assert api.get(f"{user_tasks_path(workspace)}/blockers").status == 404
    assert api.put(path, {"title": "x"}).status == 404
    assert api.delete(path).status == 404

    viewer = register_and_login(api)
    raw_items.put(member_item(workspace["id"], "Acme", viewer["user"]["id"], Role.viewer, iso()))
    api.token = viewer["token"]
    assert api.get(user_tasks_path(workspace)).status == 200
    assert api.post(user_tasks_path(workspace), {"title": "x"}).status == 403
    assert api.put(path, {"title": "x"}).status == 403
    assert api.delete(path).status == 403
    api.token = user["token"]
    assert api.get(user_tasks_path(workspace)).json["data"][0]["title"] == created["title"]

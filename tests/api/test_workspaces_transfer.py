"""Workspace export and import (merge | replace)."""

from __future__ import annotations

from typing import Any

from tests.api.test_workspaces import audit_actions, join, register_and_login, ws_path


def export(api, person: dict[str, Any], ws: dict[str, Any]) -> dict[str, Any]:
    response = api.get(f"{ws_path(ws)}/export", token=person["token"])
    assert response.status == 200, response.body
    return response.json["data"]


def do_import(api, person: dict[str, Any], ws: dict[str, Any], document: dict[str, Any]):
    return api.post(f"{ws_path(ws)}/import", document, token=person["token"])


def task_ids(api, person: dict[str, Any], ws: dict[str, Any]) -> list[str]:
    return [t["id"] for t in api.get(f"{ws_path(ws)}/tasks?limit=200", token=person["token"]).json["data"]]


def seed(api, owner: dict[str, Any], ws: dict[str, Any]) -> dict[str, Any]:
    """A workspace with settings, a second member, a team and two dependent tasks."""
    api.token = owner["token"]
    api.patch(ws_path(ws), {"description": "Exported", "auto_push": True})
    member = join(api, owner, ws, "member")
    team = api.post(f"{ws_path(ws)}/teams", {"name": "Core"}).json["data"]
    api.post(f"{ws_path(ws)}/teams/{team['id']}/members", {"user_id": member["user"]["id"], "role": "admin"})
    first = api.post(f"{ws_path(ws)}/tasks", {"title": "Design", "sprint": 1, "labels": ["ux"]}).json["data"]
    second = api.post(
        f"{ws_path(ws)}/tasks", {"title": "Build", "blocked_by": [first["id"]], "status": "in_progress"}
    ).json["data"]
    return {"member": member, "team": team, "tasks": [first, second]}


def test_export_carries_settings_members_teams_and_tasks(api, user, workspace):
    seeded = seed(api, user, workspace)
    document = export(api, user, workspace)
    assert document["version"] == 1 and document["truncated"] == []
    assert document["workspace"]["description"] == "Exported" and document["workspace"]["auto_push"] is True
    assert {m["user_id"]: m["role"] for m in document["members"]} == {
        user["user"]["id"]: "owner",
        seeded["member"]["user"]["id"]: "member",
    }
    assert document["teams"] == [
        {
            "id": seeded["team"]["id"],
            "name": "Core",
            "description": "",
            "members": [{"user_id": seeded["member"]["user"]["id"], "role": "admin"}],
        }
    ]
    exported = {t["id"]: t for t in document["tasks"]}
    assert list(exported) == [t["id"] for t in seeded["tasks"]]
    assert exported[seeded["tasks"][1]["id"]]["blocked_by"] == [seeded["tasks"][0]["id"]]
    assert "GSI1PK" not in str(document) and "search_text" not in str(document)


def test_export_never_contains_common_env_values(api, user, workspace):
    api.put(f"{ws_path(workspace)}/common-env", {"variables": {"API_KEY": "sk-secret-value-1"}}, token=user["token"])
    assert "sk-secret-value-1" not in str(export(api, user, workspace))


def test_export_round_trips_into_another_workspace(api, user, workspace):
    seeded = seed(api, user, workspace)
    document = export(api, user, workspace)
    target = api.post("/api/v1/workspaces", {"name": "Copy"}, token=user["token"]).json["data"]
    # The team's member must belong to the target workspace too.
    api.post(f"{ws_path(target)}/members", {"user_id": seeded["member"]["user"]["id"]}, token=user["token"])
    result = do_import(api, user, target, document)
    assert result.status == 200, result.body
    stats = result.json["data"]["stats"]
    assert stats["tasks_created"] == 2 and stats["teams_created"] == 1 and stats["team_members_added"] == 1
    assert stats["settings_updated"] == 1
    copied = api.get(ws_path(target), token=user["token"]).json["data"]
    assert copied["description"] == "Exported" and copied["auto_push"] is True and copied["name"] == "Acme"
    assert task_ids(api, user, target) == [t["id"] for t in seeded["tasks"]]
    built = api.get(f"{ws_path(target)}/tasks/{seeded['tasks'][1]['id']}", token=user["token"]).json["data"]
    assert built["status"] == "in_progress" and built["blocked_by"] == [seeded["tasks"][0]["id"]]
    in_progress = api.get(f"{ws_path(target)}/tasks?status=in_progress", token=user["token"]).json["data"]
    assert [t["id"] for t in in_progress] == [seeded["tasks"][1]["id"]]
    team = api.get(f"{ws_path(target)}/teams/{seeded['team']['id']}", token=user["token"]).json["data"]
    assert team["member_count"] == 1
    assert any(r["action"] == "workspace.imported" for r in audit_actions(target))


def test_importing_the_same_document_twice_updates_instead_of_duplicating(api, user, workspace):
    seed(api, user, workspace)
    document = export(api, user, workspace)
    again = do_import(api, user, workspace, document)
    assert again.status == 200, again.body
    stats = again.json["data"]["stats"]
    assert stats.get("tasks_created", 0) == 0 and stats["tasks_updated"] == 2
    assert stats.get("teams_created", 0) == 0 and stats["teams_updated"] == 1
    assert len(task_ids(api, user, workspace)) == 2
    assert api.get(f"{ws_path(workspace)}/teams", token=user["token"]).json["data"][0]["member_count"] == 1


def test_merge_updates_fields_by_id_and_keeps_what_the_document_leaves_out(api, user, workspace):
    seeded = seed(api, user, workspace)
    first = seeded["tasks"][0]
    document = {"mode": "merge", "tasks": [{"id": first["id"], "title": "Design v2"}]}
    assert do_import(api, user, workspace, document).status == 200
    task = api.get(f"{ws_path(workspace)}/tasks/{first['id']}", token=user["token"]).json["data"]
    assert (task["title"], task["labels"], task["sprint"], task["version"]) == ("Design v2", ["ux"], 1, 2)


def test_replace_removes_tasks_and_teams_not_in_the_document(api, user, workspace):
    seeded = seed(api, user, workspace)
    keep = seeded["tasks"][0]
    document = {
        "mode": "replace",
        "teams": [{"id": "team_" + "0" * 26, "name": "Fresh"}],
        "tasks": [{"id": keep["id"], "title": "Kept"}],
    }
    result = do_import(api, user, workspace, document)
    assert result.status == 200, result.body
    stats = result.json["data"]["stats"]
    assert stats["tasks_removed"] == 1 and stats["teams_removed"] == 1 and stats["team_members_removed"] == 1
    assert task_ids(api, user, workspace) == [keep["id"]]
    kept = api.get(f"{ws_path(workspace)}/tasks/{keep['id']}", token=user["token"]).json["data"]
    assert kept["title"] == "Kept" and kept["labels"] == [] and kept["sprint"] is None
    assert api.get(f"{ws_path(workspace)}/tasks/{seeded['tasks'][1]['id']}", token=user["token"]).status == 404
    teams = api.get(f"{ws_path(workspace)}/teams", token=user["token"]).json["data"]
    assert [t["name"] for t in teams] == ["Fresh"]


def test_replace_leaves_kinds_the_document_omits(api, user, workspace):
    seeded = seed(api, user, workspace)
    assert do_import(api, user, workspace, {"mode": "replace", "tasks": []}).status == 200
    assert task_ids(api, user, workspace) == []
    assert [t["id"] for t in api.get(f"{ws_path(workspace)}/teams", token=user["token"]).json["data"]] == [
        seeded["team"]["id"]
    ]


def test_invalid_document_is_refused_whole_and_writes_nothing(api, user, workspace):
    seed(api, user, workspace)
    before = export(api, user, workspace)
    stranger = register_and_login(api)
    good_task = {"id": "task_" + "1" * 26, "title": "Fine"}
    cases = [
        {"version": 2, "tasks": [good_task]},
        {"mode": "overwrite", "tasks": [good_task]},
        {"tasks": [good_task, good_task]},
        {"tasks": [good_task, {"id": "task_" + "2" * 26, "title": ""}]},
        {"tasks": [good_task, {"id": "not-a-task", "title": "x"}]},
        {"tasks": [good_task, {"id": "task_" + "3" * 26, "title": "x", "blocked_by": ["task_" + "9" * 26]}]},
        {"tasks": [good_task, {"id": "task_" + "4" * 26, "title": "x", "story_id": "story_" + "9" * 26}]},
        {
            "tasks": [good_task],
            "teams": [{"id": "team_" + "5" * 26, "name": "T", "members": [{"user_id": stranger["user"]["id"]}]}],
        },
        {"tasks": [good_task], "repositories": []},
    ]
    for document in cases:
        refused = do_import(api, user, workspace, document)
        assert refused.status == 422, (document, refused.body)
        assert refused.header("content-type") == "application/problem+json"
    after = export(api, user, workspace)
    assert after["tasks"] == before["tasks"] and after["teams"] == before["teams"]
    assert not any(r["action"] == "workspace.imported" for r in audit_actions(workspace))


def test_large_import_is_written_in_transactions_of_at_most_100_items(api, user, workspace):
    from agentplane.ids import new_id

    tasks = [{"id": new_id("task"), "title": f"Task {i}"} for i in range(250)]
    result = do_import(api, user, workspace, {"tasks": tasks})
    assert result.status == 200, result.body
    assert result.json["data"]["transactions"] == 3
    assert result.json["data"]["stats"]["tasks_created"] == 250
    ids: list[str] = []
    cursor = None
    while True:
        query = "?limit=200" + (f"&cursor={cursor}" if cursor else "")
        body = api.get(f"{ws_path(workspace)}/tasks{query}", token=user["token"]).json
        ids += [t["id"] for t in body["data"]]
        cursor = body["meta"]["next_cursor"]
        if not cursor:
            break
    assert sorted(ids) == sorted(t["id"] for t in tasks)
    parts = [r for r in audit_actions(workspace) if r["action"] == "workspace.imported"]
    assert sorted(r["details"]["part"] for r in parts) == [1, 2, 3]


def test_import_needs_admin_and_export_needs_membership(api, user, workspace):
    member = join(api, user, workspace, "member")
    viewer = join(api, user, workspace, "viewer")
    assert do_import(api, member, workspace, {"tasks": []}).status == 403
    assert do_import(api, viewer, workspace, {"tasks": []}).status == 403
    assert api.get(f"{ws_path(workspace)}/export", token=viewer["token"]).status == 200
    stranger = register_and_login(api)
    assert api.get(f"{ws_path(workspace)}/export", token=stranger["token"]).status == 404
    assert do_import(api, stranger, workspace, {"tasks": []}).status == 404


def test_export_stops_at_its_bounds_and_says_so(api, user, workspace, monkeypatch):
    from agentplane.logic import transfer

    monkeypatch.setattr(transfer, "MAX_EXPORT_TASKS", 2)
    api.token = user["token"]
    for i in range(3):
        api.post(f"{ws_path(workspace)}/tasks", {"title": f"T{i}"})
    document = export(api, user, workspace)
    assert len(document["tasks"]) == 2 and document["truncated"] == ["tasks"]


def test_imported_tasks_count_in_sprint_analytics_and_reach_their_agents_queue(api, user, workspace):
    api.token = user["token"]
    assert api.post(f"{ws_path(workspace)}/sprints", {}).status == 201
    todo_id, done_id = "task_" + "1" * 26, "task_" + "2" * 26
    document = {
        "tasks": [
            {"id": todo_id, "title": "Imported todo", "sprint": 1, "assignee": "builder", "story_points": 3},
            {"id": done_id, "title": "Imported done", "sprint": 1, "status": "done", "story_points": 5},
        ]
    }
    assert do_import(api, user, workspace, document).status == 200
    summary = api.get(f"{ws_path(workspace)}/sprints/1/analytics").json["data"]["summary"]
    assert (summary["total"], summary["done"], summary["todo"]) == (2, 1, 1)
    mine = api.get(f"{ws_path(workspace)}/tasks?next=true&assignee=builder").json["data"]
    assert [t["id"] for t in mine] == [todo_id]

    # Replacing with a document without the todo task takes it out of the figures and the queue.
    replaced = do_import(api, user, workspace, {"mode": "replace", "tasks": [document["tasks"][1]]})
    assert replaced.status == 200, replaced.body
    summary = api.get(f"{ws_path(workspace)}/sprints/1/analytics").json["data"]["summary"]
    assert (summary["total"], summary["done"], summary["todo"]) == (1, 1, 0)
    assert api.get(f"{ws_path(workspace)}/tasks?next=true&assignee=builder").json["data"] == []


TOBAN_DOCUMENT = {
    "version": 1,
    "exported_at": "2026-01-01T00:00:00.000Z",
    "workspace": {"name": "My Project", "description": "...", "language": "en", "workflow": "scrum"},
    "agents": [
        {"name": "builder", "engine": "claude-code", "execution_mode": "local", "system_prompt": None},
        {"name": "reviewer", "engine": "codex", "execution_mode": "local", "system_prompt": "Review carefully"},
    ],
    "task_templates": [
        {"title": "Setup repo", "description": "...", "priority": "p0", "owner": "builder", "labels": "[]"},
        {"title": "Write the README", "description": "", "priority": "p2", "owner": None, "labels": '["docs"]'},
    ],
}


def test_a_toban_document_with_agents_and_task_templates_imports_and_exports_again(api, user, workspace):
    imported = do_import(api, user, workspace, TOBAN_DOCUMENT)
    assert imported.status == 200, imported.body
    stats = imported.json["data"]["stats"]
    assert stats["agents_imported"] == 2 and stats["templates_imported"] == 2
    agents = api.get(f"{ws_path(workspace)}/agents", token=user["token"]).json["data"]
    assert [(a["name"], a["engine"]) for a in agents] == [("builder", "claude-code"), ("reviewer", "codex")]

    document = export(api, user, workspace)
    assert document["agents"] == [
        {"name": "builder", "role": "builder", "engine": "claude-code", "execution_mode": "local"},
        {"name": "reviewer", "role": "reviewer", "engine": "codex", "execution_mode": "local",
         "system_prompt": "Review carefully"},
    ]  # fmt: skip
    assert sorted(document["task_templates"], key=lambda t: t["title"]) == [
        {"title": "Setup repo", "description": "...", "priority": "p0", "owner": "builder", "labels": []},
        {"title": "Write the README", "description": "", "priority": "p2", "labels": ["docs"]},
    ]
    again = do_import(api, user, workspace, TOBAN_DOCUMENT).json["data"]["stats"]
    assert again.get("agents_imported", 0) == 0 and again.get("templates_imported", 0) == 0  # converged


def test_an_export_never_carries_an_agents_key_or_config(api, user, workspace):
    api.token = user["token"]
    api.post(f"{ws_path(workspace)}/agents", {"name": "builder"})
    configured = api.put(f"{ws_path(workspace)}/agents/builder/config", {"api_key": "sk-secret-value-12345678901234"})
    assert configured.status == 200, configured.body
    key = api.post(f"{ws_path(workspace)}/api-keys", {"name": "agent", "agent": "builder"}).json["data"]["key"]
    text = api.get(f"{ws_path(workspace)}/export").body
    assert "sk-secret-value" not in text and key not in text
    assert "config" not in export(api, user, workspace)["agents"][0]


def test_replace_removes_templates_not_in_the_document_but_never_an_agent(api, user, workspace):
    assert do_import(api, user, workspace, TOBAN_DOCUMENT).status == 200
    smaller = {"mode": "replace", "agents": [], "task_templates": TOBAN_DOCUMENT["task_templates"][:1]}
    stats = do_import(api, user, workspace, smaller).json["data"]["stats"]
    assert stats["templates_removed"] == 1
    document = export(api, user, workspace)
    assert [t["title"] for t in document["task_templates"]] == ["Setup repo"]
    assert [a["name"] for a in document["agents"]] == ["builder", "reviewer"]


def test_a_document_with_a_bad_agent_or_template_imports_nothing(api, user, workspace):
    bad = {**TOBAN_DOCUMENT, "agents": [{"name": "builder"}, {"name": "builder"}]}
    assert do_import(api, user, workspace, bad).status == 422
    worse = {**TOBAN_DOCUMENT, "task_templates": [{"title": "x", "labels": "not json"}]}
    assert do_import(api, user, workspace, worse).status == 422
    document = export(api, user, workspace)
    assert document["agents"] == [] and document["task_templates"] == []

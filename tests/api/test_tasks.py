from __future__ import annotations

from agentplane import raw_items
from tests.conftest import register_and_login


def tasks_path(ws: dict) -> str:
    return f"/api/v1/workspaces/{ws['id']}/tasks"


def test_create_then_get_task_round_trips_fields_and_infers_type(api, user, workspace):
    api.token = user["token"]
    created = api.post(tasks_path(workspace), {"title": "Fix crash on login", "priority": "p0", "labels": ["auth"]})
    assert created.status == 201, created.body
    task = created.json["data"]
    assert task["id"].startswith("task_")
    assert task["type"] == "bug"
    assert task["status"] == "todo"
    assert task["version"] == 1
    fetched = api.get(f"{tasks_path(workspace)}/{task['id']}")
    assert fetched.status == 200
    assert fetched.json["data"] == task


def test_list_tasks_paginates_with_signed_cursor(api, user, workspace):
    api.token = user["token"]
    ids = [api.post(tasks_path(workspace), {"title": f"Task {i}"}).json["data"]["id"] for i in range(5)]
    first = api.get(f"{tasks_path(workspace)}?limit=2")
    assert first.status == 200
    assert first.json["meta"]["limit"] == 2
    seen = [t["id"] for t in first.json["data"]]
    cursor = first.json["meta"]["next_cursor"]
    while cursor:
        more = api.get(f"{tasks_path(workspace)}?limit=2&cursor={cursor}")
        assert more.status == 200
        seen += [t["id"] for t in more.json["data"]]
        cursor = more.json["meta"]["next_cursor"]
    assert seen == ids


def test_filter_by_status(api, user, workspace):
    api.token = user["token"]
    api.post(tasks_path(workspace), {"title": "A"})
    doing = api.post(tasks_path(workspace), {"title": "B", "status": "in_progress"}).json["data"]
    listed = api.get(f"{tasks_path(workspace)}?status=in_progress").json["data"]
    assert [t["id"] for t in listed] == [doing["id"]]


def test_patch_with_stale_version_is_412_and_changes_nothing(api, user, workspace):
    api.token = user["token"]
    task = api.post(tasks_path(workspace), {"title": "A"}).json["data"]
    ok = api.patch(f"{tasks_path(workspace)}/{task['id']}", {"title": "B", "version": 1})
    assert ok.status == 200 and ok.json["data"]["version"] == 2
    stale = api.patch(f"{tasks_path(workspace)}/{task['id']}", {"title": "C", "version": 1})
    assert stale.status == 412
    assert stale.header("content-type") == "application/problem+json"
    assert api.get(f"{tasks_path(workspace)}/{task['id']}").json["data"]["title"] == "B"


def test_soft_deleted_task_is_404_and_leaves_lists(api, user, workspace):
    api.token = user["token"]
    task = api.post(tasks_path(workspace), {"title": "A"}).json["data"]
    assert api.delete(f"{tasks_path(workspace)}/{task['id']}").status == 204
    assert api.get(f"{tasks_path(workspace)}/{task['id']}").status == 404
    assert api.get(tasks_path(workspace)).json["data"] == []
    assert api.delete(f"{tasks_path(workspace)}/{task['id']}").status == 404


def test_non_member_gets_404_for_everything_in_the_workspace(api, user, workspace):
    api.token = user["token"]
    task = api.post(tasks_path(workspace), {"title": "secret"}).json["data"]
    stranger = register_and_login(api)
    api.token = stranger["token"]
    assert api.get(tasks_path(workspace)).status == 404
    assert api.get(f"{tasks_path(workspace)}/{task['id']}").status == 404
    assert api.post(tasks_path(workspace), {"title": "x"}).status == 404


def test_bad_input_is_a_problem_and_writes_nothing(api, user, workspace):
    api.token = user["token"]
    malformed = api.post(tasks_path(workspace), raw="{not json", headers={"Content-Type": "application/json"})
    assert malformed.status == 400
    assert malformed.json["type"].endswith("/bad-request")
    wrong_type = api.post(tasks_path(workspace), {"title": 5, "priority": "urgent"})
    assert wrong_type.status == 422
    assert {e["field"] for e in wrong_type.json["errors"]} >= {"title", "priority"}
    unknown = api.post(tasks_path(workspace), {"title": "x", "colour": "red"})
    assert unknown.status == 422
    too_long = api.post(tasks_path(workspace), {"title": "x" * 301})
    assert too_long.status == 422
    assert api.get(tasks_path(workspace)).json["data"] == []


def test_foreign_cursor_is_400(api, user, workspace):
    api.token = user["token"]
    for i in range(3):
        api.post(tasks_path(workspace), {"title": f"t{i}"})
    cursor = api.get(f"{tasks_path(workspace)}?limit=1").json["meta"]["next_cursor"]
    other = api.post("/api/v1/workspaces", {"name": "Other"})
    if other.status == 201:
        ws2 = other.json["data"]
        assert api.get(f"{tasks_path(ws2)}?cursor={cursor}").status == 400
    assert api.get(f"{tasks_path(workspace)}?status=done&cursor={cursor}").status == 400
    assert api.get(f"{tasks_path(workspace)}?cursor={cursor[:-2]}xx").status == 400


def test_missing_or_forged_token_is_401(api, workspace):
    assert api.get(tasks_path(workspace), token="").status == 401
    forged = api.get(tasks_path(workspace), token="aps_forged")
    assert forged.status == 401
    assert forged.header("content-type") == "application/problem+json"


def test_create_writes_an_audit_row_in_the_same_transaction(api, user, workspace):
    from agentplane import keys

    api.token = user["token"]
    task = api.post(tasks_path(workspace), {"title": "A"}).json["data"]
    rows = raw_items.query(keys.audit_pk(workspace["id"]), limit=10).items
    assert any(r["action"] == "task.created" and r["target_id"] == task["id"] for r in rows)


def test_every_response_carries_rate_limit_headers(api, user, workspace):
    api.token = user["token"]
    response = api.get(tasks_path(workspace))
    assert response.header("X-RateLimit-Limit") == "600"
    assert int(response.header("X-RateLimit-Remaining")) < 600
    assert int(response.header("X-RateLimit-Reset")) > 0


def test_ids_that_were_never_minted_are_404_and_never_reach_the_table(api, user, workspace, monkeypatch):
    import pytest

    from agentplane.access import workspace_access
    from agentplane.auth.tokens import resolve_principal
    from agentplane.errors import NotFound
    from agentplane.logic import stories, tasks, user_tasks
    from agentplane.models.tasks import ReviewAction, ReviewReportCreate, StoryUpdate, TaskUpdate, UserTaskUpdate
    from tests.dynamo_limits import enforce_key_limits

    enforce_key_limits(monkeypatch)
    access = workspace_access(resolve_principal(user["token"]), workspace["id"], "tasks:write")
    huge = "task_" + "x" * 3000
    calls = [
        lambda: tasks.get_task(access, huge),
        lambda: tasks.update_task(access, huge, TaskUpdate(title="x")),
        lambda: tasks.delete_task(access, huge),
        lambda: tasks.submit_review_report(access, huge, ReviewReportCreate(summary="x")),
        lambda: tasks.approve_task(access, huge),
        lambda: tasks.reject_task(access, huge, "no"),
        lambda: tasks.review_action(access, huge, ReviewAction(action="fix")),
        lambda: stories.get_story(access, "story_" + "x" * 3000),
        lambda: stories.update_story(access, "story_" + "x" * 3000, StoryUpdate(title="x")),
        lambda: stories.delete_story(access, "story_" + "x" * 3000),
        lambda: stories.list_story_tasks(access, "story_" + "x" * 3000, limit=5, cursor=None),
        lambda: user_tasks.update_user_task(access, "utask_" + "x" * 3000, UserTaskUpdate(title="x")),
        lambda: user_tasks.delete_user_task(access, "utask_" + "x" * 3000),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            call()

    api.token = user["token"]
    ws = f"/api/v1/workspaces/{workspace['id']}"
    for path in (f"{ws}/tasks/task_1", f"{ws}/tasks/TASK_{'0' * 26}", f"{ws}/stories/story_x", f"{ws}/tasks/{huge}"):
        response = api.get(path)
        assert response.status == 404, path
        assert response.header("content-type") == "application/problem+json"
    assert api.put(f"{ws}/user-tasks/utask_1", {"title": "x"}).status == 404

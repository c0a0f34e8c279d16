"""Stories: groups of tasks, each story's tasks found through link items written with the task."""

from __future__ import annotations

from typing import Any

from agentplane import raw_items
from tests.conftest import register_and_login


def stories_path(ws: dict) -> str:
    return f"/api/v1/workspaces/{ws['id']}/stories"


def tasks_path(ws: dict) -> str:
    return f"/api/v1/workspaces/{ws['id']}/tasks"


def new_story(api, ws: dict, **fields: Any) -> dict:
    response = api.post(stories_path(ws), {"title": "Story", "create_task": False, **fields})
    assert response.status == 201, response.body
    return response.json["data"]


def story_task_ids(api, ws: dict, story_id: str) -> list[str]:
    response = api.get(f"{stories_path(ws)}/{story_id}/tasks")
    assert response.status == 200, response.body
    return [t["id"] for t in response.json["data"]]


def test_creating_a_story_creates_its_builder_task(api, user, workspace):
    api.token = user["token"]
    response = api.post(
        stories_path(workspace), {"title": "Sign-in with GitHub", "description": "OAuth", "sprint": 1, "priority": "p0"}
    )
    assert response.status == 201, response.body
    story = response.json["data"]
    assert story["id"].startswith("story_")
    assert story["status"] == "todo" and story["version"] == 1
    [task] = story["tasks"]
    assert task["story_id"] == story["id"]
    assert task["title"] == "Sign-in with GitHub" and task["owner"] == "builder"
    assert task["sprint"] == 1 and task["priority"] == "p0"
    assert api.get(f"{tasks_path(workspace)}/{task['id']}").json["data"] == task
    fetched = api.get(f"{stories_path(workspace)}/{story['id']}").json["data"]
    assert fetched == story
    assert story_task_ids(api, workspace, story["id"]) == [task["id"]]


def test_story_without_a_task(api, user, workspace):
    api.token = user["token"]
    story = new_story(api, workspace)
    assert story["tasks"] == []
    assert api.get(tasks_path(workspace)).json["data"] == []


def test_tasks_join_move_between_and_leave_stories(api, user, workspace):
    api.token = user["token"]
    first = new_story(api, workspace, title="First")
    second = new_story(api, workspace, title="Second")
    task = api.post(tasks_path(workspace), {"title": "T", "story_id": first["id"]}).json["data"]
    assert task["story_id"] == first["id"]
    assert story_task_ids(api, workspace, first["id"]) == [task["id"]]

    moved = api.patch(f"{tasks_path(workspace)}/{task['id']}", {"story_id": second["id"]})
    assert moved.status == 200 and moved.json["data"]["story_id"] == second["id"]
    assert story_task_ids(api, workspace, first["id"]) == []
    assert story_task_ids(api, workspace, second["id"]) == [task["id"]]

    left = api.patch(f"{tasks_path(workspace)}/{task['id']}", {"story_id": None})
    assert left.status == 200 and left.json["data"]["story_id"] is None
    assert story_task_ids(api, workspace, second["id"]) == []


def test_deleted_task_leaves_its_story(api, user, workspace):
    api.token = user["token"]
    story = new_story(api, workspace)
    task = api.post(tasks_path(workspace), {"title": "T", "story_id": story["id"]}).json["data"]
    api.delete(f"{tasks_path(workspace)}/{task['id']}")
    assert story_task_ids(api, workspace, story["id"]) == []
    assert api.get(f"{stories_path(workspace)}/{story['id']}").json["data"]["tasks"] == []


def test_unknown_story_is_422_and_writes_nothing(api, user, workspace):
    api.token = user["token"]
    response = api.post(tasks_path(workspace), {"title": "T", "story_id": "story_" + "0" * 26})
    assert response.status == 422
    assert response.json["errors"][0]["field"] == "story_id"
    assert api.post(tasks_path(workspace), {"title": "T", "story_id": "not-a-story"}).status == 422
    assert api.get(tasks_path(workspace)).json["data"] == []


def test_story_tasks_paginate(api, user, workspace):
    api.token = user["token"]
    story = new_story(api, workspace)
    ids = [
        api.post(tasks_path(workspace), {"title": f"T{i}", "story_id": story["id"]}).json["data"]["id"]
        for i in range(5)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        response = api.get(f"{stories_path(workspace)}/{story['id']}/tasks{query}")
        assert response.status == 200
        seen += [t["id"] for t in response.json["data"]]
        cursor = response.json["meta"]["next_cursor"]
        if not cursor:
            break
    assert seen == ids
    other = new_story(api, workspace)
    first = api.get(f"{stories_path(workspace)}/{story['id']}/tasks?limit=2").json["meta"]["next_cursor"]
    assert api.get(f"{stories_path(workspace)}/{other['id']}/tasks?limit=2&cursor={first}").status == 400


def test_list_stories_paginates_and_filters(api, user, workspace):
    api.token = user["token"]
    made = [new_story(api, workspace, title=f"S{i}", sprint=i % 2) for i in range(5)]
    first = api.get(f"{stories_path(workspace)}?limit=3")
    assert first.status == 200
    seen = [s["id"] for s in first.json["data"]]
    more = api.get(f"{stories_path(workspace)}?limit=3&cursor={first.json['meta']['next_cursor']}")
    seen += [s["id"] for s in more.json["data"]]
    assert seen == [s["id"] for s in made]
    in_sprint_one = api.get(f"{stories_path(workspace)}?sprint=1").json["data"]
    assert [s["title"] for s in in_sprint_one] == ["S1", "S3"]
    assert all(s["tasks"] is None for s in in_sprint_one)
    assert api.get(f"{stories_path(workspace)}?status=done").json["data"] == []


def test_patch_story_with_version_and_clear_sprint(api, user, workspace):
    api.token = user["token"]
    story = new_story(api, workspace, sprint=2)
    path = f"{stories_path(workspace)}/{story['id']}"
    updated = api.patch(path, {"status": "in_progress", "sprint": None, "version": 1})
    assert updated.status == 200, updated.body
    assert updated.json["data"]["status"] == "in_progress"
    assert updated.json["data"]["sprint"] is None
    assert updated.json["data"]["version"] == 2
    stale = api.patch(path, {"title": "Nope"}, headers={"If-Match": "1"})
    assert stale.status == 412
    assert api.get(path).json["data"]["title"] == "Story"
    assert api.patch(path, {"status": "archived"}).status == 422


def test_delete_story_detaches_its_tasks(api, user, workspace):
    api.token = user["token"]
    story = new_story(api, workspace, create_task=True)
    extra = api.post(tasks_path(workspace), {"title": "T", "story_id": story["id"]}).json["data"]
    assert api.delete(f"{stories_path(workspace)}/{story['id']}").status == 204
    assert api.get(f"{stories_path(workspace)}/{story['id']}").status == 404
    assert api.get(f"{stories_path(workspace)}/{story['id']}/tasks").status == 404
    assert api.delete(f"{stories_path(workspace)}/{story['id']}").status == 404
    remaining = api.get(tasks_path(workspace)).json["data"]
    assert len(remaining) == 2
    assert all(t["story_id"] is None for t in remaining)
    assert api.get(f"{tasks_path(workspace)}/{extra['id']}").json["data"]["version"] == 2
    assert api.post(tasks_path(workspace), {"title": "late", "story_id": story["id"]}).status == 422


def test_story_changes_are_audited(api, user, workspace):
    from agentplane import keys

    api.token = user["token"]
    story = new_story(api, workspace)
    api.patch(f"{stories_path(workspace)}/{story['id']}", {"title": "Renamed"})
    api.delete(f"{stories_path(workspace)}/{story['id']}")
    rows = raw_items.query(keys.audit_pk(workspace["id"]), limit=50).items
    actions = [r["action"] for r in rows if r["target_id"] == story["id"]]
    assert actions == ["story.created", "story.updated", "story.deleted"]


def test_bad_story_input_is_a_problem_and_writes_nothing(api, user, workspace):
    api.token = user["token"]
    assert api.post(stories_path(workspace), {}).status == 422
    assert api.post(stories_path(workspace), {"title": "x", "points": 3}).status == 422
    assert api.post(stories_path(workspace), {"title": "x" * 301}).status == 422
    assert api.post(stories_path(workspace), {"title": "x", "sprint": -1}).status == 422
    assert api.get(stories_path(workspace)).json["data"] == []
    assert api.get(tasks_path(workspace)).json["data"] == []


def test_non_member_gets_404_and_viewer_cannot_write(api, user, workspace):
    from agentplane.auth.scopes import Role
    from agentplane.ids import iso
    from agentplane.logic.workspaces import member_item

    api.token = user["token"]
    story = new_story(api, workspace)
    stranger = register_and_login(api)
    api.token = stranger["token"]
    assert api.get(stories_path(workspace)).status == 404
    assert api.get(f"{stories_path(workspace)}/{story['id']}").status == 404
    assert api.delete(f"{stories_path(workspace)}/{story['id']}").status == 404

    viewer = register_and_login(api)
    raw_items.put(member_item(workspace["id"], "Acme", viewer["user"]["id"], Role.viewer, iso()))
    api.token = viewer["token"]
    assert api.get(f"{stories_path(workspace)}/{story['id']}").status == 200
    assert api.post(stories_path(workspace), {"title": "x"}).status == 403
    assert api.patch(f"{stories_path(workspace)}/{story['id']}", {"title": "x"}).status == 403
    assert api.delete(f"{stories_path(workspace)}/{story['id']}").status == 403

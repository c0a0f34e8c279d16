"""Tasks beyond CRUD: lifecycle timestamps, sprint index, filters, `next`, and the review workflow."""

from __future__ import annotations

import threading
from typing import Any

from agentplane import raw_items
from agentplane.redact import MASK
from tests.conftest import put_common_env, register_and_login
from tests.fixtures.secret_corpus import fake


def tasks_path(ws: dict) -> str:
    return f"/api/v1/workspaces/{ws['id']}/tasks"


def new_task(api, ws: dict, **fields: Any) -> dict:
    response = api.post(tasks_path(ws), {"title": "Task", **fields})
    assert response.status == 201, response.body
    return response.json["data"]


def stored(ws: dict, task_id: str) -> dict:
    from agentplane import keys

    return raw_items.get(keys.task_key(ws["id"], task_id)) or {}


def audit_actions(ws: dict, target_id: str) -> list[str]:
    from agentplane import keys

    rows = raw_items.query(keys.audit_pk(ws["id"]), limit=200).items
    return [r["action"] for r in rows if r["target_id"] == target_id]


def in_review(api, ws: dict, **fields: Any) -> dict:
    task = new_task(api, ws, status="in_progress", **fields)
    report = api.post(f"{tasks_path(ws)}/{task['id']}/review-report", {"summary": "done it"})
    assert report.status == 200, report.body
    return report.json["data"]


def add_member(api, ws: dict, role: str) -> dict:
    from agentplane.auth.scopes import Role
    from agentplane.ids import iso
    from agentplane.logic.workspaces import member_item

    person = register_and_login(api)
    raw_items.put(member_item(ws["id"], ws["name"], person["user"]["id"], Role(role), iso()))
    return person


# --- lifecycle fields and the sprint index -------------------------------------------------------
def test_started_at_and_completed_at_follow_the_status(api, user, workspace):
    api.token = user["token"]
    task = new_task(api, workspace)
    assert task["started_at"] is None and task["completed_at"] is None
    started = api.patch(f"{tasks_path(workspace)}/{task['id']}", {"status": "in_progress"}).json["data"]
    assert started["started_at"] is not None
    api.patch(f"{tasks_path(workspace)}/{task['id']}", {"status": "review"})
    done = api.patch(f"{tasks_path(workspace)}/{task['id']}", {"status": "done"}).json["data"]
    assert done["completed_at"] is not None
    assert done["started_at"] == started["started_at"]
    reopened = api.patch(f"{tasks_path(workspace)}/{task['id']}", {"status": "in_progress"}).json["data"]
    assert reopened["completed_at"] is None
    assert reopened["started_at"] == started["started_at"]
    assert api.get(f"{tasks_path(workspace)}/{task['id']}").json["data"] == reopened


def test_task_created_done_has_completed_at(api, user, workspace):
    api.token = user["token"]
    assert new_task(api, workspace, status="done")["completed_at"] is not None


def test_sprint_index_follows_create_patch_clear_and_delete(api, user, workspace):
    from agentplane import keys

    api.token = user["token"]
    task = new_task(api, workspace, sprint=3)
    item = stored(workspace, task["id"])
    assert item["GSI3PK"] == keys.task_sprint_gsi(workspace["id"], 3)
    assert item["GSI3SK"] == task["id"]
    assert "GSI3PK" not in stored(workspace, new_task(api, workspace)["id"])

    moved = api.patch(f"{tasks_path(workspace)}/{task['id']}", {"sprint": 4})
    assert moved.status == 200 and moved.json["data"]["sprint"] == 4
    assert stored(workspace, task["id"])["GSI3PK"] == keys.task_sprint_gsi(workspace["id"], 4)

    cleared = api.patch(f"{tasks_path(workspace)}/{task['id']}", {"sprint": None})
    assert cleared.status == 200 and cleared.json["data"]["sprint"] is None
    item = stored(workspace, task["id"])
    assert "GSI3PK" not in item and "GSI3SK" not in item and "sprint" not in item

    api.patch(f"{tasks_path(workspace)}/{task['id']}", {"sprint": 5})
    assert api.delete(f"{tasks_path(workspace)}/{task['id']}").status == 204
    assert "GSI3PK" not in stored(workspace, task["id"])


def test_null_clears_assignee_but_not_title(api, user, workspace):
    api.token = user["token"]
    task = new_task(api, workspace, title="Keep me", assignee="builder")
    patched = api.patch(f"{tasks_path(workspace)}/{task['id']}", {"assignee": None, "title": None})
    assert patched.status == 200
    assert patched.json["data"]["assignee"] is None
    assert patched.json["data"]["title"] == "Keep me"


# --- references --------------------------------------------------------------------------------
def test_unknown_blocker_is_422_and_writes_nothing(api, user, workspace):
    api.token = user["token"]
    ghost = "task_" + "0" * 26
    response = api.post(tasks_path(workspace), {"title": "x", "blocked_by": [ghost]})
    assert response.status == 422
    assert response.json["errors"][0]["field"] == "blocked_by"
    assert api.get(tasks_path(workspace)).json["data"] == []


def test_repeated_blockers_are_kept_once(api, user, workspace):
    api.token = user["token"]
    blocker = new_task(api, workspace)
    task = new_task(api, workspace, blocked_by=[blocker["id"], blocker["id"]], labels=["a", "a"])
    assert task["blocked_by"] == [blocker["id"]] and task["labels"] == ["a"]
    patched = api.patch(f"{tasks_path(workspace)}/{task['id']}", {"blocked_by": [blocker["id"]] * 3})
    assert patched.status == 200 and patched.json["data"]["blocked_by"] == [blocker["id"]]


def test_out_of_range_sprint_is_422(api, user, workspace):
    api.token = user["token"]
    assert api.post(tasks_path(workspace), {"title": "x", "sprint": 10**40}).status == 422
    assert api.get(f"{tasks_path(workspace)}?sprint={10**40}").status == 422
    assert api.get(tasks_path(workspace)).json["data"] == []


def test_task_cannot_block_itself(api, user, workspace):
    api.token = user["token"]
    task = new_task(api, workspace)
    response = api.patch(f"{tasks_path(workspace)}/{task['id']}", {"blocked_by": [task["id"]]})
    assert response.status == 422
    assert api.get(f"{tasks_path(workspace)}/{task['id']}").json["data"]["version"] == 1


def test_blockers_of_another_workspace_are_unknown(api, user, workspace):
    from agentplane.auth.tokens import resolve_principal
    from agentplane.logic.workspaces import create_workspace
    from agentplane.models.workspaces import WorkspaceCreate

    api.token = user["token"]
    other = create_workspace(resolve_principal(user["token"]), WorkspaceCreate(name="Other")).model_dump()
    foreign = new_task(api, other)
    assert api.post(tasks_path(workspace), {"title": "x", "blocked_by": [foreign["id"]]}).status == 422


# --- filters -------------------------------------------------------------------------------------
def test_filters_by_assignee_priority_owner_and_free_text(api, user, workspace):
    api.token = user["token"]
    new_task(api, workspace, title="Login page", assignee="ada", priority="p0", owner="builder")
    new_task(api, workspace, title="Billing", description="stripe LOGIN webhooks", assignee="bob")
    new_task(api, workspace, title="Docs", assignee="ada", priority="p2")

    def ids(query: str) -> list[str]:
        response = api.get(f"{tasks_path(workspace)}?{query}")
        assert response.status == 200, response.body
        return [t["title"] for t in response.json["data"]]

    assert ids("assignee=ada") == ["Login page", "Docs"]
    assert ids("assignee=ada&priority=p0") == ["Login page"]
    assert ids("owner=builder") == ["Login page"]
    assert ids("q=login") == ["Login page", "Billing"]
    assert ids("q=LOGIN&assignee=bob") == ["Billing"]
    assert ids("q=nothing-like-this") == []
    assert ids("status=todo&q=login&assignee=ada&sprint=0&owner=builder&priority=p0") == []


def test_assignee_me_is_the_caller(api, user, workspace):
    api.token = user["token"]
    me = api.get("/api/v1/auth/me").json["data"]["username"]
    mine = new_task(api, workspace, title="Mine", assignee=me)
    new_task(api, workspace, title="Theirs", assignee="someone")
    listed = api.get(f"{tasks_path(workspace)}?assignee=me").json["data"]
    assert [t["id"] for t in listed] == [mine["id"]]


def test_free_text_cursor_is_bound_to_the_query(api, user, workspace):
    api.token = user["token"]
    for i in range(3):
        new_task(api, workspace, title=f"alpha {i}")
    first = api.get(f"{tasks_path(workspace)}?q=alpha&limit=1")
    cursor = first.json["meta"]["next_cursor"]
    assert cursor
    assert api.get(f"{tasks_path(workspace)}?q=beta&limit=1&cursor={cursor}").status == 400
    assert api.get(f"{tasks_path(workspace)}?q=alpha&limit=1&cursor={cursor}").status == 200


def test_a_sprint_lists_in_full_pages_however_many_other_tasks_there_are(api, user, workspace, monkeypatch):
    from agentplane import store

    monkeypatch.setattr(store, "_FILL_ROUND", 3)  # filtered reads go on in rounds of three tasks
    api.token = user["token"]
    for i in range(6):
        new_task(api, workspace, title=f"Backlog {i}")
    planned = [new_task(api, workspace, title=f"Sprint {i}", sprint=3)["id"] for i in range(5)]
    new_task(api, workspace, title="Later", sprint=4)

    def pages(query: str) -> list[list[str]]:
        found: list[list[str]] = []
        cursor = None
        while True:
            response = api.get(f"{tasks_path(workspace)}?{query}" + (f"&cursor={cursor}" if cursor else ""))
            assert response.status == 200, response.body
            found.append([t["id"] for t in response.json["data"]])
            cursor = response.json["meta"]["next_cursor"]
            if not cursor:
                return found

    assert pages("sprint=3&limit=2") == [planned[0:2], planned[2:4], planned[4:5]]
    for task_id in planned[1:4]:
        api.patch(f"{tasks_path(workspace)}/{task_id}", {"status": "in_progress"})
    assert pages("sprint=3&status=in_progress&limit=2") == [planned[1:3], planned[3:4]]
    assert pages("status=todo&priority=p1&limit=4")[0] == [
        t["id"] for t in api.get(f"{tasks_path(workspace)}?status=todo&limit=4").json["data"]
    ]


def test_bad_filter_values_are_422(api, user, workspace):
    api.token = user["token"]
    assert api.get(f"{tasks_path(workspace)}?priority=urgent").status == 422
    assert api.get(f"{tasks_path(workspace)}?q={'x' * 201}").status == 422
    assert api.get(f"{tasks_path(workspace)}?next=maybe").status == 422


# --- next ----------------------------------------------------------------------------------------
def test_next_is_the_highest_priority_unblocked_todo_of_the_assignee(api, user, workspace):
    api.token = user["token"]
    blocker = new_task(api, workspace, title="Blocker", assignee="other", status="in_progress")
    new_task(api, workspace, title="Low", assignee="ada", priority="p3")
    new_task(api, workspace, title="Urgent but blocked", assignee="ada", priority="p0", blocked_by=[blocker["id"]])
    first_p1 = new_task(api, workspace, title="First p1", assignee="ada", priority="p1")
    new_task(api, workspace, title="Second p1", assignee="ada", priority="p1")
    new_task(api, workspace, title="Someone else's", assignee="bob", priority="p0")
    new_task(api, workspace, title="Ada but started", assignee="ada", priority="p0", status="in_progress")

    picked = api.get(f"{tasks_path(workspace)}?next=true&assignee=ada")
    assert picked.status == 200
    assert [t["id"] for t in picked.json["data"]] == [first_p1["id"]]
    assert picked.json["meta"]["next_cursor"] is None

    api.patch(f"{tasks_path(workspace)}/{blocker['id']}", {"status": "review"})
    assert api.patch(f"{tasks_path(workspace)}/{blocker['id']}", {"status": "done"}).status == 200
    picked = api.get(f"{tasks_path(workspace)}?next=true&assignee=ada").json["data"]
    assert [t["title"] for t in picked] == ["Urgent but blocked"]


def test_next_takes_the_owner_when_a_task_has_no_assignee(api, user, workspace):
    api.token = user["token"]
    owned = new_task(api, workspace, title="Toban style", owner="builder", priority="p1")
    new_task(api, workspace, title="Assigned elsewhere", owner="builder", assignee="ada", priority="p0")
    picked = api.get(f"{tasks_path(workspace)}?next=true&assignee=builder").json["data"]
    assert [t["id"] for t in picked] == [owned["id"]]
    ada = api.get(f"{tasks_path(workspace)}?next=true&assignee=ada").json["data"]
    assert [t["title"] for t in ada] == ["Assigned elsewhere"]
    # Reassigned, the task moves to its new agent's queue.
    api.patch(f"{tasks_path(workspace)}/{owned['id']}", {"assignee": "bob"})
    assert api.get(f"{tasks_path(workspace)}?next=true&assignee=builder").json["data"] == []
    assert [t["id"] for t in api.get(f"{tasks_path(workspace)}?next=true&assignee=bob").json["data"]] == [owned["id"]]


def test_next_finds_a_new_p0_behind_more_todo_tasks_than_it_reads(api, user, workspace, monkeypatch):
    from agentplane.logic import tasks

    monkeypatch.setattr(tasks.listing, "NEXT_READ_BUDGET", 12)
    monkeypatch.setattr(tasks.listing, "_NEXT_PAGE", 4)
    api.token = user["token"]
    blocker = new_task(api, workspace, title="Unfinished", assignee="other")
    for i in range(20):
        new_task(api, workspace, title=f"Routine {i}", assignee="ada", priority="p2")
    # Blocked p0 work fills more than one page ahead of the free p0 task.
    for i in range(5):
        new_task(api, workspace, title=f"Blocked {i}", assignee="ada", priority="p0", blocked_by=[blocker["id"]])
    urgent = new_task(api, workspace, title="New p0", assignee="ada", priority="p0")
    picked = api.get(f"{tasks_path(workspace)}?next=true&assignee=ada").json["data"]
    assert [t["id"] for t in picked] == [urgent["id"]]
    only_p2 = api.get(f"{tasks_path(workspace)}?next=true&assignee=ada&priority=p2").json["data"]
    assert [t["title"] for t in only_p2] == ["Routine 0"]
    api.patch(f"{tasks_path(workspace)}/{urgent['id']}", {"status": "in_progress"})
    assert [t["title"] for t in api.get(f"{tasks_path(workspace)}?next=true&assignee=ada").json["data"]] == [
        "Routine 0"
    ]


def test_next_treats_a_deleted_blocker_as_gone(api, user, workspace):
    api.token = user["token"]
    blocker = new_task(api, workspace, title="Blocker")
    waiting = new_task(api, workspace, title="Waiting", assignee="ada", blocked_by=[blocker["id"]])
    assert api.get(f"{tasks_path(workspace)}?next=true&assignee=ada").json["data"] == []
    api.delete(f"{tasks_path(workspace)}/{blocker['id']}")
    assert [t["id"] for t in api.get(f"{tasks_path(workspace)}?next=true&assignee=ada").json["data"]] == [waiting["id"]]


def test_next_defaults_to_the_caller(api, user, workspace):
    api.token = user["token"]
    me = api.get("/api/v1/auth/me").json["data"]["username"]
    mine = new_task(api, workspace, title="Mine", assignee=me, priority="p2")
    new_task(api, workspace, title="Not mine", assignee="ada", priority="p0")
    picked = api.get(f"{tasks_path(workspace)}?next=true").json["data"]
    assert [t["id"] for t in picked] == [mine["id"]]


def test_next_for_an_agent_key_is_the_agents_own_work(api, user, workspace):
    from agentplane.access import workspace_access
    from agentplane.auth.principal import Principal
    from agentplane.logic import tasks

    api.token = user["token"]
    theirs = new_task(api, workspace, title="For the builder", assignee="builder")
    new_task(api, workspace, title="For someone else", assignee="ada", priority="p0")
    agent = Principal(
        kind="agent_key", id="agt_1", user_id=None, token_id="t", workspace_id=workspace["id"], agent_name="builder"
    )
    access = workspace_access(agent, workspace["id"], "tasks:read")
    picked = tasks.next_task(access, None)
    assert picked is not None and picked.id == theirs["id"]
    assert tasks.resolve_assignee(access, "me") == "builder"


def test_next_refuses_a_cursor_or_another_status(api, user, workspace):
    api.token = user["token"]
    assert api.get(f"{tasks_path(workspace)}?next=true&status=done").status == 400
    assert api.get(f"{tasks_path(workspace)}?next=true&cursor=abc.def").status == 400
    assert api.get(f"{tasks_path(workspace)}?next=true&status=todo").status == 200


# --- review workflow -----------------------------------------------------------------------------
def test_review_report_moves_in_progress_to_review_and_keeps_the_report(api, user, workspace):
    api.token = user["token"]
    task = new_task(api, workspace, status="in_progress")
    response = api.post(
        f"{tasks_path(workspace)}/{task['id']}/review-report",
        {"summary": "Added login", "test_results": "42 passed", "commits": "abc123,def456"},
    )
    assert response.status == 200, response.body
    reviewed = response.json["data"]
    assert reviewed["status"] == "review"
    assert reviewed["version"] == task["version"] + 1
    assert reviewed["commits"] == "abc123,def456"
    report = reviewed["review_report"]
    assert report["summary"] == "Added login" and report["test_results"] == "42 passed"
    assert report["submitted_by"] == user["user"]["id"]
    assert api.get(f"{tasks_path(workspace)}/{task['id']}").json["data"] == reviewed
    assert "task.review_reported" in audit_actions(workspace, task["id"])
    listed = api.get(f"{tasks_path(workspace)}?status=review").json["data"]
    assert [t["id"] for t in listed] == [task["id"]]


def test_review_report_on_a_todo_task_is_409_with_current_status(api, user, workspace):
    api.token = user["token"]
    task = new_task(api, workspace)
    response = api.post(f"{tasks_path(workspace)}/{task['id']}/review-report", {"summary": "x"})
    assert response.status == 409
    assert response.header("content-type") == "application/problem+json"
    assert response.json["current_status"] == "todo"
    assert response.json["type"].endswith("/invalid-transition")
    assert api.get(f"{tasks_path(workspace)}/{task['id']}").json["data"]["version"] == 1


def test_review_report_needs_a_summary(api, user, workspace):
    api.token = user["token"]
    task = new_task(api, workspace, status="in_progress")
    response = api.post(f"{tasks_path(workspace)}/{task['id']}/review-report", {"notes": "no summary"})
    assert response.status == 422
    assert api.get(f"{tasks_path(workspace)}/{task['id']}").json["data"]["status"] == "in_progress"


def test_a_task_too_large_to_store_is_422_not_a_crash(api, user, workspace):
    api.token = user["token"]
    wide = "\U0001f600"  # four bytes stored per character
    task = new_task(api, workspace, description=wide * 20000, context_notes=wide * 20000, status="in_progress")
    assert api.patch(f"{tasks_path(workspace)}/{task['id']}", {"review_comment": wide * 20000}).status == 200
    big = wide * 10000
    report = {"summary": wide * 5000, "changes": big, "test_results": big, "notes": big}
    response = api.post(f"{tasks_path(workspace)}/{task['id']}/review-report", report)
    assert response.status == 422, response.body
    assert api.get(f"{tasks_path(workspace)}/{task['id']}").json["data"]["status"] == "in_progress"


def test_approve_moves_review_to_done_and_sets_completed_at(api, user, workspace):
    api.token = user["token"]
    task = in_review(api, workspace)
    response = api.post(f"{tasks_path(workspace)}/{task['id']}/approve")
    assert response.status == 200, response.body
    done = response.json["data"]
    assert done["status"] == "done"
    assert done["completed_at"] is not None
    assert done["reviewed_by"] == user["user"]["id"]
    assert done["reviewed_at"] is not None
    assert "task.approved" in audit_actions(workspace, task["id"])
    assert api.get(f"{tasks_path(workspace)}?status=review").json["data"] == []


def test_approve_outside_review_is_409_and_changes_nothing(api, user, workspace):
    api.token = user["token"]
    task = new_task(api, workspace, status="in_progress")
    response = api.post(f"{tasks_path(workspace)}/{task['id']}/approve")
    assert response.status == 409
    assert response.json["current_status"] == "in_progress"
    assert api.get(f"{tasks_path(workspace)}/{task['id']}").json["data"] == task
    assert "task.approved" not in audit_actions(workspace, task["id"])


def test_approve_unknown_task_is_404(api, user, workspace):
    api.token = user["token"]
    assert api.post(f"{tasks_path(workspace)}/task_{'0' * 26}/approve").status == 404


def test_reject_needs_a_reason_and_sends_the_task_back_with_it(api, user, workspace):
    api.token = user["token"]
    task = in_review(api, workspace)
    assert api.post(f"{tasks_path(workspace)}/{task['id']}/reject", {}).status == 422
    assert api.post(f"{tasks_path(workspace)}/{task['id']}/reject", {"reason": "   "}).status == 422
    assert api.get(f"{tasks_path(workspace)}/{task['id']}").json["data"]["status"] == "review"
    response = api.post(f"{tasks_path(workspace)}/{task['id']}/reject", {"reason": "Tests are failing"})
    assert response.status == 200, response.body
    back = response.json["data"]
    assert back["status"] == "in_progress"
    assert back["rejection_reason"] == "Tests are failing"
    assert back["review_report"]["summary"] == "done it"
    assert "task.rejected" in audit_actions(workspace, task["id"])
    again = api.post(f"{tasks_path(workspace)}/{task['id']}/reject", {"reason": "twice"})
    assert again.status == 409 and again.json["current_status"] == "in_progress"


def test_patch_cannot_skip_review_on_the_way_to_done(api, user, workspace):
    api.token = user["token"]
    for status in ("todo", "in_progress", "blocked"):
        task = new_task(api, workspace, status=status)
        refused = api.patch(f"{tasks_path(workspace)}/{task['id']}", {"status": "done", "title": "sneaky"})
        assert refused.status == 409, status
        assert refused.header("content-type") == "application/problem+json"
        assert refused.json["type"].endswith("/invalid-transition")
        assert refused.json["current_status"] == status
        assert api.get(f"{tasks_path(workspace)}/{task['id']}").json["data"] == task
    done = new_task(api, workspace, status="done")  # recorded as done (an import of past work), not moved
    assert done["completed_at"] is not None


def test_patch_from_review_to_done_is_the_approval_and_unblocks_the_children(api, user, workspace):
    api.token = user["token"]
    parent = in_review(api, workspace, title="Parent")
    child = new_task(api, workspace, title="Child", status="blocked", blocked_by=[parent["id"]], assignee="ada")
    assert api.get(f"{tasks_path(workspace)}?next=true&assignee=ada").json["data"] == []
    response = api.patch(f"{tasks_path(workspace)}/{parent['id']}", {"status": "done"})
    assert response.status == 200, response.body
    done = response.json["data"]
    assert done["status"] == "done" and done["completed_at"] is not None
    assert done["reviewed_by"] == user["user"]["id"]
    assert api.get(f"{tasks_path(workspace)}/{child['id']}").json["data"]["status"] == "todo"
    assert "task.unblocked" in audit_actions(workspace, child["id"])
    assert [t["id"] for t in api.get(f"{tasks_path(workspace)}?next=true&assignee=ada").json["data"]] == [child["id"]]


def test_review_action_approve_unblocks_children_whose_blockers_are_all_done(api, user, workspace):
    api.token = user["token"]
    parent = in_review(api, workspace, title="Parent")
    other_done = new_task(api, workspace, title="Done already", status="done")
    other_open = new_task(api, workspace, title="Still open")
    freed = new_task(api, workspace, title="Freed", status="blocked", blocked_by=[parent["id"], other_done["id"]])
    waiting = new_task(api, workspace, title="Waiting", status="blocked", blocked_by=[parent["id"], other_open["id"]])
    free_todo = new_task(api, workspace, title="Todo child", blocked_by=[parent["id"]])
    listed = new_task(api, workspace, title="Listed in blocks")
    api.patch(f"{tasks_path(workspace)}/{parent['id']}", {"blocks": [listed["id"]]})

    response = api.post(
        f"{tasks_path(workspace)}/{parent['id']}/review-action", {"action": "approve", "comment": "lgtm"}
    )
    assert response.status == 200, response.body
    result = response.json["data"]
    assert result["action"] == "approve" and result["status"] == "done"
    assert result["task"]["status"] == "done" and result["task"]["review_comment"] == "lgtm"
    assert result["fix_task"] is None
    unblocked = {c["id"]: c for c in result["unblocked_children"]}
    assert set(unblocked) == {freed["id"], free_todo["id"], listed["id"]}
    assert unblocked[freed["id"]]["status"] == "todo"
    assert api.get(f"{tasks_path(workspace)}/{freed['id']}").json["data"]["status"] == "todo"
    assert api.get(f"{tasks_path(workspace)}/{waiting['id']}").json["data"]["status"] == "blocked"
    assert "task.unblocked" in audit_actions(workspace, freed["id"])


def test_plain_approve_also_unblocks_blocked_children(api, user, workspace):
    api.token = user["token"]
    parent = in_review(api, workspace)
    child = new_task(api, workspace, status="blocked", blocked_by=[parent["id"]])
    assert api.post(f"{tasks_path(workspace)}/{parent['id']}/approve").status == 200
    assert api.get(f"{tasks_path(workspace)}/{child['id']}").json["data"]["status"] == "todo"


def test_removed_blocker_no_longer_links_the_child(api, user, workspace):
    api.token = user["token"]
    parent = in_review(api, workspace)
    child = new_task(api, workspace, status="blocked", blocked_by=[parent["id"]])
    api.patch(f"{tasks_path(workspace)}/{child['id']}", {"blocked_by": []})
    result = api.post(f"{tasks_path(workspace)}/{parent['id']}/review-action", {"action": "approve"}).json["data"]
    assert result["unblocked_children"] == []
    assert api.get(f"{tasks_path(workspace)}/{child['id']}").json["data"]["status"] == "blocked"


def test_a_rejection_is_recorded_as_a_failure_of_the_task(api, user, workspace):
    api.token = user["token"]
    task = in_review(api, workspace, title="Login page", owner="builder")
    failures = f"/api/v1/workspaces/{workspace['id']}/failures"
    response = api.post(f"{tasks_path(workspace)}/{task['id']}/reject", {"reason": "Tests are failing"})
    assert response.status == 200, response.body
    [failure] = api.get(f"{failures}?task_id={task['id']}").json["data"]
    assert failure["title"] == "Rejected in review: Login page"
    assert failure["cause"] == "Tests are failing"
    assert failure["agent"] == "builder"
    assert failure["source"] == "review_rejection"
    assert failure["created_by"] == user["user"]["id"]
    from agentplane import keys

    rows = raw_items.query(keys.audit_pk(workspace["id"]), limit=200).items
    assert [r["request_id"] for r in rows if r["target_id"] == failure["id"]] == [
        next(r["request_id"] for r in rows if r["action"] == "task.rejected")
    ]
    # A refused rejection records nothing.
    assert api.post(f"{tasks_path(workspace)}/{task['id']}/reject", {"reason": "again"}).status == 409
    assert len(api.get(f"{failures}?task_id={task['id']}").json["data"]) == 1


def test_review_action_fix_creates_a_fix_sub_task_for_the_assignee(api, user, workspace):
    api.token = user["token"]
    task = in_review(api, workspace, title="Login page", assignee="ada", owner="builder", sprint=2, priority="p0")
    response = api.post(
        f"{tasks_path(workspace)}/{task['id']}/review-action",
        {"action": "fix", "comment": "button misaligned", "fix_description": "Align the login button"},
    )
    assert response.status == 200, response.body
    result = response.json["data"]
    assert result["status"] == "review"
    assert result["task"]["status"] == "review"
    assert result["task"]["review_comment"] == "button misaligned"
    fix = result["fix_task"]
    assert fix["title"] == "Fix: Login page"
    assert fix["parent_task"] == task["id"]
    assert fix["assignee"] == "ada" and fix["owner"] == "builder"
    assert fix["sprint"] == 2 and fix["priority"] == "p0"
    assert fix["status"] == "todo" and fix["type"] == "bug"
    assert fix["description"] == "Align the login button"
    assert api.get(f"{tasks_path(workspace)}/{fix['id']}").json["data"] == fix
    assert "task.fix_requested" in audit_actions(workspace, task["id"])
    assert "task.created" in audit_actions(workspace, fix["id"])


def test_review_action_fix_outside_review_is_409_and_creates_nothing(api, user, workspace):
    api.token = user["token"]
    task = new_task(api, workspace)
    response = api.post(f"{tasks_path(workspace)}/{task['id']}/review-action", {"action": "fix"})
    assert response.status == 409 and response.json["current_status"] == "todo"
    assert len(api.get(tasks_path(workspace)).json["data"]) == 1


def test_review_action_rejects_unknown_actions(api, user, workspace):
    api.token = user["token"]
    task = in_review(api, workspace)
    assert api.post(f"{tasks_path(workspace)}/{task['id']}/review-action", {"action": "merge"}).status == 422
    assert api.post(f"{tasks_path(workspace)}/{task['id']}/review-action", {}).status == 422


def test_concurrent_approvals_have_exactly_one_winner(api, user, workspace):
    from agentplane.access import workspace_access
    from agentplane.auth.tokens import resolve_principal
    from agentplane.errors import InvalidTransition
    from agentplane.logic import tasks

    api.token = user["token"]
    task = in_review(api, workspace)
    access = workspace_access(resolve_principal(user["token"]), workspace["id"], "tasks:write")
    barrier = threading.Barrier(6)
    outcomes: list[Any] = []

    def approve() -> None:
        barrier.wait()
        try:
            outcomes.append(tasks.approve_task(access, task["id"]))
        except InvalidTransition as refused:
            outcomes.append(refused)

    threads = [threading.Thread(target=approve) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if not isinstance(o, Exception)]
    losers = [o for o in outcomes if isinstance(o, InvalidTransition)]
    assert len(winners) == 1 and len(losers) == 5
    assert all(loser.extensions["current_status"] == "done" for loser in losers)
    assert audit_actions(workspace, task["id"]).count("task.approved") == 1
    assert api.get(f"{tasks_path(workspace)}/{task['id']}").json["data"]["status"] == "done"


def test_an_approval_from_a_stale_read_loses_to_the_conditional_write(api, user, workspace, monkeypatch):
    from agentplane.logic import tasks

    api.token = user["token"]
    task = in_review(api, workspace)
    stale = tasks.load_live(workspace["id"], task["id"])
    assert api.post(f"{tasks_path(workspace)}/{task['id']}/reject", {"reason": "no"}).status == 200
    real_load = tasks.load_live
    reads = iter([stale])
    monkeypatch.setattr(tasks.transition, "load_live", lambda ws, task_id: next(reads, None) or real_load(ws, task_id))
    response = api.post(f"{tasks_path(workspace)}/{task['id']}/approve")
    assert response.status == 409
    assert response.json["current_status"] == "in_progress"
    assert "task.approved" not in audit_actions(workspace, task["id"])


def test_a_concurrent_edit_of_other_fields_does_not_block_the_transition(api, user, workspace, monkeypatch):
    from agentplane.logic import tasks

    api.token = user["token"]
    task = in_review(api, workspace)
    stale = tasks.load_live(workspace["id"], task["id"])
    assert api.patch(f"{tasks_path(workspace)}/{task['id']}", {"labels": ["x"]}).status == 200
    real_load = tasks.load_live
    reads = iter([stale])
    monkeypatch.setattr(tasks.transition, "load_live", lambda ws, task_id: next(reads, None) or real_load(ws, task_id))
    response = api.post(f"{tasks_path(workspace)}/{task['id']}/approve")
    assert response.status == 200, response.body
    assert response.json["data"]["labels"] == ["x"]
    assert response.json["data"] == api.get(f"{tasks_path(workspace)}/{task['id']}").json["data"]


def test_a_write_that_collides_on_a_shared_counter_is_sent_again(api, user, workspace, monkeypatch):
    """Changes of different tasks of one sprint move the same counter item; DynamoDB cancels one
    of two such transactions running at once (TransactionConflict) and that one is simply resent."""
    from agentplane.access import Access
    from agentplane.store import TransactionFailed

    api.token = user["token"]
    task = new_task(api, workspace, sprint=1, story_points=3)
    real_commit = Access.commit
    collisions = {"left": 2}

    def colliding(self: Access, tx: Any) -> None:
        if collisions["left"]:
            collisions["left"] -= 1
            raise TransactionFailed(["None"] * (len(tx.operations) - 1) + ["TransactionConflict"], [])
        real_commit(self, tx)

    monkeypatch.setattr(Access, "commit", colliding)
    response = api.patch(f"{tasks_path(workspace)}/{task['id']}", {"status": "in_progress"})
    assert response.status == 200, response.body
    assert collisions["left"] == 0
    assert audit_actions(workspace, task["id"]).count("task.updated") == 1


# --- access ------------------------------------------------------------------------------------
def test_viewer_can_read_but_not_review(api, user, workspace):
    api.token = user["token"]
    task = in_review(api, workspace)
    viewer = add_member(api, workspace, "viewer")
    api.token = viewer["token"]
    assert api.get(f"{tasks_path(workspace)}/{task['id']}").status == 200
    for path, body in (("approve", None), ("reject", {"reason": "x"}), ("review-action", {"action": "approve"})):
        response = api.post(f"{tasks_path(workspace)}/{task['id']}/{path}", body)
        assert response.status == 403, path
    api.token = user["token"]
    assert api.get(f"{tasks_path(workspace)}/{task['id']}").json["data"]["status"] == "review"


def test_read_only_token_is_403_naming_the_scope(api, user, workspace):
    api.token = user["token"]
    task = in_review(api, workspace)
    issued = api.post(
        "/api/v1/auth/token",
        {"email": user["email"], "password": user["password"], "name": "ro", "abilities": ["tasks:read"]},
        token="",
    )
    assert issued.status == 201, issued.body
    api.token = issued.json["data"]["token"]
    response = api.post(f"{tasks_path(workspace)}/{task['id']}/approve")
    assert response.status == 403
    assert response.json["required_scope"] == "tasks:write"
    assert api.get(f"{tasks_path(workspace)}?next=true").status == 200


def test_non_member_gets_404_from_the_workflow(api, user, workspace):
    api.token = user["token"]
    task = in_review(api, workspace)
    stranger = register_and_login(api)
    api.token = stranger["token"]
    assert api.post(f"{tasks_path(workspace)}/{task['id']}/approve").status == 404
    assert api.post(f"{tasks_path(workspace)}/{task['id']}/review-action", {"action": "fix"}).status == 404
    assert api.get(f"{tasks_path(workspace)}?next=true").status == 404
    api.token = user["token"]
    assert api.get(f"{tasks_path(workspace)}/{task['id']}").json["data"]["status"] == "review"


def test_a_review_report_is_stored_and_served_redacted(api, user, workspace):
    import base64

    api.token = user["token"]
    put_common_env(api, workspace, DB_PASSWORD="hunter2-database-password")
    token = fake("openai key")
    task = new_task(api, workspace, status="in_progress")
    body = {
        "summary": f"Rotated {token}",
        "test_results": "42 passed against hunter2-database-password",
        "notes": base64.b64encode(f"OPENAI_API_KEY={token}".encode()).decode(),
        "commits": "3f786850e387550fdab836ed7e6dc881de23001b",
    }
    response = api.post(f"{tasks_path(workspace)}/{task['id']}/review-report", body)
    assert response.status == 200, response.body
    report = response.json["data"]["review_report"]
    assert report["summary"] == f"Rotated {MASK}" and report["notes"] == MASK
    assert report["test_results"] == f"42 passed against {MASK}"
    assert response.json["data"]["commits"] == body["commits"]  # a commit SHA is no secret

    served = response.body + api.get(f"{tasks_path(workspace)}/{task['id']}").body
    for secret in (token, "hunter2-database-password"):
        assert secret not in served and secret not in str(stored(workspace, task["id"])), secret

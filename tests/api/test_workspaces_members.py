"""Workspace members: list, add, change role, remove, leave, and the last-owner rule."""

from __future__ import annotations

import threading
from typing import Any

from tests.api.test_workspaces import audit_actions, join, register_and_login, ws_path


def members_path(ws: dict[str, Any], user_id: str | None = None) -> str:
    return f"{ws_path(ws)}/members" + (f"/{user_id}" if user_id else "")


def uid(person: dict[str, Any]) -> str:
    return person["user"]["id"]


def test_owner_adds_a_member_who_then_sees_the_workspace(api, user, workspace):
    person = register_and_login(api)
    added = api.post(members_path(workspace), {"user_id": uid(person), "role": "member"}, token=user["token"])
    assert added.status == 201, added.body
    assert added.json["data"]["role"] == "member"
    assert added.json["data"]["username"] == person["user"]["username"]
    listed = api.get("/api/v1/workspaces", token=person["token"]).json["data"]
    assert [(m["workspace_id"], m["role"]) for m in listed] == [(workspace["id"], "member")]
    assert any(r["action"] == "member.added" and r["target_id"] == uid(person) for r in audit_actions(workspace))


def test_member_list_is_paginated_with_a_signed_cursor(api, user, workspace):
    people = [join(api, user, workspace, "member") for _ in range(4)]
    api.token = user["token"]
    first = api.get(f"{members_path(workspace)}?limit=2")
    assert first.status == 200 and len(first.json["data"]) == 2
    seen = [m["user_id"] for m in first.json["data"]]
    cursor = first.json["meta"]["next_cursor"]
    while cursor:
        more = api.get(f"{members_path(workspace)}?limit=2&cursor={cursor}").json
        seen += [m["user_id"] for m in more["data"]]
        cursor = more["meta"]["next_cursor"]
    assert sorted(seen) == sorted([uid(user)] + [uid(p) for p in people])
    forged = api.get(f"{members_path(workspace)}?cursor={first.json['meta']['next_cursor'][:-2]}xx")
    assert forged.status == 400


def test_cursor_of_one_workspace_is_refused_by_another(api, user, workspace):
    for _ in range(2):
        join(api, user, workspace, "member")
    api.token = user["token"]
    cursor = api.get(f"{members_path(workspace)}?limit=1").json["meta"]["next_cursor"]
    other = api.post("/api/v1/workspaces", {"name": "Other"}).json["data"]
    assert api.get(f"{members_path(other)}?cursor={cursor}").status == 400


def test_adding_an_existing_member_is_409(api, user, workspace):
    person = join(api, user, workspace, "member")
    again = api.post(members_path(workspace), {"user_id": uid(person), "role": "admin"}, token=user["token"])
    assert again.status == 409
    self_add = api.post(members_path(workspace), {"user_id": uid(user)}, token=user["token"])
    assert self_add.status == 409


def test_adding_an_unknown_user_is_422_and_writes_nothing(api, user, workspace):
    api.token = user["token"]
    unknown = api.post(members_path(workspace), {"user_id": "usr_nobody"})
    assert unknown.status == 422
    assert unknown.json["errors"][0]["field"] == "user_id"
    assert api.post(members_path(workspace), {"user_id": "x", "role": "emperor"}).status == 422
    assert api.post(members_path(workspace), {"role": "member"}).status == 422
    assert api.post(members_path(workspace), {"user_id": "../../etc"}).status == 422
    assert len(api.get(members_path(workspace)).json["data"]) == 1


def test_viewer_and_member_cannot_add_members(api, user, workspace):
    viewer = join(api, user, workspace, "viewer")
    member = join(api, user, workspace, "member")
    person = register_and_login(api)
    for actor in (viewer, member):
        refused = api.post(members_path(workspace), {"user_id": uid(person)}, token=actor["token"])
        assert refused.status == 403


def test_admin_adds_members_but_cannot_grant_owner(api, user, workspace):
    admin = join(api, user, workspace, "admin")
    person = register_and_login(api)
    refused = api.post(members_path(workspace), {"user_id": uid(person), "role": "owner"}, token=admin["token"])
    assert refused.status == 403
    ok = api.post(members_path(workspace), {"user_id": uid(person), "role": "admin"}, token=admin["token"])
    assert ok.status == 201
    promote = api.patch(members_path(workspace, uid(person)), {"role": "owner"}, token=admin["token"])
    assert promote.status == 403


def test_admin_cannot_change_or_remove_an_owner(api, user, workspace):
    admin = join(api, user, workspace, "admin")
    co_owner = join(api, user, workspace, "owner")
    assert api.patch(members_path(workspace, uid(co_owner)), {"role": "member"}, token=admin["token"]).status == 403
    assert api.delete(members_path(workspace, uid(co_owner)), token=admin["token"]).status == 403


def test_owner_changes_a_role_and_it_takes_effect(api, user, workspace):
    person = join(api, user, workspace, "viewer")
    assert api.post(f"{ws_path(workspace)}/tasks", {"title": "x"}, token=person["token"]).status == 403
    changed = api.patch(members_path(workspace, uid(person)), {"role": "member"}, token=user["token"])
    assert changed.status == 200 and changed.json["data"]["role"] == "member"
    assert api.post(f"{ws_path(workspace)}/tasks", {"title": "x"}, token=person["token"]).status == 201
    row = next(r for r in audit_actions(workspace) if r["action"] == "member.role_changed")
    assert row["details"] == {"from": "viewer", "to": "member"}


def test_patch_role_of_a_non_member_is_404(api, user, workspace):
    api.token = user["token"]
    assert api.patch(members_path(workspace, "usr_nobody"), {"role": "admin"}).status == 404
    assert api.patch(members_path(workspace, uid(user)), {"role": "boss"}).status == 422


def test_last_owner_cannot_be_demoted_or_removed_or_leave(api, user, workspace):
    api.token = user["token"]
    demote = api.patch(members_path(workspace, uid(user)), {"role": "admin"})
    assert demote.status == 409
    assert api.delete(members_path(workspace, uid(user))).status == 409
    assert api.get(members_path(workspace)).json["data"][0]["role"] == "owner"


def test_with_two_owners_one_may_step_down(api, user, workspace):
    co_owner = join(api, user, workspace, "owner")
    assert api.patch(members_path(workspace, uid(user)), {"role": "admin"}, token=user["token"]).status == 200
    assert api.patch(members_path(workspace, uid(co_owner)), {"role": "admin"}, token=co_owner["token"]).status == 409


def test_two_owners_demoting_each_other_at_once_leave_one_owner(api, user, workspace):
    co_owner = join(api, user, workspace, "owner")
    statuses: list[int] = []

    def demote(actor: dict[str, Any], target: dict[str, Any]) -> None:
        response = api.patch(members_path(workspace, uid(target)), {"role": "member"}, token=actor["token"])
        statuses.append(response.status)

    threads = [
        threading.Thread(target=demote, args=(user, co_owner)),
        threading.Thread(target=demote, args=(co_owner, user)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses)[0] == 200 and sorted(statuses)[1] in (403, 404, 409)
    roles = [m["role"] for m in api.get(members_path(workspace), token=user["token"]).json["data"]]
    assert roles.count("owner") == 1


def test_member_leaves_and_loses_access(api, user, workspace):
    person = join(api, user, workspace, "viewer")
    assert api.delete(members_path(workspace, uid(person)), token=person["token"]).status == 204
    assert api.get(ws_path(workspace), token=person["token"]).status == 404
    assert any(r["action"] == "member.left" for r in audit_actions(workspace))


def test_member_cannot_remove_someone_else(api, user, workspace):
    person = join(api, user, workspace, "member")
    other = join(api, user, workspace, "viewer")
    assert api.delete(members_path(workspace, uid(other)), token=person["token"]).status == 403
    assert api.delete(members_path(workspace, uid(other)), token=user["token"]).status == 204
    assert api.delete(members_path(workspace, uid(other)), token=user["token"]).status == 404


def test_removed_member_cannot_write_even_with_a_cached_role(api, user, workspace):
    from agentplane.access import workspace_access
    from agentplane.auth.tokens import resolve_principal
    from agentplane.errors import NotFound
    from agentplane.logic.tasks import create_task
    from agentplane.models.tasks import TaskCreate

    person = join(api, user, workspace, "member")
    cached = workspace_access(resolve_principal(person["token"]), workspace["id"], "tasks:write")
    assert api.delete(members_path(workspace, uid(person)), token=user["token"]).status == 204
    try:
        create_task(cached, TaskCreate(title="sneaky"))
        raise AssertionError("a removed member wrote a task")
    except NotFound:
        pass


def test_scoped_token_without_settings_write_cannot_leave(api, user, workspace):
    person = join(api, user, workspace, "member")
    device = api.post(
        "/api/v1/auth/token",
        {"email": person["email"], "password": person["password"], "abilities": ["tasks:read"]},
        token="",
    )
    assert device.status == 201, device.body
    refused = api.delete(members_path(workspace, uid(person)), token=device.json["data"]["token"])
    assert refused.status == 403
    assert refused.json["required_scope"] == "settings:write"


def test_removing_a_member_removes_them_from_teams(api, user, workspace):
    person = join(api, user, workspace, "member")
    api.token = user["token"]
    team = api.post(f"{ws_path(workspace)}/teams", {"name": "Core"}).json["data"]
    added = api.post(f"{ws_path(workspace)}/teams/{team['id']}/members", {"user_id": uid(person)})
    assert added.status == 201, added.body
    assert api.delete(members_path(workspace, uid(person))).status == 204
    detail = api.get(f"{ws_path(workspace)}/teams/{team['id']}").json["data"]
    assert detail["members"] == [] and detail["member_count"] == 0


def test_a_co_owner_may_leave_and_then_the_last_owner_may_not(api, user, workspace):
    co_owner = join(api, user, workspace, "owner")
    assert api.delete(members_path(workspace, uid(co_owner)), token=co_owner["token"]).status == 204
    assert api.delete(members_path(workspace, uid(user)), token=user["token"]).status == 409
    assert api.patch(members_path(workspace, uid(user)), {"role": "member"}, token=user["token"]).status == 409

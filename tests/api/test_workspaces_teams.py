"""Teams: CRUD and team members, who must belong to the workspace."""

from __future__ import annotations

import threading
from typing import Any

from agentplane import raw_items
from tests.api.test_workspaces import audit_actions, join, register_and_login, ws_path


def teams_path(ws: dict[str, Any], team_id: str | None = None) -> str:
    return f"{ws_path(ws)}/teams" + (f"/{team_id}" if team_id else "")


def make_team(api, owner: dict[str, Any], ws: dict[str, Any], name: str = "Platform", **fields: Any) -> dict:
    created = api.post(teams_path(ws), {"name": name, **fields}, token=owner["token"])
    assert created.status == 201, created.body
    return created.json["data"]


def test_create_get_patch_and_delete_a_team(api, user, workspace):
    api.token = user["token"]
    team = make_team(api, user, workspace, description="Infra people")
    assert team["id"].startswith("team_") and team["member_count"] == 0 and team["version"] == 1
    detail = api.get(teams_path(workspace, team["id"])).json["data"]
    assert detail["name"] == "Platform" and detail["members"] == []
    patched = api.patch(teams_path(workspace, team["id"]), {"name": "Infra", "version": 1})
    assert patched.status == 200 and patched.json["data"]["version"] == 2
    assert api.patch(teams_path(workspace, team["id"]), {"name": "Late", "version": 1}).status == 412
    assert api.patch(teams_path(workspace, team["id"]), {"name": "Late"}, headers={"If-Match": "1"}).status == 412
    assert api.delete(teams_path(workspace, team["id"])).status == 204
    assert api.get(teams_path(workspace, team["id"])).status == 404
    actions = {r["action"] for r in audit_actions(workspace)}
    assert {"team.created", "team.updated", "team.deleted"} <= actions


def test_team_list_is_paginated_and_filters_by_name(api, user, workspace):
    ids = [make_team(api, user, workspace, name)["id"] for name in ("Mobile", "Web", "Mobile QA", "Data")]
    api.token = user["token"]
    seen: list[str] = []
    cursor = None
    while True:
        body = api.get(teams_path(workspace) + "?limit=3" + (f"&cursor={cursor}" if cursor else "")).json
        seen += [t["id"] for t in body["data"]]
        cursor = body["meta"]["next_cursor"]
        if not cursor:
            break
    assert seen == ids
    named = api.get(teams_path(workspace) + "?name=mobile").json["data"]
    assert [t["name"] for t in named] == ["Mobile", "Mobile QA"]
    cursor = api.get(teams_path(workspace) + "?limit=1").json["meta"]["next_cursor"]
    assert api.get(teams_path(workspace) + f"?name=web&cursor={cursor}").status == 400


def test_team_members_must_belong_to_the_workspace(api, user, workspace):
    team = make_team(api, user, workspace)
    member = join(api, user, workspace, "member")
    stranger = register_and_login(api)
    path = f"{teams_path(workspace, team['id'])}/members"
    api.token = user["token"]
    refused = api.post(path, {"user_id": stranger["user"]["id"]})
    assert refused.status == 422
    added = api.post(path, {"user_id": member["user"]["id"], "role": "admin"})
    assert added.status == 201, added.body
    assert api.post(path, {"user_id": member["user"]["id"]}).status == 409
    assert api.post(path, {"user_id": user["user"]["id"]}).status == 201
    assert api.get(teams_path(workspace, team["id"])).json["data"]["member_count"] == 2
    listed = api.get(path + "?limit=1").json
    assert len(listed["data"]) == 1 and listed["meta"]["next_cursor"]
    assert api.delete(f"{path}/{member['user']['id']}").status == 204
    assert api.delete(f"{path}/{member['user']['id']}").status == 404
    assert api.get(teams_path(workspace, team["id"])).json["data"]["member_count"] == 1


def test_team_bad_input_is_422_and_unknown_team_is_404(api, user, workspace):
    api.token = user["token"]
    assert api.post(teams_path(workspace), {"name": ""}).status == 422
    assert api.post(teams_path(workspace), {"name": "x", "lead": "me"}).status == 422
    assert api.post(teams_path(workspace), {"name": "x" * 101}).status == 422
    assert api.get(teams_path(workspace)).json["data"] == []
    assert api.get(teams_path(workspace, "team_missing")).status == 404
    assert api.patch(teams_path(workspace, "team_missing"), {"name": "x"}).status == 404
    assert api.delete(teams_path(workspace, "team_missing")).status == 404
    assert api.post(f"{teams_path(workspace, 'team_missing')}/members", {"user_id": user["user"]["id"]}).status == 404


def test_viewer_reads_teams_but_cannot_change_them(api, user, workspace):
    team = make_team(api, user, workspace)
    viewer = join(api, user, workspace, "viewer")
    api.token = viewer["token"]
    assert api.get(teams_path(workspace)).status == 200
    assert api.post(teams_path(workspace), {"name": "Mine"}).status == 403
    assert api.patch(teams_path(workspace, team["id"]), {"name": "x"}).status == 403
    assert api.delete(teams_path(workspace, team["id"])).status == 403
    assert api.post(f"{teams_path(workspace, team['id'])}/members", {"user_id": viewer["user"]["id"]}).status == 403


def test_non_member_gets_404_for_teams(api, user, workspace):
    team = make_team(api, user, workspace)
    stranger = register_and_login(api)
    api.token = stranger["token"]
    assert api.get(teams_path(workspace)).status == 404
    assert api.get(teams_path(workspace, team["id"])).status == 404
    assert api.post(teams_path(workspace), {"name": "x"}).status == 404


def test_deleting_a_large_team_removes_every_team_membership(api, user, workspace):
    from agentplane import keys
    from agentplane.auth.scopes import Role
    from agentplane.ids import iso
    from agentplane.logic.teams import team_member_item
    from agentplane.logic.workspaces import member_item
    from agentplane.raw_items import Update
    from agentplane.store import get_store

    team = make_team(api, user, workspace)
    for start in (0, 90, 180):
        tx = get_store().transaction()
        for i in range(start, start + 45):
            raw_items.tx_put(tx, member_item(workspace["id"], "Acme", f"usr_t{i:03d}", Role.member, iso()))
            raw_items.tx_put(tx, team_member_item(workspace["id"], team["id"], f"usr_t{i:03d}", "member", "x", iso()))
        tx.commit()
    raw_items.update(keys.team_key(workspace["id"], team["id"]), Update(set={"member_count": 135}))
    assert api.delete(teams_path(workspace, team["id"]), token=user["token"]).status == 204
    left = raw_items.query(
        keys.ws_pk(workspace["id"]), sk_prefix=keys.team_member_prefix(team["id"]), limit=200, consistent=True
    )
    assert left.items == []


def test_concurrent_adds_of_one_person_to_a_team_have_one_winner(api, user, workspace):
    team = make_team(api, user, workspace)
    member = join(api, user, workspace, "member")
    statuses: list[int] = []

    def add() -> None:
        response = api.post(
            f"{teams_path(workspace, team['id'])}/members", {"user_id": member["user"]["id"]}, token=user["token"]
        )
        statuses.append(response.status)

    threads = [threading.Thread(target=add) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201, 409, 409]
    assert api.get(teams_path(workspace, team["id"]), token=user["token"]).json["data"]["member_count"] == 1


def _seed_team_members(workspace: dict[str, Any], team: dict[str, Any], count: int) -> list[str]:
    """`count` workspace members who are all in `team`, written straight to the table."""
    from agentplane import keys
    from agentplane.auth.scopes import Role
    from agentplane.ids import iso
    from agentplane.logic.teams import team_member_item
    from agentplane.logic.workspaces import member_item
    from agentplane.raw_items import Update
    from agentplane.store import get_store

    user_ids = [f"usr_p{i:03d}" for i in range(count)]
    for start in range(0, count, 45):
        tx = get_store().transaction()
        for user_id in user_ids[start : start + 45]:
            raw_items.tx_put(tx, member_item(workspace["id"], "Acme", user_id, Role.member, iso()))
            raw_items.tx_put(tx, team_member_item(workspace["id"], team["id"], user_id, "member", "x", iso()))
        tx.commit()
    raw_items.update(keys.team_key(workspace["id"], team["id"]), Update(set={"member_count": count}))
    return user_ids


def test_a_team_shows_its_first_hundred_members_and_lists_the_rest_page_by_page(api, user, workspace):
    team = make_team(api, user, workspace)
    other = make_team(api, user, workspace, "Other")
    user_ids = _seed_team_members(workspace, team, 105)
    _seed_team_members(workspace, other, 3)
    api.token = user["token"]

    detail = api.get(teams_path(workspace, team["id"])).json["data"]
    assert detail["id"] == team["id"] and detail["member_count"] == 105
    assert [m["user_id"] for m in detail["members"]] == user_ids[:100]
    assert detail["more_members"] is True

    seen: list[str] = []
    cursor = None
    while True:
        query = "?limit=40" + (f"&cursor={cursor}" if cursor else "")
        body = api.get(f"{teams_path(workspace, team['id'])}/members{query}").json
        seen += [m["user_id"] for m in body["data"]]
        cursor = body["meta"]["next_cursor"]
        if not cursor:
            break
    assert seen == user_ids  # every member once, none of the other team's
    # The team list holds the two teams only, never their members.
    assert [t["id"] for t in api.get(teams_path(workspace)).json["data"]] == [team["id"], other["id"]]


def test_members_of_an_unknown_or_deleted_team_are_404(api, user, workspace):
    team = make_team(api, user, workspace)
    _seed_team_members(workspace, team, 2)
    api.token = user["token"]
    members = f"{teams_path(workspace, team['id'])}/members"
    cursor = api.get(f"{members}?limit=1").json["meta"]["next_cursor"]
    assert cursor
    assert api.get(f"{teams_path(workspace, 'team_missing')}/members").status == 404
    assert api.delete(teams_path(workspace, team["id"])).status == 204
    assert api.get(members).status == 404
    assert api.get(f"{members}?limit=1&cursor={cursor}").status == 404

"""Workspaces: get, patch (optimistic), soft delete, and the common env of their agents."""

from __future__ import annotations

import secrets
import threading
from typing import Any

from agentplane import raw_items
from tests.conftest import register_and_login as _register_and_login


def register_and_login(api) -> dict[str, Any]:
    """A new account with a name of its own (this module's import of conftest counts separately
    from the `user` fixture's, so counter-made names could collide)."""
    return _register_and_login(api, name=f"ws{secrets.token_hex(6)}")


def ws_path(ws: dict[str, Any]) -> str:
    return f"/api/v1/workspaces/{ws['id']}"


def join(api, owner: dict[str, Any], ws: dict[str, Any], role: str) -> dict[str, Any]:
    """A new account added to `ws` by its owner with `role`."""
    person = register_and_login(api)
    added = api.post(f"{ws_path(ws)}/members", {"user_id": person["user"]["id"], "role": role}, token=owner["token"])
    assert added.status == 201, added.body
    return person


def audit_actions(ws: dict[str, Any]) -> list[dict[str, Any]]:
    from agentplane import keys

    return raw_items.query(keys.audit_pk(ws["id"]), limit=200, consistent=True).items


# --- workspace ---------------------------------------------------------------------------------


def test_create_workspace_makes_the_creator_its_owner(api, user):
    api.token = user["token"]
    created = api.post("/api/v1/workspaces", {"name": "Rocket", "description": "Launch stuff"})
    assert created.status == 201, created.body
    ws = created.json["data"]
    assert ws["id"].startswith("ws_") and ws["owner_id"] == user["user"]["id"]
    listed = api.get("/api/v1/workspaces").json["data"]
    assert [(m["workspace_id"], m["role"]) for m in listed] == [(ws["id"], "owner")]


def test_patch_workspace_changes_settings_and_bumps_version(api, user, workspace):
    api.token = user["token"]
    patched = api.patch(ws_path(workspace), {"description": "New", "auto_push": True, "workflow": "kanban"})
    assert patched.status == 200, patched.body
    data = patched.json["data"]
    assert (data["description"], data["auto_push"], data["workflow"], data["version"]) == ("New", True, "kanban", 2)
    assert api.get(ws_path(workspace)).json["data"] == data
    assert any(r["action"] == "workspace.updated" for r in audit_actions(workspace))


def test_patch_with_stale_version_or_if_match_is_412_and_changes_nothing(api, user, workspace):
    api.token = user["token"]
    assert api.patch(ws_path(workspace), {"name": "B", "version": 1}).status == 200
    stale = api.patch(ws_path(workspace), {"name": "C", "version": 1})
    assert stale.status == 412
    assert stale.json["current_version"] == 2
    stale_header = api.patch(ws_path(workspace), {"name": "C"}, headers={"If-Match": "1"})
    assert stale_header.status == 412
    assert api.get(ws_path(workspace)).json["data"]["name"] == "B"


def test_rename_reaches_every_members_workspace_list(api, user, workspace):
    member = join(api, user, workspace, "member")
    assert api.patch(ws_path(workspace), {"name": "Renamed"}, token=user["token"]).status == 200
    listed = api.get("/api/v1/workspaces", token=member["token"]).json["data"]
    assert [m["workspace_name"] for m in listed] == ["Renamed"]


def test_patch_needs_admin_viewer_and_member_get_403(api, user, workspace):
    viewer = join(api, user, workspace, "viewer")
    member = join(api, user, workspace, "member")
    admin = join(api, user, workspace, "admin")
    for person in (viewer, member):
        refused = api.patch(ws_path(workspace), {"name": "x"}, token=person["token"])
        assert refused.status == 403
        assert refused.header("content-type") == "application/problem+json"
    assert api.patch(ws_path(workspace), {"name": "by admin"}, token=admin["token"]).status == 200


def test_patch_bad_input_is_422_and_writes_nothing(api, user, workspace):
    api.token = user["token"]
    assert api.patch(ws_path(workspace), {"name": ""}).status == 422
    assert api.patch(ws_path(workspace), {"colour": "red"}).status == 422
    assert api.patch(ws_path(workspace), {"auto_push": "sometimes"}).status == 422
    assert api.patch(ws_path(workspace), raw="{", headers={"Content-Type": "application/json"}).status == 400
    assert api.get(ws_path(workspace)).json["data"]["version"] == 1


def test_non_member_gets_404_for_the_workspace(api, user, workspace):
    stranger = register_and_login(api)
    api.token = stranger["token"]
    assert api.get(ws_path(workspace)).status == 404
    assert api.patch(ws_path(workspace), {"name": "x"}).status == 404
    assert api.delete(ws_path(workspace)).status == 404
    assert api.get(f"{ws_path(workspace)}/members").status == 404


def test_only_an_owner_deletes_the_workspace(api, user, workspace):
    admin = join(api, user, workspace, "admin")
    refused = api.delete(ws_path(workspace), token=admin["token"])
    assert refused.status == 403
    assert api.get(ws_path(workspace), token=admin["token"]).status == 200


def test_deleted_workspace_is_404_for_all_members_and_leaves_their_lists(api, user, workspace):
    member = join(api, user, workspace, "member")
    api.post(f"{ws_path(workspace)}/tasks", {"title": "A"}, token=member["token"])
    assert api.delete(ws_path(workspace), token=user["token"]).status == 204
    for person in (user, member):
        assert api.get(ws_path(workspace), token=person["token"]).status == 404
        assert api.get(f"{ws_path(workspace)}/tasks", token=person["token"]).status == 404
        assert api.get("/api/v1/workspaces", token=person["token"]).json["data"] == []
    assert api.delete(ws_path(workspace), token=user["token"]).status == 404
    assert any(r["action"] == "workspace.deleted" for r in audit_actions(workspace))


def test_delete_of_a_large_workspace_removes_every_membership(api, user, workspace):
    from agentplane import keys
    from agentplane.ids import iso
    from agentplane.logic.workspaces import member_item
    from agentplane.store import get_store

    tx = get_store().transaction()
    from agentplane.auth.scopes import Role

    for i in range(99):
        raw_items.tx_put(tx, member_item(workspace["id"], "Acme", f"usr_bulk{i:03d}", Role.member, iso()))
    tx.commit()
    tx = get_store().transaction()
    for i in range(99, 130):
        raw_items.tx_put(tx, member_item(workspace["id"], "Acme", f"usr_bulk{i:03d}", Role.member, iso()))
    tx.commit()
    assert api.delete(ws_path(workspace), token=user["token"]).status == 204
    left = raw_items.query(keys.ws_pk(workspace["id"]), sk_prefix=keys.MEMBER_PREFIX, limit=200, consistent=True)
    assert left.items == []


# --- common env --------------------------------------------------------------------------------


def env_path(ws: dict[str, Any]) -> str:
    return f"{ws_path(ws)}/common-env"


def test_common_env_values_are_sealed_and_listed_masked(api, user, workspace):
    from agentplane import keys
    from agentplane.logic.workspaces import common_env_values

    api.token = user["token"]
    put = api.put(env_path(workspace), {"variables": {"OPENAI_API_KEY": "sk-live-abcdef123456", "REGION": "eu"}})
    assert put.status == 200, put.body
    listed = api.get(env_path(workspace)).json["data"]
    assert listed["revealed"] is False and listed["version"] == 1
    assert {v["name"]: v["value"] for v in listed["variables"]} == {"OPENAI_API_KEY": "••••3456", "REGION": "••••"}
    stored = raw_items.get(keys.common_env_key(workspace["id"]))
    assert "sk-live-abcdef123456" not in str(stored)
    assert common_env_values(workspace["id"]) == {"OPENAI_API_KEY": "sk-live-abcdef123456", "REGION": "eu"}


def test_reveal_needs_secrets_read_and_is_audited(api, user, workspace):
    api.put(env_path(workspace), {"variables": {"TOKEN": "  spaced value  "}}, token=user["token"])
    member = join(api, user, workspace, "member")
    masked = api.get(env_path(workspace), token=member["token"])
    assert masked.status == 200
    assert masked.json["data"]["variables"][0]["value"] == "••••ue  "
    refused = api.get(f"{env_path(workspace)}?reveal=true", token=member["token"])
    assert refused.status == 403
    revealed = api.get(f"{env_path(workspace)}?reveal=true", token=user["token"]).json["data"]
    assert revealed["revealed"] is True
    assert revealed["variables"][0]["value"] == "  spaced value  "
    assert any(r["action"] == "common_env.revealed" for r in audit_actions(workspace))


def test_put_merges_and_replace_drops_unlisted(api, user, workspace):
    api.token = user["token"]
    api.put(env_path(workspace), {"variables": {"A": "1", "B": "2"}})
    api.put(env_path(workspace), {"variables": {"B": "3", "C": "4"}})
    names = [v["name"] for v in api.get(env_path(workspace)).json["data"]["variables"]]
    assert names == ["A", "B", "C"]
    replaced = api.put(env_path(workspace), {"variables": {"C": "5"}, "replace": True}).json["data"]
    assert [v["name"] for v in replaced["variables"]] == ["C"]
    from agentplane.logic.workspaces import common_env_values

    assert common_env_values(workspace["id"]) == {"C": "5"}


def test_delete_one_variable_or_all(api, user, workspace):
    api.token = user["token"]
    api.put(env_path(workspace), {"variables": {"A": "1", "B": "2"}})
    assert api.delete(f"{env_path(workspace)}?name=A").status == 204
    assert api.delete(f"{env_path(workspace)}?name=A").status == 404
    assert [v["name"] for v in api.get(env_path(workspace)).json["data"]["variables"]] == ["B"]
    assert api.delete(env_path(workspace)).status == 204
    assert api.get(env_path(workspace)).json["data"]["variables"] == []
    assert api.delete(f"{env_path(workspace)}?name=bad-name").status == 422


def test_common_env_audit_names_variables_and_never_values(api, user, workspace):
    api.token = user["token"]
    api.put(env_path(workspace), {"variables": {"DB_PASSWORD": "hunter2-very-secret"}})
    api.delete(f"{env_path(workspace)}?name=DB_PASSWORD")
    rows = [r for r in audit_actions(workspace) if r["action"].startswith("common_env.")]
    assert {r["action"] for r in rows} == {"common_env.updated", "common_env.deleted"}
    assert "hunter2" not in str(rows)
    assert any("DB_PASSWORD" in str(r["details"]) for r in rows)


def test_common_env_writes_need_secrets_write(api, user, workspace):
    member = join(api, user, workspace, "member")
    assert api.put(env_path(workspace), {"variables": {"A": "1"}}, token=member["token"]).status == 403
    assert api.delete(env_path(workspace), token=member["token"]).status == 403


def test_common_env_bad_input_is_422(api, user, workspace):
    api.token = user["token"]
    assert api.put(env_path(workspace), {"variables": {"1BAD": "x"}}).status == 422
    assert api.put(env_path(workspace), {"variables": {"A": "x" * 4097}}).status == 422
    assert api.put(env_path(workspace), {"variables": {f"V{i}": "x" for i in range(101)}}).status == 422
    assert api.put(env_path(workspace), {"variables": {"A": 5}}).status == 422
    assert api.get(env_path(workspace)).json["data"]["variables"] == []


def test_stale_common_env_version_is_412(api, user, workspace):
    api.token = user["token"]
    api.put(env_path(workspace), {"variables": {"A": "1"}})
    stale = api.put(env_path(workspace), {"variables": {"A": "2"}, "version": 0})
    assert stale.status == 412
    assert api.put(env_path(workspace), {"variables": {"A": "2"}}, headers={"If-Match": "1"}).status == 200


def test_concurrent_common_env_writes_never_lose_an_acknowledged_value(stack, user, workspace):
    from agentplane.access import workspace_access
    from agentplane.auth.tokens import resolve_principal
    from agentplane.errors import PreconditionFailed
    from agentplane.logic.workspaces import common_env_values, put_common_env
    from agentplane.models.workspaces import CommonEnvPut

    access = workspace_access(resolve_principal(user["token"]), workspace["id"], "secrets:write")
    outcomes: list[str] = []

    def write(name: str) -> None:
        try:
            put_common_env(access, CommonEnvPut(variables={name: "v"}, version=0))
            outcomes.append(name)
        except PreconditionFailed:
            outcomes.append("412")

    threads = [threading.Thread(target=write, args=(f"V{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o != "412"]
    assert len(winners) == 1
    assert set(common_env_values(workspace["id"])) == set(winners)


# --- what a deleted workspace's keys, and workspace keys, can reach ---------------------------


def make_key(api, owner: dict[str, Any], ws: dict[str, Any], **body: Any) -> dict[str, Any]:
    created = api.post(f"{ws_path(ws)}/api-keys", {"name": "ci", **body}, token=owner["token"])
    assert created.status == 201, created.body
    return created.json["data"]


def stored_tasks(ws: dict[str, Any]) -> list[dict[str, Any]]:
    from agentplane import keys

    return raw_items.query(keys.ws_pk(ws["id"]), sk_prefix=keys.TASK_PREFIX, limit=200, consistent=True).items


def test_deleting_a_workspace_stops_its_api_keys_and_agent_keys_for_reads_and_writes(api, user, workspace):
    api_key = make_key(api, user, workspace, scopes=["tasks:read", "tasks:write"])
    agent_key = make_key(api, user, workspace, agent="builder")
    tasks = f"{ws_path(workspace)}/tasks"
    for secret in (api_key["key"], agent_key["key"]):
        assert api.get(tasks, token=secret).status == 200

    assert api.delete(ws_path(workspace), token=user["token"]).status == 204

    for secret in (api_key["key"], agent_key["key"]):
        assert api.get(tasks, token=secret).status == 401
        assert api.post(tasks, {"title": "after the end"}, token=secret).status == 401
    assert stored_tasks(workspace) == []
    deleted = next(r for r in audit_actions(workspace) if r["action"] == "workspace.deleted")
    assert deleted["details"]["api_keys_revoked"] == 2


def test_an_agent_key_cannot_write_to_a_workspace_marked_deleted(api, user, workspace):
    """Between the deletion mark and the keys' revocation (or with the authorizer's answer
    cached), an agent key's write re-checks the workspace itself."""
    from agentplane import keys
    from agentplane.ids import iso
    from agentplane.raw_items import Update

    agent_key = make_key(api, user, workspace, agent="builder")
    raw_items.update(keys.workspace_key(workspace["id"]), Update(set={"deleted_at": iso()}))

    refused = api.post(f"{ws_path(workspace)}/tasks", {"title": "too late"}, token=agent_key["key"])

    assert refused.status == 401 and refused.header("content-type") == "application/problem+json"
    assert stored_tasks(workspace) == []


def test_a_deleted_workspaces_keys_and_members_cannot_read_or_write_on_the_next_call(api, user, workspace):
    api_key = make_key(api, user, workspace, scopes=["tasks:read", "tasks:write"])
    agent_key = make_key(api, user, workspace, agent="builder")
    tasks = f"{ws_path(workspace)}/tasks"
    for secret in (api_key["key"], agent_key["key"], user["token"]):
        assert api.get(tasks, token=secret).status == 200  # each token has now been seen

    assert api.delete(ws_path(workspace), token=user["token"]).status == 204

    for secret in (api_key["key"], agent_key["key"]):
        assert api.get(tasks, token=secret).status == 401
        assert api.post(tasks, {"title": "after the end"}, token=secret).status == 401
    assert api.get(tasks, token=user["token"]).status == 404
    assert stored_tasks(workspace) == []


def test_a_workspace_key_lists_only_its_own_workspace(api, user, workspace):
    other = api.post("/api/v1/workspaces", {"name": "Side project"}, token=user["token"]).json["data"]
    api_key = make_key(api, user, workspace, scopes=["settings:read"])
    agent_key = make_key(api, user, workspace, agent="builder")

    by_person = api.get("/api/v1/workspaces", token=user["token"]).json["data"]
    by_api_key = api.get("/api/v1/workspaces", token=api_key["key"]).json["data"]
    by_agent_key = api.get("/api/v1/workspaces", token=agent_key["key"]).json["data"]

    assert {m["workspace_id"] for m in by_person} == {workspace["id"], other["id"]}
    assert [(m["workspace_id"], m["role"], m["user_id"]) for m in by_api_key] == [
        (workspace["id"], "owner", user["user"]["id"])
    ]
    assert [(m["workspace_id"], m["workspace_name"], m["role"], m["user_id"]) for m in by_agent_key] == [
        (workspace["id"], "Acme", "member", None)
    ]


# --- settings-write limit, ETag and If-Match ---------------------------------------------------


def test_the_21st_settings_write_in_a_minute_is_429_and_changes_nothing(api, user, workspace):
    api.token = user["token"]
    for n in range(20):
        patched = api.patch(ws_path(workspace), {"description": f"take {n}"})
        assert patched.status == 200, patched.body
        assert patched.header("X-RateLimit-Limit") == "20"
        assert patched.header("X-RateLimit-Remaining") == str(19 - n)

    limited = api.patch(ws_path(workspace), {"description": "one too many"})

    assert limited.status == 429 and limited.header("content-type") == "application/problem+json"
    assert 1 <= int(limited.header("Retry-After")) <= 60
    assert limited.header("X-RateLimit-Limit") == "20" and limited.header("X-RateLimit-Remaining") == "0"
    assert api.get(ws_path(workspace)).json["data"]["description"] == "take 19"


def test_a_non_members_404s_spend_none_of_their_settings_write_budget(api, user, workspace):
    outsider = register_and_login(api)
    own = api.post("/api/v1/workspaces", {"name": "Mine"}, token=outsider["token"]).json["data"]
    for _ in range(20):
        assert api.patch(ws_path(workspace), {"description": "x"}, token=outsider["token"]).status == 404

    mine = api.patch(ws_path(own), {"description": "still within budget"}, token=outsider["token"])

    assert mine.status == 200, mine.body
    assert mine.header("X-RateLimit-Remaining") == "19"


def test_get_answers_the_version_as_etag_and_if_match_accepts_its_standard_forms(api, user, workspace):
    api.token = user["token"]
    got = api.get(ws_path(workspace))
    assert got.header("ETag") == '"1"'

    for version, if_match in ((1, '"1"'), (2, 'W/"2"'), (3, "3")):
        patched = api.patch(ws_path(workspace), {"description": f"v{version + 1}"}, headers={"If-Match": if_match})
        assert patched.status == 200, (if_match, patched.body)
        assert patched.json["data"]["version"] == version + 1
        assert patched.header("ETag") == f'"{version + 1}"'
    stale = api.patch(ws_path(workspace), {"description": "stale"}, headers={"If-Match": '"1"'})
    assert stale.status == 412
    assert api.get(ws_path(workspace)).header("ETag") == '"4"'


def test_a_malformed_if_match_is_a_400_problem_and_changes_nothing(api, user, workspace):
    api.token = user["token"]
    for if_match in ("abc", '"1', "1, 2", '"v1"'):
        refused = api.patch(ws_path(workspace), {"description": "nope"}, headers={"If-Match": if_match})
        assert refused.status == 400, (if_match, refused.body)
        assert refused.header("content-type") == "application/problem+json"
    assert api.get(ws_path(workspace)).json["data"]["version"] == 1

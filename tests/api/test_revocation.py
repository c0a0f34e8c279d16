"""Revocation takes effect on the very next request, reads included.

Each test first reads with the token, so the function has seen it (and would answer on what it
remembers, if it did not check), then revokes it, then reads again."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.api.test_workspaces import join, make_key, register_and_login, ws_path

REFUSED = "the token is invalid, expired or revoked"


def refused(response: Any, status: int = 401) -> bool:
    return response.status == status and response.header("content-type") == "application/problem+json"


def tasks_path(ws: dict[str, Any]) -> str:
    return f"{ws_path(ws)}/tasks"


def warm(api, path: str, token: str) -> None:
    first = api.get(path, token=token)
    assert first.status == 200, first.body
    assert api.get(path, token=token).status == 200


@pytest.mark.parametrize("action", ["revoke", "roll", "delete"])
def test_an_api_key_is_refused_on_the_next_read_after_revoke_roll_or_delete(api, user, workspace, action):
    key = make_key(api, user, workspace, scopes=["tasks:read"])
    warm(api, tasks_path(workspace), key["key"])
    path = f"{ws_path(workspace)}/api-keys/{key['id']}"
    answer = (
        api.delete(path, token=user["token"])
        if action == "delete"
        else api.post(f"{path}/{action}", token=user["token"])
    )
    assert answer.status in (200, 204), answer.body

    after = api.get(tasks_path(workspace), token=key["key"])
    assert refused(after) and after.json["detail"] == REFUSED
    if action == "roll":
        assert api.get(tasks_path(workspace), token=answer.json["data"]["key"]).status == 200


def test_an_agent_key_is_refused_on_the_next_read_after_its_revocation(api, user, workspace):
    key = make_key(api, user, workspace, agent="builder")
    warm(api, tasks_path(workspace), key["key"])
    assert api.post(f"{ws_path(workspace)}/api-keys/{key['id']}/revoke", token=user["token"]).status == 200
    assert refused(api.get(tasks_path(workspace), token=key["key"]))


def test_a_personal_access_token_is_refused_on_the_next_read_after_its_deletion(api, user, workspace):
    pat = api.post("/api/v1/me/personal-access-tokens", {"name": "laptop"}, token=user["token"]).json["data"]
    warm(api, tasks_path(workspace), pat["token"])
    warm(api, "/api/v1/me", pat["token"])
    assert api.delete(f"/api/v1/me/personal-access-tokens/{pat['id']}", token=user["token"]).status == 204
    assert refused(api.get(tasks_path(workspace), token=pat["token"]))
    assert refused(api.get("/api/v1/me", token=pat["token"]))


def test_a_session_is_refused_on_the_next_read_after_logout(api, workspace):
    person = register_and_login(api)
    warm(api, "/api/v1/me", person["token"])
    assert api.post("/api/v1/auth/logout", token=person["token"]).status == 200
    assert refused(api.get("/api/v1/me", token=person["token"]))
    assert refused(api.get("/api/v1/workspaces", token=person["token"]))


def test_an_expired_key_is_refused_on_the_first_read_past_its_expiry(api, user, workspace, monkeypatch):
    key = make_key(api, user, workspace, scopes=["tasks:read"], expires_in_days=1)
    warm(api, tasks_path(workspace), key["key"])
    later = time.time() + 2 * 86400
    monkeypatch.setattr(time, "time", lambda: later)
    assert refused(api.get(tasks_path(workspace), token=key["key"]))


def test_a_removed_member_gets_404_on_the_next_read_and_their_keys_are_revoked_for_good(api, user, workspace):
    person = join(api, user, workspace, "admin")
    key = make_key(api, person, workspace, scopes=["tasks:read"])
    warm(api, tasks_path(workspace), person["token"])
    warm(api, tasks_path(workspace), key["key"])

    assert api.delete(f"{ws_path(workspace)}/members/{person['user']['id']}", token=user["token"]).status == 204

    assert refused(api.get(tasks_path(workspace), token=person["token"]), 404)
    assert refused(api.get(tasks_path(workspace), token=key["key"]))
    listed = api.get(f"{ws_path(workspace)}/api-keys/{key['id']}", token=user["token"]).json["data"]
    assert listed["status"] == "revoked"
    # Added again, they are a member again; the key they made before stays dead.
    again = api.post(
        f"{ws_path(workspace)}/members", {"user_id": person["user"]["id"], "role": "admin"}, token=user["token"]
    )
    assert again.status == 201
    assert api.get(tasks_path(workspace), token=person["token"]).status == 200
    assert refused(api.get(tasks_path(workspace), token=key["key"]))


def test_a_deleted_workspace_is_404_to_its_members_on_the_next_read(api, user, workspace):
    person = join(api, user, workspace, "member")
    warm(api, tasks_path(workspace), person["token"])
    assert api.delete(ws_path(workspace), token=user["token"]).status == 204
    assert refused(api.get(tasks_path(workspace), token=person["token"]), 404)
    assert refused(api.get(ws_path(workspace), token=person["token"]), 404)


def test_a_demoted_admin_is_refused_on_the_next_call_with_a_403_naming_the_scope(api, user, workspace):
    person = join(api, user, workspace, "admin")
    keys_path = f"{ws_path(workspace)}/api-keys"
    warm(api, keys_path, person["token"])
    demoted = api.patch(f"{ws_path(workspace)}/members/{person['user']['id']}", {"role": "viewer"}, token=user["token"])
    assert demoted.status == 200, demoted.body

    read = api.get(keys_path, token=person["token"])
    assert refused(read, 403) and read.json["role"] == "viewer"
    write = api.post(keys_path, {"name": "after demotion"}, token=person["token"])
    assert refused(write, 403) and write.json["required_scope"] and "viewer" in write.json["detail"]
    assert api.get(tasks_path(workspace), token=person["token"]).status == 200  # a viewer still reads


def test_a_promotion_counts_on_the_next_call_too(api, user, workspace):
    person = join(api, user, workspace, "viewer")
    keys_path = f"{ws_path(workspace)}/api-keys"
    assert refused(api.get(keys_path, token=person["token"]), 403)
    assert (
        api.patch(f"{ws_path(workspace)}/members/{person['user']['id']}", {"role": "admin"}, token=user["token"]).status
        == 200
    )
    assert api.get(keys_path, token=person["token"]).status == 200


def test_a_missing_token_and_a_refused_one_are_told_apart(api, workspace):
    missing = api.get(tasks_path(workspace), token="")
    assert refused(missing) and "bearer token is required" in missing.json["detail"]
    forged = api.get(tasks_path(workspace), token="aps_forged")
    assert refused(forged) and forged.json["detail"] == REFUSED
    assert missing.header("X-RateLimit-Limit") and forged.header("X-RateLimit-Limit")


def test_a_write_by_a_revoked_token_changes_nothing(api, user, workspace):
    key = make_key(api, user, workspace, scopes=["tasks:read", "tasks:write"])
    assert api.post(tasks_path(workspace), {"title": "before"}, token=key["key"]).status == 201
    assert api.post(f"{ws_path(workspace)}/api-keys/{key['id']}/revoke", token=user["token"]).status == 200
    assert refused(api.post(tasks_path(workspace), {"title": "after"}, token=key["key"]))
    titles = [t["title"] for t in api.get(tasks_path(workspace), token=user["token"]).json["data"]]
    assert titles == ["before"]


# --- what a check costs ------------------------------------------------------------------------


def test_a_seen_tokens_read_of_one_item_is_one_batch_get_holding_the_token_and_membership(api, user, workspace):
    from tests.dynamo_calls import counted_calls

    task = api.post(tasks_path(workspace), {"title": "read me"}, token=user["token"]).json["data"]
    warm(api, f"{tasks_path(workspace)}/{task['id']}", user["token"])
    with counted_calls() as calls:
        assert api.get(f"{tasks_path(workspace)}/{task['id']}", token=user["token"]).status == 200
    assert [c.operation for c in calls] == ["BatchGetItem"]
    assert calls[0].keys == 4  # the task, the token, the workspace, the membership


def test_a_seen_tokens_list_sends_its_check_beside_the_query(api, user, workspace):
    from tests.dynamo_calls import counted_calls

    warm(api, tasks_path(workspace), user["token"])
    with counted_calls() as calls:
        assert api.get(tasks_path(workspace), token=user["token"]).status == 200
    assert sorted(c.operation for c in calls) == ["BatchGetItem", "Query"]
    check, query = sorted(calls, key=lambda c: c.operation)
    # Sent from a thread of its own as the Query goes out: on DynamoDB the two are in flight together.
    assert check.thread.startswith("deferred-check") and check.started <= query.started + 0.05
    assert check.keys == 3

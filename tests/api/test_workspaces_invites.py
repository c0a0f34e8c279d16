"""Workspace invites: created with a once-shown token, listed without it, revoked, accepted once."""

from __future__ import annotations

import threading
import time
from typing import Any

from agentplane import raw_items
from tests.api.test_workspaces import audit_actions, join, register_and_login, ws_path


def invites_path(ws: dict[str, Any]) -> str:
    return f"{ws_path(ws)}/invites"


def invite(api, owner: dict[str, Any], ws: dict[str, Any], email: str = "new@example.com", **fields: Any) -> dict:
    created = api.post(invites_path(ws), {"email": email, **fields}, token=owner["token"])
    assert created.status == 201, created.body
    return created.json["data"]


def accept(api, person: dict[str, Any], token: str):
    return api.post(f"/api/v1/invites/{token}/accept", token=person["token"])


def test_invite_returns_its_token_once_and_stores_only_a_hash(api, user, workspace):
    from agentplane import keys
    from agentplane.auth.secrets import hash_secret

    created = invite(api, user, workspace, "Pat@Example.com", role="admin")
    assert created["token"].startswith("api_")
    assert (created["email"], created["role"], created["status"]) == ("pat@example.com", "admin", "pending")
    record = raw_items.get(keys.token_key(hash_secret(created["token"])))
    assert record["kind"] == "invite" and record["workspace_id"] == workspace["id"]
    partition = raw_items.query(keys.ws_pk(workspace["id"]), sk_prefix="INVITE", limit=50, consistent=True).items
    assert created["token"] not in str(partition) and created["token"] not in str(audit_actions(workspace))
    listed = api.get(invites_path(workspace), token=user["token"]).json["data"]
    assert [i["id"] for i in listed] == [created["id"]]
    assert "token" not in listed[0]


def test_invite_token_cannot_be_used_as_a_bearer_token(api, user, workspace):
    created = invite(api, user, workspace)
    assert api.get(ws_path(workspace), token=created["token"]).status == 401


def test_accepting_makes_the_invitee_a_member_with_the_invited_role(api, user, workspace):
    created = invite(api, user, workspace, role="viewer")
    person = register_and_login(api)
    accepted = accept(api, person, created["token"])
    assert accepted.status == 200, accepted.body
    assert accepted.json["data"]["workspace_id"] == workspace["id"]
    assert accepted.json["data"]["role"] == "viewer"
    assert api.get(ws_path(workspace), token=person["token"]).status == 200
    assert api.get(invites_path(workspace), token=user["token"]).json["data"] == []
    assert any(r["action"] == "invite.accepted" for r in audit_actions(workspace))


def test_an_invite_is_accepted_only_once(api, user, workspace):
    created = invite(api, user, workspace)
    first, second = register_and_login(api), register_and_login(api)
    assert accept(api, first, created["token"]).status == 200
    assert accept(api, second, created["token"]).status == 404
    assert api.get(ws_path(workspace), token=second["token"]).status == 404


def test_two_concurrent_accepts_have_exactly_one_winner(api, user, workspace):
    created = invite(api, user, workspace)
    people = [register_and_login(api) for _ in range(3)]
    statuses: list[int] = []

    def go(person: dict[str, Any]) -> None:
        statuses.append(accept(api, person, created["token"]).status)

    threads = [threading.Thread(target=go, args=(p,)) for p in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200, 404, 404]
    members = api.get(f"{ws_path(workspace)}/members", token=user["token"]).json["data"]
    assert len(members) == 2


def test_unknown_revoked_or_expired_invites_are_404(api, user, workspace):
    from agentplane import keys
    from agentplane.auth.secrets import hash_secret
    from agentplane.raw_items import Update

    person = register_and_login(api)
    assert accept(api, person, "api_made-up").status == 404
    revoked = invite(api, user, workspace, "a@example.com")
    assert api.delete(f"{invites_path(workspace)}/{revoked['id']}", token=user["token"]).status == 204
    assert accept(api, person, revoked["token"]).status == 404
    expired = invite(api, user, workspace, "b@example.com")
    raw_items.update(keys.token_key(hash_secret(expired["token"])), Update(set={"expires_at": int(time.time()) - 1}))
    assert accept(api, person, expired["token"]).status == 404
    assert api.get(ws_path(workspace), token=person["token"]).status == 404


def test_existing_member_accepting_gets_409_and_the_invite_stays_usable(api, user, workspace):
    created = invite(api, user, workspace)
    member = join(api, user, workspace, "member")
    assert accept(api, member, created["token"]).status == 409
    newcomer = register_and_login(api)
    assert accept(api, newcomer, created["token"]).status == 200


def test_second_live_invite_for_the_same_email_is_409_until_revoked(api, user, workspace):
    first = invite(api, user, workspace, "dup@example.com")
    again = api.post(invites_path(workspace), {"email": "DUP@example.com"}, token=user["token"])
    assert again.status == 409
    assert api.delete(f"{invites_path(workspace)}/{first['id']}", token=user["token"]).status == 204
    invite(api, user, workspace, "dup@example.com")


def test_inviting_an_existing_members_email_is_409(api, user, workspace):
    member = join(api, user, workspace, "member")
    assert api.post(invites_path(workspace), {"email": member["email"]}, token=user["token"]).status == 409


def test_inviting_your_own_email_is_409_and_writes_nothing(api, user, workspace):
    refused = api.post(invites_path(workspace), {"email": user["user"]["email"].upper()}, token=user["token"])
    assert refused.status == 409
    assert api.get(invites_path(workspace), token=user["token"]).json["data"] == []
    assert "invite.created" not in {r["action"] for r in audit_actions(workspace)}


def test_an_existing_members_email_stays_free_for_a_later_invite(api, user, workspace):
    member = join(api, user, workspace, "member")
    assert api.post(invites_path(workspace), {"email": member["email"]}, token=user["token"]).status == 409
    # The refused invite left no guard behind: once the member has left, they can be invited.
    assert api.delete(f"{ws_path(workspace)}/members/{member['user']['id']}", token=member["token"]).status == 204
    invite(api, user, workspace, member["email"])


def test_revoking_twice_is_409_with_current_status(api, user, workspace):
    created = invite(api, user, workspace)
    path = f"{invites_path(workspace)}/{created['id']}"
    assert api.delete(path, token=user["token"]).status == 204
    again = api.delete(path, token=user["token"])
    assert again.status == 409 and again.json["current_status"] == "revoked"
    assert api.delete(f"{invites_path(workspace)}/inv_unknown", token=user["token"]).status == 404


def test_invite_bad_input_is_422_and_owner_role_is_refused(api, user, workspace):
    api.token = user["token"]
    assert api.post(invites_path(workspace), {"email": "not-an-email"}).status == 422
    assert api.post(invites_path(workspace), {"email": "x@example.com", "role": "owner"}).status == 422
    assert api.post(invites_path(workspace), {"email": "x@example.com", "expires_in_days": 0}).status == 422
    assert api.get(invites_path(workspace)).json["data"] == []


def test_viewer_and_member_cannot_invite_or_revoke(api, user, workspace):
    created = invite(api, user, workspace)
    for role in ("viewer", "member"):
        person = join(api, user, workspace, role)
        assert api.post(invites_path(workspace), {"email": f"{role}@x.io"}, token=person["token"]).status == 403
        assert api.delete(f"{invites_path(workspace)}/{created['id']}", token=person["token"]).status == 403


def test_non_member_gets_404_for_invites(api, user, workspace):
    stranger = register_and_login(api)
    assert api.get(invites_path(workspace), token=stranger["token"]).status == 404
    assert api.post(invites_path(workspace), {"email": "x@example.com"}, token=stranger["token"]).status == 404


def test_pending_list_is_paginated_and_hides_expired_invites(api, user, workspace):
    from agentplane import keys
    from agentplane.raw_items import Update

    ids = [invite(api, user, workspace, f"p{i}@example.com")["id"] for i in range(4)]
    raw_items.update(keys.invite_key(workspace["id"], ids[0]), Update(set={"expires_epoch": int(time.time()) - 5}))
    api.token = user["token"]
    seen: list[str] = []
    cursor = None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = api.get(invites_path(workspace) + query).json
        seen += [i["id"] for i in body["data"]]
        cursor = body["meta"]["next_cursor"]
        if not cursor:
            break
    assert seen == ids[1:]


def test_invite_to_a_deleted_workspace_is_404(api, user, workspace):
    created = invite(api, user, workspace)
    assert api.delete(ws_path(workspace), token=user["token"]).status == 204
    assert accept(api, register_and_login(api), created["token"]).status == 404


def test_a_workspace_bound_key_cannot_accept_an_invite(stack, user, workspace):
    import pytest

    from agentplane.auth.principal import Principal
    from agentplane.errors import Forbidden
    from agentplane.logic.invites import accept_invite

    bound = Principal(kind="api_key", id="key_1", user_id=user["user"]["id"], token_id="key_1", workspace_id="ws_x")
    with pytest.raises(Forbidden):
        accept_invite(bound, "api_whatever")

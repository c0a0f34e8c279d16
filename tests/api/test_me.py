from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from agentplane import raw_items
from tests.conftest import register_and_login


def newcomer(api, name: str | None = None) -> dict[str, Any]:
    """Another logged-in account, with a name no other account in the test can have."""
    return register_and_login(api, name=name or f"u{uuid.uuid4().hex[:12]}")


ME = "/api/v1/me"
MY_WORKSPACES = "/api/v1/me/workspaces"
PATS = "/api/v1/me/personal-access-tokens"
DEVICES = "/api/v1/me/devices"
ERASE = "/api/v1/users/me"
LOGIN = "/api/v1/auth/login"


def is_problem(response, status: int) -> bool:
    return response.status == status and response.header("content-type") == "application/problem+json"


def add_member(ws_id: str, user_id: str, role: str = "member") -> None:
    from agentplane.auth.scopes import Role
    from agentplane.ids import iso
    from agentplane.logic.workspaces import member_item

    raw_items.put(member_item(ws_id, "Acme", user_id, Role(role), iso()))


def create_workspace(api, token: str, name: str = "Solo") -> dict[str, Any]:
    response = api.post("/api/v1/workspaces", {"name": name}, token=token)
    assert response.status == 201, response.body
    return response.json["data"]


def register(api, username: str, email: str):
    body = {
        "username": username,
        "email": email,
        "password": "correct horse battery",
        "terms_accepted": True,
        "privacy_accepted": True,
    }
    return api.post("/api/v1/auth/register", body, token="", ip="10.4.0.1")


# --- profile --------------------------------------------------------------------------------------


def test_get_me_answers_the_profile_without_secrets(api, user):
    response = api.get(ME, token=user["token"])
    assert response.status == 200
    profile = response.json["data"]
    assert profile["id"] == user["user"]["id"]
    assert profile["email"] == user["email"]
    assert profile["terms_accepted_at"].endswith("Z")
    assert profile["timezone"] is None
    assert "password_hash" not in profile and "password" not in response.body


def test_patch_me_changes_only_the_fields_sent_and_null_clears(api, user):
    api.token = user["token"]
    changed = api.patch(
        ME,
        {
            "display_name": "Alice A.",
            "avatar_url": "https://cdn.example.com/a.png",
            "timezone": "Asia/Tokyo",
            "locale": "ja-JP",
            "bio": "writes agents",
        },
    )
    assert changed.status == 200, changed.body
    assert changed.json["data"]["timezone"] == "Asia/Tokyo"
    assert changed.json["data"]["updated_at"] > user["user"]["updated_at"]
    cleared = api.patch(ME, {"display_name": None, "bio": None})
    assert cleared.status == 200
    profile = api.get(ME).json["data"]
    assert profile["display_name"] is None and profile["bio"] is None
    assert profile["avatar_url"] == "https://cdn.example.com/a.png"
    assert profile["locale"] == "ja-JP"
    assert profile["username"] == user["user"]["username"]


def test_empty_patch_changes_nothing(api, user):
    response = api.patch(ME, {}, token=user["token"])
    assert response.status == 200
    assert response.json["data"]["updated_at"] == user["user"]["updated_at"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"avatar_url": "javascript:alert(1)"}, "avatar_url"),
        ({"username": None}, "username"),
        ({"username": "no spaces allowed"}, "username"),
        ({"display_name": "x" * 101}, "display_name"),
        ({"locale": "English"}, "locale"),
        ({"email": "new@example.com"}, "email"),
    ],
)
def test_patch_me_with_bad_fields_is_422_and_changes_nothing(api, user, body, field):
    response = api.patch(ME, body, token=user["token"])
    assert is_problem(response, 422), response.body
    assert field in {e["field"] for e in response.json["errors"]}
    assert api.get(ME, token=user["token"]).json["data"]["updated_at"] == user["user"]["updated_at"]


def test_patch_me_with_malformed_json_is_400(api, user):
    response = api.patch(ME, raw="{", headers={"Content-Type": "application/json"}, token=user["token"])
    assert is_problem(response, 400)


def test_new_username_is_claimed_and_the_old_one_released(api, user):
    old = user["user"]["username"]
    renamed = api.patch(ME, {"username": "renamed"}, token=user["token"])
    assert renamed.status == 200
    assert renamed.json["data"]["username"] == "renamed"
    # The old name is free for someone else; the new one is not.
    assert register(api, old, "taker@example.com").status == 201
    taker = api.post(LOGIN, {"email": "taker@example.com", "password": "correct horse battery"}, token="").json["data"]
    assert taker["user"]["username"] == old
    taken = api.patch(ME, {"username": "RENAMED"}, token=taker["token"])
    assert is_problem(taken, 409)
    assert taken.json["field"] == "username"
    assert api.get(ME, token=taker["token"]).json["data"]["username"] == old


def test_changing_only_the_case_of_the_username_keeps_the_claim(api, user):
    response = api.patch(ME, {"username": user["user"]["username"].upper()}, token=user["token"])
    assert response.status == 200
    assert response.json["data"]["username"] == user["user"]["username"].upper()
    # Still one claim, still held: nobody may register the name in another case.
    assert register(api, user["user"]["username"], "other@example.com").status == 409


def test_two_people_racing_for_one_username_get_one_winner(api, user):
    other = newcomer(api)
    statuses: list[int] = []

    def claim(token: str) -> None:
        statuses.append(api.patch(ME, {"username": "contested"}, token=token).status)

    threads = [threading.Thread(target=claim, args=(t,)) for t in (user["token"], other["token"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 409]
    names = {api.get(ME, token=t).json["data"]["username"] for t in (user["token"], other["token"])}
    assert "contested" in names and len(names) == 2


def test_one_person_renaming_twice_at_once_gets_one_name(api, user):
    statuses: list[int] = []
    barrier = threading.Barrier(2)

    def rename(name: str) -> None:
        barrier.wait()
        statuses.append(api.patch(ME, {"username": name}, token=user["token"]).status)

    threads = [threading.Thread(target=rename, args=(name,)) for name in ("name-a", "name-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Overlapping renames: one wins and one gets 409. If the scheduler ran them one after the
    # other, both succeed in turn. Either way exactly one name is held at the end.
    assert sorted(statuses) in ([200, 409], [200, 200])
    final = api.get(ME, token=user["token"]).json["data"]["username"]
    assert final in ("name-a", "name-b")
    # The loser's name was not left claimed: someone else can take it.
    loser = "name-b" if final == "name-a" else "name-a"
    assert newcomer(api, name=loser)["user"]["username"] == loser


def test_a_deleted_token_is_refused_on_the_very_next_read_and_write(api, user):
    pat = api.post(PATS, {"name": "soon revoked"}, token=user["token"]).json["data"]
    assert api.get(ME, token=pat["token"]).status == 200  # this function has now seen the token
    assert api.delete(f"{PATS}/{pat['id']}", token=user["token"]).status == 204
    refused = api.get(ME, token=pat["token"])
    assert is_problem(refused, 401) and refused.json["detail"] == "the token is invalid, expired or revoked"
    assert is_problem(api.patch(ME, {"display_name": "x"}, token=pat["token"]), 401)
    assert is_problem(api.post(PATS, {"name": "y"}, token=pat["token"]), 401)
    assert is_problem(api.post(DEVICES, {"platform": "ios", "push_token": "t"}, token=pat["token"]), 401)
    assert api.get(ME, token=user["token"]).json["data"]["display_name"] is None


def test_me_routes_refuse_workspace_keys_and_agent_keys(stack):
    from agentplane.auth.principal import Principal
    from agentplane.errors import Forbidden
    from agentplane.logic import me

    api_key = Principal(kind="api_key", id="key_1", user_id="usr_1", token_id="key_1", workspace_id="ws_1")
    agent_key = Principal(kind="agent_key", id="agt_1", user_id=None, token_id="agt_1", workspace_id="ws_1")
    for principal in (api_key, agent_key):
        with pytest.raises(Forbidden):
            me.get_profile(principal)


# --- my workspaces --------------------------------------------------------------------------------


def test_my_workspaces_lists_memberships_page_by_page(api, user):
    api.token = user["token"]
    made = [create_workspace(api, user["token"], f"W{i}")["id"] for i in range(3)]
    first = api.get(f"{MY_WORKSPACES}?limit=2")
    assert first.status == 200
    assert first.json["meta"]["limit"] == 2
    seen = [m["workspace_id"] for m in first.json["data"]]
    assert all(m["role"] == "owner" for m in first.json["data"])
    cursor = first.json["meta"]["next_cursor"]
    assert cursor
    while cursor:
        more = api.get(f"{MY_WORKSPACES}?limit=2&cursor={cursor}")
        assert more.status == 200
        seen += [m["workspace_id"] for m in more.json["data"]]
        cursor = more.json["meta"]["next_cursor"]
    assert sorted(seen) == sorted(made)


def test_my_workspaces_cursor_of_another_user_or_tampered_is_400(api, user):
    for i in range(2):
        create_workspace(api, user["token"], f"W{i}")
    cursor = api.get(f"{MY_WORKSPACES}?limit=1", token=user["token"]).json["meta"]["next_cursor"]
    other = newcomer(api)
    assert is_problem(api.get(f"{MY_WORKSPACES}?cursor={cursor}", token=other["token"]), 400)
    assert is_problem(api.get(f"{MY_WORKSPACES}?cursor={cursor[:-2]}zz", token=user["token"]), 400)
    assert is_problem(api.get(f"{MY_WORKSPACES}?limit=0", token=user["token"]), 422)


def test_my_workspaces_is_empty_for_a_new_user(api, user):
    response = api.get(MY_WORKSPACES, token=user["token"])
    assert response.json == {"data": [], "meta": {"next_cursor": None, "limit": 50}}


# --- personal access tokens -----------------------------------------------------------------------


def test_personal_access_token_secret_is_shown_once_and_works(api, user):
    created = api.post(PATS, {"name": "ci", "scopes": ["tasks:read"], "expires_in_days": 7}, token=user["token"])
    assert created.status == 201, created.body
    pat = created.json["data"]
    assert pat["id"].startswith("pat_") and pat["token"].startswith("app_")
    assert pat["scopes"] == ["tasks:read"]
    assert pat["expires_at"].endswith("Z")
    assert pat["origin"] == "personal"
    assert api.get(ME, token=pat["token"]).json["data"]["id"] == user["user"]["id"]
    listed = api.get(PATS, token=user["token"])
    assert listed.status == 200
    [entry] = listed.json["data"]
    assert entry["id"] == pat["id"]
    assert "token" not in entry and "token_hash" not in entry
    assert pat["token"] not in listed.body
    assert entry["last_used_at"].endswith("Z")  # it was just used for GET /me


def test_personal_access_token_scopes_cap_what_it_can_do(api, user, workspace):
    tasks = f"/api/v1/workspaces/{workspace['id']}/tasks"
    reader = api.post(PATS, {"name": "reader", "scopes": ["tasks:read"]}, token=user["token"]).json["data"]
    assert api.get(tasks, token=reader["token"]).status == 200
    refused = api.post(tasks, {"title": "x"}, token=reader["token"])
    assert is_problem(refused, 403)
    assert refused.json["required_scope"] == "tasks:write"


def test_a_scoped_token_cannot_act_on_the_account(api, user):
    reader = api.post(PATS, {"name": "reader", "scopes": ["tasks:read", "runs:read"]}, token=user["token"]).json["data"]
    wide = api.post(PATS, {"name": "wide"}, token=user["token"]).json["data"]
    device = {"platform": "ios", "push_token": "b" * 64, "name": "attacker's phone"}
    attempts = [
        api.post(PATS, {"name": "narrow", "scopes": ["runs:read"]}, token=reader["token"]),
        api.post(PATS, {"name": "all"}, token=reader["token"]),
        api.get(PATS, token=reader["token"]),
        api.delete(f"{PATS}/{wide['id']}", token=reader["token"]),
        api.patch(ME, {"display_name": "renamed"}, token=reader["token"]),
        api.post(DEVICES, device, token=reader["token"]),
    ]
    for attempt in attempts:
        assert is_problem(attempt, 403) and "every scope" in attempt.json["detail"], attempt.body
    # Nothing changed; and the token still does what it was made for: reading who it is.
    assert len(api.get(PATS, token=user["token"]).json["data"]) == 2
    assert api.get(ME, token=reader["token"]).json["data"]["display_name"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "scopes": ["root"]}, "scopes"),
        ({"name": ""}, "name"),
        ({"scopes": ["tasks:read"]}, "name"),
        ({"name": "x", "expires_in_days": 0}, "expires_in_days"),
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "x", "secret": "mine"}, "secret"),
    ],
)
def test_creating_a_token_with_bad_fields_is_422_and_creates_nothing(api, user, body, field):
    response = api.post(PATS, body, token=user["token"])
    assert is_problem(response, 422), response.body
    assert field in {e["field"] for e in response.json["errors"]}
    assert api.get(PATS, token=user["token"]).json["data"] == []


def test_token_list_is_newest_first_and_paginates(api, user):
    made = [api.post(PATS, {"name": f"t{i}"}, token=user["token"]).json["data"]["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        page = api.get(PATS + query, token=user["token"])
        assert page.status == 200
        seen += [p["id"] for p in page.json["data"]]
        cursor = page.json["meta"]["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(made))
    other = newcomer(api)
    first_cursor = api.get(f"{PATS}?limit=1", token=user["token"]).json["meta"]["next_cursor"]
    assert is_problem(api.get(f"{PATS}?cursor={first_cursor}", token=other["token"]), 400)


def test_the_token_list_shows_when_each_token_was_last_used(api, user):
    used = api.post(PATS, {"name": "used"}, token=user["token"]).json["data"]
    api.post(PATS, {"name": "idle"}, token=user["token"])
    device = api.post(
        "/api/v1/auth/token",
        {"email": user["user"]["email"], "password": user["password"], "name": "cli"},
        token="",
    ).json["data"]
    assert api.get(ME, token=used["token"]).status == 200
    assert api.get(ME, token=device["token"]).status == 200

    listed = {p["name"]: p for p in api.get(PATS, token=user["token"]).json["data"]}

    assert listed["used"]["last_used_at"].endswith("Z")
    assert listed["cli"]["last_used_at"].endswith("Z") and listed["cli"]["origin"] == "device"
    assert listed["idle"]["last_used_at"] is None


def test_revoking_a_token_stops_it_at_once(api, user):
    pat = api.post(PATS, {"name": "ci"}, token=user["token"]).json["data"]
    assert api.get(ME, token=pat["token"]).status == 200
    assert api.delete(f"{PATS}/{pat['id']}", token=user["token"]).status == 204
    assert is_problem(api.get(ME, token=pat["token"]), 401)
    assert api.get(PATS, token=user["token"]).json["data"] == []
    assert is_problem(api.delete(f"{PATS}/{pat['id']}", token=user["token"]), 404)


def test_a_token_can_revoke_itself(api, user):
    pat = api.post(PATS, {"name": "ci"}, token=user["token"]).json["data"]
    assert api.delete(f"{PATS}/{pat['id']}", token=pat["token"]).status == 204
    assert is_problem(api.get(ME, token=pat["token"]), 401)


def test_another_users_token_is_404(api, user):
    pat = api.post(PATS, {"name": "ci"}, token=user["token"]).json["data"]
    other = newcomer(api)
    assert is_problem(api.delete(f"{PATS}/{pat['id']}", token=other["token"]), 404)
    assert is_problem(api.delete(f"{PATS}/pat_unknown", token=other["token"]), 404)
    assert api.get(ME, token=pat["token"]).status == 200


def test_two_concurrent_revocations_have_one_winner(api, user):
    pat = api.post(PATS, {"name": "ci"}, token=user["token"]).json["data"]
    statuses: list[int] = []

    def revoke() -> None:
        statuses.append(api.delete(f"{PATS}/{pat['id']}", token=user["token"]).status)

    threads = [threading.Thread(target=revoke) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [204, 404, 404]


def test_an_expired_token_is_refused(api, user):
    import time

    from agentplane import keys
    from agentplane.auth.secrets import hash_secret
    from agentplane.raw_items import Update

    pat = api.post(PATS, {"name": "short", "expires_in_days": 1}, token=user["token"]).json["data"]
    raw_items.update(keys.token_key(hash_secret(pat["token"])), Update(set={"expires_at": int(time.time()) - 1}))
    assert is_problem(api.get(ME, token=pat["token"]), 401)


# --- devices --------------------------------------------------------------------------------------


def test_registering_a_device_twice_updates_one_device(api, user):
    first = api.post(
        DEVICES, {"platform": "ios", "push_token": "apns-token-0001", "name": "iPhone"}, token=user["token"]
    )
    assert first.status == 201, first.body
    device = first.json["data"]
    assert device["id"].startswith("dev_")
    assert device["platform"] == "ios"
    assert "apns-token-0001" not in first.body
    assert device["push_token_hint"].endswith("0001")
    again = api.post(
        DEVICES, {"platform": "ios", "push_token": "apns-token-0001", "name": "Work phone"}, token=user["token"]
    )
    assert again.status == 201
    assert again.json["data"]["id"] == device["id"]
    assert again.json["data"]["name"] == "Work phone"
    assert again.json["data"]["created_at"] == device["created_at"]


def test_unregistering_a_device(api, user):
    device = api.post(DEVICES, {"platform": "android", "push_token": "fcm-1"}, token=user["token"]).json["data"]
    assert api.delete(f"{DEVICES}/{device['id']}", token=user["token"]).status == 204
    assert is_problem(api.delete(f"{DEVICES}/{device['id']}", token=user["token"]), 404)
    # The push token is free again: registering it anew works.
    assert api.post(DEVICES, {"platform": "android", "push_token": "fcm-1"}, token=user["token"]).status == 201


def test_a_push_token_registered_by_someone_else_moves_to_them(api, user):
    from agentplane import keys

    mine = api.post(DEVICES, {"platform": "ios", "push_token": "handed-on"}, token=user["token"]).json["data"]
    other = newcomer(api)
    theirs = api.post(DEVICES, {"platform": "ios", "push_token": "handed-on"}, token=other["token"])
    assert theirs.status == 201
    assert raw_items.get(keys.device_key(user["user"]["id"], mine["id"])) is None
    assert is_problem(api.delete(f"{DEVICES}/{mine['id']}", token=user["token"]), 404)
    assert api.delete(f"{DEVICES}/{theirs.json['data']['id']}", token=other["token"]).status == 204


def test_deleting_a_device_whose_token_moved_on_keeps_the_new_holders_claim(api, user):
    from agentplane import keys
    from agentplane.auth.secrets import hash_secret

    mine = api.post(DEVICES, {"platform": "web", "push_token": "shared"}, token=user["token"]).json["data"]
    other = newcomer(api)
    # The claim moved to the other user while this user's device record was left behind.
    claim_key = keys.push_token_claim_key(hash_secret("shared"))
    raw_items.put({**claim_key, "user_id": other["user"]["id"], "device_id": mine["id"]})
    assert api.delete(f"{DEVICES}/{mine['id']}", token=user["token"]).status == 204
    assert raw_items.get(claim_key)["user_id"] == other["user"]["id"]


def test_two_people_registering_one_push_token_at_once_get_one_winner(api, user):
    other = newcomer(api)
    statuses: list[int] = []

    def register_device(token: str) -> None:
        statuses.append(api.post(DEVICES, {"platform": "ios", "push_token": "same-phone"}, token=token).status)

    threads = [threading.Thread(target=register_device, args=(t,)) for t in (user["token"], other["token"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) in ([201, 201], [201, 409])  # a later registration legitimately moves it
    from agentplane import keys
    from agentplane.auth.secrets import hash_secret
    from agentplane.logic.me import device_id_for

    holder = raw_items.get(keys.push_token_claim_key(hash_secret("same-phone")))["user_id"]
    device_id = device_id_for("same-phone")
    owners = [
        u["user"]["id"] for u in (user, other) if raw_items.get(keys.device_key(u["user"]["id"], device_id)) is not None
    ]
    assert owners == [holder]


@pytest.mark.parametrize(
    "body",
    [
        {"platform": "blackberry", "push_token": "t"},
        {"platform": "ios", "push_token": ""},
        {"platform": "ios"},
        {"platform": "ios", "push_token": "t", "owner": "me"},
    ],
)
def test_registering_a_device_with_bad_fields_is_422(api, user, body):
    assert is_problem(api.post(DEVICES, body, token=user["token"]), 422)


# --- GDPR erase -----------------------------------------------------------------------------------


def test_owner_of_a_workspace_with_other_members_cannot_erase(api, user):
    owner = newcomer(api)
    shared = create_workspace(api, owner["token"], "Team")
    add_member(shared["id"], user["user"]["id"])
    refused = api.delete(ERASE, token=owner["token"])
    assert is_problem(refused, 409)
    assert refused.json["workspace_ids"] == [shared["id"]]
    assert api.get(ME, token=owner["token"]).status == 200
    assert api.post(LOGIN, {"email": owner["email"], "password": owner["password"]}, token="").status == 200


def test_the_site_owner_cannot_erase_their_account(api, user):
    assert user["user"]["site_owner"] is True
    assert is_problem(api.delete(ERASE, token=user["token"]), 403)
    assert api.get(ME, token=user["token"]).status == 200


def test_erase_removes_the_account_and_frees_its_email_and_username(api, user, monkeypatch):
    from agentplane import keys
    from agentplane.logic import accounts

    sent: list[str] = []
    monkeypatch.setattr(accounts, "deliver_password_reset", lambda u, secret: sent.append(secret))
    leaver = newcomer(api)
    leaver_id = leaver["user"]["id"]
    other_session = api.post(LOGIN, {"email": leaver["email"], "password": leaver["password"]}, token="").json["data"]
    pat = api.post(PATS, {"name": "ci"}, token=leaver["token"]).json["data"]
    device_token = api.post(
        "/api/v1/auth/token", {"email": leaver["email"], "password": leaver["password"]}, token=""
    ).json["data"]
    device = api.post(DEVICES, {"platform": "ios", "push_token": "leaver-phone"}, token=leaver["token"]).json["data"]
    api.post("/api/v1/auth/forgot-password", {"email": leaver["email"]}, token="")
    solo = create_workspace(api, leaver["token"], "Mine alone")
    team = create_workspace(api, user["token"], "Team")
    add_member(team["id"], leaver_id)

    assert api.delete(ERASE, token=leaver["token"]).status == 204

    for token in (leaver["token"], other_session["token"], pat["token"], device_token["token"]):
        assert is_problem(api.get(ME, token=token), 401)
    assert api.post("/api/v1/auth/refresh", {"refresh_token": leaver["refresh_token"]}, token="").status == 401
    assert api.post("/api/v1/auth/reset-password", {"token": sent[0], "password": "a new one!"}, token="").status == 401
    assert api.post(LOGIN, {"email": leaver["email"], "password": leaver["password"]}, token="").status == 401
    # The tombstone keeps the id (audit actors resolve) and nothing personal.
    tombstone = raw_items.get(keys.user_key(leaver_id))
    assert tombstone["erased_at"]
    assert tombstone["username"] == "deleted-user"
    assert not {"email", "password_hash", "display_name", "terms_accepted_at"} & set(tombstone)
    # No membership, no device, no token listing is left behind.
    assert raw_items.get(keys.member_key(team["id"], leaver_id)) is None
    assert raw_items.get(keys.member_key(solo["id"], leaver_id)) is None
    assert raw_items.get(keys.device_key(leaver_id, device["id"])) is None
    assert raw_items.query(keys.user_pk(leaver_id), sk_prefix=keys.pat_prefix()).items == []
    assert raw_items.query(keys.user_pk(leaver_id), sk_prefix=keys.session_prefix()).items == []
    # The workspace they were alone in is gone; the team's keeps going and records who left.
    assert api.get(f"/api/v1/workspaces/{solo['id']}", token=user["token"]).status == 404
    assert raw_items.get(keys.workspace_key(solo["id"]))["deleted_at"]
    assert api.get(f"/api/v1/workspaces/{team['id']}", token=user["token"]).status == 200
    audit = raw_items.query(keys.audit_pk(team["id"])).items
    assert any(a["action"] == "member.erased" and a["actor_id"] == leaver_id for a in audit)
    # Email, username and push token can be used again by a new account.
    again = register_and_login(api, name=leaver["user"]["username"])
    assert again["email"] == leaver["email"]
    assert again["user"]["id"] != leaver_id
    assert api.post(DEVICES, {"platform": "ios", "push_token": "leaver-phone"}, token=again["token"]).status == 201


def test_erase_takes_the_member_out_of_the_workspace_s_teams(api, user, workspace):
    from agentplane import keys
    from agentplane.ids import iso
    from agentplane.logic.teams import team_item, team_member_item

    leaver = newcomer(api)
    add_member(workspace["id"], leaver["user"]["id"])
    raw_items.put(team_item(workspace["id"], "team_1", {"name": "Core", "member_count": 1}))
    raw_items.put(team_member_item(workspace["id"], "team_1", leaver["user"]["id"], "member", "x", iso()))
    assert api.delete(ERASE, token=leaver["token"]).status == 204
    assert raw_items.get(keys.team_member_key(workspace["id"], "team_1", leaver["user"]["id"])) is None
    assert raw_items.get(keys.team_key(workspace["id"], "team_1"))["member_count"] == 0


def test_erase_is_not_blocked_by_a_workspace_already_deleted(api, user):
    from agentplane import keys
    from agentplane.raw_items import Update

    leaver = newcomer(api)
    gone = create_workspace(api, leaver["token"], "Gone")
    raw_items.update(keys.workspace_key(gone["id"]), Update(set={"deleted_at": "2026-01-01T00:00:00.000Z"}))
    assert api.delete(ERASE, token=leaver["token"]).status == 204
    assert raw_items.get(keys.workspace_key(gone["id"]))["deleted_at"] == "2026-01-01T00:00:00.000Z"


def test_erase_checks_the_password_when_one_is_given(api, user):
    leaver = newcomer(api)
    wrong = api.request("DELETE", ERASE, {"password": "not it"}, token=leaver["token"])
    assert is_problem(wrong, 401)
    assert api.get(ME, token=leaver["token"]).status == 200
    right = api.request("DELETE", ERASE, {"password": leaver["password"]}, token=leaver["token"])
    assert right.status == 204


def test_erase_needs_a_session_or_an_unrestricted_personal_token(api, user):
    leaver = newcomer(api)
    scoped = api.post(PATS, {"name": "ci", "scopes": ["tasks:read"]}, token=leaver["token"]).json["data"]
    assert is_problem(api.delete(ERASE, token=scoped["token"]), 403)
    full = api.post(PATS, {"name": "admin"}, token=leaver["token"]).json["data"]
    assert api.delete(ERASE, token=full["token"]).status == 204
    assert is_problem(api.get(ME, token=full["token"]), 401)
    assert is_problem(api.get(ME, token=scoped["token"]), 401)


def test_erase_with_many_sessions_spans_several_transactions(api, user):
    """More tokens than one transaction holds are all revoked."""
    import time

    from agentplane import keys
    from agentplane.auth import tokens
    from agentplane.auth.secrets import hash_secret
    from agentplane.ids import iso, new_id
    from agentplane.store import get_store

    leaver = newcomer(api)
    leaver_id = leaver["user"]["id"]
    secrets = []
    for _ in range(105):  # more than a page of sessions, and 3 operations each
        tx = get_store().transaction()
        session_id = new_id("ses")
        secret = tokens.issue(
            tx, "session", token_id=session_id, principal_id=leaver_id, user_id=leaver_id,
            expires_at=int(time.time()) + 3600,
        )  # fmt: skip
        raw_items.tx_put(tx, {
            **keys.session_key(leaver_id, session_id), "id": session_id,
            "token_hashes": [hash_secret(secret)], "created_at": iso(),
        })  # fmt: skip
        tx.commit()
        secrets.append(secret)
    assert api.get(ME, token=secrets[-1]).status == 200
    assert api.delete(ERASE, token=leaver["token"]).status == 204
    assert all(tokens.lookup(secret) is None for secret in secrets)


def test_logout_everywhere_with_more_sessions_than_one_transaction_holds(api, user):
    import time

    from agentplane import keys
    from agentplane.auth import tokens
    from agentplane.auth.secrets import hash_secret
    from agentplane.ids import iso, new_id
    from agentplane.store import get_store

    user_id = user["user"]["id"]
    secrets = []
    for _ in range(40):
        tx = get_store().transaction()
        session_id = new_id("ses")
        secret = tokens.issue(
            tx, "session", token_id=session_id, principal_id=user_id, user_id=user_id,
            expires_at=int(time.time()) + 3600,
        )  # fmt: skip
        raw_items.tx_put(tx, {
            **keys.session_key(user_id, session_id), "id": session_id,
            "token_hashes": [hash_secret(secret), hash_secret(secret + "r")], "created_at": iso(),
        })  # fmt: skip
        tx.commit()
        secrets.append(secret)
    assert api.post("/api/v1/auth/logout", {"all_devices": True}, token=user["token"]).status == 200
    assert all(tokens.lookup(secret) is None for secret in secrets)


def test_two_concurrent_erases_of_one_account_have_one_winner(api, user):
    leaver = newcomer(api)
    statuses: list[int] = []

    def erase() -> None:
        statuses.append(api.delete(ERASE, token=leaver["token"]).status)

    threads = [threading.Thread(target=erase) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(204) == 1
    assert set(statuses) - {204} <= {401, 404, 409}
    assert api.post(LOGIN, {"email": leaver["email"], "password": leaver["password"]}, token="").status == 401


def test_auth_me_and_logic_refuse_a_token_without_a_person(stack):
    from agentplane.auth.principal import Principal
    from agentplane.errors import Forbidden, NotFound
    from agentplane.logic import accounts

    with pytest.raises(NotFound):
        accounts.load_user("usr_missing")
    with pytest.raises(Forbidden):
        accounts.current_user(Principal(kind="agent_key", id="agt_1", user_id=None, token_id="agt_1"))


# --- the account's own audit trail -----------------------------------------------------------------


def account_trail(user_id: str) -> list[dict[str, Any]]:
    from agentplane import keys

    return raw_items.query(keys.account_audit_pk(user_id), limit=200, consistent=True).items


def test_account_changes_are_audited_in_the_persons_own_trail_without_secrets(api, user):
    api.token = user["token"]
    user_id = user["user"]["id"]
    assert api.patch(ME, {"display_name": "Ada"}).status == 200
    pat = api.post(PATS, {"name": "ci"}).json["data"]
    assert api.delete(f"{PATS}/{pat['id']}").status == 204
    device = api.post("/api/v1/me/devices", {"platform": "ios", "push_token": "push-secret-0123456789"}).json["data"]
    assert api.delete(f"/api/v1/me/devices/{device['id']}").status == 204
    assert api.post("/api/v1/auth/logout", {}).status == 200

    trail = account_trail(user_id)
    actions = sorted(row["action"] for row in trail)
    assert actions == [
        "account.registered",
        "personal_access_token.created",
        "personal_access_token.revoked",
        "profile.updated",
        "push_device.registered",
        "push_device.removed",
        "session.logged_out",
    ]
    assert all(row["actor_id"] == user_id and row["request_id"] for row in trail)
    assert next(r for r in trail if r["action"] == "profile.updated")["details"] == {"fields": ["display_name"]}
    text = str(trail)
    assert pat["token"] not in text and "push-secret-0123456789" not in text

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


REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
TOKEN = "/api/v1/auth/token"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/auth/me"
FORGOT = "/api/v1/auth/forgot-password"
RESET = "/api/v1/auth/reset-password"
PATS = "/api/v1/me/personal-access-tokens"


def registration(username: str = "alice", email: str | None = None, **overrides: Any) -> dict[str, Any]:
    body = {
        "username": username,
        "email": email or f"{username}@example.com",
        "password": "correct horse battery",
        "terms_accepted": True,
        "privacy_accepted": True,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def is_problem(response, status: int) -> bool:
    return response.status == status and response.header("content-type") == "application/problem+json"


def login(api, email: str, password: str = "correct horse battery", ip: str = "10.9.0.1"):
    return api.post(LOGIN, {"email": email, "password": password}, token="", ip=ip)


def capture_reset_secrets(monkeypatch) -> list[str]:
    from agentplane.logic import accounts

    sent: list[str] = []
    monkeypatch.setattr(accounts, "deliver_password_reset", lambda user, secret: sent.append(secret))
    return sent


# --- register -----------------------------------------------------------------------------------


def test_register_creates_the_account_and_the_first_one_is_site_owner(api):
    first = api.post(REGISTER, registration("alice", "Alice@Example.com"), token="")
    assert first.status == 201, first.body
    user = first.json["data"]
    assert user["id"].startswith("usr_")
    assert user["username"] == "alice"
    assert user["email"] == "alice@example.com"
    assert user["site_owner"] is True
    assert "password" not in first.body and "password_hash" not in user
    second = api.post(REGISTER, registration("bob"), token="")
    assert second.status == 201
    assert second.json["data"]["site_owner"] is False


def test_register_with_a_taken_email_is_409_whatever_its_case(api):
    assert api.post(REGISTER, registration("alice"), token="").status == 201
    again = api.post(REGISTER, registration("alice2", "ALICE@example.com"), token="")
    assert is_problem(again, 409)
    assert again.json["field"] == "email"


def test_register_with_a_taken_username_is_409(api):
    assert api.post(REGISTER, registration("alice"), token="").status == 201
    again = api.post(REGISTER, registration("Alice", "other@example.com"), token="")
    assert is_problem(again, 409)
    assert again.json["field"] == "username"
    # Nothing of the refused account was written: its email is still free.
    assert api.post(REGISTER, registration("carol", "other@example.com"), token="").status == 201


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"password": "short"}, "password"),
        ({"email": "not-an-email"}, "email"),
        ({"username": "-bad name"}, "username"),
        ({"username": "Deleted-User"}, "username"),
        ({"password": None}, "password"),
        ({"email": None}, "email"),
        ({"terms_accepted": None}, "terms_accepted"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_register_with_weak_missing_or_unknown_fields_is_422(api, overrides, field):
    body = {**registration("alice"), **overrides}
    response = api.post(REGISTER, {k: v for k, v in body.items() if v is not None}, token="")
    assert is_problem(response, 422), response.body
    assert field in {e["field"] for e in response.json["errors"]}
    assert login(api, "alice@example.com").status == 401


@pytest.mark.parametrize("flag", ["terms_accepted", "privacy_accepted"])
def test_register_without_accepting_terms_or_privacy_is_422(api, flag):
    response = api.post(REGISTER, registration("alice", **{flag: False}), token="")
    assert is_problem(response, 422)
    assert flag in {e["field"] for e in response.json["errors"]}
    assert login(api, "alice@example.com").status == 401


def test_malformed_json_is_a_400_problem(api):
    response = api.post(REGISTER, raw="{not json", headers={"Content-Type": "application/json"}, token="")
    assert is_problem(response, 400)
    assert response.json["type"].endswith("/bad-request")
    assert response.json["instance"] == REGISTER
    assert is_problem(api.post(LOGIN, raw="[", headers={"Content-Type": "application/json"}, token=""), 400)


def test_concurrent_registrations_of_one_email_create_one_account(api):
    # With the site owner already claimed, every racer loses that claim first and retries.
    assert api.post(REGISTER, registration("owner"), token="").status == 201
    results: list[int] = []

    def register(n: int) -> None:
        body = registration(f"racer{n}", "race@example.com")
        results.append(api.post(REGISTER, body, token="", ip=f"10.7.0.{n}").status)

    threads = [threading.Thread(target=register, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [201, 409, 409, 409]


# --- login --------------------------------------------------------------------------------------


def test_login_answers_tokens_expiry_and_user(api):
    api.post(REGISTER, registration("alice"), token="")
    response = login(api, "ALICE@example.com")
    assert response.status == 200
    body = response.json["data"]
    assert body["token"].startswith("aps_") and body["refresh_token"].startswith("apr_")
    assert body["token_type"] == "Bearer"
    assert body["expires_at"].endswith("Z")
    assert body["user"]["username"] == "alice"
    me = api.get(ME, token=body["token"])
    assert me.status == 200
    assert me.json["data"]["email"] == "alice@example.com"


def test_wrong_password_and_unknown_email_get_the_same_401(api):
    api.post(REGISTER, registration("alice"), token="")
    wrong_password = login(api, "alice@example.com", "not the password")
    unknown_email = login(api, "nobody@example.com", "not the password")
    assert is_problem(wrong_password, 401) and is_problem(unknown_email, 401)
    assert wrong_password.json["detail"] == unknown_email.json["detail"]
    assert wrong_password.json["type"] == unknown_email.json["type"]


def test_login_with_missing_fields_is_422(api):
    assert is_problem(api.post(LOGIN, {"email": "alice@example.com"}, token=""), 422)


# --- tokens: missing, forged, refresh ---------------------------------------------------------


def test_missing_token_is_refused_by_the_gateway_and_a_forged_one_is_a_401_problem(api):
    assert api.get(ME, token="").status == 401
    assert is_problem(api.get(ME, token="aps_forged"), 401)
    not_bearer = api.get(ME, token="", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert is_problem(not_bearer, 401)
    assert is_problem(api.get(ME, token="x" * 600), 401)


def test_refresh_rotates_the_pair_and_the_old_tokens_stop_working(api, user):
    rotated = api.post(REFRESH, {"refresh_token": user["refresh_token"]}, token="")
    assert rotated.status == 200
    fresh = rotated.json["data"]
    assert fresh["token"] != user["token"] and fresh["refresh_token"] != user["refresh_token"]
    assert api.get(ME, token=fresh["token"]).status == 200
    assert is_problem(api.post(REFRESH, {"refresh_token": user["refresh_token"]}, token=""), 401)
    assert is_problem(api.get(ME, token=user["token"]), 401)
    # The new refresh token works once too.
    assert api.post(REFRESH, {"refresh_token": fresh["refresh_token"]}, token="").status == 200


def test_refresh_refuses_access_tokens_and_garbage(api, user):
    assert is_problem(api.post(REFRESH, {"refresh_token": user["token"]}, token=""), 401)
    assert is_problem(api.post(REFRESH, {"refresh_token": "apr_nope"}, token=""), 401)
    assert is_problem(api.post(REFRESH, {"refresh_token": ""}, token=""), 422)


def test_two_concurrent_refreshes_of_one_token_have_one_winner(api, user):
    statuses: list[int] = []

    def refresh(n: int) -> None:
        statuses.append(api.post(REFRESH, {"refresh_token": user["refresh_token"]}, token="", ip=f"10.8.0.{n}").status)

    threads = [threading.Thread(target=refresh, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 401, 401]


# --- logout -------------------------------------------------------------------------------------


def test_logout_ends_this_session_only(api, user):
    other = login(api, user["email"]).json["data"]
    response = api.post(LOGOUT, {}, token=user["token"])
    assert response.status == 200
    assert response.json["data"]["ok"] is True
    assert is_problem(api.get(ME, token=user["token"]), 401)
    assert is_problem(api.post(REFRESH, {"refresh_token": user["refresh_token"]}, token=""), 401)
    assert api.get(ME, token=other["token"]).status == 200


def test_logout_without_a_body_works(api, user):
    assert api.post(LOGOUT, token=user["token"]).status == 200
    assert api.get(ME, token=user["token"]).status == 401


def test_logout_all_devices_ends_every_session_and_device_token_but_not_personal_tokens(api, user):
    other = login(api, user["email"]).json["data"]
    device = api.post(TOKEN, {"email": user["email"], "password": user["password"], "name": "cli"}, token="")
    assert device.status == 201
    pat = api.post(PATS, {"name": "ci"}, token=user["token"]).json["data"]["token"]
    assert api.post(LOGOUT, {"all_devices": True}, token=user["token"]).status == 200
    assert api.get(ME, token=user["token"]).status == 401
    assert api.get(ME, token=other["token"]).status == 401
    assert api.post(REFRESH, {"refresh_token": other["refresh_token"]}, token="").status == 401
    assert api.get(ME, token=device.json["data"]["token"]).status == 401
    assert api.get(ME, token=pat).status == 200
    listed = api.get(PATS, token=pat).json["data"]
    assert [p["name"] for p in listed] == ["ci"]


def test_logout_all_devices_from_a_device_token_also_ends_the_sessions(api, user):
    device = api.post(TOKEN, {"email": user["email"], "password": user["password"]}, token="").json["data"]
    assert api.post(LOGOUT, {"all_devices": True}, token=device["token"]).status == 200
    assert api.get(ME, token=device["token"]).status == 401
    assert api.get(ME, token=user["token"]).status == 401


def test_logout_with_a_personal_token_revokes_it_and_drops_it_from_the_list(api, user):
    pat = api.post(PATS, {"name": "script"}, token=user["token"]).json["data"]
    assert api.post(LOGOUT, {}, token=pat["token"]).status == 200
    assert api.get(ME, token=pat["token"]).status == 401
    assert api.get(PATS, token=user["token"]).json["data"] == []
    assert api.get(ME, token=user["token"]).status == 200


def test_logout_with_an_unknown_field_is_422(api, user):
    assert is_problem(api.post(LOGOUT, {"everywhere": True}, token=user["token"]), 422)
    assert api.get(ME, token=user["token"]).status == 200


def test_logout_refuses_tokens_that_are_not_a_person_s(stack):
    from agentplane.auth.principal import Principal
    from agentplane.errors import Forbidden, Unauthorized
    from agentplane.logic import accounts

    with pytest.raises(Unauthorized):
        accounts.logout(Principal(kind="agent_key", id="agt_1", user_id=None, token_id="agt_1"), False)
    with pytest.raises(Forbidden):
        accounts.logout(Principal(kind="api_key", id="key_1", user_id="usr_1", token_id="key_1"), False)


def test_logout_with_a_token_revoked_while_cached_is_401(stack):
    from agentplane.auth.principal import Principal
    from agentplane.errors import Unauthorized
    from agentplane.logic import accounts

    ghost = Principal(kind="session", id="usr_1", user_id="usr_1", token_id="ses_1", token_hash="0" * 64)
    with pytest.raises(Unauthorized):
        accounts.logout(ghost, True)


# --- device tokens --------------------------------------------------------------------------------


def test_device_token_carries_only_its_abilities(api, user, workspace):
    response = api.post(
        TOKEN,
        {
            "email": user["email"],
            "password": user["password"],
            "name": "phone",
            "abilities": ["tasks:read", "tasks:read"],
            "expires_in_days": 30,
        },
        token="",
    )
    assert response.status == 201
    device = response.json["data"]
    assert device["token"].startswith("app_")
    assert device["abilities"] == ["tasks:read"]
    assert device["name"] == "phone"
    assert device["expires_at"].endswith("Z")
    tasks = f"/api/v1/workspaces/{workspace['id']}/tasks"
    assert api.get(tasks, token=device["token"]).status == 200
    refused = api.post(tasks, {"title": "x"}, token=device["token"])
    assert refused.status == 403
    assert refused.json["required_scope"] == "tasks:write"
    listed = api.get(PATS, token=user["token"]).json["data"]
    assert [(p["id"], p["origin"]) for p in listed] == [(device["id"], "device")]
    assert "token" not in listed[0]


def test_device_token_defaults_to_every_ability_and_no_expiry(api, user):
    device = api.post(TOKEN, {"email": user["email"], "password": user["password"]}, token="").json["data"]
    assert device["abilities"] == ["*"]
    assert device["expires_at"] is None
    assert device["name"] == "device"
    assert api.get(ME, token=device["token"]).json["data"]["id"] == user["user"]["id"]


def test_device_token_with_unknown_ability_or_wrong_password_is_refused(api, user):
    unknown = api.post(TOKEN, {"email": user["email"], "password": user["password"], "abilities": ["root"]}, token="")
    assert is_problem(unknown, 422)
    assert unknown.json["errors"][0]["field"] == "scopes"
    wrong = api.post(TOKEN, {"email": user["email"], "password": "wrong password"}, token="")
    assert is_problem(wrong, 401)
    assert api.get(PATS, token=user["token"]).json["data"] == []


# --- forgot and reset password --------------------------------------------------------------------


def test_forgot_password_is_always_200_and_only_known_accounts_get_a_link(api, user, monkeypatch):
    sent = capture_reset_secrets(monkeypatch)
    known = api.post(FORGOT, {"email": user["email"].upper()}, token="")
    unknown = api.post(FORGOT, {"email": "nobody@example.com"}, token="")
    assert known.status == unknown.status == 200
    assert known.json == unknown.json
    assert len(sent) == 1 and sent[0].startswith("apw_")


def test_without_a_mail_transport_the_reset_secret_is_not_logged(api, user, caplog):
    from agentplane.logic import accounts

    accounts.deliver_password_reset({"id": "usr_1"}, "apw_secret-value")
    assert "apw_secret-value" not in caplog.text
    assert api.post(FORGOT, {"email": user["email"]}, token="").status == 200


def test_forgot_password_with_an_invalid_email_is_422(api):
    assert is_problem(api.post(FORGOT, {"email": "nope"}, token=""), 422)


def test_reset_password_changes_it_and_logs_everything_out(api, user, monkeypatch):
    sent = capture_reset_secrets(monkeypatch)
    device = api.post(TOKEN, {"email": user["email"], "password": user["password"]}, token="").json["data"]
    pat = api.post(PATS, {"name": "ci"}, token=user["token"]).json["data"]
    api.post(FORGOT, {"email": user["email"]}, token="")
    reset = api.post(RESET, {"token": sent[0], "password": "a brand new passphrase"}, token="")
    assert reset.status == 200
    assert login(api, user["email"], user["password"]).status == 401
    assert login(api, user["email"], "a brand new passphrase").status == 200
    assert api.get(ME, token=user["token"]).status == 401
    assert api.post(REFRESH, {"refresh_token": user["refresh_token"]}, token="").status == 401
    assert api.get(ME, token=device["token"]).status == 401
    # Tokens made for automation are not bound to the password.
    assert api.get(ME, token=pat["token"]).status == 200
    used_again = api.post(RESET, {"token": sent[0], "password": "yet another passphrase"}, token="")
    assert is_problem(used_again, 401)


def test_a_reset_voids_every_earlier_reset_link(api, user, monkeypatch):
    import time

    sent = capture_reset_secrets(monkeypatch)
    api.post(FORGOT, {"email": user["email"]}, token="")
    api.post(FORGOT, {"email": user["email"]}, token="")
    time.sleep(1.01)  # links are dated to the second; the change must come after both
    assert api.post(RESET, {"token": sent[1], "password": "first new passphrase"}, token="").status == 200
    older = api.post(RESET, {"token": sent[0], "password": "second new passphrase"}, token="")
    assert is_problem(older, 401)
    assert login(api, user["email"], "first new passphrase").status == 200


def test_reset_password_with_a_bad_token_or_weak_password_is_refused(api, user, monkeypatch):
    sent = capture_reset_secrets(monkeypatch)
    assert is_problem(api.post(RESET, {"token": "apw_nope", "password": "long enough pass"}, token=""), 401)
    assert is_problem(api.post(RESET, {"token": user["token"], "password": "long enough pass"}, token=""), 401)
    api.post(FORGOT, {"email": user["email"]}, token="")
    assert is_problem(api.post(RESET, {"token": sent[0], "password": "short"}, token=""), 422)
    assert login(api, user["email"], user["password"]).status == 200


def test_two_concurrent_resets_with_two_links_change_the_password_once(api, user, monkeypatch):
    sent = capture_reset_secrets(monkeypatch)
    api.post(FORGOT, {"email": user["email"]}, token="")
    api.post(FORGOT, {"email": user["email"]}, token="")
    statuses: list[int] = []

    def reset(n: int) -> None:
        body = {"token": sent[n], "password": f"new passphrase {n}"}
        statuses.append(api.post(RESET, body, token="", ip=f"10.6.0.{n}").status)

    threads = [threading.Thread(target=reset, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 401]


# --- auth/me and rate limits ----------------------------------------------------------------------


def test_auth_me_answers_the_user_behind_the_token(api, user):
    response = api.get(ME, token=user["token"])
    assert response.status == 200
    assert response.json["data"]["id"] == user["user"]["id"]
    assert set(response.json["data"]) >= {"id", "username", "email", "created_at"}
    assert response.header("X-RateLimit-Limit") == "600"


def spend_the_auth_limit(api, ip: str) -> None:
    """Make the 60 auth calls an IP is allowed in any one minute."""
    for n in range(60):
        response = api.post(FORGOT, {"email": f"nobody{n}@example.com"}, token="", ip=ip)
        assert response.status == 200, (n, response.body)
        assert response.header("X-RateLimit-Limit") == "60"
        assert response.header("X-RateLimit-Remaining") == str(59 - n)


def test_the_61st_auth_call_from_one_ip_in_a_minute_is_429_with_retry_after(api):
    ip = "10.5.5.5"
    spend_the_auth_limit(api, ip)
    limited = api.post(LOGIN, {"email": "nobody@example.com", "password": "whatever"}, token="", ip=ip)
    assert is_problem(limited, 429)
    assert 1 <= int(limited.header("Retry-After")) <= 60
    assert limited.json["retry_after"] == int(limited.header("Retry-After"))
    # Another client is not affected.
    assert api.post(FORGOT, {"email": "nobody@example.com"}, token="", ip="10.5.5.6").status == 200


def test_a_429_also_carries_the_rate_limit_headers(api):
    ip = "10.5.5.7"
    spend_the_auth_limit(api, ip)
    limited = api.post(FORGOT, {"email": "nobody@example.com"}, token="", ip=ip)
    assert limited.status == 429
    assert limited.header("X-RateLimit-Limit") == "60"
    assert limited.header("X-RateLimit-Remaining") == "0"
    assert int(limited.header("X-RateLimit-Reset")) > 0


def test_registered_helper_logs_in(api):
    account = newcomer(api)
    assert api.get(ME, token=account["token"]).status == 200


# --- sliding sessions ------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        import time

        return time.time() + self.offset

    def advance(self, days: float) -> None:
        self.offset += days * 86400


@pytest.fixture
def clock(monkeypatch) -> Clock:
    from types import SimpleNamespace

    from agentplane.auth import tokens

    fake = Clock()
    monkeypatch.setattr(tokens, "time", SimpleNamespace(time=fake.time))
    return fake


def test_a_session_used_within_seven_days_lives_on(api, clock):
    session = newcomer(api)["token"]
    clock.advance(6)
    assert api.get(ME, token=session).status == 200
    clock.advance(6)  # twelve days after login, six after its last use
    assert api.get(ME, token=session).status == 200


def test_a_session_unused_for_seven_days_is_refused(api, clock):
    session = newcomer(api)["token"]
    clock.advance(6)
    assert api.get(ME, token=session).status == 200
    clock.advance(7.01)
    assert is_problem(api.get(ME, token=session), 401)


# --- what a workspace key sees of its maker --------------------------------------------------------


def test_auth_me_with_a_workspace_key_is_403_and_never_shows_its_makers_profile(api, user, workspace):
    base = f"/api/v1/workspaces/{workspace['id']}/api-keys"
    api_key = api.post(base, {"name": "ci"}, token=user["token"]).json["data"]["key"]
    agent_key = api.post(base, {"name": "bot", "agent": "builder"}, token=user["token"]).json["data"]["key"]
    for secret in (api_key, agent_key):
        refused = api.get(ME, token=secret)
        assert is_problem(refused, 403)
        assert user["email"] not in refused.body


# --- Idempotency-Key on the routes without a token ------------------------------------------------


def test_a_repeated_register_with_its_idempotency_key_answers_the_first_account(api):
    body = registration(f"idem{uuid.uuid4().hex[:8]}")
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = api.post(REGISTER, body, token="", headers=key, ip="10.7.0.1")
    again = api.post(REGISTER, body, token="", headers=key, ip="10.7.0.1")
    without_key = api.post(REGISTER, body, token="", ip="10.7.0.1")

    assert first.status == again.status == 201
    assert again.json["data"]["id"] == first.json["data"]["id"]
    assert is_problem(without_key, 409)  # the account exists once


def test_a_replayed_device_token_hides_the_secret_and_issues_no_second_token(api, user):
    body = {"email": user["email"], "password": user["password"], "name": "laptop"}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = api.post(TOKEN, body, token="", headers=key)
    again = api.post(TOKEN, body, token="", headers=key)
    other_body = api.post(TOKEN, {**body, "name": "phone"}, token="", headers=key)

    assert first.status == again.status == 201
    assert again.json["data"]["id"] == first.json["data"]["id"]
    assert again.json["data"]["token"] == "[shown once]"
    assert first.json["data"]["token"].startswith("app_")
    assert api.get(ME, token=first.json["data"]["token"]).status == 200
    assert is_problem(other_body, 422)
    listed = api.get(PATS, token=user["token"]).json["data"]
    assert [p["name"] for p in listed] == ["laptop"]


@pytest.fixture
def auth_limit_of_three(monkeypatch):
    from agentplane.settings import get_settings

    monkeypatch.setenv("AUTH_RATE_LIMIT_PER_MINUTE", "3")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("AUTH_RATE_LIMIT_PER_MINUTE")
    get_settings.cache_clear()


def test_the_auth_limit_is_the_auth_rate_limit_setting(api, auth_limit_of_three):
    for n in range(3):
        allowed = api.post(FORGOT, {"email": "nobody@example.com"}, token="", ip="10.7.1.1")
        assert allowed.status == 200 and allowed.header("X-RateLimit-Limit") == "3"
    limited = api.post(FORGOT, {"email": "nobody@example.com"}, token="", ip="10.7.1.1")
    assert is_problem(limited, 429)
    assert limited.header("X-RateLimit-Limit") == "3"


def test_device_tokens_and_password_resets_are_audited_in_the_account_trail(api, user, monkeypatch):
    from agentplane import keys

    sent = capture_reset_secrets(monkeypatch)
    device = api.post(TOKEN, {"email": user["email"], "password": user["password"], "name": "cli"}, token="")
    api.post(FORGOT, {"email": user["email"]}, token="")
    assert api.post(RESET, {"token": sent[0], "password": "a brand new passphrase"}, token="").status == 200

    trail = raw_items.query(keys.account_audit_pk(user["user"]["id"]), limit=50, consistent=True).items
    by_action = {row["action"]: row for row in trail}
    assert by_action["device_token.created"]["target_id"] == device.json["data"]["id"]
    assert "password.reset" in by_action
    assert device.json["data"]["token"] not in str(trail) and sent[0] not in str(trail)

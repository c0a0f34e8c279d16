from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from agentplane import raw_items
from tests.conftest import register_and_login

KEEP = 12  # what key_prefix shows; the rest of a secret never leaves the create/rotate answer


def keys_path(ws: dict) -> str:
    return f"/api/v1/workspaces/{ws['id']}/api-keys"


def tasks_path(ws: dict) -> str:
    return f"/api/v1/workspaces/{ws['id']}/tasks"


def create_key(api, ws: dict, **body: Any) -> dict:
    response = api.post(keys_path(ws), {"name": "ci", **body})
    assert response.status == 201, response.body
    return response.json["data"]


def add_member(ws: dict, person: dict, role: str) -> None:
    from agentplane.auth.scopes import Role
    from agentplane.ids import iso
    from agentplane.logic.workspaces import member_item

    raw_items.put(member_item(ws["id"], ws["name"], person["user"]["id"], Role(role), iso()))


def audit_rows(ws: dict) -> list[dict]:
    from agentplane import keys

    return raw_items.query(keys.audit_pk(ws["id"]), limit=200).items


class Clock:
    """Moves token expiry and key status checks forward without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    from agentplane.auth import key_usage, tokens
    from agentplane.logic.api_keys import records

    fake = Clock()
    patched = SimpleNamespace(time=fake.time)
    monkeypatch.setattr(tokens, "time", patched)
    monkeypatch.setattr(key_usage, "time", patched)
    monkeypatch.setattr(records, "time", patched)
    return fake


# --- create and authenticate ----------------------------------------------------------------------


def test_created_key_is_shown_once_and_works_within_its_scopes(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read", "tasks:write"], description="nightly jobs")
    assert key["id"].startswith("key_")
    assert key["key"].startswith("apk_")
    assert key["key_prefix"] == key["key"][:12]
    assert key["scopes"] == ["tasks:read", "tasks:write"]
    assert key["status"] == "active"
    assert key["expires_at"] is None
    made = api.post(tasks_path(workspace), {"title": "from CI"}, token=key["key"])
    assert made.status == 201, made.body
    assert api.get(tasks_path(workspace), token=key["key"]).status == 200


def test_missing_scope_is_403_naming_the_scope(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    refused = api.post(tasks_path(workspace), {"title": "x"}, token=key["key"])
    assert refused.status == 403
    assert refused.header("content-type") == "application/problem+json"
    assert refused.json["required_scope"] == "tasks:write"
    assert "tasks:write" in refused.json["detail"]
    assert api.get(tasks_path(workspace), token=key["key"]).json["data"] == []


def test_key_without_scopes_gets_everything_its_creators_role_allows(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace)
    assert key["scopes"] == ["*"]
    assert api.post(tasks_path(workspace), {"title": "x"}, token=key["key"]).status == 201
    assert api.get(keys_path(workspace), token=key["key"]).status == 200


def test_key_with_expiry_stops_working_when_it_expires(api, user, workspace, clock):
    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"], expires_in_days=1)
    assert key["expires_at"] is not None
    assert api.get(tasks_path(workspace), token=key["key"]).status == 200
    clock.advance(86400 + 60)
    assert api.get(tasks_path(workspace), token=key["key"]).status == 401
    assert api.get(f"{keys_path(workspace)}/{key['id']}").json["data"]["status"] == "expired"


def test_expires_at_in_the_past_is_422_and_writes_nothing(api, user, workspace):
    api.token = user["token"]
    past = api.post(keys_path(workspace), {"name": "old", "expires_at": "2001-01-01T00:00:00Z"})
    assert past.status == 422
    assert api.get(keys_path(workspace)).json["data"] == []


# --- who may manage keys --------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_cannot_manage_keys(api, user, workspace, role):
    api.token = user["token"]
    key = create_key(api, workspace)
    person = register_and_login(api)
    add_member(workspace, person, role)
    api.token = person["token"]
    created = api.post(keys_path(workspace), {"name": "mine"})
    assert created.status == 403
    assert created.json["required_scope"] == "admin"
    assert api.get(keys_path(workspace)).status == 403
    assert api.post(f"{keys_path(workspace)}/{key['id']}/revoke").status == 403
    api.token = user["token"]
    assert [k["id"] for k in api.get(keys_path(workspace)).json["data"]] == [key["id"]]


def test_an_admin_may_give_a_key_billing_scopes_since_admins_buy_plans(api, user, workspace):
    admin = register_and_login(api)
    add_member(workspace, admin, "admin")
    api.token = admin["token"]
    allowed = api.post(keys_path(workspace), {"name": "billing", "scopes": ["tasks:read", "billing:write"]})
    assert allowed.status == 201
    assert set(allowed.json["data"]["scopes"]) == {"tasks:read", "billing:write"}


def test_a_limited_key_cannot_mint_a_key_with_more_than_it_holds(api, user, workspace):
    api.token = user["token"]
    manager = create_key(api, workspace, scopes=["admin", "tasks:read"])
    wider = api.post(keys_path(workspace), {"name": "w", "scopes": ["tasks:write"]}, token=manager["key"])
    assert wider.status == 403
    assert wider.json["scopes"] == ["tasks:write"]
    everything = api.post(keys_path(workspace), {"name": "all"}, token=manager["key"])
    assert everything.status == 403
    narrower = api.post(keys_path(workspace), {"name": "n", "scopes": ["tasks:read"]}, token=manager["key"])
    assert narrower.status == 201


def test_key_of_one_workspace_gets_404_in_another(api, user, workspace):
    api.token = user["token"]
    other = api.post("/api/v1/workspaces", {"name": "Other"})
    if other.status != 201:
        from agentplane.auth.tokens import resolve_principal
        from agentplane.logic.workspaces import create_workspace
        from agentplane.models.workspaces import WorkspaceCreate

        other_ws = create_workspace(resolve_principal(user["token"]), WorkspaceCreate(name="Other")).model_dump()
    else:
        other_ws = other.json["data"]
    key = create_key(api, workspace)
    assert api.get(tasks_path(workspace), token=key["key"]).status == 200
    assert api.get(tasks_path(other_ws), token=key["key"]).status == 404
    assert api.get(keys_path(other_ws), token=key["key"]).status == 404


def test_non_member_gets_404_for_every_key_route(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace)
    stranger = register_and_login(api)
    api.token = stranger["token"]
    base = f"{keys_path(workspace)}/{key['id']}"
    assert api.get(keys_path(workspace)).status == 404
    assert api.post(keys_path(workspace), {"name": "x"}).status == 404
    assert api.get(base).status == 404
    assert api.patch(base, {"name": "x"}).status == 404
    assert api.post(f"{base}/revoke").status == 404
    assert api.post(f"{base}/rotate").status == 404
    assert api.post(f"{base}/roll").status == 404
    assert api.get(f"{base}/usage").status == 404
    assert api.delete(base).status == 404


def test_key_dies_when_its_creator_leaves_the_workspace(api, user, workspace):
    from agentplane import keys

    admin = register_and_login(api)
    add_member(workspace, admin, "admin")
    api.token = admin["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    assert api.get(tasks_path(workspace), token=key["key"]).status == 200
    raw_items.delete(keys.member_key(workspace["id"], admin["user"]["id"]))
    assert api.get(tasks_path(workspace), token=key["key"]).status == 401


# --- revoke, switch off, delete -------------------------------------------------------------------


def test_revoked_key_is_refused_on_the_next_call(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    assert api.get(tasks_path(workspace), token=key["key"]).status == 200
    revoked = api.post(f"{keys_path(workspace)}/{key['id']}/revoke")
    assert revoked.status == 200
    assert revoked.json["data"]["status"] == "revoked"
    assert revoked.json["data"]["revoked_at"]
    refused = api.get(tasks_path(workspace), token=key["key"])
    assert refused.status == 401
    assert refused.header("content-type") == "application/problem+json"


def test_revoking_twice_is_409_with_current_status(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace)
    assert api.post(f"{keys_path(workspace)}/{key['id']}/revoke").status == 200
    again = api.post(f"{keys_path(workspace)}/{key['id']}/revoke")
    assert again.status == 409
    assert again.json["current_status"] == "revoked"
    assert api.post(f"{keys_path(workspace)}/{key['id']}/rotate").status == 409
    assert api.patch(f"{keys_path(workspace)}/{key['id']}", {"active": True}).status == 409


def test_revoked_keys_leave_the_list_unless_asked_for(api, user, workspace):
    api.token = user["token"]
    kept = create_key(api, workspace, name="kept")
    gone = create_key(api, workspace, name="gone")
    api.post(f"{keys_path(workspace)}/{gone['id']}/revoke")
    assert [k["id"] for k in api.get(keys_path(workspace)).json["data"]] == [kept["id"]]
    both = api.get(f"{keys_path(workspace)}?include_revoked=true").json["data"]
    assert {k["id"]: k["status"] for k in both} == {kept["id"]: "active", gone["id"]: "revoked"}
    assert api.get(f"{keys_path(workspace)}/{gone['id']}").json["data"]["status"] == "revoked"


def test_revoke_also_ends_a_secret_still_in_its_rotation_grace(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    new = api.post(f"{keys_path(workspace)}/{key['id']}/rotate", {"grace_hours": 24}).json["data"]
    api.post(f"{keys_path(workspace)}/{key['id']}/revoke")
    assert api.get(tasks_path(workspace), token=key["key"]).status == 401
    assert api.get(tasks_path(workspace), token=new["key"]).status == 401


def test_switched_off_key_is_refused_until_switched_back_on(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    off = api.patch(f"{keys_path(workspace)}/{key['id']}", {"active": False})
    assert off.status == 200
    assert off.json["data"]["status"] == "inactive"
    assert api.get(tasks_path(workspace), token=key["key"]).status == 401
    assert api.post(f"{keys_path(workspace)}/{key['id']}/rotate").status == 409
    on = api.patch(f"{keys_path(workspace)}/{key['id']}", {"active": True})
    assert on.json["data"]["status"] == "active"
    assert api.get(tasks_path(workspace), token=key["key"]).status == 200


def test_deleted_key_is_404_leaves_every_list_and_stops_working(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    assert api.delete(f"{keys_path(workspace)}/{key['id']}").status == 204
    assert api.get(f"{keys_path(workspace)}/{key['id']}").status == 404
    assert api.get(keys_path(workspace)).json["data"] == []
    assert api.get(f"{keys_path(workspace)}?include_revoked=true").json["data"] == []
    assert api.get(tasks_path(workspace), token=key["key"]).status == 401
    assert api.delete(f"{keys_path(workspace)}/{key['id']}").status == 404
    assert any(r["action"] == "api_key.deleted" and r["target_id"] == key["id"] for r in audit_rows(workspace))


# --- rotate and roll ------------------------------------------------------------------------------


def test_rotated_key_old_secret_works_until_the_grace_ends(api, user, workspace, clock):
    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    rotated = api.post(f"{keys_path(workspace)}/{key['id']}/rotate", {"grace_hours": 2})
    assert rotated.status == 200, rotated.body
    new = rotated.json["data"]
    assert new["id"] == key["id"]
    assert new["key"] != key["key"] and new["key"].startswith("apk_")
    assert new["key_prefix"] == new["key"][:12]
    assert new["previous_key_expires_at"]
    assert api.get(tasks_path(workspace), token=key["key"]).status == 200
    assert api.get(tasks_path(workspace), token=new["key"]).status == 200
    clock.advance(2 * 3600 + 1)
    assert api.get(tasks_path(workspace), token=key["key"]).status == 401
    assert api.get(tasks_path(workspace), token=new["key"]).status == 200


def test_rotate_without_a_body_gives_24_hours_of_grace(api, user, workspace):
    from agentplane.ids import parse_iso

    api.token = user["token"]
    key = create_key(api, workspace)
    new = api.post(f"{keys_path(workspace)}/{key['id']}/rotate").json["data"]
    grace = parse_iso(new["previous_key_expires_at"]).timestamp() - time.time()
    assert 24 * 3600 - 60 < grace <= 24 * 3600


def test_rotate_with_zero_grace_ends_the_old_secret_at_once(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    new = api.post(f"{keys_path(workspace)}/{key['id']}/rotate", {"grace_hours": 0}).json["data"]
    assert new["previous_key_expires_at"] is None
    assert api.get(tasks_path(workspace), token=key["key"]).status == 401
    assert api.get(tasks_path(workspace), token=new["key"]).status == 200


def test_rolled_key_old_secret_fails_at_once(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    rolled = api.post(f"{keys_path(workspace)}/{key['id']}/roll")
    assert rolled.status == 200
    new = rolled.json["data"]
    assert new["key"] != key["key"]
    assert api.get(tasks_path(workspace), token=key["key"]).status == 401
    assert api.get(tasks_path(workspace), token=new["key"]).status == 200


def test_roll_also_ends_secrets_still_in_a_rotation_grace(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    rotated = api.post(f"{keys_path(workspace)}/{key['id']}/rotate").json["data"]
    rolled = api.post(f"{keys_path(workspace)}/{key['id']}/roll").json["data"]
    assert api.get(tasks_path(workspace), token=key["key"]).status == 401
    assert api.get(tasks_path(workspace), token=rotated["key"]).status == 401
    assert api.get(tasks_path(workspace), token=rolled["key"]).status == 200


def test_rotated_key_keeps_its_expiry_and_grace_never_outlives_it(api, user, workspace, clock):
    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"], expires_in_days=1)
    clock.advance(23 * 3600)
    new = api.post(f"{keys_path(workspace)}/{key['id']}/rotate", {"grace_hours": 48}).json["data"]
    assert new["expires_at"] == key["expires_at"]
    assert new["previous_key_expires_at"] == key["expires_at"]
    clock.advance(3600 + 60)
    assert api.get(tasks_path(workspace), token=key["key"]).status == 401
    assert api.get(tasks_path(workspace), token=new["key"]).status == 401


def test_only_a_few_old_secrets_stay_in_grace_at_once(api, user, workspace):
    from agentplane.logic.api_keys import MAX_GRACE_SECRETS

    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    secrets = [key["key"]]
    for _ in range(MAX_GRACE_SECRETS + 1):
        secrets.append(api.post(f"{keys_path(workspace)}/{key['id']}/rotate").json["data"]["key"])
    answers = [api.get(tasks_path(workspace), token=s).status for s in secrets]
    assert answers == [401] + [200] * (MAX_GRACE_SECRETS + 1)


def test_a_key_can_rotate_and_roll_itself(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace)
    rotated = api.post(f"{keys_path(workspace)}/{key['id']}/rotate", {"grace_hours": 1}, token=key["key"])
    assert rotated.status == 200, rotated.body
    new = rotated.json["data"]["key"]
    assert api.get(tasks_path(workspace), token=key["key"]).status == 200
    rolled = api.post(f"{keys_path(workspace)}/{key['id']}/roll", token=new)
    assert rolled.status == 200, rolled.body
    assert api.get(tasks_path(workspace), token=new).status == 401
    assert api.get(tasks_path(workspace), token=key["key"]).status == 401
    assert api.get(tasks_path(workspace), token=rolled.json["data"]["key"]).status == 200


def test_a_key_can_revoke_itself(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace)
    assert api.post(f"{keys_path(workspace)}/{key['id']}/revoke", token=key["key"]).status == 200
    assert api.get(tasks_path(workspace), token=key["key"]).status == 401


def test_concurrent_rotations_from_one_read_have_exactly_one_winner(api, user, workspace, monkeypatch):
    from agentplane.access import workspace_access
    from agentplane.auth.tokens import resolve_principal
    from agentplane.errors import InvalidTransition
    from agentplane.logic import api_keys
    from agentplane.logic.api_keys import rolling

    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    racers = 4
    barrier = threading.Barrier(racers)
    load = rolling.load_live

    def load_then_wait(ws: str, key_id: str) -> Any:
        item = load(ws, key_id)
        barrier.wait()  # every racer has read version 1 before anyone writes
        return item

    monkeypatch.setattr(rolling, "load_live", load_then_wait)
    access = workspace_access(resolve_principal(user["token"]), workspace["id"], "admin")
    outcomes: list[str] = []

    def rotate() -> None:
        try:
            outcomes.append(api_keys.rotate_api_key(access, key["id"], 24).key)
        except InvalidTransition as lost:
            outcomes.append(f"409 {lost.extensions['current_status']}")

    threads = [threading.Thread(target=rotate) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if o.startswith("apk_")]
    assert len(winners) == 1
    assert sorted(o for o in outcomes if not o.startswith("apk_")) == ["409 active"] * (racers - 1)
    monkeypatch.setattr(rolling, "load_live", load)
    stored = api.get(f"{keys_path(workspace)}/{key['id']}").json["data"]
    assert stored["version"] == 2
    assert stored["key_prefix"] == winners[0][:12]
    assert api.get(tasks_path(workspace), token=winners[0]).status == 200


# --- patch ----------------------------------------------------------------------------------------


def test_patching_scopes_changes_what_the_key_can_do_at_once(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    assert api.post(tasks_path(workspace), {"title": "x"}, token=key["key"]).status == 403
    patched = api.patch(f"{keys_path(workspace)}/{key['id']}", {"scopes": ["tasks:write", "tasks:read"], "name": "w"})
    assert patched.status == 200
    assert patched.json["data"]["scopes"] == ["tasks:read", "tasks:write"]
    assert patched.json["data"]["name"] == "w"
    assert patched.json["data"]["version"] == 2
    assert api.post(tasks_path(workspace), {"title": "x"}, token=key["key"]).status == 201
    narrowed = api.patch(f"{keys_path(workspace)}/{key['id']}", {"scopes": ["projects:read"]})
    assert narrowed.status == 200
    assert api.get(tasks_path(workspace), token=key["key"]).status == 403


def test_patching_scopes_reaches_a_secret_still_in_grace(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    api.post(f"{keys_path(workspace)}/{key['id']}/rotate")
    api.patch(f"{keys_path(workspace)}/{key['id']}", {"scopes": ["projects:read"]})
    assert api.get(tasks_path(workspace), token=key["key"]).status == 403


def test_patch_with_stale_version_is_412_and_changes_nothing(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace)
    assert api.patch(f"{keys_path(workspace)}/{key['id']}", {"name": "a", "version": 1}).status == 200
    stale = api.patch(f"{keys_path(workspace)}/{key['id']}", {"name": "b"}, headers={"If-Match": "1"})
    assert stale.status == 412
    assert api.get(f"{keys_path(workspace)}/{key['id']}").json["data"]["name"] == "a"


def test_patch_cannot_grant_beyond_the_caller(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    manager = create_key(api, workspace, scopes=["admin", "tasks:read"])
    refused = api.patch(f"{keys_path(workspace)}/{key['id']}", {"scopes": ["billing:write"]}, token=manager["key"])
    assert refused.status == 403
    assert api.get(f"{keys_path(workspace)}/{key['id']}").json["data"]["scopes"] == ["tasks:read"]


def test_secret_never_appears_in_list_get_audit_or_the_stored_record(api, user, workspace):
    from agentplane import keys

    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    rotated = api.post(f"{keys_path(workspace)}/{key['id']}/rotate").json["data"]
    secrets = [key["key"], rotated["key"]]
    api.patch(f"{keys_path(workspace)}/{key['id']}", {"name": "renamed"})
    listed = api.get(keys_path(workspace))
    fetched = api.get(f"{keys_path(workspace)}/{key['id']}")
    assert "key" not in listed.json["data"][0] and "key" not in fetched.json["data"]
    assert "token_hash" not in fetched.json["data"] and "grace_tokens" not in fetched.json["data"]
    rows = audit_rows(workspace)
    assert {"api_key.created", "api_key.rotated", "api_key.updated"} <= {r["action"] for r in rows}
    record = raw_items.get(keys.api_key_key(workspace["id"], key["id"]))
    for text in (listed.body, fetched.body, json.dumps(rows), json.dumps(record, default=str)):
        for secret in secrets:
            assert secret not in text
            assert secret[KEEP:] not in text


# --- usage ----------------------------------------------------------------------------------------


def test_usage_counts_requests_and_stamps_last_used(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    assert api.get(f"{keys_path(workspace)}/{key['id']}").json["data"]["last_used_at"] is None
    for _ in range(3):
        assert api.get(tasks_path(workspace), token=key["key"]).status == 200
    usage = api.get(f"{keys_path(workspace)}/{key['id']}/usage")
    assert usage.status == 200
    data = usage.json["data"]
    assert data["key_id"] == key["id"]
    assert data["total_requests"] == 3
    assert sum(b["requests"] for b in data["buckets"]) == 3
    assert data["buckets"][0]["minute"].endswith(":00Z")
    assert data["last_used_at"] is not None
    assert api.get(f"{keys_path(workspace)}/{key['id']}").json["data"]["last_used_at"] == data["last_used_at"]


def test_usage_is_bucketed_per_minute_newest_first_and_totals_survive_folding(api, user, workspace):
    from agentplane import keys
    from agentplane.auth.key_usage import record_use

    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    start = int(time.time()) // 60 * 60 - 3600
    calls = [start + 1, start + 2, start + 61, start + 600, start + 601, start + 1200]
    for moment in calls:
        record_use(workspace["id"], key["id"], now=moment)
    total = raw_items.get(keys.api_key_usage_total_key(workspace["id"], key["id"]))
    assert total["request_total"] == 5  # minutes at least two minutes old were folded into the total
    first = api.get(f"{keys_path(workspace)}/{key['id']}/usage?limit=2")
    assert first.json["data"]["total_requests"] == len(calls)
    assert [b["requests"] for b in first.json["data"]["buckets"]] == [1, 2]
    minutes = [b["minute"] for b in first.json["data"]["buckets"]]
    cursor = first.json["meta"]["next_cursor"]
    while cursor:
        more = api.get(f"{keys_path(workspace)}/{key['id']}/usage?limit=2&cursor={cursor}")
        assert more.status == 200
        minutes += [b["minute"] for b in more.json["data"]["buckets"]]
        cursor = more.json["meta"]["next_cursor"]
    assert minutes == sorted(minutes, reverse=True)
    assert len(minutes) == 4


def test_usage_of_a_revoked_key_stays_readable(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    api.get(tasks_path(workspace), token=key["key"])
    api.post(f"{keys_path(workspace)}/{key['id']}/revoke")
    api.get(tasks_path(workspace), token=key["key"])  # refused: not counted
    assert api.get(f"{keys_path(workspace)}/{key['id']}/usage").json["data"]["total_requests"] == 1


def test_the_total_counts_recent_minutes_that_do_not_fit_on_the_first_page(api, user, workspace):
    from agentplane.auth.key_usage import record_use

    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    now = int(time.time()) // 60 * 60
    old, recent = [now - 3600, now - 3540], [now - 60, now - 60, now]  # recent: not folded yet
    for moment in old + recent:
        record_use(workspace["id"], key["id"], now=moment)

    first = api.get(f"{keys_path(workspace)}/{key['id']}/usage?limit=1").json

    assert first["data"]["total_requests"] == 5
    assert [b["requests"] for b in first["data"]["buckets"]] == [1]
    later = api.get(f"{keys_path(workspace)}/{key['id']}/usage?limit=1&cursor={first['meta']['next_cursor']}")
    assert later.json["data"]["total_requests"] == 5
    assert [b["requests"] for b in later.json["data"]["buckets"]] == [2]


def test_usage_of_a_deleted_or_unknown_key_is_404(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    api.get(tasks_path(workspace), token=key["key"])
    assert api.get(f"{keys_path(workspace)}/{key['id']}/usage").status == 200
    assert api.delete(f"{keys_path(workspace)}/{key['id']}").status == 204
    assert api.get(f"{keys_path(workspace)}/{key['id']}/usage").status == 404
    assert api.get(f"{keys_path(workspace)}/key_missing/usage").status == 404


def test_a_failed_usage_write_never_refuses_a_valid_key(api, user, workspace, monkeypatch):
    from botocore.exceptions import ClientError

    from agentplane.auth import key_usage

    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])

    def throttled(*args: Any, **kwargs: Any) -> None:
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "UpdateItem")

    monkeypatch.setattr(key_usage, "_fold_usage", throttled)
    assert api.get(tasks_path(workspace), token=key["key"]).status == 200


def test_empty_patch_changes_nothing(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace)
    before = len(audit_rows(workspace))
    same = api.patch(f"{keys_path(workspace)}/{key['id']}", {"active": True})
    assert same.status == 200
    assert same.json["data"]["version"] == 1
    assert len(audit_rows(workspace)) == before


# --- lists and bad input --------------------------------------------------------------------------


def test_list_paginates_with_a_signed_cursor(api, user, workspace):
    api.token = user["token"]
    ids = [create_key(api, workspace, name=f"k{i}")["id"] for i in range(5)]
    first = api.get(f"{keys_path(workspace)}?limit=2")
    seen = [k["id"] for k in first.json["data"]]
    cursor = first.json["meta"]["next_cursor"]
    while cursor:
        more = api.get(f"{keys_path(workspace)}?limit=2&cursor={cursor}")
        assert more.status == 200
        seen += [k["id"] for k in more.json["data"]]
        cursor = more.json["meta"]["next_cursor"]
    assert seen == ids
    cursor = first.json["meta"]["next_cursor"]
    assert api.get(f"{keys_path(workspace)}?include_revoked=true&cursor={cursor}").status == 400


def test_bad_input_is_a_problem_and_writes_nothing(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    before = len(audit_rows(workspace))
    unknown = api.post(keys_path(workspace), {"name": "x", "scopes": ["tasks:read", "tasks:fly"]})
    assert unknown.status == 422
    assert unknown.json["errors"][0]["field"] == "scopes"
    assert "tasks:fly" in unknown.json["detail"]
    assert api.post(keys_path(workspace), {"name": "x", "scopes": []}).status == 422
    assert api.post(keys_path(workspace), {"name": ""}).status == 422
    assert api.post(keys_path(workspace), {"name": "x", "colour": "red"}).status == 422
    assert api.post(keys_path(workspace), {"name": "x", "expires_in_days": 0}).status == 422
    both = {"name": "x", "expires_in_days": 1, "expires_at": "2999-01-01T00:00:00Z"}
    assert api.post(keys_path(workspace), both).status == 422
    malformed = api.post(keys_path(workspace), raw="{nope", headers={"Content-Type": "application/json"})
    assert malformed.status == 400
    base = f"{keys_path(workspace)}/{key['id']}"
    for grace in (-1, 169, "soon"):
        bad = api.post(f"{base}/rotate", {"grace_hours": grace})
        assert bad.status == 422, bad.body
        assert bad.json["errors"][0]["field"] == "grace_hours"
    assert api.patch(base, {"scopes": ["nope"]}).status == 422
    assert api.post(f"{keys_path(workspace)}/key_missing/rotate").status == 404
    assert api.get(f"{keys_path(workspace)}/key_missing").status == 404
    assert len(audit_rows(workspace)) == before
    assert [k["id"] for k in api.get(keys_path(workspace)).json["data"]] == [key["id"]]
    current = api.get(base).json["data"]
    assert (current["version"], current["key_prefix"], current["scopes"]) == (1, key["key_prefix"], ["tasks:read"])
    assert api.get(tasks_path(workspace), token=key["key"]).status == 200


def test_every_change_is_audited_with_the_actor(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace)
    base = f"{keys_path(workspace)}/{key['id']}"
    api.patch(base, {"description": "d"})
    api.post(f"{base}/rotate")
    api.post(f"{base}/roll")
    api.post(f"{base}/revoke")
    api.delete(base)
    rows = [r for r in audit_rows(workspace) if r["target_id"] == key["id"]]
    assert sorted(r["action"] for r in rows) == sorted([
        "api_key.created", "api_key.updated", "api_key.rotated", "api_key.rolled", "api_key.revoked", "api_key.deleted"
    ])  # fmt: skip
    assert {r["actor_id"] for r in rows} == {user["user"]["id"]}


def test_agent_key_acts_as_its_agent_inside_one_workspace_only(api, user, workspace):
    api.token = user["token"]
    base = f"/api/v1/workspaces/{workspace['id']}"
    created = api.post(f"{base}/api-keys", {"name": "builder's key", "agent": "builder"})
    assert created.status == 201, created.body
    agent_key = created.json["data"]
    assert agent_key["agent"] == "builder" and agent_key["expires_at"] is None
    assert "git:push" not in agent_key["scopes"] and "runs:control" in agent_key["scopes"]

    # The agent does its work with the key: it picks up a run a person started.
    run = api.post(f"{base}/runs", {"title": "Fix the build", "prompt": "Make CI green"}).json["data"]
    assert api.post(f"{base}/runs/{run['id']}/start").status == 200
    claimed = api.post(f"{base}/runs/{run['id']}/claim", {"worker_id": "builder-1"}, token=agent_key["key"])
    assert claimed.status == 200, claimed.body
    assert claimed.json["data"]["status"] == "running"

    # Nothing beyond the agent scopes, and nothing outside its workspace.
    assert api.post(f"{base}/api-keys", {"name": "more"}, token=agent_key["key"]).status == 403
    assert api.post("/api/v1/workspaces", {"name": "Elsewhere"}, token=agent_key["key"]).status == 403
    other = api.post("/api/v1/workspaces", {"name": "Other"}).json["data"]
    assert api.get(f"/api/v1/workspaces/{other['id']}/tasks", token=agent_key["key"]).status == 404

    # Revoked, it stops at once.
    assert api.post(f"{base}/api-keys/{agent_key['id']}/revoke").status == 200
    assert api.get(f"{base}/tasks", token=agent_key["key"]).status == 401


def test_agent_keys_refuse_an_expiry_and_scopes_beyond_an_agents(api, user, workspace):
    api.token = user["token"]
    base = f"/api/v1/workspaces/{workspace['id']}"
    expiring = api.post(f"{base}/api-keys", {"name": "k", "agent": "builder", "expires_in_days": 3})
    assert expiring.status == 422
    too_wide = api.post(f"{base}/api-keys", {"name": "k", "agent": "builder", "scopes": ["git:push"]})
    assert too_wide.status == 403 and too_wide.json["scopes"] == ["git:push"]
    assert api.get(f"{base}/api-keys").json["data"] == []


def test_usage_counts_every_request_of_a_key(api, user, workspace):
    from agentplane.auth.key_usage import USAGE_BATCH, USAGE_WRITTEN_AT_ONCE

    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    calls = USAGE_WRITTEN_AT_ONCE + USAGE_BATCH
    for _ in range(calls):
        assert api.get(tasks_path(workspace), token=key["key"]).status == 200

    usage = api.get(f"{keys_path(workspace)}/{key['id']}/usage").json["data"]

    assert usage["total_requests"] == calls
    assert sum(b["requests"] for b in usage["buckets"]) == calls


def test_agent_keys_have_a_usage_log_too(api, user, workspace):
    api.token = user["token"]
    agent_key = create_key(api, workspace, agent="builder")
    for _ in range(2):
        assert api.get(tasks_path(workspace), token=agent_key["key"]).status == 200
    usage = api.get(f"{keys_path(workspace)}/{agent_key['id']}/usage").json["data"]
    assert usage["total_requests"] == 2 and usage["last_used_at"] is not None


def test_get_answers_the_keys_version_as_etag(api, user, workspace):
    api.token = user["token"]
    key = create_key(api, workspace, scopes=["tasks:read"])
    path = f"{keys_path(workspace)}/{key['id']}"
    assert api.get(path).header("ETag") == '"1"'
    renamed = api.patch(path, {"name": "nightly"}, headers={"If-Match": 'W/"1"'})
    assert renamed.status == 200 and renamed.header("ETag") == '"2"'
    assert api.patch(path, {"name": "stale"}, headers={"If-Match": '"1"'}).status == 412

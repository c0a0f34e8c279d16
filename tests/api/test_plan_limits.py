"""Plan limits: a workspace on the free tier holds at most 5 members, 5 live projects and 3 active
runs; one more is a 402 problem naming the limit, and nothing of it is written. Concurrent
additions at the boundary let exactly the allowed number through; a larger tier lifts the limits,
removing things frees room, and `violations` says what a downgrade would break."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from agentplane import keys, raw_items
from tests.api.test_runs import act, new_run, status_of
from tests.api.test_workspaces import audit_actions, join, register_and_login, ws_path
from tests.api.test_workspaces_invites import accept, invite
from tests.plans import put_on_tier


def uid(person: dict[str, Any]) -> str:
    return str(person["user"]["id"])


def add_member(api, owner: dict[str, Any], ws: dict[str, Any], person: dict[str, Any]) -> Any:
    return api.post(f"{ws_path(ws)}/members", {"user_id": uid(person), "role": "member"}, token=owner["token"])


def member_ids(api, owner: dict[str, Any], ws: dict[str, Any]) -> set[str]:
    listed = api.get(f"{ws_path(ws)}/members?limit=200", token=owner["token"]).json["data"]
    return {m["user_id"] for m in listed}


def create_project(api, owner: dict[str, Any], ws: dict[str, Any], name: str) -> Any:
    return api.post(f"{ws_path(ws)}/projects", {"name": name, "default_branch": "main"}, token=owner["token"])


def project_names(api, owner: dict[str, Any], ws: dict[str, Any]) -> list[str]:
    return [p["name"] for p in api.get(f"{ws_path(ws)}/projects?limit=200", token=owner["token"]).json["data"]]


def assert_refused(response: Any, limit: str, allowed: int, current: int, tier: str = "free") -> None:
    assert response.status == 402, response.body
    problem = response.json
    assert problem["type"].endswith("/payment-required") and problem["status"] == 402
    extensions = (problem["limit"], problem["allowed"], problem["current"], problem["tier"])
    assert extensions == (limit, allowed, current, tier)
    assert limit.replace("_", " ") in problem["detail"]


def in_parallel(calls: list[Callable[[], Any]]) -> list[int]:
    statuses: list[int] = []
    start = threading.Barrier(len(calls))

    def go(call: Callable[[], Any]) -> None:
        start.wait()
        statuses.append(call().status)

    threads = [threading.Thread(target=go, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(statuses)


# --- members -------------------------------------------------------------------------------------


def test_a_sixth_member_is_402_naming_the_limit_and_is_not_added(api, user, workspace):
    for _ in range(4):
        join(api, user, workspace, "member")
    late = register_and_login(api)

    refused = add_member(api, user, workspace, late)

    assert_refused(refused, "members", allowed=5, current=5)
    assert "Free" in refused.json["detail"]
    assert uid(late) not in member_ids(api, user, workspace) and len(member_ids(api, user, workspace)) == 5
    assert not any(r["action"] == "member.added" and r["target_id"] == uid(late) for r in audit_actions(workspace))
    assert api.get("/api/v1/workspaces", token=late["token"]).json["data"] == []


def test_accepting_an_invite_into_a_full_workspace_is_402_and_the_invite_stays_pending(api, user, workspace):
    created = invite(api, user, workspace, "late@example.com")
    for _ in range(4):
        join(api, user, workspace, "member")
    late = register_and_login(api)

    refused = accept(api, late, created["token"])

    assert_refused(refused, "members", allowed=5, current=5)
    assert uid(late) not in member_ids(api, user, workspace)
    pending = api.get(f"{ws_path(workspace)}/invites", token=user["token"]).json["data"]
    assert [i["id"] for i in pending] == [created["id"]]
    # Once there is room the same invite is accepted.
    someone = next(iter(member_ids(api, user, workspace) - {uid(user)}))
    assert api.delete(f"{ws_path(workspace)}/members/{someone}", token=user["token"]).status == 204
    assert accept(api, late, created["token"]).status == 200


def test_removing_or_losing_a_member_frees_a_seat(api, user, workspace):
    people = [join(api, user, workspace, "member") for _ in range(4)]
    assert add_member(api, user, workspace, register_and_login(api)).status == 402

    removed = api.delete(f"{ws_path(workspace)}/members/{uid(people[0])}", token=user["token"])
    assert removed.status == 204
    assert add_member(api, user, workspace, register_and_login(api)).status == 201

    left = api.delete(f"{ws_path(workspace)}/members/{uid(people[1])}", token=people[1]["token"])
    assert left.status == 204
    erased = api.request("DELETE", "/api/v1/users/me", {"password": people[2]["password"]}, token=people[2]["token"])
    assert erased.status == 204, erased.body
    for _ in range(2):
        assert add_member(api, user, workspace, register_and_login(api)).status == 201
    assert add_member(api, user, workspace, register_and_login(api)).status == 402


def test_concurrent_adds_at_the_boundary_let_exactly_the_free_seats_through(api, user, workspace):
    join(api, user, workspace, "member")  # two members: three seats left
    people = [register_and_login(api) for _ in range(8)]

    statuses = in_parallel([lambda p=p: add_member(api, user, workspace, p) for p in people])

    assert statuses == [201] * 3 + [402] * 5
    assert len(member_ids(api, user, workspace)) == 5


# --- projects ------------------------------------------------------------------------------------


def test_a_sixth_project_is_402_and_deleting_one_makes_room(api, user, workspace):
    created = [create_project(api, user, workspace, f"repo-{n}") for n in range(5)]
    assert [c.status for c in created] == [201] * 5

    refused = create_project(api, user, workspace, "repo-5")

    assert_refused(refused, "projects", allowed=5, current=5)
    assert sorted(project_names(api, user, workspace)) == [f"repo-{n}" for n in range(5)]
    # The name was not taken either: it is free once there is room.
    gone = api.delete(f"{ws_path(workspace)}/projects/{created[0].json['data']['id']}", token=user["token"])
    assert gone.status == 204
    assert create_project(api, user, workspace, "repo-5").status == 201
    assert create_project(api, user, workspace, "repo-6").status == 402


def test_concurrent_project_creates_at_the_boundary_let_exactly_the_limit_through(api, user, workspace):
    assert create_project(api, user, workspace, "first").status == 201

    statuses = in_parallel([lambda n=n: create_project(api, user, workspace, f"p{n}") for n in range(8)])

    assert statuses == [201] * 4 + [402] * 4
    assert len(project_names(api, user, workspace)) == 5


# --- active runs ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("executions")
def test_a_fourth_active_run_is_402_and_stays_a_draft_until_one_ends(api, user, workspace):
    api.token = user["token"]
    runs = [new_run(api, workspace) for _ in range(4)]
    assert [act(api, workspace, run, "start").status for run in runs[:3]] == [200] * 3

    refused = act(api, workspace, runs[3], "start")

    assert_refused(refused, "active_runs", allowed=3, current=3)
    assert status_of(api, workspace, runs[3])["status"] == "draft"
    assert act(api, workspace, runs[0], "cancel").status == 200
    assert act(api, workspace, runs[3], "start").status == 200


@pytest.mark.usefixtures("executions")
def test_the_site_wide_cap_below_the_tier_stays_a_429(api, user, workspace, monkeypatch):
    from agentplane.settings import get_settings

    monkeypatch.setenv("MAX_ACTIVE_RUNS", "2")
    get_settings.cache_clear()
    api.token = user["token"]
    runs = [new_run(api, workspace) for _ in range(3)]
    assert [act(api, workspace, run, "start").status for run in runs[:2]] == [200, 200]

    refused = act(api, workspace, runs[2], "start")

    assert refused.status == 429 and refused.header("retry-after")
    get_settings.cache_clear()


# --- tiers ---------------------------------------------------------------------------------------


def test_a_larger_tier_lifts_the_limits_and_the_refusal_names_it(api, user, workspace):
    for _ in range(4):
        join(api, user, workspace, "member")
    assert add_member(api, user, workspace, register_and_login(api)).status == 402

    put_on_tier(workspace, "team")

    assert add_member(api, user, workspace, register_and_login(api)).status == 201
    for n in range(6):
        assert create_project(api, user, workspace, f"repo-{n}").status == 201
    assert len(member_ids(api, user, workspace)) == 6

    # Back on the default tier the limits are the free ones again: nothing is taken away, but
    # nothing more is added.
    put_on_tier(workspace, "free")
    assert_refused(add_member(api, user, workspace, register_and_login(api)), "members", allowed=5, current=6)
    assert_refused(create_project(api, user, workspace, "one-more"), "projects", allowed=5, current=6)


@pytest.mark.usefixtures("executions")
def test_violations_of_a_downgrade_list_each_exceeded_limit(api, user, workspace):
    from agentplane.logic.billing import catalog, limits

    put_on_tier(workspace, "business")
    api.token = user["token"]
    for _ in range(6):
        join(api, user, workspace, "member")
    for n in range(7):
        assert create_project(api, user, workspace, f"repo-{n}").status == 201
    runs = [new_run(api, workspace) for _ in range(4)]
    assert [act(api, workspace, run, "start").status for run in runs] == [200] * 4

    ws = workspace["id"]
    assert limits.tier_of(ws).id == "business"
    assert limits.usage(ws) == {"members": 7, "projects": 7, "active_runs": 4}
    found = {v.limit.value: v for v in limits.violations(ws, catalog.tier("free"))}

    assert sorted(found) == ["active_runs", "members", "projects"]
    assert (found["members"].allowed, found["members"].current) == (5, 7)
    assert found["members"].detail == "7 members; the Free tier allows 5"
    assert found["projects"].detail == "7 projects; the Free tier allows 5"
    assert found["active_runs"].detail == "4 active runs; the Free tier allows 3"
    assert limits.violations(ws, catalog.tier("team")) == []


def test_a_subscription_that_ended_leaves_the_workspace_on_the_default_tier(api, user, workspace):
    from agentplane.entities.billing import SubscriptionItem
    from agentplane.logic.billing import limits
    from agentplane.store import get_store

    ws = workspace["id"]
    assert limits.tier_of(ws).id == "free"
    for status, tier in [("past_due", "team"), ("trialing", "team"), ("canceled", "free"), ("unpaid", "free")]:
        get_store().save(SubscriptionItem(workspace_id=ws, tier="team", status=status, created_at="t", updated_at="t"))
        assert limits.tier_of(ws).id == tier, status


# --- workspaces made before the counts ----------------------------------------------------------


def test_a_workspace_made_before_the_counts_is_counted_on_its_first_addition(api, user, workspace):
    from agentplane.logic.billing import limits

    people = [join(api, user, workspace, "member") for _ in range(3)]
    create_project(api, user, workspace, "old-repo")
    raw_items.delete(keys.plan_usage_key(workspace["id"]))  # as it was before members were counted
    assert limits.usage(workspace["id"]) == {"members": 4, "projects": 1, "active_runs": 0}

    # A removal first: the counts are reckoned (with the leaving member) and then moved.
    assert api.delete(f"{ws_path(workspace)}/members/{uid(people[0])}", token=user["token"]).status == 204
    raw_items.delete(keys.plan_usage_key(workspace["id"]))
    assert add_member(api, user, workspace, register_and_login(api)).status == 201
    assert add_member(api, user, workspace, register_and_login(api)).status == 201
    assert_refused(add_member(api, user, workspace, register_and_login(api)), "members", allowed=5, current=5)

    stored = raw_items.get(keys.plan_usage_key(workspace["id"]))
    assert stored is not None and (stored["members"], stored["projects"]) == (5, 1)
    for n in range(4):
        assert create_project(api, user, workspace, f"repo-{n}").status == 201
    assert create_project(api, user, workspace, "repo-4").status == 402

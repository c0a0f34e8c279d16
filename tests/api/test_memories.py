from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentplane import raw_items
from tests.conftest import register_and_login


def memories_path(ws: dict) -> str:
    return f"/api/v1/workspaces/{ws['id']}/memories"


def memory_path(ws: dict, agent: str, key: str) -> str:
    return f"/api/v1/workspaces/{ws['id']}/agents/{agent}/memories/{key}"


def new_agent(api, ws: dict, name: str) -> None:
    created = api.post(f"/api/v1/workspaces/{ws['id']}/agents", {"name": name})
    assert created.status == 201, created.body


def remember(api, ws: dict, agent: str, key: str, content: str, type: str = "project", **fields: Any) -> dict:
    response = api.put(memory_path(ws, agent, key), {"content": content, "type": type, **fields})
    assert response.status in (200, 201), response.body
    return response.json["data"]


def audit_actions(ws: dict) -> list[str]:
    from agentplane import keys

    return [r["action"] for r in raw_items.query(keys.audit_pk(ws["id"]), limit=500).items]


@pytest.fixture
def agents(api, user, workspace) -> None:
    api.token = user["token"]
    for name in ("builder", "tester"):
        new_agent(api, workspace, name)


@pytest.fixture
def validated_days_ago(monkeypatch):
    """Memories written or revalidated while this is set are validated `days` ago."""
    from agentplane.ids import iso
    from agentplane.logic import memories

    def set_days(days: float | None) -> None:
        if days is None:
            monkeypatch.setattr(memories, "iso", iso)
            return
        moment = datetime.now(UTC) - timedelta(days=days)
        monkeypatch.setattr(memories, "iso", lambda value=None: iso(value or moment))

    return set_days


# --- versioned upsert ---------------------------------------------------------------------------
def test_create_then_replace_moves_the_version(api, user, workspace, agents):
    created = api.put(memory_path(workspace, "builder", "framework"), {"content": "Use Next.js", "type": "project"})
    assert created.status == 201, created.body
    memory = created.json["data"]
    assert memory["id"].startswith("mem_")
    assert (memory["agent_name"], memory["key"], memory["version"]) == ("builder", "framework", 1)
    assert memory["shared"] is False and memory["expires_days"] is None and memory["expired"] is False
    assert memory["last_validated_at"] == memory["created_at"]
    replaced = api.put(
        memory_path(workspace, "builder", "framework"), {"content": "Use Remix", "type": "project", "version": 1}
    )
    assert replaced.status == 200, replaced.body
    assert replaced.json["data"]["version"] == 2
    assert replaced.json["data"]["content"] == "Use Remix"
    assert replaced.json["data"]["id"] == memory["id"]
    assert {"memory.created", "memory.updated"} <= set(audit_actions(workspace))


def test_a_stale_version_is_409_with_the_current_version_and_changes_nothing(api, user, workspace, agents):
    remember(api, workspace, "builder", "framework", "v1")
    remember(api, workspace, "builder", "framework", "v2", version=1)
    stale = api.put(memory_path(workspace, "builder", "framework"), {"content": "v3", "type": "project", "version": 1})
    assert stale.status == 409
    assert stale.header("content-type") == "application/problem+json"
    assert stale.json["current_version"] == 2
    stale_header = api.put(
        memory_path(workspace, "builder", "framework"), {"content": "v3", "type": "project"}, headers={"If-Match": "1"}
    )
    assert stale_header.status == 409 and stale_header.json["current_version"] == 2
    by_header = api.put(
        memory_path(workspace, "builder", "framework"), {"content": "v3", "type": "project"}, headers={"If-Match": "2"}
    )
    assert by_header.status == 200 and by_header.json["data"]["version"] == 3
    [memory] = api.get(f"/api/v1/workspaces/{workspace['id']}/agents/builder/memories").json["data"]
    assert (memory["content"], memory["version"]) == ("v3", 3)


def test_an_upsert_without_a_version_replaces_the_stored_memory(api, user, workspace, agents):
    remember(api, workspace, "builder", "framework", "v1")
    remember(api, workspace, "builder", "framework", "v2", version=1)
    unversioned = api.put(memory_path(workspace, "builder", "framework"), {"content": "v3", "type": "reference"})
    assert unversioned.status == 200, unversioned.body
    assert (unversioned.json["data"]["content"], unversioned.json["data"]["version"]) == ("v3", 3)
    [memory] = api.get(f"/api/v1/workspaces/{workspace['id']}/agents/builder/memories").json["data"]
    assert (memory["content"], memory["type"], memory["version"]) == ("v3", "reference", 3)
    # Version 0 still means "create only".
    create_only = api.put(
        memory_path(workspace, "builder", "framework"), {"content": "v4", "type": "project", "version": 0}
    )
    assert create_only.status == 409 and create_only.json["current_version"] == 3
    assert audit_actions(workspace).count("memory.updated") == 2


def test_concurrent_unversioned_upserts_are_applied_one_after_another(api, user, workspace, agents):
    remember(api, workspace, "builder", "plan", "original")
    writers = 8
    answers: dict[int, Any] = {}
    start = threading.Barrier(writers)

    def write(n: int) -> None:
        start.wait()
        answers[n] = api.put(
            memory_path(workspace, "builder", "plan"),
            {"content": f"writer {n}", "type": "project", "shared": n % 2 == 0, "expires_days": n + 1},
        )

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [answers[n].status for n in range(writers)] == [200] * writers, [a.body for a in answers.values()]
    # Each writer replaced the version before it: versions 2..9, one each, none lost.
    versions = sorted(a.json["data"]["version"] for a in answers.values())
    assert versions == list(range(2, writers + 2))
    last = next(a.json["data"] for a in answers.values() if a.json["data"]["version"] == writers + 1)
    [memory] = api.get(f"/api/v1/workspaces/{workspace['id']}/agents/builder/memories").json["data"]
    assert memory["version"] == writers + 1
    # Nothing torn: the stored memory is exactly the last writer's, and its indexes agree with it.
    writer = int(last["content"].split()[-1])
    assert (memory["content"], memory["shared"], memory["expires_days"]) == (
        last["content"],
        writer % 2 == 0,
        writer + 1,
    )
    shared = api.get(f"/api/v1/workspaces/{workspace['id']}/memories/shared").json["data"]
    assert [m["key"] for m in shared] == (["plan"] if writer % 2 == 0 else [])
    assert audit_actions(workspace).count("memory.updated") == writers


def test_updating_a_memory_that_does_not_exist_is_409_with_version_0(api, user, workspace, agents):
    missing = api.put(memory_path(workspace, "builder", "nope"), {"content": "x", "type": "project", "version": 4})
    assert missing.status == 409
    assert missing.json["current_version"] == 0
    assert (
        api.put(memory_path(workspace, "builder", "nope"), {"content": "x", "type": "project", "version": 0}).status
        == 201
    )


def test_concurrent_upserts_with_one_version_have_exactly_one_winner(api, user, workspace, agents):
    remember(api, workspace, "builder", "plan", "original")
    answers: dict[int, Any] = {}

    def write(n: int) -> None:
        answers[n] = api.put(
            memory_path(workspace, "builder", "plan"), {"content": f"writer {n}", "type": "project", "version": 1}
        )

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [n for n, a in answers.items() if a.status == 200]
    losers = [a for a in answers.values() if a.status != 200]
    assert len(winners) == 1, [a.body for a in answers.values()]
    assert all(a.status == 409 and a.json["current_version"] == 2 for a in losers), [a.body for a in losers]
    [memory] = api.get(f"/api/v1/workspaces/{workspace['id']}/agents/builder/memories").json["data"]
    assert memory["version"] == 2
    assert memory["content"] == f"writer {winners[0]}"
    assert audit_actions(workspace).count("memory.updated") == 1


def test_concurrent_create_only_writes_create_one_memory(api, user, workspace, agents):
    answers: list[Any] = []

    def write(n: int) -> None:
        body = {"content": f"w{n}", "type": "identity", "version": 0}
        answers.append(api.put(memory_path(workspace, "builder", "fresh"), body))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status for a in answers) == [201] + [409] * 5
    listed = api.get(f"/api/v1/workspaces/{workspace['id']}/agents/builder/memories").json["data"]
    assert len(listed) == 1 and listed[0]["version"] == 1


def test_concurrent_unversioned_first_writes_create_one_memory_then_replace_it(api, user, workspace, agents):
    answers: list[Any] = []

    def write(n: int) -> None:
        answers.append(api.put(memory_path(workspace, "builder", "fresh"), {"content": f"w{n}", "type": "identity"}))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status for a in answers) == [200] * 5 + [201]
    assert len({a.json["data"]["id"] for a in answers}) == 1
    listed = api.get(f"/api/v1/workspaces/{workspace['id']}/agents/builder/memories").json["data"]
    assert len(listed) == 1 and listed[0]["version"] == 6


def test_bad_input_is_a_problem_and_writes_nothing(api, user, workspace, agents):
    path = memory_path(workspace, "builder", "k")
    assert api.put(path, {"content": "x" * 2001, "type": "project"}).status == 422
    assert api.put(path, {"content": "", "type": "project"}).status == 422
    assert api.put(path, {"content": "x", "type": "gossip"}).status == 422
    assert api.put(path, {"content": "x"}).status == 422
    assert api.put(path, {"content": "x", "type": "project", "expires_days": 0}).status == 422
    assert api.put(path, {"content": "x", "type": "project", "version": -1}).status == 422
    assert api.put(path, {"content": "x", "type": "project", "colour": "red"}).status == 422
    assert api.put(path, raw="{nope", headers={"Content-Type": "application/json"}).status == 400
    assert api.put(memory_path(workspace, "builder", "bad%23key"), {"content": "x", "type": "project"}).status == 422
    assert api.put(memory_path(workspace, "builder", "-lead"), {"content": "x", "type": "project"}).status == 422
    assert api.put(memory_path(workspace, "Builder", "k"), {"content": "x", "type": "project"}).status == 422
    unknown_agent = api.put(memory_path(workspace, "ghost", "k"), {"content": "x", "type": "project"})
    assert unknown_agent.status == 404
    assert api.get(memories_path(workspace)).json["data"] == []
    assert not [a for a in audit_actions(workspace) if a.startswith("memory.")]


def test_exactly_2000_characters_is_accepted(api, user, workspace, agents):
    assert len(remember(api, workspace, "builder", "long", "x" * 2000)["content"]) == 2000


def test_delete_removes_the_memory_and_a_stale_if_match_is_409(api, user, workspace, agents):
    memory = remember(api, workspace, "builder", "k", "x")
    remember(api, workspace, "builder", "k", "y", version=1)
    stale = api.delete(memory_path(workspace, "builder", "k"), headers={"If-Match": "1"})
    assert stale.status == 409 and stale.json["current_version"] == 2
    assert api.delete(memory_path(workspace, "builder", "k"), headers={"If-Match": "2"}).status == 204
    assert api.delete(memory_path(workspace, "builder", "k")).status == 404
    assert api.get(f"/api/v1/workspaces/{workspace['id']}/agents/builder/memories").json["data"] == []
    assert api.post(f"{memories_path(workspace)}/{memory['id']}/revalidate").status == 404
    assert "memory.deleted" in audit_actions(workspace)
    assert remember(api, workspace, "builder", "k", "again")["version"] == 1


# --- lists --------------------------------------------------------------------------------------
def test_lists_filter_by_type_and_agent(api, user, workspace, agents):
    remember(api, workspace, "builder", "a", "one", "project")
    remember(api, workspace, "builder", "b", "two", "feedback")
    remember(api, workspace, "tester", "c", "three", "project")
    every = api.get(memories_path(workspace)).json["data"]
    assert [(m["agent_name"], m["key"]) for m in every] == [("builder", "a"), ("builder", "b"), ("tester", "c")]
    projects = api.get(f"{memories_path(workspace)}?type=project").json["data"]
    assert [m["key"] for m in projects] == ["a", "c"]
    builders = api.get(f"{memories_path(workspace)}?agent=builder").json["data"]
    assert [m["key"] for m in builders] == ["a", "b"]
    both = api.get(f"{memories_path(workspace)}?agent=builder&type=feedback").json["data"]
    assert [m["key"] for m in both] == ["b"]
    per_agent = api.get(f"/api/v1/workspaces/{workspace['id']}/agents/tester/memories").json["data"]
    assert [m["key"] for m in per_agent] == ["c"]
    per_agent_typed = api.get(f"/api/v1/workspaces/{workspace['id']}/agents/builder/memories?type=project")
    assert [m["key"] for m in per_agent_typed.json["data"]] == ["a"]
    assert api.get(f"{memories_path(workspace)}?type=gossip").status == 422


def test_a_changed_type_moves_the_memory_between_type_lists(api, user, workspace, agents):
    remember(api, workspace, "builder", "a", "one", "project")
    remember(api, workspace, "builder", "a", "one", "reference", version=1)
    assert api.get(f"{memories_path(workspace)}?type=project").json["data"] == []
    assert [m["key"] for m in api.get(f"{memories_path(workspace)}?type=reference").json["data"]] == ["a"]


def test_shared_lists_only_shared_memories(api, user, workspace, agents):
    remember(api, workspace, "builder", "private", "mine")
    remember(api, workspace, "builder", "team", "for all", shared=True)
    remember(api, workspace, "tester", "ci", "CI runs on push", "reference", shared=True)
    shared = api.get(f"{memories_path(workspace)}/shared").json["data"]
    assert [m["key"] for m in shared] == ["team", "ci"]
    assert [m["key"] for m in api.get(f"{memories_path(workspace)}/shared?agent=tester").json["data"]] == ["ci"]
    assert [m["key"] for m in api.get(f"{memories_path(workspace)}/shared?type=reference").json["data"]] == ["ci"]
    # Unsharing takes it out of the shared list.
    remember(api, workspace, "builder", "team", "for all", version=1)
    assert [m["key"] for m in api.get(f"{memories_path(workspace)}/shared").json["data"]] == ["ci"]


def test_lists_paginate_with_a_cursor_bound_to_the_query(api, user, workspace, agents):
    keys = [f"k{i}" for i in range(5)]
    for key in keys:
        remember(api, workspace, "builder", key, f"content {key}")
    seen: list[str] = []
    cursor = None
    while True:
        url = f"{memories_path(workspace)}?limit=2" + (f"&cursor={cursor}" if cursor else "")
        response = api.get(url)
        assert response.status == 200
        seen += [m["key"] for m in response.json["data"]]
        cursor = response.json["meta"]["next_cursor"]
        if not cursor:
            break
    assert seen == keys
    first = api.get(f"{memories_path(workspace)}?limit=2").json["meta"]["next_cursor"]
    assert api.get(f"{memories_path(workspace)}?limit=2&type=project&cursor={first}").status == 400
    filtered = api.get(f"{memories_path(workspace)}?limit=2&agent=builder&type=project")
    assert [m["key"] for m in filtered.json["data"]] == ["k0", "k1"]
    more = filtered.json["meta"]["next_cursor"]
    rest = api.get(f"{memories_path(workspace)}?limit=2&agent=builder&type=project&cursor={more}").json["data"]
    assert [m["key"] for m in rest] == ["k2", "k3"]


# --- expiry and revalidation --------------------------------------------------------------------
def test_expired_lists_memories_past_their_days_and_revalidate_renews_them(
    api, user, workspace, agents, validated_days_ago
):
    validated_days_ago(10)
    old = remember(api, workspace, "builder", "stale", "old news", expires_days=7)
    remember(api, workspace, "builder", "keeper", "no expiry")
    validated_days_ago(3)
    remember(api, workspace, "tester", "recent", "fine", expires_days=7)
    validated_days_ago(None)
    expired = api.get(f"{memories_path(workspace)}/expired")
    assert expired.status == 200
    assert [m["key"] for m in expired.json["data"]] == ["stale"]
    assert expired.json["data"][0]["expired"] is True
    listed = {m["key"]: m["expired"] for m in api.get(memories_path(workspace)).json["data"]}
    assert listed == {"stale": True, "keeper": False, "recent": False}

    renewed = api.post(f"{memories_path(workspace)}/{old['id']}/revalidate")
    assert renewed.status == 200, renewed.body
    memory = renewed.json["data"]
    assert memory["last_validated_at"] > old["last_validated_at"]
    assert memory["expired"] is False
    assert memory["version"] == old["version"]  # content unchanged, version unchanged
    assert memory["content"] == "old news"
    assert api.get(f"{memories_path(workspace)}/expired").json["data"] == []
    assert "memory.revalidated" in audit_actions(workspace)


def test_writing_a_memory_validates_it_again(api, user, workspace, agents, validated_days_ago):
    validated_days_ago(10)
    remember(api, workspace, "builder", "stale", "old", expires_days=1)
    validated_days_ago(None)
    assert len(api.get(f"{memories_path(workspace)}/expired").json["data"]) == 1
    remember(api, workspace, "builder", "stale", "fresh", expires_days=1, version=1)
    assert api.get(f"{memories_path(workspace)}/expired").json["data"] == []
    # And dropping expires_days takes it out of the expiry index for good.
    remember(api, workspace, "builder", "stale", "forever", version=2)
    from agentplane import keys

    index = raw_items.query(keys.memory_expiry_gsi(workspace["id"]), index=keys.GSI2).items
    assert index == []


def test_revalidate_of_an_unknown_or_foreign_id_is_404(api, user, workspace, agents):
    memory = remember(api, workspace, "builder", "k", "x")
    assert api.post(f"{memories_path(workspace)}/mem_{'0' * 26}/revalidate").status == 404
    assert api.post(f"{memories_path(workspace)}/{'x' * 65}/revalidate").status == 422
    other = api.post("/api/v1/workspaces", {"name": "Other"}).json["data"]
    assert api.post(f"{memories_path(other)}/{memory['id']}/revalidate").status == 404


# --- search -------------------------------------------------------------------------------------
def test_search_matches_every_word_in_key_or_content_case_insensitively(api, user, workspace, agents):
    remember(api, workspace, "builder", "preferred-framework", "Use Next.js for all frontend work")
    remember(api, workspace, "builder", "db", "Postgres with Prisma", "reference")
    remember(api, workspace, "tester", "e2e", "Playwright against the NEXT dev server", "feedback")
    search = f"{memories_path(workspace)}/search"
    assert [m["key"] for m in api.get(f"{search}?q=next").json["data"]] == ["preferred-framework", "e2e"]
    assert [m["key"] for m in api.get(f"{search}?q=FRAMEWORK").json["data"]] == ["preferred-framework"]
    assert [m["key"] for m in api.get(f"{search}?q=next%20frontend").json["data"]] == ["preferred-framework"]
    assert [m["key"] for m in api.get(f"{search}?q=next&agent=tester").json["data"]] == ["e2e"]
    assert [m["key"] for m in api.get(f"{search}?q=next&type=feedback").json["data"]] == ["e2e"]
    assert api.get(f"{search}?q=cobol").json["data"] == []
    assert api.get(search).status == 422
    assert api.get(f"{search}?q=%20%20").status == 422


def test_search_pages_through_matches(api, user, workspace, agents):
    for n in range(5):
        remember(api, workspace, "builder", f"m{n}", "match" if n % 2 == 0 else "other")
    first = api.get(f"{memories_path(workspace)}/search?q=match&limit=2").json
    assert [m["key"] for m in first["data"]] == ["m0", "m2"]
    cursor = first["meta"]["next_cursor"]
    assert cursor
    rest = api.get(f"{memories_path(workspace)}/search?q=match&limit=2&cursor={cursor}").json
    assert [m["key"] for m in rest["data"]] == ["m4"]


# --- access -------------------------------------------------------------------------------------
def test_non_member_gets_404_and_viewer_cannot_write(api, user, workspace, agents):
    memory = remember(api, workspace, "builder", "k", "secret plan")
    stranger = register_and_login(api)
    api.token = stranger["token"]
    assert api.get(memories_path(workspace)).status == 404
    assert api.get(f"{memories_path(workspace)}/search?q=secret").status == 404
    assert api.put(memory_path(workspace, "builder", "k"), {"content": "x", "type": "project"}).status == 404
    assert api.post(f"{memories_path(workspace)}/{memory['id']}/revalidate").status == 404

    from agentplane.auth.scopes import Role
    from agentplane.ids import iso
    from agentplane.logic.workspaces import member_item

    raw_items.put(member_item(workspace["id"], workspace["name"], stranger["user"]["id"], Role.viewer, iso()))
    assert api.get(memories_path(workspace)).status == 200
    refused = api.put(memory_path(workspace, "builder", "k"), {"content": "x", "type": "project", "version": 1})
    assert refused.status == 403
    assert refused.json["required_scope"] == "agents:write"
    assert api.delete(memory_path(workspace, "builder", "k")).status == 403
    api.token = user["token"]
    assert api.get(f"/api/v1/workspaces/{workspace['id']}/agents/builder/memories").json["data"][0]["version"] == 1

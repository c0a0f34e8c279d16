from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agentplane import raw_items
from tests.conftest import register_and_login


def ws_path(ws: dict, tail: str) -> str:
    return f"/api/v1/workspaces/{ws['id']}/{tail}"


ADR = {
    "title": "Use DynamoDB single-table design",
    "context": "We need a serverless store",
    "decision": "One table with overloaded GSIs",
    "rationale": "No servers, predictable cost",
}


def new_adr(api, ws: dict, **fields: Any) -> dict:
    created = api.post(ws_path(ws, "adrs"), {**ADR, **fields})
    assert created.status == 201, created.body
    return created.json["data"]


def add_member(workspace: dict, account: dict, role: str) -> None:
    from agentplane.auth.scopes import Role
    from agentplane.ids import iso
    from agentplane.logic.workspaces import member_item

    raw_items.put(member_item(workspace["id"], workspace["name"], account["user"]["id"], Role(role), iso()))


def audit_actions(workspace: dict) -> list[str]:
    from agentplane import keys

    return [row["action"] for row in raw_items.query(keys.audit_pk(workspace["id"]), limit=200).items]


def collect(api, path: str, limit: int = 2) -> list[dict]:
    seen: list[dict] = []
    cursor = None
    separator = "&" if "?" in path else "?"
    while True:
        listed = api.get(f"{path}{separator}limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
        assert listed.status == 200, listed.body
        seen += listed.json["data"]
        cursor = listed.json["meta"]["next_cursor"]
        if not cursor:
            return seen


# --- ADRs ------------------------------------------------------------------------------------


def test_adrs_are_numbered_from_one_and_listed_highest_first(api, user, workspace):
    api.token = user["token"]
    first = new_adr(api, workspace)
    assert first["id"].startswith("adr_")
    assert first["number"] == 1
    assert first["status"] == "proposed"
    assert first["author"] == user["user"]["id"]
    new_adr(api, workspace, title="Second")
    new_adr(api, workspace, title="Third", author="builder", status="accepted")
    listed = collect(api, ws_path(workspace, "adrs"))
    assert [a["number"] for a in listed] == [3, 2, 1]
    assert listed[0]["author"] == "builder"
    assert api.get(ws_path(workspace, f"adrs/{first['id']}")).json["data"] == first
    accepted = api.get(ws_path(workspace, "adrs?status=accepted")).json["data"]
    assert [a["number"] for a in accepted] == [3]
    assert "adr.created" in audit_actions(workspace)


def test_concurrent_adr_creates_get_numbers_one_to_ten_without_duplicates(api, user, workspace):
    api.token = user["token"]

    def create(i: int) -> Any:
        return api.post(ws_path(workspace, "adrs"), {**ADR, "title": f"Decision {i}"})

    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(create, range(10)))
    assert [r.status for r in responses] == [201] * 10, [r.body for r in responses if r.status != 201]
    assert sorted(r.json["data"]["number"] for r in responses) == list(range(1, 11))
    listed = api.get(ws_path(workspace, "adrs?limit=50")).json["data"]
    assert [a["number"] for a in listed] == list(range(10, 0, -1))


def test_deleted_adr_number_is_not_reused(api, user, workspace):
    api.token = user["token"]
    new_adr(api, workspace)
    second = new_adr(api, workspace)
    assert api.delete(ws_path(workspace, f"adrs/{second['id']}")).status == 204
    assert api.get(ws_path(workspace, f"adrs/{second['id']}")).status == 404
    assert api.delete(ws_path(workspace, f"adrs/{second['id']}")).status == 404
    assert new_adr(api, workspace)["number"] == 3
    assert "adr.deleted" in audit_actions(workspace)


def test_new_adr_superseding_an_old_one_marks_it_superseded_in_the_same_write(api, user, workspace):
    api.token = user["token"]
    old = new_adr(api, workspace, status="accepted")
    newer = new_adr(api, workspace, title="Move to Aurora", status="accepted", supersedes=old["id"])
    assert newer["supersedes"] == old["id"]
    reloaded = api.get(ws_path(workspace, f"adrs/{old['id']}")).json["data"]
    assert reloaded["status"] == "superseded"
    assert reloaded["superseded_by"] == newer["id"]
    assert reloaded["version"] == 2
    actions = audit_actions(workspace)
    assert "adr.superseded" in actions
    twice = api.post(ws_path(workspace, "adrs"), {**ADR, "supersedes": old["id"]})
    assert twice.status == 409
    assert twice.json["current_status"] == "superseded"
    assert [a["number"] for a in api.get(ws_path(workspace, "adrs")).json["data"]] == [2, 1]


def test_superseding_a_missing_adr_is_404_and_writes_nothing(api, user, workspace):
    api.token = user["token"]
    missing = api.post(ws_path(workspace, "adrs"), {**ADR, "supersedes": "adr_" + "0" * 26})
    assert missing.status == 404
    assert api.get(ws_path(workspace, "adrs")).json["data"] == []
    assert new_adr(api, workspace)["number"] == 1


def test_patch_superseded_by_links_both_adrs_and_reverting_unlinks(api, user, workspace):
    api.token = user["token"]
    old = new_adr(api, workspace, status="accepted")
    newer = new_adr(api, workspace, title="Newer")
    path = ws_path(workspace, f"adrs/{old['id']}")
    patched = api.patch(path, {"superseded_by": newer["id"]})
    assert patched.status == 200, patched.body
    assert patched.json["data"]["status"] == "superseded"
    assert api.get(ws_path(workspace, f"adrs/{newer['id']}")).json["data"]["supersedes"] == old["id"]
    reverted = api.patch(path, {"status": "accepted"})
    assert reverted.status == 200
    assert reverted.json["data"]["superseded_by"] is None
    assert api.get(ws_path(workspace, f"adrs/{newer['id']}")).json["data"]["supersedes"] is None


def test_marking_superseded_without_a_successor_is_422(api, user, workspace):
    api.token = user["token"]
    adr = new_adr(api, workspace)
    refused = api.patch(ws_path(workspace, f"adrs/{adr['id']}"), {"status": "superseded"})
    assert refused.status == 422
    itself = api.patch(ws_path(workspace, f"adrs/{adr['id']}"), {"superseded_by": adr["id"]})
    assert itself.status == 422
    assert api.post(ws_path(workspace, "adrs"), {**ADR, "status": "superseded"}).status == 422
    assert api.get(ws_path(workspace, f"adrs/{adr['id']}")).json["data"]["version"] == 1


def test_deleting_the_superseding_adr_restores_the_old_status(api, user, workspace):
    api.token = user["token"]
    old = new_adr(api, workspace, status="accepted")
    newer = new_adr(api, workspace, supersedes=old["id"])
    assert api.delete(ws_path(workspace, f"adrs/{newer['id']}")).status == 204
    restored = api.get(ws_path(workspace, f"adrs/{old['id']}")).json["data"]
    assert restored["status"] == "accepted"
    assert restored["superseded_by"] is None


def test_patch_adr_with_stale_version_is_412(api, user, workspace):
    api.token = user["token"]
    adr = new_adr(api, workspace)
    path = ws_path(workspace, f"adrs/{adr['id']}")
    assert api.patch(path, {"status": "accepted", "version": 1}).json["data"]["version"] == 2
    stale = api.patch(path, {"title": "x"}, headers={"If-Match": "1"})
    assert stale.status == 412
    assert api.get(path).json["data"]["title"] == ADR["title"]


def test_adr_prompt_lists_accepted_then_proposed_decisions(api, user, workspace):
    api.token = user["token"]
    empty = api.get(ws_path(workspace, "adrs/prompt"))
    assert empty.status == 200
    assert empty.json["data"]["count"] == 0
    accepted = new_adr(api, workspace, status="accepted", decision="Use PostgreSQL")
    new_adr(api, workspace, title="Maybe GraphQL", decision="Adopt GraphQL")
    new_adr(api, workspace, title="Old idea", status="deprecated", decision="Use XML")
    new_adr(api, workspace, title="Replacement", status="accepted", decision="Use DynamoDB", supersedes=accepted["id"])
    prompt = api.get(ws_path(workspace, "adrs/prompt")).json["data"]
    text = prompt["prompt"]
    assert "### Architecture Decisions (ADR)" in text
    assert "ADR-004" in text and "Use DynamoDB" in text
    assert "Adopt GraphQL" in text and "Proposed" in text
    assert "Use XML" not in text
    assert "Use PostgreSQL" not in text
    assert text.index("Use DynamoDB") < text.index("Adopt GraphQL")
    assert prompt["count"] == 2
    only_accepted = api.get(ws_path(workspace, "adrs/prompt?include_proposed=false")).json["data"]
    assert "Adopt GraphQL" not in only_accepted["prompt"]
    assert only_accepted["count"] == 1


def test_bad_adr_input_is_a_problem_and_writes_nothing(api, user, workspace):
    api.token = user["token"]
    missing = api.post(ws_path(workspace, "adrs"), {"title": "Only a title"})
    assert missing.status == 422
    assert {e["field"] for e in missing.json["errors"]} >= {"context", "decision", "rationale"}
    assert api.post(ws_path(workspace, "adrs"), {**ADR, "status": "maybe"}).status == 422
    assert api.post(ws_path(workspace, "adrs"), {**ADR, "supersedes": "not-an-id"}).status == 422
    assert api.post(ws_path(workspace, "adrs"), {**ADR, "colour": "red"}).status == 422
    assert api.post(ws_path(workspace, "adrs"), raw="{", headers={"Content-Type": "application/json"}).status == 400
    assert api.get(ws_path(workspace, "adrs?status=maybe")).status == 422
    assert api.get(ws_path(workspace, "adrs")).json["data"] == []


def test_adr_cursor_is_bound_to_its_filters(api, user, workspace):
    api.token = user["token"]
    for _ in range(3):
        new_adr(api, workspace)
    cursor = api.get(ws_path(workspace, "adrs?limit=1")).json["meta"]["next_cursor"]
    assert api.get(ws_path(workspace, f"adrs?status=accepted&cursor={cursor}")).status == 400
    assert api.get(ws_path(workspace, f"rules?cursor={cursor}")).status == 400


# --- rules -----------------------------------------------------------------------------------


def test_rules_filter_by_agent_scope_category_and_permanence(api, user, workspace):
    api.token = user["token"]
    universal = api.post(ws_path(workspace, "rules"), {"content": "Write tests first", "category": "workflow"})
    assert universal.status == 201, universal.body
    assert universal.json["data"]["scope"] == "all"
    builder = api.post(ws_path(workspace, "rules"), {"rule": "Use pnpm", "scope": "builder", "category": "arch-stack"})
    assert builder.status == 201
    assert builder.json["data"]["content"] == "Use pnpm"
    api.post(ws_path(workspace, "rules"), {"content": "Review every PR", "scope": "reviewer", "permanent": True})
    everything = collect(api, ws_path(workspace, "rules"))
    assert [r["content"] for r in everything] == ["Write tests first", "Use pnpm", "Review every PR"]
    for_builder = api.get(ws_path(workspace, "rules?agent=builder")).json["data"]
    assert [r["content"] for r in for_builder] == ["Write tests first", "Use pnpm"]
    assert [r["content"] for r in api.get(ws_path(workspace, "rules?scope=all")).json["data"]] == ["Write tests first"]
    by_category = api.get(ws_path(workspace, "rules?category=arch-stack")).json["data"]
    assert [r["content"] for r in by_category] == ["Use pnpm"]
    permanent = api.get(ws_path(workspace, "rules?permanent=true")).json["data"]
    assert [r["content"] for r in permanent] == ["Review every PR"]


def test_permanent_rule_refuses_delete_with_403(api, user, workspace):
    api.token = user["token"]
    rule = api.post(ws_path(workspace, "rules"), {"content": "Never push to main", "permanent": True}).json["data"]
    refused = api.delete(ws_path(workspace, f"rules/{rule['id']}"))
    assert refused.status == 403
    assert refused.header("content-type") == "application/problem+json"
    assert [r["id"] for r in api.get(ws_path(workspace, "rules")).json["data"]] == [rule["id"]]
    assert "rule.deleted" not in audit_actions(workspace)


def test_ordinary_rule_deletes_and_is_gone(api, user, workspace):
    api.token = user["token"]
    rule = api.post(ws_path(workspace, "rules"), {"content": "Prefer small PRs"}).json["data"]
    assert api.delete(ws_path(workspace, f"rules/{rule['id']}")).status == 204
    assert api.get(ws_path(workspace, "rules")).json["data"] == []
    assert api.delete(ws_path(workspace, f"rules/{rule['id']}")).status == 404
    assert api.patch(ws_path(workspace, f"rules/{rule['id']}"), {"content": "x"}).status == 404
    assert "rule.deleted" in audit_actions(workspace)


def test_only_an_admin_makes_a_permanent_rule_deletable(api, user, workspace):
    api.token = user["token"]
    rule = api.post(ws_path(workspace, "rules"), {"content": "Sign commits", "permanent": True}).json["data"]
    member = register_and_login(api)
    add_member(workspace, member, "member")
    path = ws_path(workspace, f"rules/{rule['id']}")
    edited = api.patch(path, {"content": "Sign every commit"}, token=member["token"])
    assert edited.status == 200
    assert edited.json["data"]["version"] == 2
    refused = api.patch(path, {"permanent": False}, token=member["token"])
    assert refused.status == 403
    assert api.delete(path, token=member["token"]).status == 403
    by_owner = api.patch(path, {"permanent": False, "version": 2})
    assert by_owner.status == 200
    assert by_owner.json["data"]["permanent"] is False
    assert api.delete(path).status == 204


def test_bad_rule_input_is_a_problem_and_writes_nothing(api, user, workspace):
    api.token = user["token"]
    assert api.post(ws_path(workspace, "rules"), {}).status == 422
    assert api.post(ws_path(workspace, "rules"), {"content": "x", "scope": "two words"}).status == 422
    assert api.post(ws_path(workspace, "rules"), {"content": "x", "permanent": "sometimes"}).status == 422
    assert api.post(ws_path(workspace, "rules"), {"content": "x", "colour": "red"}).status == 422
    assert api.get(ws_path(workspace, "rules?permanent=maybe")).status == 422
    assert api.get(ws_path(workspace, "rules")).json["data"] == []


# --- failures --------------------------------------------------------------------------------


def test_failures_are_recorded_and_listed_newest_first_with_filters(api, user, workspace):
    api.token = user["token"]
    task_id = api.post(ws_path(workspace, "tasks"), {"title": "Login tests"}).json["data"]["id"]
    first = api.post(
        ws_path(workspace, "failures"),
        {
            "title": "Login tests failed",
            "cause": "Mocked clock drifted",
            "lesson": "Freeze time in auth tests",
            "task_id": task_id,
            "agent": "builder",
        },
    )
    assert first.status == 201, first.body
    assert first.json["data"]["id"].startswith("fail_")
    api.post(ws_path(workspace, "failures"), {"title": "Review rejected", "agent": "reviewer"})
    api.post(ws_path(workspace, "failures"), {"title": "Deploy failed", "agent": "builder"})
    listed = collect(api, ws_path(workspace, "failures"))
    assert [f["title"] for f in listed] == ["Deploy failed", "Review rejected", "Login tests failed"]
    builder = api.get(ws_path(workspace, "failures?agent=builder")).json["data"]
    assert [f["title"] for f in builder] == ["Deploy failed", "Login tests failed"]
    by_task = api.get(ws_path(workspace, f"failures?task_id={task_id}")).json["data"]
    assert by_task[0]["lesson"] == "Freeze time in auth tests"
    assert "failure.recorded" in audit_actions(workspace)


def test_a_failure_naming_another_workspaces_task_or_run_is_422_and_records_nothing(api, user, workspace):
    api.token = user["token"]
    other = api.post("/api/v1/workspaces", {"name": "Elsewhere"}).json["data"]
    foreign = api.post(f"/api/v1/workspaces/{other['id']}/tasks", {"title": "theirs"}).json["data"]["id"]
    for body, field in (({"task_id": foreign}, "task_id"), ({"run_id": "run_unknown1"}, "run_id")):
        refused = api.post(ws_path(workspace, "failures"), {"title": "borrowed", **body})
        assert refused.status == 422 and refused.json["field"] == field, refused.body
    assert api.get(ws_path(workspace, "failures")).json["data"] == []
    assert "failure.recorded" not in audit_actions(workspace)


def test_bad_failure_input_is_a_problem(api, user, workspace):
    api.token = user["token"]
    assert api.post(ws_path(workspace, "failures"), {"cause": "no title"}).status == 422
    assert api.post(ws_path(workspace, "failures"), {"title": "x" * 301}).status == 422
    assert api.get(ws_path(workspace, "failures")).json["data"] == []


# --- access ----------------------------------------------------------------------------------


def test_non_member_gets_404_for_all_knowledge(api, user, workspace):
    api.token = user["token"]
    adr = new_adr(api, workspace)
    rule = api.post(ws_path(workspace, "rules"), {"content": "x"}).json["data"]
    stranger = register_and_login(api)
    api.token = stranger["token"]
    assert api.get(ws_path(workspace, "adrs")).status == 404
    assert api.get(ws_path(workspace, f"adrs/{adr['id']}")).status == 404
    assert api.get(ws_path(workspace, "adrs/prompt")).status == 404
    assert api.post(ws_path(workspace, "adrs"), ADR).status == 404
    assert api.delete(ws_path(workspace, f"rules/{rule['id']}")).status == 404
    assert api.get(ws_path(workspace, "failures")).status == 404


def test_viewer_reads_knowledge_but_cannot_write_it(api, user, workspace):
    api.token = user["token"]
    rule = api.post(ws_path(workspace, "rules"), {"content": "x"}).json["data"]
    viewer = register_and_login(api)
    add_member(workspace, viewer, "viewer")
    api.token = viewer["token"]
    assert api.get(ws_path(workspace, "rules")).status == 200
    assert api.get(ws_path(workspace, "adrs/prompt")).status == 200
    assert api.post(ws_path(workspace, "adrs"), ADR).status == 403
    assert api.delete(ws_path(workspace, f"rules/{rule['id']}")).status == 403
    assert api.post(ws_path(workspace, "failures"), {"title": "x"}).status == 403


def test_token_without_tasks_write_scope_is_403_naming_it(api, user, workspace):
    scoped = api.post(
        "/api/v1/auth/token",
        {"email": user["email"], "password": user["password"], "abilities": ["tasks:read"]},
        token="",
        ip="10.9.9.8",
    )
    assert scoped.status == 201, scoped.body
    token = scoped.json["data"]["token"]
    assert api.get(ws_path(workspace, "adrs"), token=token).status == 200
    refused = api.post(ws_path(workspace, "rules"), {"content": "x"}, token=token)
    assert refused.status == 403
    assert refused.json["required_scope"] == "tasks:write"


def test_ids_that_were_never_minted_are_404_and_never_reach_the_table(api, user, workspace, monkeypatch):
    import pytest

    from agentplane.access import workspace_access
    from agentplane.auth.tokens import resolve_principal
    from agentplane.errors import NotFound
    from agentplane.logic import knowledge
    from agentplane.models.knowledge import AdrUpdate, RuleUpdate
    from tests.dynamo_limits import enforce_key_limits

    enforce_key_limits(monkeypatch)
    access = workspace_access(resolve_principal(user["token"]), workspace["id"], "tasks:write")
    adr, rule = "adr_" + "x" * 3000, "rule_" + "x" * 3000
    calls = [
        lambda: knowledge.get_adr(access, adr),
        lambda: knowledge.update_adr(access, adr, AdrUpdate(title="x")),
        lambda: knowledge.delete_adr(access, adr),
        lambda: knowledge.update_rule(access, rule, RuleUpdate(content="x")),
        lambda: knowledge.delete_rule(access, rule),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            call()
    api.token = user["token"]
    assert api.get(ws_path(workspace, "adrs/adr_1")).status == 404
    assert api.patch(ws_path(workspace, "rules/rule_1"), {"content": "x"}).status == 404
    assert api.delete(ws_path(workspace, "rules/not-a-rule")).status == 404

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from email.utils import parsedate_to_datetime

from agentplane import raw_items
from tests.conftest import register_and_login


def projects_path(ws: dict) -> str:
    return f"/api/v1/workspaces/{ws['id']}/projects"


def project_path(ws: dict, project: dict) -> str:
    return f"{projects_path(ws)}/{project['id']}"


def make_project(api, ws: dict, name: str = "Mobile app", **fields) -> dict:
    response = api.post(projects_path(ws), {"name": name, **fields})
    assert response.status == 201, response.body
    return response.json["data"]


def add_member(ws: dict, person: dict, role: str) -> None:
    from agentplane.auth.scopes import Role
    from agentplane.ids import iso
    from agentplane.logic.workspaces import member_item

    raw_items.put(member_item(ws["id"], ws["name"], person["user"]["id"], Role(role), iso()))


def stored(key: dict) -> dict | None:

    return raw_items.get(key)


def audit_actions(ws: dict) -> list[str]:
    from agentplane import keys

    return [row["action"] for row in raw_items.query(keys.audit_pk(ws["id"]), limit=200).items]


def changelog_events(api, ws: dict, project: dict) -> list[str]:
    response = api.get(f"{project_path(ws, project)}/changelog")
    assert response.status == 200, response.body
    return [entry["event"] for entry in response.json["data"]]


# --- projects ---------------------------------------------------------------------------------


def test_create_then_get_project_round_trips_fields(api, user, workspace):
    api.token = user["token"]
    project = make_project(
        api,
        workspace,
        "Mobile app",
        repository_url="https://github.com/acme/mobile.git",
        default_branch="develop",
        description="The iPhone client",
        access_agents=["builder"],
    )
    assert project["id"].startswith("prj_")
    assert project["workspace_id"] == workspace["id"]
    assert project["default_branch"] == "develop"
    assert project["access_agents"] == ["builder"]
    assert project["version"] == 1
    assert project["doc_count"] == 0
    fetched = api.get(project_path(workspace, project))
    assert fetched.status == 200
    assert fetched.json["data"] == project


def test_default_branch_defaults_to_main(api, user, workspace):
    api.token = user["token"]
    assert make_project(api, workspace)["default_branch"] == "main"


def test_list_projects_paginates_with_signed_cursor(api, user, workspace):
    api.token = user["token"]
    ids = [make_project(api, workspace, f"Project {i}")["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        suffix = f"&cursor={cursor}" if cursor else ""
        response = api.get(f"{projects_path(workspace)}?limit=2{suffix}")
        assert response.status == 200
        assert response.json["meta"]["limit"] == 2
        seen += [p["id"] for p in response.json["data"]]
        cursor = response.json["meta"]["next_cursor"]
        if not cursor:
            break
    assert seen == ids


def test_cursor_from_another_list_or_forged_is_400(api, user, workspace):
    api.token = user["token"]
    for i in range(3):
        make_project(api, workspace, f"P{i}")
    cursor = api.get(f"{projects_path(workspace)}?limit=1").json["meta"]["next_cursor"]
    assert api.get(f"{projects_path(workspace)}?cursor={cursor[:-2]}xx").status == 400
    project = api.get(f"{projects_path(workspace)}?limit=1").json["data"][0]
    foreign = api.get(f"{project_path(workspace, project)}/docs?cursor={cursor}")
    assert foreign.status == 400
    assert foreign.json["type"].endswith("/invalid-cursor")


def test_duplicate_name_is_409_case_insensitive_and_writes_nothing(api, user, workspace):
    api.token = user["token"]
    make_project(api, workspace, "Mobile App")
    duplicate = api.post(projects_path(workspace), {"name": "mobile app"})
    assert duplicate.status == 409
    assert duplicate.header("content-type") == "application/problem+json"
    assert "already exists" in duplicate.json["detail"]
    assert len(api.get(projects_path(workspace)).json["data"]) == 1


def test_same_name_in_another_workspace_is_fine(api, user, workspace):
    api.token = user["token"]
    make_project(api, workspace, "Shared name")
    other = api.post("/api/v1/workspaces", {"name": "Other"})
    assert other.status == 201
    make_project(api, other.json["data"], "Shared name")


def test_concurrent_creates_with_one_name_have_exactly_one_winner(api, user, workspace):
    api.token = user["token"]
    statuses: list[int] = []

    def create() -> None:
        statuses.append(api.post(projects_path(workspace), {"name": "Racer"}, token=user["token"]).status)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201, 409, 409, 409]
    assert [p["name"] for p in api.get(projects_path(workspace)).json["data"]] == ["Racer"]


def test_patch_updates_fields_and_bumps_version(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    response = api.patch(
        project_path(workspace, project), {"description": "New words", "default_branch": "release/1.0"}
    )
    assert response.status == 200, response.body
    updated = response.json["data"]
    assert updated["description"] == "New words"
    assert updated["default_branch"] == "release/1.0"
    assert updated["version"] == 2
    assert api.get(project_path(workspace, project)).json["data"] == updated


def test_patch_with_stale_version_or_if_match_is_412_and_changes_nothing(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    assert api.patch(project_path(workspace, project), {"description": "v2", "version": 1}).status == 200
    stale_body = api.patch(project_path(workspace, project), {"description": "v3", "version": 1})
    assert stale_body.status == 412
    assert stale_body.json["current_version"] == 2
    stale_header = api.patch(project_path(workspace, project), {"description": "v3"}, headers={"If-Match": "1"})
    assert stale_header.status == 412
    fresh_header = api.patch(project_path(workspace, project), {"description": "v3"}, headers={"If-Match": "2"})
    assert fresh_header.status == 200
    assert api.get(project_path(workspace, project)).json["data"]["description"] == "v3"


def test_patch_that_changes_nothing_keeps_the_version(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace, description="same")
    response = api.patch(project_path(workspace, project), {"description": "same"})
    assert response.status == 200
    assert response.json["data"]["version"] == 1
    assert changelog_events(api, workspace, project) == ["project.created"]


def test_rename_to_a_taken_name_is_409_and_rename_frees_the_old_name(api, user, workspace):
    api.token = user["token"]
    first = make_project(api, workspace, "Alpha")
    make_project(api, workspace, "Beta")
    taken = api.patch(project_path(workspace, first), {"name": "BETA"})
    assert taken.status == 409
    assert api.get(project_path(workspace, first)).json["data"]["name"] == "Alpha"
    renamed = api.patch(project_path(workspace, first), {"name": "Gamma"})
    assert renamed.status == 200
    make_project(api, workspace, "Alpha")  # the old name is free again


def test_rename_changing_only_case_is_allowed(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace, "alpha")
    response = api.patch(project_path(workspace, project), {"name": "Alpha"})
    assert response.status == 200
    assert response.json["data"]["name"] == "Alpha"
    assert api.post(projects_path(workspace), {"name": "ALPHA"}).status == 409


def test_soft_deleted_project_is_404_everywhere_and_frees_its_name(api, user, workspace):
    from agentplane import keys

    api.token = user["token"]
    project = make_project(api, workspace, "Doomed")
    path = project_path(workspace, project)
    assert api.delete(path).status == 204
    assert api.get(path).status == 404
    assert api.get(projects_path(workspace)).json["data"] == []
    assert api.delete(path).status == 404
    assert api.patch(path, {"description": "x"}).status == 404
    for action in ("clone", "pull", "index", "docs/regenerate"):
        assert api.post(f"{path}/{action}").status == 404, action
    assert api.get(f"{path}/docs").status == 404
    assert api.put(f"{path}/docs/readme", {"title": "R", "content": "x"}).status == 404
    assert api.get(f"{path}/changelog").status == 404
    assert api.get(f"{path}/snapshots").status == 404
    item = stored(keys.project_key(workspace["id"], project["id"]))
    assert item is not None and item["deleted_at"]  # kept for its audit trail
    make_project(api, workspace, "Doomed")


def test_unknown_or_malformed_project_id_is_404(api, user, workspace):
    api.token = user["token"]
    assert api.get(f"{projects_path(workspace)}/prj_00000000000000000000000000").status == 404
    assert api.get(f"{projects_path(workspace)}/{'x' * 1500}").status == 404


def test_bad_input_is_a_problem_and_writes_nothing(api, user, workspace):
    api.token = user["token"]
    malformed = api.post(projects_path(workspace), raw="{nope", headers={"Content-Type": "application/json"})
    assert malformed.status == 400
    assert malformed.json["type"].endswith("/bad-request")
    cases = [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "ok", "repository_url": "ftp://example.com/repo"}, "repository_url"),
        ({"name": "ok", "repository_url": "https://exa mple.com"}, "repository_url"),
        ({"name": "ok", "default_branch": "bad..branch"}, "default_branch"),
        ({"name": "ok", "default_branch": "has space"}, "default_branch"),
        ({"name": "ok", "default_branch": "-leading"}, "default_branch"),
        ({"name": "ok", "colour": "red"}, "colour"),
        ({"name": 5}, "name"),
    ]
    for body, field in cases:
        response = api.post(projects_path(workspace), body)
        assert response.status == 422, (body, response.body)
        assert response.header("content-type") == "application/problem+json"
        assert field in {e["field"] for e in response.json["errors"]}, (body, response.json["errors"])
    assert api.get(projects_path(workspace)).json["data"] == []


def test_git_style_repository_urls_are_accepted(api, user, workspace):
    api.token = user["token"]
    make_project(api, workspace, "ssh", repository_url="git@github.com:acme/mobile.git")
    make_project(api, workspace, "ssh2", repository_url="ssh://git@example.com/acme/mobile.git")


def test_non_member_gets_404_for_everything_in_the_workspace(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    path = project_path(workspace, project)
    api.put(f"{path}/docs/readme", {"title": "R", "content": "x"})
    stranger = register_and_login(api)
    api.token = stranger["token"]
    assert api.get(projects_path(workspace)).status == 404
    assert api.post(projects_path(workspace), {"name": "x"}).status == 404
    assert api.get(path).status == 404
    assert api.patch(path, {"name": "mine"}).status == 404
    assert api.delete(path).status == 404
    assert api.post(f"{path}/clone").status == 404
    assert api.get(f"{path}/docs").status == 404
    assert api.get(f"{path}/docs/readme").status == 404
    assert api.put(f"{path}/docs/readme", {"title": "R", "content": "y"}).status == 404
    assert api.get(f"{path}/changelog").status == 404
    assert api.get(f"{path}/changelog?format=rss").status == 404


def test_viewer_reads_but_every_write_is_403(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    path = project_path(workspace, project)
    api.put(f"{path}/docs/readme", {"title": "R", "content": "x"})
    viewer = register_and_login(api)
    add_member(workspace, viewer, "viewer")
    api.token = viewer["token"]
    assert api.get(projects_path(workspace)).status == 200
    assert api.get(path).status == 200
    assert api.get(f"{path}/docs/readme").status == 200
    assert api.get(f"{path}/changelog").status == 200
    writes = [
        api.post(projects_path(workspace), {"name": "x"}),
        api.patch(path, {"name": "mine"}),
        api.delete(path),
        api.post(f"{path}/clone"),
        api.post(f"{path}/pull"),
        api.post(f"{path}/index"),
        api.put(f"{path}/docs/readme", {"title": "R", "content": "y"}),
        api.post(f"{path}/docs/regenerate"),
    ]
    for response in writes:
        assert response.status == 403, response.body
        assert response.json["required_scope"] == "projects:write"
    api.token = user["token"]
    assert api.get(path).json["data"]["version"] == 1


def test_member_can_write(api, user, workspace):
    member = register_and_login(api)
    add_member(workspace, member, "member")
    api.token = member["token"]
    make_project(api, workspace, "By a member")


def test_token_without_projects_write_scope_is_403_missing_scope(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    issued = api.post(
        "/api/v1/auth/token",
        {"email": user["email"], "password": user["password"], "name": "cli", "abilities": ["projects:read"]},
        token="",
    )
    assert issued.status == 201, issued.body
    api.token = issued.json["data"]["token"]
    assert api.get(project_path(workspace, project)).status == 200
    refused = api.patch(project_path(workspace, project), {"description": "x"})
    assert refused.status == 403
    assert refused.json["type"].endswith("/missing-scope")
    assert refused.json["required_scope"] == "projects:write"


def test_project_writes_are_audited(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    api.patch(project_path(workspace, project), {"description": "x"})
    api.post(f"{project_path(workspace, project)}/clone")
    api.delete(project_path(workspace, project))
    actions = audit_actions(workspace)
    for action in ("project.created", "project.updated", "project.maintenance_requested", "project.deleted"):
        assert action in actions


# --- maintenance runs -------------------------------------------------------------------------


def test_clone_pull_and_index_each_queue_a_maintenance_run(api, user, workspace):
    from agentplane import keys

    api.token = user["token"]
    project = make_project(api, workspace, "Repo", repository_url="https://github.com/acme/repo")
    for action in ("clone", "pull", "index"):
        response = api.post(f"{project_path(workspace, project)}/{action}")
        assert response.status == 202, response.body
        run = response.json["data"]
        assert run["id"].startswith("run_")
        assert run["kind"] == "maintenance"
        assert run["action"] == action
        assert run["status"] == "queued"
        assert run["project_id"] == project["id"]
        assert run["created_by"] == user["user"]["id"]
        assert run["title"]
        item = stored(keys.run_key(workspace["id"], run["id"]))
        assert item is not None
        assert item["entity"] == "run"
        assert item[keys.GSI1PK] == keys.run_list_gsi(workspace["id"])
        assert item[keys.GSI1SK] == run["id"]
    events = changelog_events(api, workspace, project)
    assert events.count("maintenance.requested") == 3


def test_queued_runs_are_listed_in_the_workspace_run_index(api, user, workspace):
    from agentplane import keys

    api.token = user["token"]
    project = make_project(api, workspace)
    first = api.post(f"{project_path(workspace, project)}/clone").json["data"]["id"]
    second = api.post(f"{project_path(workspace, project)}/pull").json["data"]["id"]
    listed = raw_items.query(keys.run_list_gsi(workspace["id"]), index=keys.GSI1, limit=10).items
    assert [item["id"] for item in listed] == [first, second]


def test_repeated_clone_with_one_idempotency_key_queues_one_run(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    path = f"{project_path(workspace, project)}/clone"
    first = api.post(path, headers={"Idempotency-Key": "clone-1"})
    again = api.post(path, headers={"Idempotency-Key": "clone-1"})
    assert first.status == again.status == 202
    assert first.json["data"]["id"] == again.json["data"]["id"]
    assert changelog_events(api, workspace, project).count("maintenance.requested") == 1


def test_a_queued_maintenance_run_reads_back_through_the_runs_api(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace, "Repo", repository_url="https://github.com/acme/repo")
    run = api.post(f"{project_path(workspace, project)}/pull").json["data"]
    fetched = api.get(f"/api/v1/workspaces/{workspace['id']}/runs/{run['id']}")
    assert fetched.status == 200, fetched.body
    data = fetched.json["data"]
    assert (data["kind"], data["status"], data["project_id"]) == ("maintenance", "queued", project["id"])
    assert data["maintenance_action"] == "pull"
    listed = api.get(f"/api/v1/workspaces/{workspace['id']}/runs?project={project['id']}")
    assert listed.status == 200, listed.body
    assert [r["id"] for r in listed.json["data"]] == [run["id"]]


# --- docs -------------------------------------------------------------------------------------


def test_put_doc_creates_then_updates_with_versions(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    path = f"{project_path(workspace, project)}/docs/architecture"
    created = api.put(path, {"title": "Architecture", "content": "# Architecture\n"})
    assert created.status == 201, created.body
    doc = created.json["data"]
    assert doc["slug"] == "architecture"
    assert doc["version"] == 1
    assert doc["stale"] is False
    assert doc["size_bytes"] == len(b"# Architecture\n")
    updated = api.put(path, {"title": "Architecture", "content": "# Architecture\n\nMore.\n", "version": 1})
    assert updated.status == 200, updated.body
    assert updated.json["data"]["version"] == 2
    fetched = api.get(path)
    assert fetched.status == 200
    assert fetched.json["data"]["content"] == "# Architecture\n\nMore.\n"
    assert api.get(project_path(workspace, project)).json["data"]["doc_count"] == 1


def test_doc_content_is_stored_byte_for_byte(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    content = "  leading spaces, unicode ✓, tabs\t\n\n\n"
    api.put(f"{project_path(workspace, project)}/docs/readme", {"title": "  Readme  ", "content": content})
    doc = api.get(f"{project_path(workspace, project)}/docs/readme").json["data"]
    assert doc["content"] == content
    assert doc["title"] == "Readme"
    assert doc["size_bytes"] == len(content.encode())


def test_put_doc_with_stale_version_is_412_and_keeps_the_content(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    path = f"{project_path(workspace, project)}/docs/readme"
    api.put(path, {"title": "R", "content": "one"})
    api.put(path, {"title": "R", "content": "two"})
    stale = api.put(path, {"title": "R", "content": "three", "version": 1})
    assert stale.status == 412
    assert stale.json["current_version"] == 2
    stale_header = api.put(path, {"title": "R", "content": "three"}, headers={"If-Match": "1"})
    assert stale_header.status == 412
    missing = api.put(f"{project_path(workspace, project)}/docs/other", {"title": "O", "content": "x", "version": 3})
    assert missing.status == 412
    assert api.get(path).json["data"]["content"] == "two"


def test_identical_put_is_a_no_op(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    path = f"{project_path(workspace, project)}/docs/readme"
    api.put(path, {"title": "R", "content": "same"})
    again = api.put(path, {"title": "R", "content": "same"})
    assert again.status == 200
    assert again.json["data"]["version"] == 1


def test_concurrent_first_puts_of_one_doc_have_exactly_one_creator(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    path = f"{project_path(workspace, project)}/docs/racy"
    statuses: list[int] = []

    def put(i: int) -> None:
        statuses.append(api.put(path, {"title": "Racy", "content": f"writer {i}"}, token=user["token"]).status)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(201) == 1
    assert set(statuses) <= {200, 201, 412}
    assert api.get(project_path(workspace, project)).json["data"]["doc_count"] == 1


def test_invalid_or_reserved_slug_is_422_and_unknown_doc_is_404(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    base = f"{project_path(workspace, project)}/docs"
    for slug in ("Upper", "-dash", "under_score", "x" * 65, "dots.md"):
        response = api.put(f"{base}/{slug}", {"title": "T", "content": "c"})
        assert response.status == 422, slug
        assert response.json["errors"][0]["field"] == "slug"
    assert api.put(f"{base}/regenerate", {"title": "T", "content": "c"}).status == 422
    assert api.get(f"{base}/nope").status == 404
    assert api.get(f"{base}/Bad_Slug").status == 404
    assert api.get(base).json["data"] == []


def test_doc_content_over_200_kb_is_422_and_exactly_200_kb_is_fine(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    base = f"{project_path(workspace, project)}/docs"
    too_big = api.put(f"{base}/big", {"title": "Big", "content": "x" * (200 * 1024 + 1)})
    assert too_big.status == 422
    assert too_big.json["errors"][0]["field"] == "content"
    multibyte = api.put(f"{base}/big", {"title": "Big", "content": "✓" * 70_000})  # 210,000 bytes
    assert multibyte.status == 422
    assert api.put(f"{base}/big", {"title": "Big", "content": "x" * (200 * 1024)}).status == 201


def test_bad_doc_bodies_are_422(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    path = f"{project_path(workspace, project)}/docs/readme"
    assert api.put(path, {"content": "no title"}).status == 422
    assert api.put(path, {"title": "", "content": "x"}).status == 422
    assert api.put(path, {"title": "T", "content": "x", "extra": 1}).status == 422
    assert api.put(path, {"title": "T"}).status == 422
    assert api.get(path).status == 404


def test_list_docs_paginates_in_slug_order_without_content(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    base = f"{project_path(workspace, project)}/docs"
    for slug in ("c-doc", "a-doc", "b-doc"):
        api.put(f"{base}/{slug}", {"title": slug, "content": slug})
    first = api.get(f"{base}?limit=2")
    assert [d["slug"] for d in first.json["data"]] == ["a-doc", "b-doc"]
    assert "content" not in first.json["data"][0]
    second = api.get(f"{base}?limit=2&cursor={first.json['meta']['next_cursor']}")
    assert [d["slug"] for d in second.json["data"]] == ["c-doc"]
    assert second.json["meta"]["next_cursor"] is None


def test_doc_count_is_bounded_per_project(api, user, workspace, monkeypatch):
    from agentplane.logic import docs

    monkeypatch.setattr(docs, "MAX_DOCS_PER_PROJECT", 2)
    api.token = user["token"]
    project = make_project(api, workspace)
    base = f"{project_path(workspace, project)}/docs"
    assert api.put(f"{base}/one", {"title": "1", "content": "1"}).status == 201
    assert api.put(f"{base}/two", {"title": "2", "content": "2"}).status == 201
    third = api.put(f"{base}/three", {"title": "3", "content": "3"})
    assert third.status == 409
    assert api.get(f"{base}/three").status == 404
    assert api.put(f"{base}/two", {"title": "2", "content": "2 again"}).status == 200


def test_regenerate_marks_every_doc_stale_and_queues_a_run(api, user, workspace):
    from agentplane import keys

    api.token = user["token"]
    project = make_project(api, workspace)
    base = f"{project_path(workspace, project)}/docs"
    for slug in ("one", "two"):
        api.put(f"{base}/{slug}", {"title": slug, "content": slug})
    response = api.post(f"{base}/regenerate")
    assert response.status == 202, response.body
    run = response.json["data"]
    assert run["action"] == "regenerate_docs"
    assert run["kind"] == "maintenance"
    assert run["status"] == "queued"
    assert stored(keys.run_key(workspace["id"], run["id"])) is not None
    listed = api.get(base).json["data"]
    assert [d["stale"] for d in listed] == [True, True]
    assert [d["version"] for d in listed] == [1, 1]
    refreshed = api.put(f"{base}/one", {"title": "one", "content": "one"})
    assert refreshed.status == 200
    assert refreshed.json["data"]["stale"] is False
    assert refreshed.json["data"]["version"] == 2
    assert "docs.regenerate_requested" in changelog_events(api, workspace, project)


def test_regenerate_with_no_docs_still_queues_a_run(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    assert api.post(f"{project_path(workspace, project)}/docs/regenerate").status == 202


def test_doc_writes_are_audited(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    path = f"{project_path(workspace, project)}/docs/readme"
    api.put(path, {"title": "R", "content": "one"})
    api.put(path, {"title": "R", "content": "two"})
    actions = audit_actions(workspace)
    assert "doc.created" in actions and "doc.updated" in actions


# --- changelog --------------------------------------------------------------------------------


def test_changelog_records_project_events_newest_first(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    path = project_path(workspace, project)
    api.patch(path, {"description": "changed"})
    api.put(f"{path}/docs/readme", {"title": "R", "content": "x"})
    api.put(f"{path}/docs/readme", {"title": "R", "content": "y"})
    api.post(f"{path}/pull")
    events = changelog_events(api, workspace, project)
    assert events == ["maintenance.requested", "doc.updated", "doc.created", "project.updated", "project.created"]
    entry = api.get(f"{path}/changelog").json["data"][-1]
    assert entry["subject_type"] == "project"
    assert entry["subject_id"] == project["id"]
    assert entry["actor_id"] == user["user"]["id"]


def test_changelog_paginates(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    path = project_path(workspace, project)
    for i in range(4):
        api.patch(path, {"description": f"d{i}"})
    seen: list[str] = []
    cursor = None
    while True:
        suffix = f"&cursor={cursor}" if cursor else ""
        page = api.get(f"{path}/changelog?limit=2{suffix}").json
        seen += [e["id"] for e in page["data"]]
        cursor = page["meta"]["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 5 and len(set(seen)) == 5
    assert seen == sorted(seen, reverse=True)


def test_changelog_as_rss_parses_and_escapes(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace, "R&D <tools>", description="Tools & more")
    path = project_path(workspace, project)
    api.put(f"{path}/docs/notes", {"title": 'Notes <draft> & "quotes"', "content": "x"})
    response = api.get(f"{path}/changelog?format=rss")
    assert response.status == 200
    assert response.header("content-type").startswith("application/rss+xml")
    root = ET.fromstring(response.body)
    assert root.tag == "rss" and root.get("version") == "2.0"
    channel = root.find("channel")
    assert channel is not None
    assert channel.findtext("title") == "R&D <tools> changelog"
    assert channel.findtext("link").endswith(f"/projects/{project['id']}/changelog")
    assert channel.findtext("description") == "Tools & more"
    items = channel.findall("item")
    assert [i.findtext("title") for i in items] == ['Doc Notes <draft> & "quotes" added', "Project R&D <tools> created"]
    json_ids = [e["id"] for e in api.get(f"{path}/changelog").json["data"]]
    for item, entry_id in zip(items, json_ids, strict=True):
        assert item.findtext("guid") == entry_id
        assert item.find("guid").get("isPermaLink") == "false"
        assert item.findtext("link")
        assert item.findtext("description")
        assert parsedate_to_datetime(item.findtext("pubDate")).tzinfo is not None


def test_rss_strips_characters_xml_cannot_carry(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace, "Bell\x07 project")
    response = api.get(f"{project_path(workspace, project)}/changelog?format=rss")
    assert response.status == 200
    root = ET.fromstring(response.body)
    assert root.find("channel").findtext("title") == "Bell project changelog"


def test_rss_honours_limit_and_unknown_format_is_422(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    path = project_path(workspace, project)
    for i in range(3):
        api.patch(path, {"description": f"d{i}"})
    root = ET.fromstring(api.get(f"{path}/changelog?format=rss&limit=2").body)
    assert len(root.find("channel").findall("item")) == 2
    bad = api.get(f"{path}/changelog?format=atom")
    assert bad.status == 422
    assert bad.header("content-type") == "application/problem+json"

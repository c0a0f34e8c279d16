from __future__ import annotations

import threading

from tests.api.test_projects import (
    add_member,
    audit_actions,
    changelog_events,
    make_project,
    project_path,
)
from tests.conftest import register_and_login


def snapshot_path(ws: dict, snapshot_id: str) -> str:
    return f"/api/v1/workspaces/{ws['id']}/snapshots/{snapshot_id}"


def put_doc(api, ws: dict, project: dict, slug: str, content: str, title: str | None = None) -> dict:
    response = api.put(f"{project_path(ws, project)}/docs/{slug}", {"title": title or slug, "content": content})
    assert response.status in (200, 201), response.body
    return response.json["data"]


def take_snapshot(api, ws: dict, project: dict, **body) -> dict:
    response = api.post(f"{project_path(ws, project)}/snapshots", body)
    assert response.status == 201, response.body
    return response.json["data"]


def seeded(api, ws: dict) -> dict:
    project = make_project(api, ws, "Seeded", description="before", repository_url="https://github.com/a/b")
    put_doc(api, ws, project, "readme", "# Readme\n\nfirst\n", "Readme")
    put_doc(api, ws, project, "architecture", "# Arch\n", "Architecture")
    return project


# --- taking and reading snapshots -------------------------------------------------------------


def test_manual_snapshot_captures_project_fields_and_docs(api, user, workspace):
    api.token = user["token"]
    project = seeded(api, workspace)
    snapshot = take_snapshot(api, workspace, project, label="before refactor", description="safe point")
    assert snapshot["id"].startswith("snap_")
    assert snapshot["kind"] == "manual"
    assert snapshot["label"] == "before refactor"
    assert snapshot["description"] == "safe point"
    assert snapshot["project_id"] == project["id"]
    assert snapshot["project_version"] == 1
    assert snapshot["doc_count"] == 2
    state = snapshot["state"]
    assert state["project"] == {
        "name": "Seeded",
        "description": "before",
        "repository_url": "https://github.com/a/b",
        "default_branch": "main",
        "access_agents": [],
    }
    assert [(d["slug"], d["title"], d["version"]) for d in state["docs"]] == [
        ("architecture", "Architecture", 1),
        ("readme", "Readme", 1),
    ]
    fetched = api.get(snapshot_path(workspace, snapshot["id"]))
    assert fetched.status == 200
    assert fetched.json["data"] == snapshot
    assert "snapshot.created" in changelog_events(api, workspace, project)
    assert "snapshot.created" in audit_actions(workspace)


def test_snapshot_with_include_content_inlines_each_doc(api, user, workspace):
    api.token = user["token"]
    project = seeded(api, workspace)
    snapshot = take_snapshot(api, workspace, project)
    put_doc(api, workspace, project, "readme", "changed later", "Readme")
    docs = api.get(f"{snapshot_path(workspace, snapshot['id'])}?include_content=true").json["data"]["state"]["docs"]
    assert {d["slug"]: d["content"] for d in docs} == {"architecture": "# Arch\n", "readme": "# Readme\n\nfirst\n"}


def test_snapshot_label_defaults_and_bad_bodies_are_422(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    assert take_snapshot(api, workspace, project)["label"] == "Manual snapshot"
    base = f"{project_path(workspace, project)}/snapshots"
    assert api.post(base, {"label": "x" * 201}).status == 422
    assert api.post(base, {"label": ""}).status == 422
    assert api.post(base, {"label": "ok", "state": {}}).status == 422
    assert api.post(base, raw="{", headers={"Content-Type": "application/json"}).status == 400
    assert len(api.get(base).json["data"]) == 1


def test_list_snapshots_newest_first_with_pagination(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    ids = [take_snapshot(api, workspace, project, label=f"s{i}")["id"] for i in range(3)]
    base = f"{project_path(workspace, project)}/snapshots"
    first = api.get(f"{base}?limit=2")
    assert first.status == 200
    assert [s["id"] for s in first.json["data"]] == ids[::-1][:2]
    assert "state" not in first.json["data"][0]
    second = api.get(f"{base}?limit=2&cursor={first.json['meta']['next_cursor']}")
    assert [s["id"] for s in second.json["data"]] == ids[:1]
    assert second.json["meta"]["next_cursor"] is None


def test_unknown_or_foreign_snapshot_is_404(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    snapshot = take_snapshot(api, workspace, project)
    assert api.get(snapshot_path(workspace, "snap_00000000000000000000000000")).status == 404
    assert api.get(snapshot_path(workspace, "not-a-snapshot")).status == 404
    other = api.post("/api/v1/workspaces", {"name": "Other"}).json["data"]
    # The caller belongs to both workspaces, but the snapshot lives in the first one only.
    assert api.get(snapshot_path(other, snapshot["id"])).status == 404
    assert api.post(f"{snapshot_path(other, snapshot['id'])}/restore").status == 404


def test_snapshots_of_a_deleted_project_are_gone(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    snapshot = take_snapshot(api, workspace, project)
    assert api.delete(project_path(workspace, project)).status == 204
    assert api.get(snapshot_path(workspace, snapshot["id"])).status == 404
    assert api.post(f"{snapshot_path(workspace, snapshot['id'])}/restore").status == 404
    assert api.post(f"{snapshot_path(workspace, snapshot['id'])}/compare", {"against": "current"}).status == 404
    assert api.post(f"{project_path(workspace, project)}/snapshots", {}).status == 404


def test_snapshot_taken_from_a_stale_read_is_409_and_not_written(api, user, workspace, monkeypatch):
    from agentplane.access import workspace_access
    from agentplane.auth.tokens import resolve_principal
    from agentplane.errors import Conflict
    from agentplane.logic import docs, snapshots
    from agentplane.models.projects import ProjectDocPut, ProjectSnapshotCreate

    api.token = user["token"]
    project = seeded(api, workspace)
    access = workspace_access(resolve_principal(user["token"]), workspace["id"], "projects:write")
    real_load_docs = snapshots.load_docs

    def load_then_someone_writes(ws: str, project_id: str) -> list[dict]:
        read = real_load_docs(ws, project_id)
        docs.put_doc(access, project_id, "readme", ProjectDocPut(title="Readme", content="written meanwhile"))
        return read

    monkeypatch.setattr(snapshots, "load_docs", load_then_someone_writes)
    try:
        snapshots.create_snapshot(access, project["id"], ProjectSnapshotCreate(label="torn"))
        raise AssertionError("a snapshot of a state that no longer exists was written")
    except Conflict:
        pass
    assert api.get(f"{project_path(workspace, project)}/snapshots").json["data"] == []


# --- restore ----------------------------------------------------------------------------------


def test_restore_puts_back_fields_and_docs_after_a_restore_checkpoint(api, user, workspace):
    api.token = user["token"]
    project = seeded(api, workspace)
    path = project_path(workspace, project)
    snapshot = take_snapshot(api, workspace, project, label="good")
    api.patch(path, {"name": "Renamed", "description": "after", "default_branch": "dev"})
    put_doc(api, workspace, project, "readme", "# Readme\n\nsecond\n", "Read me")
    put_doc(api, workspace, project, "extra", "added later")

    response = api.post(f"{snapshot_path(workspace, snapshot['id'])}/restore")
    assert response.status == 200, response.body
    result = response.json["data"]
    assert result["restored_snapshot_id"] == snapshot["id"]
    assert result["checkpoint_snapshot_id"].startswith("snap_")
    restored = api.get(path).json["data"]
    assert (restored["name"], restored["description"], restored["default_branch"]) == ("Seeded", "before", "main")
    assert restored["doc_count"] == 2
    assert restored == result["project"]
    docs = api.get(f"{path}/docs").json["data"]
    assert [d["slug"] for d in docs] == ["architecture", "readme"]
    readme = api.get(f"{path}/docs/readme").json["data"]
    assert (readme["title"], readme["content"]) == ("Readme", "# Readme\n\nfirst\n")
    assert readme["version"] == 3  # restoring is a new version, not a rewind of the counter
    assert api.get(f"{path}/docs/extra").status == 404

    checkpoint = api.get(snapshot_path(workspace, result["checkpoint_snapshot_id"])).json["data"]
    assert checkpoint["kind"] == "restore_checkpoint"
    assert checkpoint["description"] == "restore checkpoint"
    assert checkpoint["label"].startswith("before restoring ")
    assert checkpoint["restored_from"] == snapshot["id"]
    assert checkpoint["state"]["project"]["name"] == "Renamed"
    assert [d["slug"] for d in checkpoint["state"]["docs"]] == ["architecture", "extra", "readme"]
    events = changelog_events(api, workspace, project)
    assert events[:2] == ["snapshot.restored", "snapshot.created"]
    assert "snapshot.restored" in audit_actions(workspace)


def test_restoring_the_checkpoint_brings_back_the_later_state(api, user, workspace):
    api.token = user["token"]
    project = seeded(api, workspace)
    path = project_path(workspace, project)
    snapshot = take_snapshot(api, workspace, project)
    api.patch(path, {"name": "Later"})
    put_doc(api, workspace, project, "extra", "later doc")
    checkpoint_id = api.post(f"{snapshot_path(workspace, snapshot['id'])}/restore").json["data"][
        "checkpoint_snapshot_id"
    ]
    assert api.post(f"{snapshot_path(workspace, checkpoint_id)}/restore").status == 200
    assert api.get(path).json["data"]["name"] == "Later"
    assert api.get(f"{path}/docs/extra").json["data"]["content"] == "later doc"
    make_project(api, workspace, "Seeded")  # the name the project left is free again


def test_restore_to_a_name_another_project_took_is_409_and_changes_nothing(api, user, workspace):
    api.token = user["token"]
    project = seeded(api, workspace)
    path = project_path(workspace, project)
    snapshot = take_snapshot(api, workspace, project)
    api.patch(path, {"name": "Moved"})
    make_project(api, workspace, "Seeded")
    before = api.get(f"{path}/snapshots").json["data"]
    refused = api.post(f"{snapshot_path(workspace, snapshot['id'])}/restore")
    assert refused.status == 409
    assert "Seeded" in refused.json["detail"]
    assert api.get(path).json["data"]["name"] == "Moved"
    assert api.get(f"{path}/snapshots").json["data"] == before  # no checkpoint left behind


def test_concurrent_restores_have_exactly_one_winner(api, user, workspace, monkeypatch):
    from agentplane.access import workspace_access
    from agentplane.auth.tokens import resolve_principal
    from agentplane.errors import Conflict
    from agentplane.logic import snapshots

    api.token = user["token"]
    project = seeded(api, workspace)
    snapshot = take_snapshot(api, workspace, project)
    put_doc(api, workspace, project, "readme", "newer")
    access = workspace_access(resolve_principal(user["token"]), workspace["id"], "projects:write")
    barrier = threading.Barrier(3)
    real_load_docs = snapshots.load_docs

    def load_together(ws: str, project_id: str) -> list[dict]:
        read = real_load_docs(ws, project_id)
        barrier.wait()  # every restorer has read the same state before any of them writes
        return read

    monkeypatch.setattr(snapshots, "load_docs", load_together)
    outcomes: list[object] = []

    def restore() -> None:
        try:
            outcomes.append(snapshots.restore_snapshot(access, snapshot["id"]))
        except Conflict as refused:
            outcomes.append(refused)

    threads = [threading.Thread(target=restore) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len([o for o in outcomes if isinstance(o, Conflict)]) == 2
    assert len([o for o in outcomes if not isinstance(o, Exception)]) == 1
    listed = api.get(f"{project_path(workspace, project)}/snapshots").json["data"]
    assert len([s for s in listed if s["kind"] == "restore_checkpoint"]) == 1
    assert api.get(f"{project_path(workspace, project)}/docs/readme").json["data"]["content"] == "# Readme\n\nfirst\n"


# --- compare ----------------------------------------------------------------------------------


def test_compare_against_current_lists_field_and_doc_changes(api, user, workspace):
    api.token = user["token"]
    project = seeded(api, workspace)
    path = project_path(workspace, project)
    snapshot = take_snapshot(api, workspace, project)
    api.patch(path, {"description": "after", "access_agents": ["builder"]})
    put_doc(api, workspace, project, "readme", "# Readme\n\nsecond\nthird\n", "Readme")
    put_doc(api, workspace, project, "guide", "new guide", "Guide")

    response = api.post(f"{snapshot_path(workspace, snapshot['id'])}/compare", {"against": "current"})
    assert response.status == 200, response.body
    diff = response.json["data"]
    assert diff["identical"] is False
    assert diff["against"] == "current"
    assert {c["field"]: (c["before"], c["after"]) for c in diff["fields"]} == {
        "description": ("before", "after"),
        "access_agents": ([], ["builder"]),
    }
    assert diff["docs"]["added"] == [{"slug": "guide", "title": "Guide"}]
    assert diff["docs"]["removed"] == []
    [changed] = diff["docs"]["changed"]
    assert changed["slug"] == "readme"
    assert changed["content_changed"] is True
    assert (changed["lines_added"], changed["lines_removed"]) == (2, 1)
    assert "-first\n" in changed["diff"] and "+second\n" in changed["diff"]
    assert changed["diff_truncated"] is False


def test_compare_without_a_body_compares_with_current_and_unchanged_is_identical(api, user, workspace):
    api.token = user["token"]
    project = seeded(api, workspace)
    snapshot = take_snapshot(api, workspace, project)
    response = api.post(f"{snapshot_path(workspace, snapshot['id'])}/compare")
    assert response.status == 200, response.body
    diff = response.json["data"]
    assert diff["identical"] is True
    assert diff["fields"] == [] and diff["docs"] == {"added": [], "removed": [], "changed": []}


def test_compare_two_snapshots_reports_removed_docs_and_title_changes(api, user, workspace):
    api.token = user["token"]
    project = seeded(api, workspace)
    older = take_snapshot(api, workspace, project, label="older")
    put_doc(api, workspace, project, "architecture", "# Arch\n", "System design")
    newer = take_snapshot(api, workspace, project, label="newer")
    forward = api.post(f"{snapshot_path(workspace, older['id'])}/compare", {"against": newer["id"]}).json["data"]
    [changed] = forward["docs"]["changed"]
    assert (changed["title_before"], changed["title_after"], changed["content_changed"]) == (
        "Architecture",
        "System design",
        False,
    )
    assert changed["diff"] == ""
    put_doc(api, workspace, project, "extra", "x")
    latest = take_snapshot(api, workspace, project)
    backward = api.post(f"{snapshot_path(workspace, latest['id'])}/compare", {"against": older["id"]}).json["data"]
    assert backward["docs"]["removed"] == [{"slug": "extra", "title": "extra"}]


def test_compare_refuses_bad_or_foreign_targets(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace, "One")
    other_project = make_project(api, workspace, "Two")
    snapshot = take_snapshot(api, workspace, project)
    foreign = take_snapshot(api, workspace, other_project)
    compare = f"{snapshot_path(workspace, snapshot['id'])}/compare"
    assert api.post(compare, {"against": "yesterday"}).status == 422
    assert api.post(compare, {"against": "current", "extra": 1}).status == 422
    assert api.post(compare, {"against": "snap_00000000000000000000000000"}).status == 404
    cross = api.post(compare, {"against": foreign["id"]})
    assert cross.status == 422
    assert cross.json["errors"][0]["field"] == "against"


def test_long_diffs_are_cut_and_flagged(api, user, workspace):
    api.token = user["token"]
    project = make_project(api, workspace)
    put_doc(api, workspace, project, "big", "".join(f"line {i}\n" for i in range(5000)))
    snapshot = take_snapshot(api, workspace, project)
    put_doc(api, workspace, project, "big", "".join(f"row {i}\n" for i in range(5000)))
    diff = api.post(f"{snapshot_path(workspace, snapshot['id'])}/compare", {}).json["data"]
    [changed] = diff["docs"]["changed"]
    assert changed["diff_truncated"] is True
    assert len(changed["diff"]) == 20_000
    assert (changed["lines_added"], changed["lines_removed"]) == (5000, 5000)


# --- who may do what --------------------------------------------------------------------------


def test_viewer_may_read_and_compare_but_not_snapshot_or_restore(api, user, workspace):
    api.token = user["token"]
    project = seeded(api, workspace)
    snapshot = take_snapshot(api, workspace, project)
    viewer = register_and_login(api)
    add_member(workspace, viewer, "viewer")
    api.token = viewer["token"]
    assert api.get(f"{project_path(workspace, project)}/snapshots").status == 200
    assert api.get(snapshot_path(workspace, snapshot["id"])).status == 200
    assert api.post(f"{snapshot_path(workspace, snapshot['id'])}/compare", {}).status == 200
    created = api.post(f"{project_path(workspace, project)}/snapshots", {})
    assert created.status == 403
    assert created.json["required_scope"] == "projects:write"
    assert api.post(f"{snapshot_path(workspace, snapshot['id'])}/restore").status == 403


def test_non_member_gets_404_for_snapshots(api, user, workspace):
    api.token = user["token"]
    project = seeded(api, workspace)
    snapshot = take_snapshot(api, workspace, project)
    stranger = register_and_login(api)
    api.token = stranger["token"]
    assert api.get(f"{project_path(workspace, project)}/snapshots").status == 404
    assert api.post(f"{project_path(workspace, project)}/snapshots", {}).status == 404
    assert api.get(snapshot_path(workspace, snapshot["id"])).status == 404
    assert api.post(f"{snapshot_path(workspace, snapshot['id'])}/restore").status == 404
    assert api.post(f"{snapshot_path(workspace, snapshot['id'])}/compare", {}).status == 404

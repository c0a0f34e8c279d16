"""The entities of projects, knowledge, threads, notifications, search and activity, against moto:
index attributes follow the fields they derive from (a soft delete leaves the list, a post moves a
thread up, a read leaves the unread index), attributes whose names the entity base uses are stored
under their table names, and each access pattern is registered with its entity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentplane import raw_items

WS = "ws_entities_k"


def _project() -> Any:
    from agentplane.entities.projects import ProjectItem

    return ProjectItem(
        workspace_id=WS,
        id="prj_1",
        name="Portal",
        default_branch="main",
        created_by="u_1",
        created_at="2026-12-01T00:00:00Z",
        updated_at="2026-12-01T00:00:00Z",
    )


def test_a_soft_deleted_project_leaves_the_list_and_keeps_its_item(store) -> None:
    from agentplane import keys
    from agentplane.entities.projects import ProjectItem, projects_of_workspace

    store.create(_project())
    project = store.read(ProjectItem, keys.project_key(WS, "prj_1"))
    assert [p.id for p in projects_of_workspace(WS, limit=10, start=None).items] == ["prj_1"]

    store.adjust(ProjectItem, project.key, project.soft_delete("2026-12-02T00:00:00Z"), ProjectItem.undeleted())

    stored = raw_items.get(keys.project_key(WS, "prj_1"))
    assert stored["deleted_at"] == "2026-12-02T00:00:00Z" and stored["version"] == 1
    assert "GSI1PK" not in stored and "GSI1SK" not in stored
    assert projects_of_workspace(WS, limit=10, start=None).items == []


def test_a_project_read_before_a_new_doc_is_no_longer_as_read(store) -> None:
    from agentplane import keys
    from agentplane.entities.projects import ProjectItem
    from agentplane.store import TransactionFailed

    store.create(_project())
    project = store.read(ProjectItem, keys.project_key(WS, "prj_1"))
    store.adjust(ProjectItem, project.key, [ProjectItem.doc_count.add(1)])

    tx = store.transaction()
    tx.require(ProjectItem, project.key, project.as_read(), name="project")
    with pytest.raises(TransactionFailed) as refused:
        tx.commit()
    assert refused.value.failed == "project"


def test_a_snapshots_kind_is_stored_as_kind_and_answered_as_kind(store) -> None:
    from agentplane import keys
    from agentplane.entities.projects import SnapshotItem

    snapshot = SnapshotItem(
        workspace_id=WS,
        project_id="prj_1",
        id="snap_1",
        snapshot_kind="manual",
        label="Before",
        project_version=1,
        doc_count=0,
        state={"project": {"name": "Portal", "repository_url": None}, "docs": []},
        created_by="u_1",
        created_at="2026-12-01T00:00:00Z",
    )
    store.create(snapshot)

    stored = raw_items.get(keys.snapshot_key(WS, "snap_1"))
    assert stored["kind"] == "manual" and stored["entity"] == "snapshot"
    assert stored["state"]["project"] == {"name": "Portal", "repository_url": None}
    read = store.read(SnapshotItem, keys.snapshot_key(WS, "snap_1"))
    assert read.to_summary().kind == "manual"
    assert (read.where().gsi1 or ("", ""))[0] == keys.project_snapshots_gsi(WS, "prj_1")


def test_a_thread_moves_up_its_list_with_each_message_and_leaves_it_when_deleted(store) -> None:
    from agentplane import keys
    from agentplane.entities.threads import ThreadItem, threads_of_workspace

    for thread_id, at in (("thr_old", "2026-12-01T00:00:00Z"), ("thr_new", "2026-12-02T00:00:00Z")):
        thread = ThreadItem(
            workspace_id=WS,
            id=thread_id,
            title=thread_id,
            status="active",
            created_by="u_1",
            created_at=at,
            updated_at=at,
        )
        store.create(thread)
    listed = [t.id for t in threads_of_workspace(WS, status=None, limit=10, start=None).items]
    assert listed == ["thr_new", "thr_old"]

    old = store.read(ThreadItem, keys.thread_key(WS, "thr_old"))
    store.adjust(ThreadItem, old.key, old.numbered(1, "2026-12-03T00:00:00Z"))
    listed = [t.id for t in threads_of_workspace(WS, status=None, limit=10, start=None).items]
    assert listed == ["thr_old", "thr_new"]
    assert raw_items.get(keys.thread_key(WS, "thr_old"))["version"] == 1  # a post is not an edit

    old = store.read(ThreadItem, keys.thread_key(WS, "thr_old"))
    store.adjust(ThreadItem, old.key, old.soft_delete("2026-12-04T00:00:00Z"))
    assert [t.id for t in threads_of_workspace(WS, status=None, limit=10, start=None).items] == ["thr_new"]


def test_a_read_notification_leaves_the_unread_index_and_expires(store) -> None:
    from agentplane import keys
    from agentplane.entities.notifications import NotificationItem, unread_notifications

    store.create(
        NotificationItem(
            workspace_id=WS,
            user_id="u_1",
            id="ntf_1",
            type="info",
            title="Done",
            created_by="system",
            created_at="2026-12-01T00:00:00Z",
        )
    )
    assert [n.id for n in unread_notifications(WS, "u_1", newest_first=True, limit=5, start=None).items] == ["ntf_1"]
    item = store.read(NotificationItem, keys.notification_key(WS, "u_1", "ntf_1"))
    at = datetime(2026, 12, 2, tzinfo=UTC)

    store.adjust(NotificationItem, item.key, item.mark_read(at, timedelta(days=90)), NotificationItem.unread())

    stored = raw_items.get(keys.notification_key(WS, "u_1", "ntf_1"))
    assert stored["ttl"] == int((at + timedelta(days=90)).timestamp())
    assert unread_notifications(WS, "u_1", newest_first=True, limit=5, start=None).items == []
    assert store.read(NotificationItem, item.key).to_model().read is True


def test_an_unread_counter_is_made_by_the_first_delivery_and_keeps_deliveries_in_order(store) -> None:
    from agentplane import keys
    from agentplane.entities.notifications import NotificationCounterItem
    from agentplane.store import ConditionFailed

    key = keys.notification_counter_key(WS, "u_1")
    for notification_id in ("ntf_1", "ntf_2"):
        store.upsert(
            NotificationCounterItem,
            key,
            NotificationCounterItem.arrival(WS, "u_1", notification_id),
            NotificationCounterItem.lands_after(notification_id),
        )
    with pytest.raises(ConditionFailed):
        arrival = NotificationCounterItem.arrival(WS, "u_1", "ntf_0")
        store.upsert(NotificationCounterItem, key, arrival, NotificationCounterItem.lands_after("ntf_0"))

    stored = raw_items.get(key)
    assert (stored["entity"], stored["count"], stored["last_id"]) == ("notification_counter", 2, "ntf_2")


def test_postings_are_equal_when_they_would_store_the_same_item() -> None:
    from agentplane.entities.search import SearchPostingItem

    def posting(title: str) -> Any:
        return SearchPostingItem(workspace_id=WS, token="deploy", type="task", id="task_1", title=title)

    assert posting("Deploy") == posting("Deploy")
    assert posting("Deploy") != posting("Deploy now")


def test_an_activity_entry_is_found_by_its_text_in_any_case(store) -> None:
    from agentplane.entities.activity import ActivityItem, activity_log_lines

    store.create(
        ActivityItem(
            workspace_id=WS,
            id="act_1",
            type="deploy",
            message="Rolled back the SCHEMA",
            level="warn",
            actor_id="u_1",
            actor_type="user",
            created_at="2026-12-01T00:00:00Z",
        )
    )

    def found(text: str) -> list[str]:
        page = activity_log_lines(WS, window=None, agent=None, levels=None, text=text, limit=5, start=None)
        return [entry.id for entry in page.items]

    assert found("schema") == ["act_1"] and found("Rolled BACK") == ["act_1"] and found("forward") == []


def test_every_access_pattern_of_these_families_is_registered_with_its_entity() -> None:
    from agentplane import keys
    from agentplane.entities import activity, knowledge, notifications, projects, search, threads
    from agentplane.entities.patterns import PATTERNS

    registered = {p.function: p for p in PATTERNS}
    unread = registered["agentplane.entities.notifications.unread_notifications"]
    assert unread.entity is notifications.NotificationItem and unread.index == keys.GSI1
    assert registered["agentplane.entities.knowledge.adrs_of_workspace"].partition is keys.adr_list_gsi
    for module in (activity, knowledge, notifications, projects, search, threads):
        patterns = [p for p in PATTERNS if p.function.startswith(module.__name__ + ".")]
        assert patterns and all(p.purpose for p in patterns), module.__name__

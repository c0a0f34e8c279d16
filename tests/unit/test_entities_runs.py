"""The run and realtime entities against moto: a run's indexes, its moves and their guards, its API
model, and delivery cursors that hold a number on one channel and a string on another."""

from __future__ import annotations

from typing import Any

import pytest

from agentplane import raw_items

WS = "ws_entities"


def _run(run_id: str = "run_1", **fields: Any) -> Any:
    from agentplane.entities.runs import RunItem

    values = {
        "workspace_id": WS,
        "id": run_id,
        "title": "Add login",
        "prompt": "Build it",
        "run_kind": "agent",
        "status": "draft",
        "branch": f"agentplane/{run_id}",
        "created_by": "usr_1",
        "created_at": "2026-12-01T00:00:00Z",
        "updated_at": "2026-12-01T00:00:00Z",
        **fields,
    }
    return RunItem(**values)


def test_a_run_is_stored_with_its_list_and_project_indexes_and_its_kind_under_its_own_name(store) -> None:
    from agentplane import keys

    store.create(_run("run_1", project_id="prj_1"))
    store.create(_run("run_2"))

    with_project, alone = raw_items.get(keys.run_key(WS, "run_1")), raw_items.get(keys.run_key(WS, "run_2"))
    assert with_project["entity"] == "run" and with_project["kind"] == "agent"
    assert (with_project["GSI1PK"], with_project["GSI2PK"]) == (
        keys.run_list_gsi(WS),
        keys.run_project_gsi(WS, "prj_1"),
    )
    assert "GSI2PK" not in alone


def test_a_move_stamps_the_status_it_enters_and_loses_to_a_concurrent_move(store) -> None:
    from agentplane import keys
    from agentplane.entities.runs import RunItem
    from agentplane.models.runs import RunStatus
    from agentplane.store import ConditionFailed

    store.create(_run("run_1"))
    first = store.read(RunItem, keys.run_key(WS, "run_1"))
    second = store.read(RunItem, keys.run_key(WS, "run_1"))

    actions, unmoved = first.move(RunStatus.queued, "2026-12-01T00:01:00Z", {"desired_state": "run"})
    moved = store.change(first, actions, unmoved)
    stale_actions, stale = second.move(RunStatus.cancelled, "2026-12-01T00:02:00Z", {})
    with pytest.raises(ConditionFailed):
        store.change(second, stale_actions, stale)

    assert (moved.status, moved.last_event_id, moved.queued_at) == ("queued", 1, "2026-12-01T00:01:00Z")
    assert moved.timestamps() == {"draft": "2026-12-01T00:00:00Z", "queued": "2026-12-01T00:01:00Z"}


def test_a_run_shown_keeps_the_executions_token_and_its_item_kind_out_of_its_model(store) -> None:
    from agentplane.entities.runs import run_from_item
    from agentplane.logic.runs import actions_for

    run = _run(status="running", task_token="secret-token", task_phase="work")
    run.stamp()
    shown = run_from_item(run.as_item())
    model = shown.to_model(actions_for(shown)).model_dump()

    assert model["kind"] == "agent" and model["status"] == "running"
    assert "task_token" not in model and "task_phase" not in model
    assert model["actions"]["can_pause"] is True and model["actions"]["can_start"] is False


def _subscriber(channel_key: str, delivered: int | str | None) -> Any:
    from agentplane.entities.realtime import RealtimeSubscriberItem

    return RealtimeSubscriberItem(
        connection_id="conn_1",
        workspace_id=WS,
        channel=channel_key,
        channel_key=channel_key,
        delivered_through=delivered,
        subscribed_at="2026-12-01T00:00:00Z",
        ttl=4_000_000_000,
    )


@pytest.mark.parametrize(("delivered", "moved_to"), [(3, 7), ("ntf_01", "ntf_09"), ("", "ntf_01")])
def test_a_delivery_cursor_keeps_its_type_and_moves_only_from_where_it_is(store, delivered, moved_to) -> None:
    from agentplane import keys
    from agentplane.entities.realtime import RealtimeSubscriberItem
    from agentplane.store import ConditionFailed

    cursor = RealtimeSubscriberItem.delivered_through
    store.create(_subscriber("runs/run_1", delivered))
    key = keys.realtime_subscriber_key(WS, "runs/run_1", "conn_1")

    moved = store.adjust(RealtimeSubscriberItem, key, [cursor.set(moved_to)], cursor.at(delivered))
    with pytest.raises(ConditionFailed) as lost:
        store.adjust(RealtimeSubscriberItem, key, [cursor.set(moved_to)], cursor.at(delivered))

    assert moved.delivered_through == moved_to and raw_items.get(key)["delivered_through"] == moved_to
    assert lost.value.current_as(RealtimeSubscriberItem).delivered_through == moved_to


def test_a_live_only_subscriber_has_no_cursor_and_expired_ones_are_not_listed(store) -> None:
    from agentplane import keys
    from agentplane.entities.realtime import subscribers_of

    store.create(_subscriber("workspace", None))
    expired = _subscriber("workspace", None)
    expired.connection_id, expired.ttl = "conn_old", 1_000
    store.create(expired)

    listed = list(subscribers_of(WS, "workspace"))

    assert [s.connection_id for s in listed] == ["conn_1"] and listed[0].delivered_through is None
    assert "delivered_through" not in raw_items.get(keys.realtime_subscriber_key(WS, "workspace", "conn_1"))

"""A task's entity says where it lives, what points at it and what it counts in; a change keeps all
of it in step in the task's own transaction; counters read back whatever their counts are named."""

from __future__ import annotations

from typing import Any

import pytest

from agentplane import raw_items

WS = "ws_task_entities"
AT = "2026-12-01T09:30:00Z"


def _task(task_id: str = "task_1", **fields: Any) -> Any:
    from agentplane.entities.tasks import TaskItem

    values: dict[str, Any] = {
        "title": "Fix the Login",
        "description": "Users SEE a blank page",
        "priority": "p1",
        "status": "todo",
        "type": "bug",
        "created_by": "u_1",
        "created_at": AT,
        "updated_at": AT,
        **fields,
    }
    return TaskItem(workspace_id=WS, id=task_id, **values)


def _commit(store: Any, before: Any, after: Any, actions: Any = ()) -> None:
    from agentplane.logic.task_indexes import keep_in_step

    tx = store.transaction()
    if before is None:
        tx.create(after)
    else:
        tx.change(after, actions, after.live())
    keep_in_step(tx, [(before, after)], check_story=False)
    tx.commit()


def test_a_live_task_sits_in_its_status_list_and_sprint_indexes_and_a_deleted_one_in_none() -> None:
    from agentplane import keys

    task = _task(sprint=3, version=1)
    task.stamp()
    indexes = (task.GSI1PK, task.GSI2PK, task.GSI3PK)
    assert indexes == (keys.task_status_gsi(WS, "todo"), keys.task_list_gsi(WS), keys.task_sprint_gsi(WS, 3))
    assert task.search_text == "fix the login\nusers see a blank page"
    assert "search_text" not in task.to_model().model_dump()

    unplanned = _task()
    unplanned.stamp()
    assert unplanned.GSI3PK is None and unplanned.GSI1PK is not None

    task.deleted_at = AT
    task.stamp()
    assert (task.GSI1PK, task.GSI2PK, task.GSI3PK) == (None, None, None)


def test_what_points_at_a_task_follows_its_status_agent_blockers_and_story() -> None:
    from agentplane import keys

    todo = _task(assignee="ada", owner="builder", blocked_by=["task_0"], story_id="story_1")
    refs = {(link.PK, link.SK) for link in todo.reference_links() if link.stamp() is None}
    assert refs == {
        tuple(keys.task_dependency_key(WS, "task_0", "task_1").values()),
        tuple(keys.story_task_key(WS, "story_1", "task_1").values()),
    }
    [queued] = todo.listing_links()
    queued.stamp()
    assert queued.key == keys.agent_todo_key(WS, "ada", "p1", "task_1")  # the assignee before the owner

    done = _task(status="done", completed_at="2026-12-02T10:00:00Z")
    [finished] = done.listing_links()
    finished.stamp()
    assert finished.key == keys.task_done_key(WS, "2026-12-02T10:00:00Z", "task_1")
    assert _task(status="todo").listing_links() == []  # todo with nobody to do it: in no queue


def test_a_done_task_counts_in_its_sprint_on_its_days_and_in_its_month() -> None:
    from agentplane import keys

    task = _task(
        sprint=2,
        story_points=5,
        owner="builder",
        status="done",
        started_at="2026-12-01T11:00:00Z",
        completed_at="2026-12-02T10:00:00Z",
    )
    tallies = {pair: dict(tally.counts) for pair, tally in task.tallies().items()}

    sprint = tallies[tuple(keys.sprint_stats_key(WS, 2).values())]
    assert sprint["status#done#points"] == 5 and sprint["agent#builder#done"] == 1
    assert sprint["day#2026-12-02#done_points"] == 5
    first_day = tallies[tuple(keys.task_day_key(WS, "2026-12-01").values())]
    assert first_day == {"created": 1, "hour#09#created": 1, "started": 1, "hour#11#started": 1}
    assert tallies[tuple(keys.task_totals_key(WS).values())] == {"done#2026-12": 1}

    task.deleted_at = AT
    assert task.tallies() == {}


def test_a_change_moves_the_indexes_links_and_counts_of_the_task_in_one_transaction(store) -> None:
    from agentplane import keys
    from agentplane.entities.task_counters import SprintStatsItem, sprint_figures
    from agentplane.entities.tasks import TaskItem

    task = _task(sprint=1, assignee="ada.lovelace", story_points=3)
    _commit(store, None, task)
    assert raw_items.get(keys.agent_todo_key(WS, "ada.lovelace", "p1", "task_1")) is not None

    before = task.copy()
    _commit(store, before, task, task.assign(sprint=2, status="in_progress", started_at=AT))

    raw = raw_items.get(keys.task_key(WS, "task_1"))
    assert raw["GSI1PK"] == keys.task_status_gsi(WS, "in_progress")
    assert raw["GSI3PK"] == keys.task_sprint_gsi(WS, 2) and raw["version"] == 2
    assert raw_items.get(keys.agent_todo_key(WS, "ada.lovelace", "p1", "task_1")) is None
    left = sprint_figures(store.read(SprintStatsItem, keys.sprint_stats_key(WS, 1)))
    joined = sprint_figures(store.read(SprintStatsItem, keys.sprint_stats_key(WS, 2)))
    assert (left.tasks, left.points, left.agents) == (0, 0, {})
    assert (joined.status_tasks, joined.agents["ada.lovelace"].points) == ({"in_progress": 1}, 3)

    before = store.read(TaskItem, keys.task_key(WS, "task_1"))
    gone = before.copy()
    _commit(store, before, gone, gone.assign(deleted_at=AT))
    stored = raw_items.get(keys.task_key(WS, "task_1"))
    assert stored["deleted_at"] == AT and "GSI1PK" not in stored and "GSI3PK" not in stored
    assert sprint_figures(store.read(SprintStatsItem, keys.sprint_stats_key(WS, 2))).tasks == 0


def test_tasks_changed_together_move_a_shared_counter_once_by_their_sum(store) -> None:
    from agentplane import keys
    from agentplane.entities.task_counters import SprintStatsItem, sprint_figures
    from agentplane.logic.task_indexes import keep_in_step

    first, second = _task("task_1", sprint=4, story_points=2), _task("task_2", sprint=4, story_points=3)
    tx = store.transaction()
    tx.create(first)
    tx.create(second)
    keep_in_step(tx, [(None, first), (None, second)])
    updates = [op for op in tx.operations if "Update" in op]
    tx.commit()

    assert len(updates) == 2  # the sprint's counters and the creation day's, one update each
    figures = sprint_figures(store.read(SprintStatsItem, keys.sprint_stats_key(WS, 4)))
    assert (figures.tasks, figures.points, figures.priorities) == (2, 5, {"p1": 2})


def test_a_task_joining_a_story_requires_the_story_in_its_transaction(store) -> None:
    from agentplane.logic.task_indexes import STORY_CHECK, keep_in_step
    from agentplane.store import TransactionFailed

    task = _task(story_id="story_gone")
    tx = store.transaction()
    tx.create(task)
    keep_in_step(tx, [(None, task)])
    with pytest.raises(TransactionFailed) as refused:
        tx.commit()
    assert refused.value.failed == STORY_CHECK


def test_a_task_given_as_a_plain_item_reads_as_the_same_task() -> None:
    from agentplane.entities.tasks import TaskItem

    task = _task(version=1, labels=["ui"], review_report={"summary": "done", "submitted_by": "u_1", "submitted_at": AT})
    task.stamp()
    again = TaskItem.from_item(task.as_item())
    assert again.to_model() == task.to_model()
    assert again.GSI1PK == task.GSI1PK

"""The entities of agents, memories, the queue and schedules: where each item lives follows from
its fields (an agent's list, live and watch indexes; a memory's shared, expiry and type indexes; a
job's status and ready indexes), and each converts to the API's model without its bookkeeping."""

from __future__ import annotations

from typing import Any

WS = "ws_entities"
AT = "2026-12-01T00:00:00.000Z"


def _agent(**fields: Any) -> Any:
    from agentplane.entities.agents import AgentItem

    values = {
        "workspace_id": WS,
        "id": "agt_1",
        "name": "builder",
        "role": "builder",
        "status": "active",
        "created_by": "u_1",
        "created_at": AT,
        "updated_at": AT,
        "version": 1,
        **fields,
    }
    return AgentItem(**values)


def test_a_live_agent_is_listed_and_watched_by_its_last_heartbeat() -> None:
    from agentplane import keys

    agent = _agent(last_seen_at=AT)
    agent.stamp()

    assert (keys.agent_list_gsi(WS), "builder") == (agent.GSI1PK, agent.GSI1SK)
    assert (keys.agent_live_gsi(WS), keys.agent_live_sk(AT, "builder")) == (agent.GSI2PK, agent.GSI2SK)
    shard = keys.agent_watch_shard(WS, "builder")
    assert (keys.agent_watch_gsi(shard), keys.agent_watch_sk(AT, WS, "builder")) == (agent.GSI3PK, agent.GSI3SK)


def test_an_agent_never_seen_or_resting_is_not_watched_and_a_finished_child_is_not_listed() -> None:
    never_seen = _agent()
    never_seen.stamp()
    resting = _agent(last_seen_at=AT, status="stopped")
    resting.stamp()
    finished_child = _agent(last_seen_at=AT, status="finished", parent_agent="manager")
    finished_child.stamp()

    assert never_seen.GSI1PK is not None and never_seen.GSI2PK is None and never_seen.GSI3PK is None
    assert resting.GSI1PK is not None and resting.GSI2PK is None and resting.GSI3PK is None
    assert (finished_child.GSI1PK, finished_child.GSI2PK, finished_child.GSI3PK) == (None, None, None)


def test_marking_an_agent_stalled_takes_it_out_of_the_live_indexes_in_the_same_update() -> None:
    from pynamodb.expressions.update import RemoveAction

    agent = _agent(last_seen_at=AT)
    agent.stamp()

    actions = [*agent.assign(status="stalled"), *agent.restamp()]

    removed: dict[str, str] = {}
    for action in actions:
        if isinstance(action, RemoveAction):
            action.serialize(removed, {})
    assert set(removed) == {"GSI2PK", "GSI2SK", "GSI3PK", "GSI3SK"}
    assert agent.GSI1PK is not None  # still in the plain list


def test_an_agent_answers_whether_it_has_an_api_key_never_the_key() -> None:
    agent = _agent(api_key_sealed={"ciphertext": "x"}, revision=3).to_model()

    dumped = agent.model_dump()
    assert dumped["has_api_key"] is True
    assert "api_key_sealed" not in dumped and "revision" not in dumped


def test_an_agents_latest_report_is_the_report_under_the_agents_latest_key() -> None:
    from agentplane import keys
    from agentplane.entities.agents import AgentProgressItem, LatestProgressItem

    report = AgentProgressItem(
        workspace_id=WS,
        id="prg_1",
        agent_name="builder",
        message="tests",
        reported_by="u_1",
        created_at=AT,
        expires_at=AT,
        ttl=1_800_000_000,
    )
    latest = LatestProgressItem.of(report)
    latest.stamp()

    assert latest.key == keys.agent_latest_progress_key(WS, "builder")
    assert latest.as_item()["ttl"] == 1_800_000_000 and latest.as_item()["entity"] == "agent_progress_latest"
    assert latest.to_model() == report.to_model()


def _memory(**fields: Any) -> Any:
    from agentplane.entities.memories import MemoryItem

    values = {
        "workspace_id": WS,
        "id": "mem_1",
        "agent_name": "builder",
        "name": "Style",
        "memory_type": "feedback",
        "content": "Use RUFF",
        "last_validated_at": AT,
        "created_by": "u_1",
        "created_at": AT,
        "updated_by": "u_1",
        "updated_at": AT,
        "version": 1,
        **fields,
    }
    return MemoryItem(**values)


def test_a_shared_expiring_memory_sits_on_its_shared_expiry_and_type_indexes() -> None:
    from agentplane import keys

    memory = _memory(shared=True, expires_days=1, expires_at="2026-12-02T00:00:00.000Z")
    private = _memory()
    memory.stamp()
    private.stamp()

    assert keys.memory_shared_gsi(WS) == memory.GSI1PK
    assert keys.memory_expiry_sk("2026-12-02T00:00:00.000Z", "builder", "Style") == memory.GSI2SK
    assert keys.memory_type_gsi(WS, "feedback") == memory.GSI3PK
    assert (None, None, keys.memory_type_gsi(WS, "feedback")) == (private.GSI1PK, private.GSI2PK, private.GSI3PK)


def test_a_memory_is_searched_by_its_key_and_content_in_lower_case_and_answers_under_its_key() -> None:
    memory = _memory(expires_at="2026-12-02T00:00:00.000Z")
    memory.stamp()

    assert memory.as_item()["search_text"] == "style\nuse ruff"
    answered = memory.to_model(at="2026-12-03T00:00:00.000Z").model_dump()
    assert (answered["key"], answered["type"], answered["expired"]) == ("Style", "feedback", True)
    assert "search_text" not in answered


def _job(**fields: Any) -> Any:
    from agentplane.entities.queue import QueueJobItem

    values = {
        "workspace_id": WS,
        "id": "job_1",
        "queue_name": "default",
        "task_type": "report",
        "payload_json": '{"a":1}',
        "priority": 5,
        "status": "pending",
        "max_attempts": 3,
        "timeout_seconds": 60,
        "available_at": AT,
        "created_by": "u_1",
        "created_at": AT,
        "updated_at": AT,
        **fields,
    }
    return QueueJobItem(**values)


def test_a_job_is_ready_by_when_it_can_next_be_handed_out_and_leaves_once_finished() -> None:
    from agentplane import keys

    pending = _job()
    claimed = _job(status="claimed", claim_expires_at="2026-12-01T00:05:00.000Z")
    completed = _job(status="completed")
    for job in (pending, claimed, completed):
        job.stamp()

    assert keys.queue_ready_sk(5, AT, "job_1") == pending.GSI2SK
    assert keys.queue_ready_sk(5, "2026-12-01T00:05:00.000Z", "job_1") == claimed.GSI2SK
    assert keys.queue_job_status_gsi(WS, "claimed") == claimed.GSI1PK
    assert (completed.GSI2PK, completed.GSI2SK) == (None, None)
    assert keys.queue_job_status_gsi(WS, "completed") == completed.GSI1PK


def test_a_job_answers_its_payload_and_result_as_json_objects() -> None:
    job = _job(result_json='{"ok":true}', fingerprint="abc").to_model().model_dump()

    assert (job["payload"], job["result"]) == ({"a": 1}, {"ok": True})
    assert "payload_json" not in job and "fingerprint" not in job


def test_the_agents_memories_queue_and_schedules_queries_are_registered_with_their_indexes() -> None:
    from agentplane import keys
    from agentplane.entities import agents, memories, queue, schedules
    from agentplane.entities.patterns import PATTERNS

    registered = {p.function: p for p in PATTERNS}
    assert registered["agentplane.entities.agents.silent_agents_watched"].index == keys.GSI3
    assert registered["agentplane.entities.agents.silent_agents"].entity is agents.AgentItem
    assert registered["agentplane.entities.memories.expired_memories"].partition is keys.memory_expiry_gsi
    assert registered["agentplane.entities.queue.claimable_jobs"].entity is queue.QueueJobItem
    assert registered["agentplane.entities.schedules.schedules_of_workspace"].entity is schedules.ScheduleItem
    assert memories.MemoryItem.kind() == "memory"

"""Stalls (Toban's check-stalls, and the scheduled sweep across every workspace).

An agent silent for longer than the timeout is marked `stalled` (or `stopped`, when it had been
asked to stop) with one conditional write: only if last_seen_at and status are still what the
index showed, so a heartbeat that lands meanwhile wins. The write also takes it out of the live
indexes, so it is reported once; its next heartbeat makes it active again. Each check sends the
workspace's members one `stalled` notification naming the agents it marked.

The silent agents are read from the live indexes' key range up to the cutoff (see
`entities.agents`): bounded Queries that never read a healthy agent and never scan.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from agentplane import audit, keys
from agentplane.access import Access
from agentplane.entities.agents import AgentItem, silent_agents, silent_agents_watched
from agentplane.ids import iso, now
from agentplane.logic import notifications
from agentplane.logic.workspaces import all_members
from agentplane.models.agents import AgentStatus, DesiredState, StallCheckResult, StalledAgent
from agentplane.models.notifications import NotificationType
from agentplane.settings import get_settings
from agentplane.store import Transaction, TransactionFailed, get_store

# Silent agents one check marks (a larger backlog is taken by the next check).
STALL_CHECK_MAX = 500
# The scheduled sweep: silent agents per shard per run, in Query pages of _PAGE.
SWEEP_MAX_PER_SHARD = 200
_PAGE = 100


def _mark_silent(tx: Transaction, agent: AgentItem, at: str) -> tuple[AgentStatus, dict[str, Any]]:
    """Add to `tx` the write that marks a silent agent; it applies only while last_seen_at and
    status are what the index showed (a heartbeat since then wins). Answers the status it marks
    and what the audit row says of it."""
    seen, was = agent.last_seen_at, agent.status
    status = AgentStatus.stopped if agent.desired_state == DesiredState.stopped else AgentStatus.stalled
    marked = agent.assign(status=status.value, updated_at=at)
    if status == AgentStatus.stalled:
        marked += agent.assign(stalled_at=at)
    moved = [AgentItem.version.add(1), AgentItem.revision.add(1)]
    still_silent = (AgentItem.last_seen_at == seen) & (AgentItem.status == was)
    tx.adjust(AgentItem, agent.key, [*marked, *agent.restamp(), *moved], still_silent)
    return status, {"name": agent.name, "last_seen_at": seen, "from": was}


def _notify_stalled(ws: str, stalled: list[StalledAgent]) -> None:
    if not stalled:
        return
    recipients = [str(m["user_id"]) for m in itertools.islice(all_members(ws), notifications.MAX_FANOUT)]
    if not recipients:
        return
    names = ", ".join(agent.name for agent in stalled[:20])
    title = f"Agent {stalled[0].name} stalled" if len(stalled) == 1 else f"{len(stalled)} agents stalled"
    notifications.notify(
        None,
        ws,
        recipients,
        NotificationType.stalled,
        title,
        f"No heartbeat from {names} since the configured timeout.",
        {"agents": [agent.model_dump() for agent in stalled[:50]]},
        source="agents",
    )


def _cutoff(timeout_seconds: int, moment: datetime | None = None) -> str:
    return iso((moment or now()) - timedelta(seconds=timeout_seconds))


def check_stalls(access: Access, timeout_seconds: int | None = None) -> StallCheckResult:
    """Toban's check-stalls for one workspace: the silent live agents (one Query of the live
    index's range up to the cutoff) are marked, each with its own conditional write."""
    ws = access.workspace_id
    timeout = timeout_seconds or get_settings().agent_stall_timeout_seconds
    cutoff = _cutoff(timeout)
    at = iso()
    stalled: list[StalledAgent] = []
    start: dict[str, Any] | None = None
    read = 0
    while read < STALL_CHECK_MAX:
        page = silent_agents(ws, cutoff, limit=_PAGE, start=start)
        read += _PAGE
        for agent in page.items:
            tx = access.transaction()
            status, details = _mark_silent(tx, agent, at)
            access.audit(tx, f"agent.{status.value}", "agent", agent.id, details)
            try:
                access.commit(tx)
            except TransactionFailed:
                continue  # it reported in (or changed) meanwhile
            if status == AgentStatus.stalled:
                stalled.append(StalledAgent(name=agent.name, last_seen=details["last_seen_at"]))
        start = page.last_key
        if not start:
            break
    _notify_stalled(ws, stalled)
    return StallCheckResult(stalled=stalled, count=len(stalled), timeout_seconds=timeout)


def sweep_stalled_agents(timeout_seconds: int | None = None, moment: datetime | None = None) -> dict[str, int]:
    """The scheduled check across every workspace: per shard of the global watch, the range up to
    the cutoff holds exactly the silent agents (bounded per run; the next run takes any rest).
    Writes are attributed to `system`."""
    timeout = timeout_seconds or get_settings().agent_stall_timeout_seconds
    cutoff = _cutoff(timeout, moment)
    at = iso()
    by_workspace: dict[str, list[StalledAgent]] = {}
    marked = 0
    for shard in range(keys.AGENT_WATCH_SHARDS):
        start: dict[str, Any] | None = None
        read = 0
        while read < SWEEP_MAX_PER_SHARD:
            page = silent_agents_watched(shard, cutoff, limit=_PAGE, start=start)
            read += _PAGE
            for agent in page.items:
                ws = agent.workspace_id
                tx = get_store().transaction()
                status, details = _mark_silent(tx, agent, at)
                audit.record(tx, ws, "system", f"agent.{status.value}", "agent", agent.id, "", details)
                try:
                    tx.commit()
                except TransactionFailed:
                    continue
                marked += 1
                if status == AgentStatus.stalled:
                    by_workspace.setdefault(ws, []).append(
                        StalledAgent(name=agent.name, last_seen=details["last_seen_at"])
                    )
            start = page.last_key
            if not start:
                break
    for ws, stalled in by_workspace.items():
        _notify_stalled(ws, stalled)
    return {"marked": marked, "stalled": sum(len(s) for s in by_workspace.values()), "workspaces": len(by_workspace)}

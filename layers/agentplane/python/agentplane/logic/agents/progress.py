"""Progress reports: what an agent says it is doing, kept 24 hours (`ttl`; reads skip expired
reports too, as TTL deletes lag). Each agent has one "latest" report, replaced only by a newer
one, so the latest report of every agent of a workspace is one Query. Reports are the agent's
own record and are not audited."""

from __future__ import annotations

from datetime import timedelta

from agentplane import keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.agents import (
    AgentItem,
    AgentProgressItem,
    LatestProgressItem,
    latest_reports,
    reports_of_agent,
)
from agentplane.errors import Conflict, Unprocessable
from agentplane.ids import epoch, iso, new_id, now
from agentplane.logic import known_secrets
from agentplane.models.agents import PROGRESS_LIST_MAX, Progress, ProgressCreate
from agentplane.redact import redact_value
from agentplane.store import TransactionFailed, retrying

PROGRESS_RETENTION = timedelta(hours=24)
# A report that collided with others (on the agent's latest item) tries again this often.
_REPORT_ATTEMPTS = 25


def report_progress(access: Access, body: ProgressCreate) -> Progress:
    """One progress report (kept 24 hours), redacted with the workspace's secrets (read with the
    agent). The agent's "latest" item is replaced in the same transaction unless a newer report is
    already there."""
    ws = access.workspace_id
    name = body.agent_name or access.principal.agent_name
    if not name:
        raise Unprocessable("name the reporting agent", errors=[{"field": "agent_name", "message": "required"}])
    # A read, not a condition in the transaction: agents heartbeat all the time, and a condition
    # on their item would make reports collide with those heartbeats.
    agent, known = known_secrets.read_with(AgentItem, keys.agent_key(ws, name), ws)
    if agent is None:
        raise Unprocessable(f"unknown agent {name}", errors=[{"field": "agent_name", "message": "no such agent"}])
    moment = now()
    report = AgentProgressItem(
        **redact_value(body.model_dump(exclude_none=True, exclude={"agent_name"}), known),
        id=new_id("prg"),
        workspace_id=ws,
        agent_name=name,
        reported_by=access.actor_id,
        created_at=iso(moment),
        expires_at=iso(moment + PROGRESS_RETENTION),
        ttl=epoch(moment + PROGRESS_RETENTION),
    )
    latest = LatestProgressItem.of(report)
    no_newer = LatestProgressItem.absent() | (LatestProgressItem.id < report.id)
    replaces_latest = True

    def store_report() -> None:
        nonlocal replaces_latest
        tx = access.transaction()
        tx.create(report, name="report")
        if replaces_latest:
            tx.save(latest, no_newer, name="latest")
        try:
            access.commit(tx)
        except TransactionFailed as failure:
            if failure.failed == "latest" and failure.reason("latest") == "ConditionalCheckFailed":
                replaces_latest = False  # a newer report is the latest: store this one only
            raise

    try:
        retrying(
            store_report,
            retry_if=lambda failure: isinstance(failure, TransactionFailed),
            attempts=_REPORT_ATTEMPTS,
            base_delay=0.003,
            max_delay=0.03,
        )
    except TransactionFailed as failure:
        raise Conflict("the progress report collided with others; retry") from failure
    return report.to_model()


def list_progress(access: Access, name: str, limit: int = PROGRESS_LIST_MAX) -> list[Progress]:
    """An agent's latest reports, newest first (up to 20)."""
    reports = reports_of_agent(access.workspace_id, name, limit=min(limit, PROGRESS_LIST_MAX))
    return [report.to_model() for report in reports]


def latest_progress(access: Access, limit: int, cursor: str | None) -> tuple[list[Progress], str | None]:
    """The latest report of each agent of the workspace, by agent name: one Query."""
    ws = access.workspace_id
    scope = f"agent-progress-latest:{ws}"
    page = latest_reports(ws, limit=limit, start=decode_cursor(cursor, scope, {}))
    return [report.to_model() for report in page.items], encode_cursor(page.last_key, scope, {})

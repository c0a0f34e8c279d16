"""Run telemetry storage: events numbered 1, 2, 3… per run, stored in batch items.

One append is one TransactWriteItems: the run's `last_event_id` moves from N to N+k (conditional on
it still being N) and batch items hold events N+1…N+k, each keyed by the last id it holds (an
append too large for one item is packed into several, see `pack`). Ids are therefore dense and
strictly increasing per run, and `GET …/events?since=S` is one Query for items whose key is
greater than S: the same sequence serves REST backfill, SSE and WebSocket replay.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from agentplane.entities.runs import RunEventsItem
from agentplane.ids import iso
from agentplane.redact import redact_text, redact_value

# An item holds at most this many events, and at most ITEM_BUDGET_BYTES of them as JSON, so it
# stays far below DynamoDB's 400 KB item limit.
MAX_EVENTS_PER_ITEM = 100
ITEM_BUDGET_BYTES = 300_000


def event_record(
    event_id: int,
    event_type: str,
    *,
    severity: str = "info",
    path: str | None = None,
    data: Mapping[str, Any] | None = None,
    at: str | None = None,
) -> dict[str, Any]:
    return {
        "id": event_id,
        "event_type": event_type,
        "severity": severity,
        "path": path,
        "data": dict(data or {}),
        "created_at": at or iso(),
    }


def events_batch(
    ws_id: str, run_id: str, events: list[dict[str, Any]], *, known: Iterable[str] = (), redacted: bool = False
) -> RunEventsItem:
    """The item storing `events` (consecutive ids); the stream carries it to live subscribers.

    Events are redacted here (token shapes, plus the `known` secret values) unless the caller
    already did (`redacted=True`)."""
    known = tuple(known)
    return RunEventsItem(
        workspace_id=ws_id,
        run_id=run_id,
        first_id=events[0]["id"],
        last_id=events[-1]["id"],
        events=list(events) if redacted else [redact_event(event, known) for event in events],
    )


def redact_event(event: dict[str, Any], known: Iterable[str] = ()) -> dict[str, Any]:
    """The event with secrets masked in its data and path."""
    known = tuple(known)
    path = event.get("path")
    return {
        **event,
        "path": redact_text(path, known) if isinstance(path, str) else path,
        "data": redact_value(event.get("data") or {}, known),
    }


def pack(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Consecutive events split into batches that each fit one item (by count and JSON size)."""
    batches: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for event in events:
        event_size = len(json.dumps(event, separators=(",", ":"), default=str).encode())
        if current and (len(current) >= MAX_EVENTS_PER_ITEM or size + event_size > ITEM_BUDGET_BYTES):
            batches.append(current)
            current, size = [], 0
        current.append(event)
        size += event_size
    if current:
        batches.append(current)
    return batches


def events_of(batches: Iterable[RunEventsItem | Mapping[str, Any]], since: int = 0) -> list[dict[str, Any]]:
    """The events of `batches` (items read, or a batch as the table's stream carries it) with an
    id above `since`, in id order."""
    flat: list[dict[str, Any]] = []
    for batch in batches:
        events = batch.events if isinstance(batch, RunEventsItem) else batch.get("events")
        for event in events or []:
            if int(event["id"]) > since:
                flat.append({**event, "id": int(event["id"])})
    flat.sort(key=lambda e: e["id"])
    return flat

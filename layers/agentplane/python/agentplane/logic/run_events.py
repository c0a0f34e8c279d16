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

from agentplane import keys
from agentplane.ids import iso
from agentplane.redact import redact_text, redact_value
from agentplane.store import Page, get_store

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


def batch_item(
    ws_id: str, run_id: str, events: list[dict[str, Any]], *, known: Iterable[str] = (), redacted: bool = False
) -> dict[str, Any]:
    """The item storing `events` (consecutive ids); the stream carries it to live subscribers.

    Events are redacted here (token shapes, plus the `known` secret values) unless the caller
    already did (`redacted=True`)."""
    last_id = events[-1]["id"]
    known = tuple(known)
    return {
        keys.PK: keys.run_events_pk(ws_id, run_id),
        keys.SK: keys.run_events_sk(last_id),
        keys.ENTITY: "run_events",
        "workspace_id": ws_id,
        "run_id": run_id,
        "first_id": events[0]["id"],
        "last_id": last_id,
        "events": list(events) if redacted else [redact_event(event, known) for event in events],
    }


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


def read_after(ws_id: str, run_id: str, after: int, max_items: int) -> Page:
    """One consistent Query for the items holding events with id > `after`, oldest first."""
    return get_store().query(
        keys.run_events_pk(ws_id, run_id),
        sk_between=(keys.run_events_sk(after + 1), keys.run_events_sk(keys.RUN_EVENTS_MAX_ID)),
        limit=max_items,
        consistent=True,
    )


def events_of(items: Iterable[Mapping[str, Any]], since: int = 0) -> list[dict[str, Any]]:
    """Flatten batch items into events with id > since, in id order."""
    flat: list[dict[str, Any]] = []
    for item in items:
        for event in item.get("events") or []:
            if int(event["id"]) > since:
                flat.append({**event, "id": int(event["id"])})
    flat.sort(key=lambda e: e["id"])
    return flat

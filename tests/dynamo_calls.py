"""The DynamoDB calls the store makes, with when each was in flight (threads included)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass
class Call:
    operation: str
    keys: int  # items a BatchGetItem asked for
    thread: str
    started: float
    finished: float = 0.0


@contextmanager
def counted_calls() -> Iterator[list[Call]]:
    from agentplane.store import get_store

    events = get_store().client.meta.events
    calls: list[Call] = []
    in_flight = threading.local()
    lock = threading.Lock()

    def before(model: Any, params: dict[str, Any], **_: Any) -> None:
        body = json.loads(params.get("body") or b"{}")
        asked = sum(len(request.get("Keys", [])) for request in (body.get("RequestItems") or {}).values())
        call = Call(model.name, asked, threading.current_thread().name, time.monotonic())
        in_flight.call = call
        with lock:
            calls.append(call)

    def after(**_: Any) -> None:
        call = getattr(in_flight, "call", None)
        if call is not None:
            call.finished = time.monotonic()

    events.register("before-call.dynamodb", before)
    events.register("after-call.dynamodb", after)
    try:
        yield calls
    finally:
        events.unregister("before-call.dynamodb", before)
        events.unregister("after-call.dynamodb", after)

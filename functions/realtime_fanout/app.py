"""Realtime fan-out: stored run events and notifications, from the table's stream, to the live
WebSocket subscribers of their channels (see agentplane.logic.realtime).

Each record is handled on its own; one that fails is reported back (ReportBatchItemFailures), so
Lambda retries from it. Run subscribers keep a cursor, so a retry sends them only what is missing.
"""

from __future__ import annotations

from typing import Any

from agentplane.logic import realtime
from agentplane.observability import entry_point, logger, realtime_pushed
from agentplane.settings import require_settings
from agentplane.stream_batch import StreamRecord, process_records

# Without the endpoint the fan-out has nowhere to post.
REQUIRED_SETTINGS = ("websocket_endpoint",)
poster = realtime.Poster(require_settings(*REQUIRED_SETTINGS).websocket_endpoint)


# Who may still receive pushes is checked once per connection per batch of records.
gate = realtime.PushGate()


def push_record(record: StreamRecord) -> None:
    image = record.new_image
    if not image:
        return
    result = realtime.fan_out(image, poster, gate)
    realtime_pushed(result.pushed)
    logger.debug("fanned out", extra={"pushed": result.pushed, "gone": result.gone, "revoked": result.revoked})


@entry_point()
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global gate
    gate = realtime.PushGate()
    return process_records(event, push_record)

"""Realtime fan-out: stored run events and notifications, from the table's stream, to the live
WebSocket subscribers of their channels (see agentplane.logic.realtime).

Each record is handled on its own; one that fails is reported back (ReportBatchItemFailures), so
Lambda retries from it. Run subscribers keep a cursor, so a retry sends them only what is missing.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from agentplane.logic import realtime
from agentplane.observability import entry_point, logger, realtime_pushed
from agentplane.settings import require_settings
from agentplane.store import deserialize

# Without the endpoint the fan-out has nowhere to post.
REQUIRED_SETTINGS = ("websocket_endpoint",)
poster = realtime.Poster(require_settings(*REQUIRED_SETTINGS).websocket_endpoint)
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


# Who may still receive pushes is checked once per connection per batch of records.
gate = realtime.PushGate()


def push_record(record: DynamoDBRecord) -> None:
    image = deserialize((record.raw_event.get("dynamodb") or {}).get("NewImage"))
    if not image:
        return
    result = realtime.fan_out(image, poster, gate)
    realtime_pushed(result.pushed)
    logger.debug("fanned out", extra={"pushed": result.pushed, "gone": result.gone, "revoked": result.revoked})


@entry_point()
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global gate
    gate = realtime.PushGate()
    return process_partial_response(event=event, record_handler=push_record, processor=processor, context=context)

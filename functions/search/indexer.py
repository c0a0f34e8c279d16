"""Search indexer: the table's stream in, search postings out (see agentplane.logic.search).

Each record is applied on its own; a record that fails is reported back (ReportBatchItemFailures),
so Lambda retries from it without redoing the batch's earlier records.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from agentplane.logic import search
from agentplane.observability import entry_point, logger
from agentplane.settings import require_settings

REQUIRED_SETTINGS: tuple[str, ...] = ()
require_settings(*REQUIRED_SETTINGS)

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def index_record(record: DynamoDBRecord) -> None:
    images = record.dynamodb
    if images is None:
        return
    change = search.apply_change(images.old_image or None, images.new_image or None)
    logger.debug("indexed", extra={"puts": len(change.put), "deletes": len(change.delete)})


@entry_point()
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=index_record, processor=processor, context=context)

"""Search indexer: the table's stream in, search postings out (see agentplane.logic.search).

Each record is applied on its own; a record that fails is reported back (ReportBatchItemFailures),
so Lambda retries from it without redoing the batch's earlier records.
"""

from __future__ import annotations

from typing import Any

from agentplane.logic import search
from agentplane.observability import entry_point, logger
from agentplane.settings import require_settings
from agentplane.stream_batch import StreamRecord, process_records

REQUIRED_SETTINGS: tuple[str, ...] = ()
require_settings(*REQUIRED_SETTINGS)


def index_record(record: StreamRecord) -> None:
    change = search.apply_change(record.old_image, record.new_image)
    logger.debug("indexed", extra={"puts": len(change.put), "deletes": len(change.delete)})


@entry_point()
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_records(event, index_record)

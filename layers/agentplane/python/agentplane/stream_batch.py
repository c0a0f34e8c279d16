"""A DynamoDB stream batch taken record by record, answered with Lambda's partial batch response
(ReportBatchItemFailures): each record that fails is reported by its sequence number, so Lambda
retries from the first of them; a batch whose every record failed is raised, so Lambda retries it
whole. This is what Powertools' BatchProcessor does for DynamoDB streams, without its import: that
brings asyncio and every event source's class, a large share of a stream function's cold start."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agentplane.entities.base import plain_item
from agentplane.observability import logger

Item = dict[str, Any]


class BatchFailed(Exception):
    """Every record of the batch failed: Lambda retries the batch as a whole."""


@dataclass(frozen=True)
class StreamRecord:
    raw: Mapping[str, Any]

    @property
    def sequence_number(self) -> str:
        return str((self.raw.get("dynamodb") or {}).get("SequenceNumber", ""))

    @property
    def old_image(self) -> Item | None:
        image = (self.raw.get("dynamodb") or {}).get("OldImage")
        return plain_item(image) if image else None

    @property
    def new_image(self) -> Item | None:
        image = (self.raw.get("dynamodb") or {}).get("NewImage")
        return plain_item(image) if image else None


def process_records(event: Mapping[str, Any], handle: Callable[[StreamRecord], None]) -> dict[str, Any]:
    """Hand each record of the batch to `handle`; the failed ones are the partial batch response."""
    records = event.get("Records")
    if not isinstance(records, list):
        raise BatchFailed("not a DynamoDB stream batch: the event has no Records")
    failures: list[dict[str, str]] = []
    for raw in records:
        record = StreamRecord(raw)
        try:
            handle(record)
        except Exception:
            logger.exception("stream record failed", extra={"sequence_number": record.sequence_number})
            failures.append({"itemIdentifier": record.sequence_number})
    if records and len(failures) == len(records):
        raise BatchFailed(f"all {len(records)} records of the batch failed")
    return {"batchItemFailures": failures}

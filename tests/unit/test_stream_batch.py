"""Stream batches: a failed record is reported by its sequence number, so Lambda retries from it;
a batch whose every record failed is raised, so Lambda retries it whole."""

from __future__ import annotations

from typing import Any

import pytest

from agentplane.stream_batch import BatchFailed, StreamRecord, process_records


def record(sequence: str, new: dict[str, Any] | None = None) -> dict[str, Any]:
    images = {"NewImage": {k: {"S": v} for k, v in new.items()}} if new else {}
    return {"eventName": "INSERT", "dynamodb": {"SequenceNumber": sequence, **images}}


def test_each_record_is_handled_and_the_failed_ones_are_reported_by_sequence_number():
    seen: list[Any] = []

    def handle(item: StreamRecord) -> None:
        seen.append(item.new_image)
        if item.sequence_number == "2":
            raise RuntimeError("post failed")

    event = {"Records": [record("1", {"id": "a"}), record("2", {"id": "b"}), record("3")]}
    assert process_records(event, handle) == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    assert seen == [{"id": "a"}, {"id": "b"}, None]  # the records after a failure are handled too


def test_a_batch_whose_every_record_failed_is_raised_for_a_whole_retry():
    def handle(item: StreamRecord) -> None:
        raise RuntimeError("table throttled")

    with pytest.raises(BatchFailed):
        process_records({"Records": [record("1"), record("2")]}, handle)


def test_an_event_that_is_no_batch_is_refused():
    with pytest.raises(BatchFailed):
        process_records({"not": "a batch"}, lambda item: None)

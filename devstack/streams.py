"""DynamoDB Streams → Lambda, locally: what an event source mapping does on AWS.

Every function with a `DynamoDB` event on a table's StreamArn gets a consumer: it reads moto's
stream through the dynamodbstreams API, shard by shard, keeping its iterators, and invokes the
function with batches of real stream records (filtered by the event's FilterCriteria), shortly
after the writes. Consumers start at the stream's end when the local stack starts, so data restored
from `.local/` is not replayed. A failing batch is retried a little, then logged and skipped.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import boto3

from devstack import aws, patches, template
from devstack.lambdas import Lambdas

log = logging.getLogger("devstack.streams")


@dataclass(frozen=True)
class Subscription:
    function: template.Function
    stream_arn: str
    batch_size: int = 100
    filters: tuple[dict[str, Any], ...] = ()
    report_item_failures: bool = False
    retries: int = 2


def subscriptions(resources: aws.Resources) -> list[Subscription]:
    found = []
    for function, props in template.function_events("DynamoDB"):
        if props.get("Enabled") is False:
            continue
        stream_arn = aws.resolve(props["Stream"], resources)
        if not stream_arn:
            log.warning("%s: its stream does not exist locally", function.logical_id)
            continue
        criteria = (props.get("FilterCriteria") or {}).get("Filters") or []
        filters = tuple(json.loads(f["Pattern"]) if isinstance(f["Pattern"], str) else f["Pattern"] for f in criteria)
        retries = props.get("MaximumRetryAttempts")
        found.append(
            Subscription(
                function,
                stream_arn,
                int(props.get("BatchSize", 100)),
                filters,
                "ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                min(int(retries), 3) if isinstance(retries, int) and retries >= 0 else 2,
            )
        )
    return found


# ---------------------------------------------------------------- event filtering (Lambda's rules)


def _rule_matches(rule: Any, present: bool, value: Any) -> bool:
    if not isinstance(rule, dict):
        if isinstance(value, list):
            return rule in value
        return present and value == rule
    if "exists" in rule:
        return present is bool(rule["exists"])
    if not present:
        return False
    if "prefix" in rule:
        return isinstance(value, str) and value.startswith(str(rule["prefix"]))
    if "suffix" in rule:
        return isinstance(value, str) and value.endswith(str(rule["suffix"]))
    if "equals-ignore-case" in rule:
        return isinstance(value, str) and value.lower() == str(rule["equals-ignore-case"]).lower()
    if "anything-but" in rule:
        excluded = rule["anything-but"]
        excluded = excluded if isinstance(excluded, list) else [excluded]
        return value not in excluded
    if "numeric" in rule:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return False
        checks = rule["numeric"]
        operators = {
            "=": number.__eq__,
            "<": number.__lt__,
            "<=": number.__le__,
            ">": number.__gt__,
            ">=": number.__ge__,
        }
        return all(operators[op](float(bound)) for op, bound in zip(checks[::2], checks[1::2], strict=True))
    return False


def matches(pattern: dict[str, Any], data: Any) -> bool:
    """Whether `data` (a stream record as the function would see it) matches a filter pattern."""
    for key, rule in pattern.items():
        present = isinstance(data, dict) and key in data
        value = data.get(key) if isinstance(data, dict) else None
        if isinstance(rule, dict):
            if not isinstance(value, dict) or not matches(rule, value):
                return False
        elif isinstance(rule, list):
            if not any(_rule_matches(option, present, value) for option in rule):
                return False
        elif not _rule_matches(rule, present, value):
            return False
    return True


# ---------------------------------------------------------------- records as Lambda receives them


def _as_event_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, dict):
        return {k: _as_event_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_as_event_value(v) for v in value]
    return value


def to_lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    converted: dict[str, Any] = _as_event_value(record)
    converted["eventSourceARN"] = stream_arn
    return converted


class Consumer:
    """One subscription: its shard iterators and the loop that feeds its function."""

    def __init__(self, subscription: Subscription, lambdas: Lambdas, retry_delay: float = 0.5) -> None:
        self.subscription = subscription
        self.lambdas = lambdas
        self.retry_delay = retry_delay
        # botocore's account-based endpoint (<account>.streams-ddb...) is one moto does not serve.
        self._client = boto3.client(
            "dynamodbstreams",
            region_name=aws.REGION,
            endpoint_url=f"https://streams.dynamodb.{aws.REGION}.amazonaws.com",
        )
        self.iterators: dict[str, str | None] = {}
        self._started = False

    def _discover(self) -> None:
        """Pick up shards; the ones there at start begin at their end, later ones at their start."""
        description = self._client.describe_stream(StreamArn=self.subscription.stream_arn)["StreamDescription"]
        for shard in description.get("Shards") or []:
            shard_id = shard["ShardId"]
            if shard_id in self.iterators:
                continue
            position = "TRIM_HORIZON" if self._started else "LATEST"
            self.iterators[shard_id] = self._client.get_shard_iterator(
                StreamArn=self.subscription.stream_arn, ShardId=shard_id, ShardIteratorType=position
            )["ShardIterator"]
        self._started = True

    def start_position(self) -> None:
        """Fix the starting point now: only records written after this are delivered."""
        self._discover()

    def poll(self) -> int:
        """Deliver everything new; the number of records handed to the function."""
        self._discover()
        delivered = 0
        for shard_id, iterator in list(self.iterators.items()):
            while iterator:
                page = self._client.get_records(ShardIterator=iterator, Limit=self.subscription.batch_size)
                records = page.get("Records") or []
                if not records:
                    self.iterators[shard_id] = page.get("NextShardIterator")
                    break
                delivered += self._deliver(records)
                iterator = page.get("NextShardIterator")
                self.iterators[shard_id] = iterator
        return delivered

    def _deliver(self, records: list[dict[str, Any]]) -> int:
        subscription = self.subscription
        batch = [to_lambda_record(r, subscription.stream_arn) for r in records]
        if subscription.filters:
            batch = [r for r in batch if any(matches(f, r) for f in subscription.filters)]
        if not batch:
            return 0
        for attempt in range(subscription.retries + 1):
            try:
                result = self.lambdas.invoke(subscription.function, {"Records": batch})
            except Exception:
                log.exception(
                    "%s failed on %d stream records (attempt %d)",
                    subscription.function.logical_id,
                    len(batch),
                    attempt + 1,
                )
            else:
                failed = self._failed_from(result, batch)
                if failed is None:
                    return len(batch)
                log.warning("%s reported %d failed stream records", subscription.function.logical_id, len(failed))
                batch = failed
            if attempt < subscription.retries:
                time.sleep(self.retry_delay * (attempt + 1))
        log.error("%s: skipping %d stream records after retries", subscription.function.logical_id, len(batch))
        return len(batch)

    def _failed_from(self, result: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """With ReportBatchItemFailures, the records from the first reported one on; else None."""
        if not self.subscription.report_item_failures or not isinstance(result, dict):
            return None
        failures = result.get("batchItemFailures") or []
        sequence_numbers = {str(f.get("itemIdentifier")) for f in failures}
        for index, record in enumerate(batch):
            if record["dynamodb"].get("SequenceNumber") in sequence_numbers:
                return batch[index:]
        return None


@dataclass
class StreamFanout:
    """All consumers, each polling on its own thread (a slow function does not hold up others)."""

    lambdas: Lambdas
    subscriptions: list[Subscription]
    interval: float = 0.25
    consumers: list[Consumer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for subscription in self.subscriptions:
            consumer = Consumer(subscription, self.lambdas)
            consumer.start_position()
            self.consumers.append(consumer)
            thread = threading.Thread(
                target=self._run, args=(consumer,), name=f"stream-{subscription.function.logical_id}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _run(self, consumer: Consumer) -> None:
        while not self._stop.is_set():
            try:
                consumer.poll()
                self.trim(consumer.subscription.stream_arn)
            except Exception:
                log.exception("reading the stream for %s failed", consumer.subscription.function.logical_id)
            self._stop.wait(self.interval)

    def trim(self, stream_arn: str) -> int:
        """Drop the stream records every consumer of this stream has read; the number dropped."""
        positions = [
            aws.stream_iterator_position(iterator) if iterator else None
            for consumer in self.consumers
            if consumer.subscription.stream_arn == stream_arn
            for iterator in list(consumer.iterators.values())
        ]
        if not positions or None in positions:
            return 0  # a consumer between reads, or one whose shard ended: keep everything
        table_name = stream_arn.split(":", 5)[5].split("/")[1]
        table = aws.table(table_name)
        return patches.trim_stream(table, min(p for p in positions if p is not None)) if table else 0

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

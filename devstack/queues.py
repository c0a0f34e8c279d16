"""SQS → Lambda, locally: functions with `SQS` events get batches from their queue, as an event
source mapping delivers them. Handled messages are deleted; a failing batch stays on the queue and
comes back after its visibility timeout (moto applies the queue's redrive policy)."""

from __future__ import annotations

import base64
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import boto3

from devstack import aws, template
from devstack.lambdas import Lambdas

log = logging.getLogger("devstack.queues")


@dataclass(frozen=True)
class QueueSubscription:
    function: template.Function
    queue_arn: str
    batch_size: int = 10
    report_item_failures: bool = False

    @property
    def queue_name(self) -> str:
        return self.queue_arn.rsplit(":", 1)[-1]


def subscriptions(resources: aws.Resources) -> list[QueueSubscription]:
    found = []
    for function, props in template.function_events("SQS"):
        if props.get("Enabled") is False:
            continue
        found.append(
            QueueSubscription(
                function,
                aws.resolve(props["Queue"], resources),
                min(int(props.get("BatchSize", 10)), 10),
                "ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
            )
        )
    return found


def _attribute(value: dict[str, Any]) -> dict[str, Any]:
    binary = value.get("BinaryValue")
    return {
        "stringValue": value.get("StringValue"),
        "binaryValue": base64.b64encode(binary).decode() if binary else None,
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": value.get("DataType"),
    }


def to_lambda_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes") or {},
        "messageAttributes": {k: _attribute(v) for k, v in (message.get("MessageAttributes") or {}).items()},
        "md5OfBody": message.get("MD5OfBody"),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": aws.REGION,
    }


class QueueConsumer:
    def __init__(self, subscription: QueueSubscription, lambdas: Lambdas) -> None:
        self.subscription = subscription
        self.lambdas = lambdas
        self._client = boto3.client("sqs", region_name=aws.REGION)
        self._url = self._client.get_queue_url(QueueName=subscription.queue_name)["QueueUrl"]

    def poll(self) -> int:
        """Hand one batch to the function; the number of messages it handled."""
        messages = (
            self._client.receive_message(
                QueueUrl=self._url,
                MaxNumberOfMessages=self.subscription.batch_size,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages")
            or []
        )
        if not messages:
            return 0
        records = [to_lambda_record(m, self.subscription.queue_arn) for m in messages]
        try:
            result = self.lambdas.invoke(self.subscription.function, {"Records": records})
        except Exception:
            log.exception("%s failed on %d messages", self.subscription.function.logical_id, len(records))
            return 0
        failed: set[str] = set()
        if self.subscription.report_item_failures and isinstance(result, dict):
            failed = {str(f.get("itemIdentifier")) for f in result.get("batchItemFailures") or []}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self._client.delete_message_batch(
                QueueUrl=self._url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        return len(done)


@dataclass
class QueueFanout:
    lambdas: Lambdas
    subscriptions: list[QueueSubscription]
    interval: float = 0.25
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for subscription in self.subscriptions:
            consumer = QueueConsumer(subscription, self.lambdas)
            thread = threading.Thread(
                target=self._run, args=(consumer,), name=f"sqs-{subscription.function.logical_id}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _run(self, consumer: QueueConsumer) -> None:
        while not self._stop.is_set():
            try:
                if consumer.poll():
                    continue  # more may be waiting
            except Exception:
                log.exception("reading %s failed", consumer.subscription.queue_name)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

"""Time to live, locally: moto accepts TTL settings but never expires items, so this sweeps tables
with TTL enabled and deletes items whose TTL attribute has passed (AWS does it within a day or two;
here within a sweep interval). Deletions show up on the stream as REMOVE records, as on AWS."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import boto3
from botocore.exceptions import ClientError

from devstack import aws, template

log = logging.getLogger("devstack.ttl")


def ttl_tables(resources: aws.Resources) -> list[tuple[str, str]]:
    """(table name, TTL attribute) for every table with TTL enabled."""
    found = []
    for logical_id, resource in template.resources().items():
        if resource["Type"] != "AWS::DynamoDB::Table":
            continue
        props = resource.get("Properties") or {}
        ttl = props.get("TimeToLiveSpecification") or {}
        if ttl.get("Enabled") in (True, "true") and ttl.get("AttributeName") and logical_id in resources.names:
            found.append((resources.names[logical_id], str(ttl["AttributeName"])))
    return found


def expired_keys(table_name: str, attribute: str, now: float) -> list[dict[str, Any]]:
    """The keys of the items whose TTL attribute is before `now`."""

    def if_expired(table: Any, item: Any) -> dict[str, Any] | None:
        expires = item.attrs.get(attribute)
        if expires is not None and expires.type == "N" and float(expires.value) < now:
            return aws.item_key(table, item.hash_key, item.range_key)
        return None

    return aws.read_items(table_name, if_expired)


class TtlSweeper:
    def __init__(self, resources: aws.Resources, interval: float = 30.0) -> None:
        self.tables = ttl_tables(resources)
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self, now: float | None = None) -> int:
        """Delete what has expired by `now` (epoch seconds); the number deleted."""
        now = time.time() if now is None else now
        client = boto3.client("dynamodb", region_name=aws.REGION)
        deleted = 0
        for table, attribute in self.tables:
            ttl_name = {"#ttl": attribute}
            now_value = {":now": {"N": str(int(now))}}
            for key in expired_keys(table, attribute, now):
                try:
                    # Only if still expired: a write that extended it meanwhile wins.
                    client.delete_item(
                        TableName=table,
                        Key=key,
                        ConditionExpression="#ttl < :now",
                        ExpressionAttributeNames=ttl_name,
                        ExpressionAttributeValues=now_value,
                    )
                    deleted += 1
                except ClientError as error:
                    if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                        raise
        return deleted

    def start(self) -> None:
        if not self.tables:
            return
        self._thread = threading.Thread(target=self._run, name="ttl", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep()
            except Exception:
                log.exception("expiring items failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

"""Time to live, locally: moto accepts TTL settings but never expires items, so this sweeps tables
with TTL enabled and deletes items whose TTL attribute has passed (AWS does it within a day or two;
here within a sweep interval). Deletions show up on the stream as REMOVE records, as on AWS."""

from __future__ import annotations

import logging
import threading
import time

import boto3
from botocore.exceptions import ClientError

from devstack import aws, template

log = logging.getLogger("devstack.ttl")


def ttl_tables(resources: aws.Resources) -> list[tuple[str, str, list[str]]]:
    """(table name, TTL attribute, key attributes) for every table with TTL enabled."""
    found = []
    for logical_id, resource in template.resources().items():
        if resource["Type"] != "AWS::DynamoDB::Table":
            continue
        props = resource.get("Properties") or {}
        ttl = props.get("TimeToLiveSpecification") or {}
        if ttl.get("Enabled") in (True, "true") and ttl.get("AttributeName") and logical_id in resources.names:
            keys = [k["AttributeName"] for k in props["KeySchema"]]
            found.append((resources.names[logical_id], str(ttl["AttributeName"]), keys))
    return found


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
        for table, attribute, keys in self.tables:
            ttl_name = {"#ttl": attribute}
            now_value = {":now": {"N": str(int(now))}}
            key_names = {f"#k{i}": key for i, key in enumerate(keys)}
            pages = client.get_paginator("scan").paginate(
                TableName=table,
                FilterExpression="#ttl < :now",
                ProjectionExpression=", ".join(key_names),
                ExpressionAttributeNames={**ttl_name, **key_names},
                ExpressionAttributeValues=now_value,
            )
            for page in pages:
                for key in page.get("Items") or []:
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

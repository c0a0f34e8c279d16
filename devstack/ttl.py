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


def expired_keys(table_name: str, attribute: str, now: float, chunk: int = 500) -> list[dict[str, Any]]:
    """The keys of items whose TTL passed, read from moto's items a partition chunk at a time, so
    requests are not held up for a pass over the whole table (a Scan would hold the lock for it)."""
    from moto.dynamodb.models import dynamodb_backends

    table = dynamodb_backends[aws.ACCOUNT][aws.REGION].tables.get(table_name)
    if table is None:
        return []
    with aws._dynamodb_lock:
        partitions = list(table.items)
    found = []
    for start in range(0, len(partitions), chunk):
        with aws._dynamodb_lock:
            for hash_key in partitions[start : start + chunk]:
                partition = table.items.get(hash_key)
                if partition is None:
                    continue
                for item in partition.values() if table.range_key_attr else [partition]:
                    expires = item.attrs.get(attribute)
                    if expires is not None and expires.type == "N" and float(expires.value) < now:
                        key = {table.hash_key_attr: item.hash_key.to_json()}
                        if table.range_key_attr:
                            key[table.range_key_attr] = item.range_key.to_json()
                        found.append(key)
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
        for table, attribute, _keys in self.tables:
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

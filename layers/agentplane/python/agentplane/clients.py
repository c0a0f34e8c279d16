"""The AWS clients the layer calls, each built on first use and kept for the process.

Building a client costs a service model load, so a warm Lambda reuses one; importing a module
costs none. `reset()` forgets every one of them: tests and the local stack call it when a fresh
emulation starts, so no client keeps talking to the one before.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi.client import ApiGatewayManagementApiClient
    from mypy_boto3_dynamodb.client import DynamoDBClient
else:
    ApiGatewayManagementApiClient = Any
    DynamoDBClient = Any


@lru_cache(maxsize=1)
def dynamodb() -> DynamoDBClient:
    """The table's client (agentplane.store)."""
    return boto3.client("dynamodb", config=Config(retries={"mode": "standard", "max_attempts": 4}))


@lru_cache(maxsize=1)
def stepfunctions() -> Any:
    """Runs' executions: starting them and resolving their waits (agentplane.logic.runs)."""
    return boto3.client("stepfunctions")


@lru_cache(maxsize=1)
def s3() -> Any:
    """Command output and artifacts; SigV4, which the signed URLs handed out need."""
    return boto3.client("s3", config=Config(signature_version="s3v4"))


@lru_cache(maxsize=1)
def kms() -> Any:
    """Data keys for secrets sealed at rest (agentplane.crypto)."""
    return boto3.client("kms")


@lru_cache(maxsize=1)
def scheduler() -> Any:
    """EventBridge Scheduler, which fires schedules (agentplane.logic.schedules)."""
    return boto3.client("scheduler")


@lru_cache(maxsize=8)
def apigatewaymanagementapi(endpoint: str) -> ApiGatewayManagementApiClient:
    """Posts to WebSocket connections of the API stage at `endpoint`; a post fails fast, so one
    slow connection does not hold up a fan-out."""
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5)
    return boto3.client("apigatewaymanagementapi", endpoint_url=endpoint, config=config)


def reset() -> None:
    """Forget every client; the next use of each builds it again."""
    for built in (dynamodb, stepfunctions, s3, kms, scheduler, apigatewaymanagementapi):
        built.cache_clear()

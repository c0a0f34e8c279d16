"""The AWS clients the layer calls, each built on first use and kept for the process.

Clients come from one botocore session, not from boto3: botocore is what pynamodb loads anyway,
and boto3 on top of it costs a function's cold start a tenth of a second for nothing it uses.
Building a client costs a service model load, so a warm Lambda reuses one; importing a module
costs none. `reset()` forgets every one of them: tests and the local stack call it when a fresh
emulation starts, so no client keeps talking to the one before.
"""

from __future__ import annotations

import sys
import threading
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from botocore.config import Config
from botocore.session import Session

if TYPE_CHECKING:
    from mypy_boto3_apigatewaymanagementapi.client import ApiGatewayManagementApiClient
    from mypy_boto3_dynamodb.client import DynamoDBClient
else:
    ApiGatewayManagementApiClient = Any
    DynamoDBClient = Any

# Creating clients from one session in several threads at once is not safe.
_building = threading.Lock()


_own: list[Session] = []  # the layer's session, once made (kept across resets: it holds no client)


def _own_session() -> Session:
    if not _own:
        _own.append(Session())
    return _own[0]


def session() -> Session:
    """The botocore session clients are built from. Where something already set up boto3's
    default session (the local stack, which shares one across emulations so service models load
    once, and whatever hooks it), its botocore session is the one; otherwise the layer's own."""
    boto3 = sys.modules.get("boto3")
    default = getattr(boto3, "DEFAULT_SESSION", None)
    if default is not None:
        return default._session
    return _own_session()


def _client(service: str, **kwargs: Any) -> Any:
    with _building:
        return session().create_client(service, **kwargs)


@lru_cache(maxsize=1)
def dynamodb() -> DynamoDBClient:
    """The table's client (agentplane.store)."""
    return _client("dynamodb", config=Config(retries={"mode": "standard", "max_attempts": 4}))


@lru_cache(maxsize=1)
def stepfunctions() -> Any:
    """Runs' executions: starting them and resolving their waits (agentplane.logic.runs)."""
    return _client("stepfunctions")


@lru_cache(maxsize=1)
def s3() -> Any:
    """Command output and artifacts; SigV4, which the signed URLs handed out need."""
    return _client("s3", config=Config(signature_version="s3v4"))


@lru_cache(maxsize=1)
def kms() -> Any:
    """Data keys for secrets sealed at rest (agentplane.crypto)."""
    return _client("kms")


@lru_cache(maxsize=1)
def scheduler() -> Any:
    """EventBridge Scheduler, which fires schedules (agentplane.logic.schedules)."""
    return _client("scheduler")


@lru_cache(maxsize=8)
def apigatewaymanagementapi(endpoint: str) -> ApiGatewayManagementApiClient:
    """Posts to WebSocket connections of the API stage at `endpoint`; a post fails fast, so one
    slow connection does not hold up a fan-out."""
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5)
    return _client("apigatewaymanagementapi", endpoint_url=endpoint, config=config)


def reset() -> None:
    """Forget every client; the next use of each builds it again."""
    for built in (dynamodb, stepfunctions, s3, kms, scheduler, apigatewaymanagementapi):
        built.cache_clear()

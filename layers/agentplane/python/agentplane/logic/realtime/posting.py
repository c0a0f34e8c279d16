"""Posting to WebSocket connections through API Gateway's management API."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel

from agentplane import clients


def management_endpoint(api_id: str, stage: str, region: str | None = None) -> str:
    """Where posts to a connection of API `api_id` go (the execute-api host, also behind a custom domain)."""
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return f"https://{api_id}.execute-api.{region}.amazonaws.com/{stage}"


class ConnectionGone(Exception):
    """The connection no longer exists (410 Gone from the management API)."""

    def __init__(self, connection_id: str) -> None:
        super().__init__(f"connection {connection_id} is gone")
        self.connection_id = connection_id


class DeliveryFailed(Exception):
    """A post failed for another reason (throttled, service error); the stream retries the record."""


@dataclass(frozen=True)
class Poster:
    """Posts JSON messages to connections of one WebSocket API stage."""

    endpoint: str

    def send(self, connection_id: str, message: Mapping[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":"), default=str).encode()
        try:
            clients.apigatewaymanagementapi(self.endpoint).post_to_connection(ConnectionId=connection_id, Data=data)
        except ClientError as exc:
            error = exc.response.get("Error") or {}
            status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if error.get("Code") == "GoneException" or status == 410:
                raise ConnectionGone(connection_id) from exc
            raise DeliveryFailed(f"posting to {connection_id} failed: {error.get('Code')}") from exc


def control(message: BaseModel) -> dict[str, Any]:
    """A control message (subscribed, pong, error…) as sent: fields that are not set are left out."""
    return message.model_dump(mode="json", exclude_none=True)

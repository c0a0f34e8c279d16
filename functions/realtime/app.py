"""The WebSocket API: `$connect` (token check), `$disconnect`, and `$default` for subscribe,
unsubscribe and ping messages. Answers go back over the connection through the management API."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from agentplane.errors import AppError, BadRequest, Unprocessable
from agentplane.logic import realtime
from agentplane.models.realtime import ErrorMessage, Ping, Subscribe, Unsubscribe, client_message
from agentplane.observability import entry_point, logger
from agentplane.settings import require_settings

REQUIRED_SETTINGS: tuple[str, ...] = ()
require_settings(*REQUIRED_SETTINGS)

MAX_MESSAGE_CHARS = 4096


def _token(event: dict[str, Any]) -> str | None:
    """`?token=…` (browsers cannot set headers on a WebSocket), else an `Authorization: Bearer` header."""
    token = (event.get("queryStringParameters") or {}).get("token")
    if token:
        return str(token)
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    scheme, _, value = str(headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _poster(context: dict[str, Any]) -> realtime.Poster:
    return realtime.Poster(realtime.management_endpoint(context["apiId"], context["stage"]))


def _refusal(error: AppError) -> dict[str, Any]:
    return {
        "statusCode": error.status,
        "headers": {"Content-Type": "application/problem+json"},
        "body": json.dumps(error.to_problem("$connect")),
    }


def _error_message(error: AppError, message: Any = None) -> dict[str, Any]:
    fields = {
        "status": error.status,
        "title": error.title,
        "detail": error.detail,
        "action": getattr(message, "action", None),
        "channel": getattr(message, "channel", None),
        "workspace_id": getattr(message, "workspace_id", None),
        **{k: v for k, v in error.extensions.items() if k in ("errors", "required_scope")},
    }
    return realtime.control(ErrorMessage.model_validate(fields))


def _parse(body: str) -> Subscribe | Unsubscribe | Ping:
    if len(body) > MAX_MESSAGE_CHARS:
        raise BadRequest(f"a message holds at most {MAX_MESSAGE_CHARS} characters")
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        raise BadRequest("the message is not valid JSON") from exc
    try:
        return client_message.validate_python(parsed)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(part) for part in err["loc"]) or "message", "message": err["msg"]}
            for err in exc.errors()
        ]
        raise Unprocessable(
            'the message is not one of {"action": "subscribe" | "unsubscribe" | "ping", …}', errors=errors
        ) from exc


def on_connect(event: dict[str, Any], connection_id: str) -> dict[str, Any]:
    try:
        connection = realtime.connect(connection_id, _token(event))
    except AppError as error:
        return _refusal(error)
    logger.info("connected", extra={"connection_id": connection_id, "principal_id": connection.principal.id})
    return {"statusCode": 200}


def on_disconnect(connection_id: str) -> dict[str, Any]:
    removed = realtime.disconnect(connection_id)
    logger.info("disconnected", extra={"connection_id": connection_id, "subscriptions": removed})
    return {"statusCode": 200}


def on_message(event: dict[str, Any], connection_id: str, poster: realtime.Poster) -> dict[str, Any]:
    message: Subscribe | Unsubscribe | Ping | None = None
    try:
        if event.get("isBase64Encoded"):
            raise BadRequest("send JSON text messages, not binary ones")
        message = _parse(str(event.get("body") or ""))
        if isinstance(message, Subscribe):
            realtime.subscribe(connection_id, message, poster)  # acknowledges, then replays
        elif isinstance(message, Unsubscribe):
            poster.send(connection_id, realtime.control(realtime.unsubscribe(connection_id, message)))
        else:
            poster.send(connection_id, realtime.control(realtime.ping()))
        return {"statusCode": 200}
    except AppError as error:
        reply = _error_message(error, message)
    except (realtime.ConnectionGone, realtime.DeliveryFailed):
        logger.info("could not answer the connection", extra={"connection_id": connection_id}, exc_info=True)
        return {"statusCode": 200}
    except Exception:
        logger.exception("message failed", extra={"connection_id": connection_id})
        reply = _error_message(AppError("an unexpected error occurred; it has been logged"), message)
    try:
        poster.send(connection_id, reply)
    except (realtime.ConnectionGone, realtime.DeliveryFailed):
        logger.info("could not report an error to the connection", extra={"connection_id": connection_id})
    return {"statusCode": 200}


@entry_point()
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = event["requestContext"]
    connection_id = str(request["connectionId"])
    route = request.get("routeKey")
    if route == "$connect":
        return on_connect(event, connection_id)
    if route == "$disconnect":
        return on_disconnect(connection_id)
    return on_message(event, connection_id, _poster(request))

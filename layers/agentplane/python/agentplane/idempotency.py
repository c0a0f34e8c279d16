"""`Idempotency-Key` on acting POSTs, through Powertools idempotency with DynamoDB persistence.

The key is scoped to the caller and the route, so two callers (or two routes) never share a
result; calls without a principal (register, login, ...) are scoped to their source IP. The
request body is validated against the stored one: the same key with another body is a 422.
Failures are not stored, so a request that failed can be retried with the same key.

What is stored to compare bodies is a keyed digest (HMAC with the signing secret) of the body,
never the body or a plain hash of it: bodies carry passwords, and a fast unkeyed hash of one could
be brute-forced from the table.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentplane import keys
from agentplane.errors import Conflict, Unprocessable
from agentplane.settings import get_settings

MAX_KEY_LENGTH = 255

_current_call: contextvars.ContextVar[Callable[[], dict[str, Any]]] = contextvars.ContextVar("idempotent_call")
_lambda_context: Any = None


@dataclass
class _Wrapped:
    function: Callable[..., dict[str, Any]]


_wrapped: _Wrapped | None = None


def _build() -> _Wrapped:
    # Imported on first use: the idempotency utility pulls in jmespath and the persistence layer.
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    settings = get_settings()
    persistence = DynamoDBPersistenceLayer(
        table_name=settings.table_name,
        key_attr=keys.PK,
        sort_key_attr=keys.SK,
        expiry_attr=keys.TTL,
    )
    config = IdempotencyConfig(
        event_key_jmespath="[principal, route, key]",
        payload_validation_jmespath="body",
        expires_after_seconds=settings.idempotency_ttl_seconds,
        raise_on_no_idempotency_key=True,
    )
    if _lambda_context is not None:
        config.register_lambda_context(_lambda_context)

    @idempotent_function(data_keyword_argument="request", persistence_store=persistence, config=config)
    def run(request: dict[str, Any]) -> dict[str, Any]:
        return _current_call.get()()

    return _Wrapped(run)


def register_lambda_context(context: Any) -> None:
    global _lambda_context
    _lambda_context = context


def reset() -> None:
    global _wrapped
    _wrapped = None


def body_digest(body: str | None) -> str:
    """A keyed digest of the body; JSON is compared by content, so key order and spacing do not
    make a retry look like another request."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")) if body else ""
    except ValueError:
        canonical = body or ""
    secret = get_settings().signing_secret.encode()
    return hmac.new(secret, canonical.encode(), hashlib.sha256).hexdigest()


def run_once(
    principal_id: str, route: str, idempotency_key: str, body: str | None, call: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Run `call` once per (principal, route, key); later calls get the stored result."""
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyValidationError,
    )

    global _wrapped
    if _wrapped is None:
        _wrapped = _build()
    token = _current_call.set(call)
    try:
        request = {"principal": principal_id, "route": route, "key": idempotency_key, "body": body_digest(body)}
        return _wrapped.function(request=request)
    except IdempotencyValidationError:
        raise Unprocessable("this Idempotency-Key was already used with a different request body") from None
    except IdempotencyAlreadyInProgressError:
        raise Conflict("a request with this Idempotency-Key is still in progress") from None
    finally:
        _current_call.reset(token)

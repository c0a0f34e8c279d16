"""Lambda REQUEST authorizer of the HTTP API (payload 2.0, simple responses).

Resolves the bearer secret to a principal and hands it to the route's function as context. API
Gateway caches the answer per token for the configured TTL, so the usage an API key records here
counts the calls that reached the authorizer.

An unknown, expired or revoked secret is still let through, with an empty principal: HTTP APIs
can only answer a refusal with a bare 403, while callers are owed a 401 problem document. The
shared middleware turns the empty principal into that 401 before any route code runs.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from agentplane.auth.tokens import resolve_principal
from agentplane.errors import Unauthorized
from agentplane.logic.api_keys import record_use
from agentplane.observability import logger


def bearer_from_event(event: dict[str, Any]) -> str:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        principal = resolve_principal(bearer_from_event(event))
    except Unauthorized:
        return {"isAuthorized": True, "context": {"principal": ""}}
    logger.append_keys(principal_kind=principal.kind, principal_id=principal.id)
    if principal.kind == "api_key" and principal.workspace_id:
        try:
            record_use(principal.workspace_id, principal.token_id)
        except (BotoCoreError, ClientError):
            # The usage log is bookkeeping: a throttled write must not refuse a valid key.
            logger.warning("could not record API key usage", exc_info=True)
    return {"isAuthorized": True, "context": principal.to_context()}

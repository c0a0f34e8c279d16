"""Lambda REQUEST authorizer of the HTTP API (payload 2.0, simple responses).

Resolves the bearer secret to a principal and hands it to the route's function as context. API
Gateway caches the answer per token for the configured TTL (AuthorizerCacheSeconds), so this runs
once per token per TTL: what must count every call (rate limits, an API key's usage log) is
counted in the functions, in agentplane.http.

An unknown, expired or revoked secret is still let through, with an empty principal: HTTP APIs
can only answer a refusal with a bare 403, while callers are owed a 401 problem document. The
shared middleware turns the empty principal into that 401 before any route code runs.
"""

from __future__ import annotations

from typing import Any

from agentplane.auth.tokens import resolve_principal
from agentplane.errors import Unauthorized
from agentplane.observability import logger
from agentplane.settings import get_settings

# Validated at import: an authorizer deployed without its settings fails its cold start loudly.
get_settings()


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
    return {"isAuthorized": True, "context": principal.to_context()}

"""The HTTP edge every function shares: resolver factory, the `{data, meta}` envelope, RFC 9457
problems for every failure, rate-limit headers, `Idempotency-Key`, and the Lambda entry point.

Every invocation is counted against the caller's rate limit before the resolver runs (the
principal's, or the source IP's for a call without one), so every answer the function gives,
validation failures and unknown routes included, carries the X-RateLimit-* headers."""

from __future__ import annotations

import contextlib
import contextvars
import json
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Header, Query
from aws_lambda_powertools.event_handler.request import Request
from aws_lambda_powertools.logging import correlation_paths
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BeforeValidator

from agentplane import idempotency, ratelimit, request_body
from agentplane.access import Access, workspace_access
from agentplane.auth import caller, key_usage
from agentplane.auth.principal import Principal
from agentplane.errors import AppError, BadRequest, Conflict, NotFound, Unauthorized, Unprocessable
from agentplane.ids import MAX_PATH_ID_LENGTH, is_path_id
from agentplane.observability import entry_point, logger
from agentplane.settings import get_settings, require_settings
from agentplane.store import ConditionFailed, TransactionFailed, defer_check, get_store

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

    from agentplane.models.envelope import Data, DataList

T = TypeVar("T")

PROBLEM_JSON = "application/problem+json"

# Headers to add to whatever response this invocation ends with (rate-limit figures).
_extra_headers: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("extra_headers", default=None)
# Who this invocation's request comes from (agentplane.auth.caller), authenticated before routing.
_caller: contextvars.ContextVar[caller.Caller | None] = contextvars.ContextVar("caller", default=None)

# `security=PUBLIC` on a route: reached without a token (and documented so).
PUBLIC: list[dict[str, list[str]]] = []

Limit = Annotated[int, Query(ge=1, le=200, description="Page size (default 50, max 200)")]
Cursor = Annotated[str | None, Query(max_length=2048, description="Opaque cursor from meta.next_cursor")]

# An entity tag as GET answers it in `ETag` ("3"), weak (W/"3") or bare (3); `*` matches any version.
_ENTITY_TAG = re.compile(r'(?:W/)?"(\d{1,15})"|(\d{1,15})')


def version_from_if_match(value: Any) -> int | None:
    """The version an If-Match header names; a malformed one is a 400 (never a silent match)."""
    if value is None or isinstance(value, int):
        return value
    text = str(value).strip()
    if text in ("", "*"):
        return None
    tag = _ENTITY_TAG.fullmatch(text)
    if tag is None:
        raise BadRequest(f'If-Match must be the resource\'s ETag, like "3", not {text[:40]!r}', field="if-match")
    return int(tag.group(1) or tag.group(2))


IfMatch = Annotated[
    int | None,
    BeforeValidator(version_from_if_match),
    Header(alias="if-match", description='The version the change is based on: the ETag a GET answered ("3")'),
]


PROBLEM_RESPONSES: dict[int, OpenAPIResponse] = {
    status: {"description": title, "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    for status, title in (
        (400, "Bad request"), (401, "Unauthorized"), (403, "Forbidden"), (404, "Not found"),
        (409, "Conflict"), (422, "Validation failed"), (429, "Rate limited"),
    )
}  # fmt: skip


def answers(status: int, description: str) -> dict[int, OpenAPIResponse]:
    """A route's documented responses: its own success status, then every problem it can answer."""
    return {status: {"description": description}, **PROBLEM_RESPONSES}


CREATED = answers(201, "Created")
DELETED = answers(204, "Deleted")


def ok(data: T) -> Data[T]:
    """One resource as `{"data": …}`; a resource with a `version` also answers it as the ETag,
    the value If-Match sends back.

    The envelope stays a dict: Powertools validates what a route returns against the route's
    annotation (`Data[Thread]`) and serializes it, so building the model here would do it twice.
    The annotation still lets mypy check that a route returns the model it declares."""
    version = data.get("version") if isinstance(data, Mapping) else getattr(data, "version", None)
    if isinstance(version, int) and not isinstance(version, bool):
        add_response_headers({"ETag": f'"{version}"'})
    return cast("Data[T]", {"data": data})


def created(data: T) -> Response[Data[T]]:
    return Response(status_code=201, content_type="application/json", body=cast("Data[T]", {"data": data}))


def stored(data: T, was_created: bool) -> Response[Data[T]]:
    """A PUT's answer: 201 when it created the resource, 200 when it replaced it."""
    if was_created:
        return created(data)
    return Response(status_code=200, content_type="application/json", body=cast("Data[T]", {"data": data}))


def no_content() -> Response[Any]:
    return Response(status_code=204, body="")  # no body, so no Content-Type


def page(items: list[T], next_cursor: str | None, limit: int) -> DataList[T]:
    """One page as `{"data": […], "meta": {…}}`; a dict for the reason `ok` gives."""
    return cast("DataList[T]", {"data": items, "meta": {"next_cursor": next_cursor, "limit": limit}})


def problem_response(error: AppError, instance: str = "") -> Response[str]:
    return Response(
        status_code=error.status,
        content_type=PROBLEM_JSON,
        body=json.dumps(error.to_problem(instance), default=str),
        headers=dict(error.headers),
    )


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for err in exc.errors():
        location = ".".join(str(part) for part in err.get("loc", ()) if part != "body" or len(err["loc"]) == 1)
        errors.append({"field": location or "body", "message": err.get("msg", "invalid"), "type": err.get("type")})
    return errors


def register_error_handlers(app: APIGatewayHttpResolver) -> None:
    """The only error format: every failure leaves as application/problem+json."""

    def instance() -> str:
        try:
            return app.current_event.path
        except Exception:  # pragma: no cover - no event when the resolver itself failed
            return ""

    @app.exception_handler(AppError)
    def _app_error(exc: AppError) -> Response[str]:
        if exc.status >= 500:
            logger.exception("server error")
        return problem_response(exc, instance())

    @app.exception_handler(RequestValidationError)
    def _validation_error(exc: RequestValidationError) -> Response[str]:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return problem_response(BadRequest("the request body is not valid JSON"), instance())
        return problem_response(Unprocessable("the request has invalid fields", errors=_field_errors(exc)), instance())

    @app.exception_handler(NotFoundError)
    def _no_route(exc: NotFoundError) -> Response[str]:
        return problem_response(NotFound("no such route"), instance())

    @app.exception_handler(ServiceError)
    def _service_error(exc: ServiceError) -> Response[str]:
        error = AppError(str(exc.msg))
        error.status = exc.status_code
        error.title = "Error"
        return problem_response(error, instance())

    @app.exception_handler(caller.AccessChanged)
    def _access_changed(exc: caller.AccessChanged) -> Response[str]:
        # lambda_entry answers the request again as the caller now is; this body is never sent.
        return problem_response(Unauthorized(caller.REFUSED), instance())

    @app.exception_handler(TransactionFailed)
    def _lost_race(exc: TransactionFailed) -> Response[str]:
        # A write lost to a concurrent one and the route had no better answer: nothing was applied.
        logger.info("transaction cancelled", extra={"reasons": exc.reasons})
        return problem_response(Conflict("the resource changed while this request was applied; retry"), instance())

    @app.exception_handler(ConditionFailed)
    def _condition_failed(exc: ConditionFailed) -> Response[str]:
        return problem_response(Conflict("the resource changed while this request was applied; retry"), instance())

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response[str]:
        logger.exception("unexpected error")
        return problem_response(AppError("an unexpected error occurred; it has been logged"), instance())


def _request_context(app: APIGatewayHttpResolver) -> dict[str, Any]:
    return dict(app.current_event.raw_event.get("requestContext") or {})


def request_principal(app: APIGatewayHttpResolver | None = None) -> Principal:
    """The authenticated caller (a 401 problem saying why when there is none)."""
    return (_caller.get() or caller.Caller()).require()


def request_id(app: APIGatewayHttpResolver) -> str:
    return str(_request_context(app).get("requestId", ""))


def workspace_scope(scope: str | None = None) -> Any:
    """What a route of `/workspaces/{ws}/…` declares to get the caller's `Access` with `scope`:
    `access: Annotated[Access, workspace_scope("tasks:write")]`. A non-member gets a 404, a role
    or token without the scope a 403 naming it; the access carries the request id for audit.
    Without a scope, any member gets it (a route that checks what it needs itself)."""

    def access(request: Request) -> Access:
        context = request.resolved_event.raw_event.get("requestContext") or {}
        workspace_id = request.path_parameters.get("ws", "")
        return workspace_access(request_principal(), workspace_id, scope, request_id=str(context.get("requestId", "")))

    access.__name__ = f"access_{(scope or 'member').replace(':', '_')}"
    return Depends(access)


def source_ip(app: APIGatewayHttpResolver) -> str:
    return str((_request_context(app).get("http") or {}).get("sourceIp", "unknown"))


def add_response_headers(headers: Mapping[str, str]) -> None:
    current = _extra_headers.get()
    if current is not None:
        current.update(headers)


def _is_public(app: APIGatewayHttpResolver) -> bool:
    """Whether the matched route is reached without a token; a path no route matches is too,
    so that it answers 404 whoever asks."""
    route = app.context.get("_route")
    if route is None or route.security == PUBLIC:
        return True
    return route not in app._static_routes and route not in app._dynamic_routes


def _caller_id(app: APIGatewayHttpResolver) -> str:
    """The principal's id; public routes (register, login, ...) are the IP's."""
    who = _caller.get()
    principal = who.principal if who is not None else None
    return principal.id if principal is not None and not _is_public(app) else f"ip:{source_ip(app)}"


def _idempotency(app: APIGatewayHttpResolver, next_middleware: Callable[..., Response[Any]]) -> Response[Any]:
    event = app.current_event
    caller = _caller_id(app)
    key = (event.headers or {}).get("idempotency-key")
    if event.http_method != "POST" or not key:
        return next_middleware(app)
    if len(key) > idempotency.MAX_KEY_LENGTH:
        raise BadRequest(f"Idempotency-Key must be at most {idempotency.MAX_KEY_LENGTH} characters")

    first_body: list[str] = []

    def call() -> dict[str, Any]:
        response = next_middleware(app)
        body = response.body if isinstance(response.body, str) else app._serializer(response.body or {})
        first_body.append(body)
        # The stored copy never holds a secret: a replay shows the resource, not its key again.
        return {"status": response.status_code, "content_type": response.content_type, "body": _without_secrets(body)}

    route = f"{event.http_method} {event.path}"
    stored = idempotency.run_once(caller, route, key, event.body, call)
    body = first_body[0] if first_body else stored["body"]
    return Response(status_code=stored["status"], content_type=stored["content_type"], body=body)


def _guard_path_ids(app: APIGatewayHttpResolver, next_middleware: Callable[..., Response[Any]]) -> Response[Any]:
    if not _is_public(app):
        request_principal(app)  # a missing or refused token is a 401 whatever the path
    for name, value in (app.current_event.path_parameters or {}).items():
        if not is_path_id(value):
            raise NotFound(f"no {name} like this exists: ids are up to {MAX_PATH_ID_LENGTH} letters, digits or _.:-")
    return next_middleware(app)


# Fields that carry a secret shown once (API keys, tokens, invites, shares; a deploy claim's
# credentials, and the state and saved plan it hands the runner, which may hold secrets too).
_SECRET_RESPONSE_FIELDS = frozenset({"key", "token", "refresh_token", "secret", "credentials"})
_SECRET_DEPLOY_FIELDS = frozenset({"state", "plan_file"})
SHOWN_ONCE = "[shown once]"


def _without_secrets(body: str) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return body
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict) or not _SECRET_RESPONSE_FIELDS & data.keys():
        return body
    if isinstance(data.get("credentials"), dict):
        data["credentials"] = SHOWN_ONCE
        if isinstance(data.get("deploy"), dict):
            data["deploy"] = {k: SHOWN_ONCE if k in _SECRET_DEPLOY_FIELDS else v for k, v in data["deploy"].items()}
    secrets = [str(v) for k, v in data.items() if k in _SECRET_RESPONSE_FIELDS and isinstance(v, str) and v]
    # The secret is masked wherever the answer repeats it too (a share's `path` ends with its token).
    document["data"] = {k: _masked(v, secrets) for k, v in data.items()}
    return json.dumps(document, separators=(",", ":"))


def _masked(value: Any, secrets: list[str]) -> Any:
    if not isinstance(value, str):
        return value
    for secret in secrets:
        value = value.replace(secret, SHOWN_ONCE)
    return value


def limit_group(group: str, by: str = "user") -> Callable[..., Response[Any]]:
    """Route middleware enforcing a named limit ('auth' by IP, 'run-start' by user, ...)."""

    def middleware(app: APIGatewayHttpResolver, next_middleware: Callable[..., Response[Any]]) -> Response[Any]:
        if by == "ip":
            subject = source_ip(app)
        else:
            principal = request_principal(app)
            workspace_id = (app.current_event.path_parameters or {}).get("ws")
            if workspace_id:
                # Access first: a caller refused with 404 spends none of the group's budget.
                workspace_access(principal, workspace_id)
            subject = principal.user_id or principal.id
        if group == "auth":
            decision = ratelimit.hit_exact(f"{group}:{subject}", get_settings().auth_rate_limit_per_minute)
        else:
            decision = ratelimit.hit_group(group, subject)
        add_response_headers(decision.headers())
        return next_middleware(app)

    return middleware


def create_app(*, requires: tuple[str, ...] = ()) -> APIGatewayHttpResolver:
    """The function's resolver. Settings are validated here, at import, with the ones this
    function `requires` set: a function deployed without its environment fails its cold start
    naming the setting, not later as a 500 or a silent degradation."""
    get_settings()
    require_settings(*requires)
    app = APIGatewayHttpResolver(enable_validation=True)
    register_error_handlers(app)
    app.use(middlewares=[_guard_path_ids, _idempotency])
    return app


def _admit(event: Mapping[str, Any], principal: Principal | None) -> None:
    """Count the call against its caller's limit (raising RateLimited past it): the principal's,
    or for a call without a valid token (the route answers 401 or is public) the source IP's."""
    if principal is None:
        source = ((event.get("requestContext") or {}).get("http") or {}).get("sourceIp", "unknown")
        subject = f"ip:{source}"
    else:
        subject = principal.id
    add_response_headers(ratelimit.hit_principal(subject, get_settings().rate_limit_per_minute).headers())


def _count_use(principal: Principal | None) -> None:
    """A workspace key's call goes into its usage log once the key has been checked."""
    if principal is not None and principal.kind in ("api_key", "agent_key") and principal.workspace_id:
        _count_key_use(principal.workspace_id, principal.token_id)


def _count_key_use(workspace_id: str, key_id: str) -> None:
    try:
        key_usage.count_request(workspace_id, key_id)
    except (BotoCoreError, ClientError):
        # The usage log is bookkeeping: a throttled write must not refuse a valid key.
        logger.warning("could not record API key usage", exc_info=True)


def _problem_result(error: AppError, event: Mapping[str, Any]) -> dict[str, Any]:
    """A problem answered before the resolver ran, in the Lambda proxy response shape."""
    return {
        "statusCode": error.status,
        "headers": {"Content-Type": PROBLEM_JSON, **error.headers},
        "body": json.dumps(error.to_problem(str(event.get("rawPath", ""))), default=str),
        "isBase64Encoded": False,
    }


def _resolve(app: APIGatewayHttpResolver, event: dict[str, Any], context: Any, who: caller.Caller) -> dict[str, Any]:
    """Route the request as `who`. A read answered on an assumed principal is only sent once its
    check passed; if the check found the token or membership changed, the request is answered
    again as the table says the caller is now."""
    result = _resolve_as(app, event, context, who)
    if caller.take_changed():
        defer_check(None)
        who = caller.authenticate(event, assume=False)
        result = _resolve_as(app, event, context, who)
    _count_use(who.principal)
    return result


def _resolve_as(app: APIGatewayHttpResolver, event: dict[str, Any], context: Any, who: caller.Caller) -> dict[str, Any]:
    token = _caller.set(who)
    try:
        result = app.resolve(event, context)
        # A read that never touched the table is checked now; a failed check is noted by it.
        with contextlib.suppress(caller.AccessChanged):
            get_store().settle_deferred()
        return result
    finally:
        _caller.reset(token)


def lambda_entry(app: APIGatewayHttpResolver) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The function's handler: tracing, logging context, metrics, the rate limit (counted before
    the resolver, so every answer carries its headers) and the invocation's extra headers."""

    @entry_point(correlation_paths.API_GATEWAY_HTTP)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        idempotency.register_lambda_context(context)
        token = _extra_headers.set({})
        caller.take_changed()  # nothing carried over from this thread's previous invocation
        try:
            try:
                who = caller.authenticate(event)
                _admit(event, who.principal)
                request_body.admit(event)
                defer_check(who.check)  # after the limiter, whose own writes need no check
            except AppError as refused:  # over the limit, or a body no route could read
                result = _problem_result(refused, event)
            except Exception:
                logger.exception("unexpected error")
                result = _problem_result(AppError("an unexpected error occurred; it has been logged"), event)
            else:
                result = _resolve(app, event, context, who)
            extra = _extra_headers.get() or {}
        finally:
            _extra_headers.reset(token)
            defer_check(None)
        if extra:
            # Headers the answer set itself (a 429's own figures) win over the invocation's.
            result["headers"] = {**extra, **(result.get("headers") or {})}
        return result

    return handler

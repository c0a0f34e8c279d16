"""The HTTP edge every function shares: resolver factory, the `{data, meta}` envelope, RFC 9457
problems for every failure, rate-limit headers, `Idempotency-Key`, and the Lambda entry point."""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Generic, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from pydantic import BaseModel, Field

from agentplane import idempotency, ratelimit
from agentplane.auth.principal import Principal
from agentplane.errors import AppError, BadRequest, Conflict, NotFound, Unprocessable
from agentplane.observability import logger, metrics
from agentplane.settings import get_settings
from agentplane.store import ConditionFailed, TransactionFailed

PROBLEM_JSON = "application/problem+json"
T = TypeVar("T")

# Headers to add to whatever response this invocation ends with (rate-limit figures).
_extra_headers: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("extra_headers", default=None)

Limit = Annotated[int, Query(ge=1, le=200, description="Page size (default 50, max 200)")]
Cursor = Annotated[str | None, Query(max_length=2048, description="Opaque cursor from meta.next_cursor")]


class PageMeta(BaseModel):
    next_cursor: str | None = None
    limit: int


class Data(BaseModel, Generic[T]):
    data: T


class DataList(BaseModel, Generic[T]):
    data: list[T]
    meta: PageMeta


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str = ""
    errors: list[dict[str, Any]] | None = Field(default=None)


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": title, "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    for status, title in (
        (400, "Bad request"), (401, "Unauthorized"), (403, "Forbidden"), (404, "Not found"),
        (409, "Conflict"), (422, "Validation failed"), (429, "Rate limited"),
    )
}  # fmt: skip


def ok(data: Any) -> Any:
    return {"data": data}


def created(data: Any) -> Response[Any]:
    return Response(status_code=201, content_type="application/json", body={"data": data})


def no_content() -> Response[Any]:
    return Response(status_code=204, content_type="application/json", body="")


def page(items: list[Any], next_cursor: str | None, limit: int) -> Any:
    return {"data": items, "meta": {"next_cursor": next_cursor, "limit": limit}}


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


def request_principal(app: APIGatewayHttpResolver) -> Principal:
    """The authenticated caller (401 on routes reached without the authorizer's context)."""
    return Principal.from_authorizer(_request_context(app).get("authorizer"))


def request_id(app: APIGatewayHttpResolver) -> str:
    return str(_request_context(app).get("requestId", ""))


def source_ip(app: APIGatewayHttpResolver) -> str:
    return str((_request_context(app).get("http") or {}).get("sourceIp", "unknown"))


def add_response_headers(headers: Mapping[str, str]) -> None:
    current = _extra_headers.get()
    if current is not None:
        current.update(headers)


def _rate_limit_and_idempotency(
    app: APIGatewayHttpResolver, next_middleware: Callable[..., Response[Any]]
) -> Response[Any]:
    event = app.current_event
    authorizer = _request_context(app).get("authorizer")
    # Behind the authorizer, an empty principal means a bad token: 401 before any route code.
    principal = Principal.from_authorizer(authorizer) if authorizer else None
    if principal is not None:
        decision = ratelimit.hit_principal(principal.id, get_settings().rate_limit_per_minute)
        add_response_headers(decision.headers())
    key = (event.headers or {}).get("idempotency-key")
    if principal is None or event.http_method != "POST" or not key:
        return next_middleware(app)
    if len(key) > 255:
        raise BadRequest("Idempotency-Key must be at most 255 characters")

    first_body: list[str] = []

    def call() -> dict[str, Any]:
        response = next_middleware(app)
        body = response.body if isinstance(response.body, str) else app._serializer(response.body or {})
        first_body.append(body)
        # The stored copy never holds a secret: a replay shows the resource, not its key again.
        return {"status": response.status_code, "content_type": response.content_type, "body": _without_secrets(body)}

    route = f"{event.http_method} {event.path}"
    stored = idempotency.run_once(principal.id, route, key, event.body, call)
    body = first_body[0] if first_body else stored["body"]
    return Response(status_code=stored["status"], content_type=stored["content_type"], body=body)


# Fields that carry a secret shown once (API keys, tokens, invites, shares).
_SECRET_RESPONSE_FIELDS = frozenset({"key", "token", "refresh_token", "secret"})
SHOWN_ONCE = "[shown once]"


def _without_secrets(body: str) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return body
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict) or not _SECRET_RESPONSE_FIELDS & data.keys():
        return body
    document["data"] = {k: (SHOWN_ONCE if k in _SECRET_RESPONSE_FIELDS and v else v) for k, v in data.items()}
    return json.dumps(document, separators=(",", ":"))


def limit_group(group: str, by: str = "user") -> Callable[..., Response[Any]]:
    """Route middleware enforcing a named limit ('auth' by IP, 'run-start' by user, ...)."""

    def middleware(app: APIGatewayHttpResolver, next_middleware: Callable[..., Response[Any]]) -> Response[Any]:
        if by == "ip":
            subject = source_ip(app)
        else:
            principal = request_principal(app)
            subject = principal.user_id or principal.id
        add_response_headers(ratelimit.hit_group(group, subject).headers())
        return next_middleware(app)

    return middleware


def create_app() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True)
    register_error_handlers(app)
    app.use(middlewares=[_rate_limit_and_idempotency])
    return app


def lambda_entry(app: APIGatewayHttpResolver) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The function's handler: logging context, metrics, and the invocation's extra headers."""

    @metrics.log_metrics(capture_cold_start_metric=True)
    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        idempotency.register_lambda_context(context)
        token = _extra_headers.set({})
        try:
            result = app.resolve(event, context)
            extra = _extra_headers.get() or {}
        finally:
            _extra_headers.reset(token)
        if extra:
            result.setdefault("headers", {}).update(extra)
        return result

    return handler  # type: ignore[no-any-return]

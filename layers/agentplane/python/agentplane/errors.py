"""The one error hierarchy. Every failure a caller can see is an AppError rendered as RFC 9457."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    status = 500
    title = "Internal Server Error"
    type_slug = "internal"

    def __init__(self, detail: str = "", **extensions: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extensions = {k: v for k, v in extensions.items() if v is not None}
        self.headers: dict[str, str] = {}

    @property
    def type_uri(self) -> str:
        return f"https://agentplane.dev/problems/{self.type_slug}"

    def to_problem(self, instance: str = "") -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
        }
        body.update(self.extensions)
        return body


class BadRequest(AppError):
    status, title, type_slug = 400, "Bad Request", "bad-request"


class InvalidCursor(BadRequest):
    type_slug = "invalid-cursor"


class Unauthorized(AppError):
    status, title, type_slug = 401, "Unauthorized", "unauthorized"


class Forbidden(AppError):
    status, title, type_slug = 403, "Forbidden", "forbidden"


class MissingScope(Forbidden):
    type_slug = "missing-scope"

    def __init__(self, scope: str) -> None:
        super().__init__(f"this call needs the '{scope}' scope", required_scope=scope)


class NotFound(AppError):
    status, title, type_slug = 404, "Not Found", "not-found"


class Conflict(AppError):
    status, title, type_slug = 409, "Conflict", "conflict"


class InvalidTransition(Conflict):
    type_slug = "invalid-transition"

    def __init__(self, detail: str, current_status: str, **extensions: Any) -> None:
        super().__init__(detail, current_status=current_status, **extensions)


class UnsupportedMediaType(AppError):
    status, title, type_slug = 415, "Unsupported Media Type", "unsupported-media-type"


class PreconditionFailed(AppError):
    status, title, type_slug = 412, "Precondition Failed", "precondition-failed"


class Unprocessable(AppError):
    status, title, type_slug = 422, "Unprocessable Content", "validation"


class PaymentRequired(AppError):
    status, title, type_slug = 402, "Payment Required", "payment-required"


class RateLimited(AppError):
    status, title, type_slug = 429, "Too Many Requests", "rate-limited"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.headers["Retry-After"] = str(retry_after)


class ServiceUnavailable(AppError):
    status, title, type_slug = 503, "Service Unavailable", "unavailable"

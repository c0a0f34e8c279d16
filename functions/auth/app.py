"""Auth family: /api/v1/auth/* and the GDPR erase of /api/v1/users/me."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response

from agentplane.http import (
    PROBLEM_RESPONSES,
    PUBLIC,
    create_app,
    created,
    lambda_entry,
    limit_group,
    no_content,
    ok,
    request_id,
    request_principal,
)
from agentplane.logic import accounts
from agentplane.models.auth import (
    DeviceToken,
    DeviceTokenRequest,
    EraseRequest,
    ForgotPasswordRequest,
    LoginRequest,
    LogoutRequest,
    Message,
    RefreshRequest,
    RegisterRequest,
    ResetPasswordRequest,
    Session,
    User,
)
from agentplane.models.envelope import Data

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)
# Unauthenticated routes are limited per client IP (AUTH_RATE_LIMIT_PER_MINUTE, 60 by default).
per_ip = [limit_group("auth", by="ip")]


@app.post(
    "/api/v1/auth/register",
    middlewares=per_ip,
    security=PUBLIC,
    responses={201: {"description": "Created"}, **PROBLEM_RESPONSES},
)
def register(body: RegisterRequest) -> Response[Data[User]]:
    return created(accounts.register(body, request_id(app)))


@app.post("/api/v1/auth/login", middlewares=per_ip, security=PUBLIC, responses=PROBLEM_RESPONSES)
def login(body: LoginRequest) -> Data[Session]:
    return ok(accounts.login(body))


@app.post(
    "/api/v1/auth/token",
    middlewares=per_ip,
    security=PUBLIC,
    responses={201: {"description": "Created"}, **PROBLEM_RESPONSES},
)
def device_token(body: DeviceTokenRequest) -> Response[Data[DeviceToken]]:
    return created(accounts.issue_device_token(body, request_id(app)))


@app.post("/api/v1/auth/refresh", middlewares=per_ip, security=PUBLIC, responses=PROBLEM_RESPONSES)
def refresh(body: RefreshRequest) -> Data[Session]:
    return ok(accounts.refresh_session(body.refresh_token))


@app.post("/api/v1/auth/forgot-password", middlewares=per_ip, security=PUBLIC, responses=PROBLEM_RESPONSES)
def forgot_password(body: ForgotPasswordRequest) -> Data[Message]:
    accounts.forgot_password(body.email)
    return ok(Message(message="if an account exists for this email, a reset link has been sent"))


@app.post("/api/v1/auth/reset-password", middlewares=per_ip, security=PUBLIC, responses=PROBLEM_RESPONSES)
def reset_password(body: ResetPasswordRequest) -> Data[Message]:
    accounts.reset_password(body, request_id(app))
    return ok(Message(message="password changed; every session was logged out"))


@app.post("/api/v1/auth/logout", responses=PROBLEM_RESPONSES)
def logout(body: LogoutRequest | None = None) -> Data[Message]:
    accounts.logout(request_principal(app), (body or LogoutRequest()).all_devices, request_id(app))
    return ok(Message(message="logged out"))


@app.get("/api/v1/auth/me", responses=PROBLEM_RESPONSES)
def auth_me() -> Data[User]:
    return ok(accounts.current_user(request_principal(app)))


@app.delete("/api/v1/users/me", responses={204: {"description": "Account erased"}, **PROBLEM_RESPONSES})
def erase_me(body: EraseRequest | None = None) -> Response[Any]:
    password = body.password if body else None
    accounts.erase_user(request_principal(app), password, request_id(app))
    return no_content()


lambda_handler = lambda_entry(app)

"""Accounts, sessions and device tokens."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, EmailStr, Field, StringConstraints, field_validator

from agentplane.models.common import Input, Output

# What an erased account's tombstone is called; nobody may take it.
ERASED_USERNAME = "deleted-user"


def _not_reserved(username: str) -> str:
    if username.lower() == ERASED_USERNAME:
        raise ValueError("this username is reserved")
    return username


Username = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,38}$"), AfterValidator(_not_reserved)
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=256)]
TokenName = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class RegisterRequest(Input):
    username: Username
    email: EmailStr
    password: Password
    terms_accepted: bool
    privacy_accepted: bool
    invite_code: Annotated[str, StringConstraints(max_length=200)] | None = None

    @field_validator("terms_accepted", "privacy_accepted")
    @classmethod
    def must_accept(cls, value: bool) -> bool:
        if not value:
            raise ValueError("must be accepted to create an account")
        return value


class LoginRequest(Input):
    email: EmailStr
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class DeviceTokenRequest(Input):
    """Sanctum-style: a named token for a device or CLI with chosen abilities."""

    email: EmailStr
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    name: TokenName = "device"
    abilities: list[str] = Field(default_factory=lambda: ["*"], max_length=50)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class RefreshRequest(Input):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=512)]


class LogoutRequest(Input):
    all_devices: bool = False


class ForgotPasswordRequest(Input):
    email: EmailStr


class ResetPasswordRequest(Input):
    token: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    password: Password


class EraseRequest(Input):
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None


class User(Output):
    id: str
    username: str
    email: str
    display_name: str | None = None
    avatar_url: str | None = None
    site_owner: bool = False
    created_at: str
    updated_at: str


class Session(Output):
    token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_at: str
    user: User


class DeviceToken(Output):
    id: str
    token: str
    name: str
    abilities: list[str]
    expires_at: str | None = None


class Message(Output):
    ok: bool = True
    message: str

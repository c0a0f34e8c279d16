"""The caller's own account: profile, personal access tokens and push devices."""

from __future__ import annotations

import zoneinfo
from enum import StrEnum
from functools import lru_cache
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, StringConstraints, field_validator

from agentplane.models.auth import TokenName, User, Username
from agentplane.models.common import Input, Output, ShortText

DisplayName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Locale = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}$")]
AvatarUrl = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
Timezone = Annotated[str, StringConstraints(min_length=1, max_length=64)]


@lru_cache(maxsize=1)
def _known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


class ProfileUpdate(Input):
    """PATCH /me: only the fields sent change; `null` clears an optional field."""

    username: Username | None = None
    display_name: DisplayName | None = None
    avatar_url: AvatarUrl | None = None
    bio: ShortText | None = None
    timezone: Timezone | None = None
    locale: Locale | None = None

    @field_validator("username")
    @classmethod
    def username_cannot_be_cleared(cls, value: str | None) -> str | None:
        if value is None:
            raise ValueError("a username cannot be removed")
        return value

    @field_validator("avatar_url")
    @classmethod
    def must_be_web_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("timezone")
    @classmethod
    def must_be_iana_zone(cls, value: str | None) -> str | None:
        if value is not None and value not in _known_timezones():
            raise ValueError("must be an IANA time zone name such as 'Europe/Paris'")
        return value


class Profile(User):
    bio: str | None = None
    timezone: str | None = None
    locale: str | None = None
    terms_accepted_at: str | None = None
    privacy_accepted_at: str | None = None


class PersonalAccessTokenCreate(Input):
    name: TokenName
    scopes: list[str] = Field(default_factory=lambda: ["*"], min_length=1, max_length=50)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class PersonalAccessToken(Output):
    """A personal access token as lists show it: never the secret."""

    id: str
    name: str
    scopes: list[str]
    origin: str = "personal"  # personal (POST /me/personal-access-tokens) or device (POST /auth/token)
    created_at: str
    last_used_at: str | None = None
    expires_at: str | None = None


class PersonalAccessTokenCreated(PersonalAccessToken):
    """Returned once, at creation: `token` is the secret and is never shown again."""

    token: str


class PushPlatform(StrEnum):
    ios = "ios"
    android = "android"
    web = "web"


class PushDeviceRegister(Input):
    platform: PushPlatform
    push_token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    name: Annotated[str, StringConstraints(max_length=100)] = ""


class PushDevice(Output):
    id: str
    platform: PushPlatform
    name: str = ""
    push_token_hint: str
    created_at: str
    updated_at: str

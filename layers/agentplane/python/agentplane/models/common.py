"""Model bases every family uses."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class Input(BaseModel):
    """A request body: unknown fields are refused, so a typo never silently does nothing."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, defer_build=True)


class Output(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)


Name = Annotated[str, StringConstraints(min_length=1, max_length=100)]
ShortText = Annotated[str, StringConstraints(max_length=500)]
LongText = Annotated[str, StringConstraints(max_length=20000)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class ListQuery(BaseModel):
    """The query string of a list: its page size and cursor. A list with filters extends it with
    them, so each list's query is one model (`Annotated[TeamQuery, Query()]`)."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    limit: int = Field(default=50, ge=1, le=200, description="Page size (default 50, max 200)")
    cursor: str | None = Field(default=None, max_length=2048, description="Opaque cursor from meta.next_cursor")

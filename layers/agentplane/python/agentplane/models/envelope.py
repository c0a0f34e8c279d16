"""The shapes every answer comes in: `{data}`, `{data, meta}` for a page, and the RFC 9457 problem."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


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

"""Access patterns: every way the code reads the table is one named query function, declared
with `@access_pattern` beside the entity it reads. docs/access-patterns.md is generated from
this registry, so the table of patterns is the code's own list."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from agentplane.entities.base import Entity

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class AccessPattern:
    function: str  # module.qualname of the query function
    # The entity read, or the kind's name for a query that reads another family's items as the
    # table holds them (importing that family's entities would cost its cold start).
    entity: type[Entity] | str
    index: str | None  # None: the table itself
    partition: Callable[..., str]  # the key builder of the partition it reads
    sort: str  # how the sort key narrows the partition ("prefix TEAM#", "range", "" for all)
    purpose: str


PATTERNS: list[AccessPattern] = []


def access_pattern(
    entity: type[Entity] | str, *, partition: Callable[..., str], index: str | None = None, sort: str = ""
) -> Callable[[F], F]:
    """Register the decorated function as the one query of an access pattern of `entity`; its
    docstring's first sentence says what the pattern answers."""

    def register(function: F) -> F:
        doc = " ".join((function.__doc__ or "").split())
        PATTERNS.append(
            AccessPattern(f"{function.__module__}.{function.__qualname__}", entity, index, partition, sort, doc)
        )
        return function

    return register

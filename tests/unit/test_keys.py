"""Single-table keys: every builder of a workspace's items keeps the tenant in the partition, and
key prefixes live in keys.py alone."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentplane import keys

LAYER = Path(keys.__file__).resolve().parent


def _builders() -> list[tuple[str, Callable[..., Any]]]:
    return [
        (name, function)
        for name, function in inspect.getmembers(keys, inspect.isfunction)
        if function.__module__ == keys.__name__ and not name.startswith("_") and name != "key"
    ]


def _arguments(function: Callable[..., Any], ws_id: str) -> list[Any]:
    values: list[Any] = []
    for position, parameter in enumerate(inspect.signature(function).parameters.values()):
        if parameter.name == "ws_id":
            values.append(ws_id)
        elif parameter.annotation in (int, "int"):
            values.append(7 + position)
        else:
            values.append(f"{parameter.name}-{position}")
    return values


# Partitions that are global by design, each for a reason its builder's docstring gives.
GLOBAL_BY_DESIGN = {
    "realtime_connection_subscription_key",  # a connection's own partition: a disconnect reads it whole
}
WORKSPACE_BUILDERS = [
    (name, function)
    for name, function in _builders()
    if "ws_id" in inspect.signature(function).parameters
    and inspect.signature(function).return_annotation not in (int, "int")
    and name not in GLOBAL_BY_DESIGN
]


def test_every_workspace_builder_is_covered() -> None:
    assert len(WORKSPACE_BUILDERS) > 50


@pytest.mark.parametrize(("name", "builder"), WORKSPACE_BUILDERS, ids=[n for n, _ in WORKSPACE_BUILDERS])
def test_a_workspace_builder_puts_the_workspace_in_the_partition(name: str, builder: Callable[..., Any]) -> None:
    built = builder(*_arguments(builder, "ws_tenant_a"))
    other = builder(*_arguments(builder, "ws_tenant_b"))
    partition = built["PK"] if isinstance(built, dict) else built[0] if isinstance(built, tuple) else built
    if isinstance(built, tuple):
        # A sort-key range inside a partition the caller names with another builder.
        pytest.skip("a sort-key range, not a partition")
    assert "ws_tenant_a" in partition, f"{name} builds {built!r}: the workspace is not in its partition"
    assert built != other, f"{name} builds the same key for two workspaces"


def test_global_builders_take_no_workspace() -> None:
    for name in ("user_key", "token_key", "unique_key", "site_settings_key", "rate_key"):
        assert "ws_id" not in inspect.signature(getattr(keys, name)).parameters


def test_no_key_prefix_is_written_outside_keys_py() -> None:
    """An inline "TASK#" anywhere but keys.py is a key built by hand."""
    prefix = re.compile(r"[\"'][A-Z][A-Z_]{2,}#")
    offenders = []
    for path in LAYER.rglob("*.py"):
        if path.name == "keys.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if prefix.search(line):
                offenders.append(f"{path.relative_to(LAYER)}:{number}: {line.strip()}")
    assert offenders == [], "key prefixes outside keys.py:\n" + "\n".join(offenders)

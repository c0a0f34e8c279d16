"""docs/access-patterns.md, generated from the registry of access patterns: `make access-patterns`
(`python -m tools.access_patterns`).

Every query of the table is a function registered with `@access_pattern` beside the entity it
reads (agentplane/entities/patterns.py), so importing every entity module fills `PATTERNS` with
the code's own list. Key shapes are rendered by calling the key builders with placeholder names;
the item kinds' keys by asking each Entity class where an item with placeholder attributes lives.

`unregistered()` finds the query functions of entity modules that are not registered (the
repository's tests require there are none), so the document cannot miss a way the table is read.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devstack.lambdas import LAYER_PATH, ensure_layer_on_path
from devstack.template import ROOT

if TYPE_CHECKING:
    from agentplane.entities.base import Entity
    from agentplane.entities.patterns import AccessPattern

ENTITIES = LAYER_PATH / "agentplane" / "entities"
OUTPUT = ROOT / "docs" / "access-patterns.md"
REGENERATE = "make access-patterns  (or: python -m tools.access_patterns)"
# Modules of the entity package that hold no item kind and no query.
FRAMEWORK = frozenset({"__init__", "base", "patterns"})
# Calls that read the table: the store's entity and dict APIs, and pynamodb's own.
QUERY_CALLS = frozenset({"select", "fill", "query", "scan"})
# Numbers are formatted by the code (zero padding), so a sample number stands in for each one.
FIRST_SAMPLE = 7


# --- the registry ---------------------------------------------------------------------------------


def entity_modules() -> list[str]:
    return sorted(
        f"agentplane.entities.{module.name}"
        for module in pkgutil.iter_modules([str(ENTITIES)])
        if module.name not in FRAMEWORK
    )


def patterns() -> list[AccessPattern]:
    """Every registered access pattern, by module and then in the order the module defines them."""
    ensure_layer_on_path()
    for module in entity_modules():
        importlib.import_module(module)
    from agentplane.entities.patterns import PATTERNS

    order = {pattern.function: index for index, pattern in enumerate(PATTERNS)}
    return sorted(PATTERNS, key=lambda p: (p.function.rsplit(".", 1)[0], order[p.function]))


def kinds() -> list[type[Entity]]:
    """Every item kind (an Entity class with a discriminator), by module and definition order."""
    patterns()  # imports every entity module
    from agentplane.entities.base import Entity

    discriminator = Entity._get_discriminator_attribute()
    assert discriminator is not None
    found = [
        cls
        for cls in discriminator.get_registered_subclasses(Entity)
        if cls.__module__.startswith("agentplane.entities.")
    ]
    return sorted(found, key=lambda cls: (cls.__module__, inspect.getsourcelines(cls)[1]))


# --- rendering key shapes -------------------------------------------------------------------------


def _unsample(value: str, samples: dict[str, int]) -> str:
    """`value` with each sample number turned back into its placeholder (`{number:05d}` when the
    code pads it)."""
    for name, sample in samples.items():

        def placeholder(match: re.Match[str], name: str = name, sample: int = sample) -> str:
            width = len(match.group(0))
            return f"{{{name}:0{width}d}}" if width > len(str(sample)) else f"{{{name}}}"

        value = re.sub(rf"(?<!\d)0*{sample}(?!\d)", placeholder, value)
    return value


def partition_shape(builder: Callable[..., str]) -> str:
    """The partition key a builder makes, with its parameter names as placeholders."""
    arguments: list[Any] = []
    samples: dict[str, int] = {}
    for parameter in inspect.signature(builder).parameters.values():
        if parameter.annotation in ("int", int):
            samples[parameter.name] = FIRST_SAMPLE + len(samples)
            arguments.append(samples[parameter.name])
        else:
            arguments.append(f"{{{parameter.name}}}")
    return _unsample(builder(*arguments), samples)


def primary_key_shape(cls: type[Entity]) -> tuple[str, str] | None:
    """Where an item of this kind lives, with its attribute names as placeholders (None for a
    kind kept by key alone, which does not say where it lives)."""
    from pynamodb.attributes import BooleanAttribute, NumberAttribute, TTLAttribute, UnicodeAttribute

    from agentplane.entities.base import Entity

    if cls.where is Entity.where:
        return None
    item = cls()
    samples: dict[str, int] = {}
    for name, attribute in cls.get_attributes().items():
        if name in ("PK", "SK", "entity") or name.startswith("GSI") or isinstance(attribute, TTLAttribute):
            continue
        if isinstance(attribute, NumberAttribute):
            samples[name] = FIRST_SAMPLE + len(samples)
            setattr(item, name, samples[name])
        elif isinstance(attribute, BooleanAttribute):
            setattr(item, name, False)
        elif isinstance(attribute, UnicodeAttribute) or attribute.attr_type == "S":
            setattr(item, name, f"{{{name}}}")
    key = item.where().key
    # A part built from no attribute (a kind whose key is chosen by its writer) reads as None.
    pk, sk = (_unsample(key[part], samples).replace("None", "…") for part in ("PK", "SK"))
    return pk, sk


# --- the document ---------------------------------------------------------------------------------


def purpose(doc: str) -> str:
    """The first sentence of a query's docstring: what the pattern answers."""
    first = re.split(r"(?<=[.!?])\s+(?=[A-Z`(])", doc.strip(), maxsplit=1)[0]
    return first or "—"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _kind(pattern: AccessPattern) -> str:
    return pattern.entity if isinstance(pattern.entity, str) else pattern.entity.kind()


def _pattern_row(pattern: AccessPattern) -> str:
    module, name = pattern.function.removeprefix("agentplane.entities.").rsplit(".", 1)
    return (
        f"| {_kind(pattern)} | `{module}.{name}` | {pattern.index or 'table'} | "
        f"`{partition_shape(pattern.partition)}` | {_cell(pattern.sort) or 'all'} | {_cell(purpose(pattern.purpose))} |"
    )


def _kind_row(cls: type[Entity], read_through: list[str]) -> str:
    shape = primary_key_shape(cls)
    pk, sk = (f"`{shape[0]}`", f"`{shape[1]}`") if shape else ("by key", "by key")
    module = cls.__module__.removeprefix("agentplane.entities.")
    return f"| {cls.kind()} | `{module}.{cls.__name__}` | {pk} | {sk} | {', '.join(read_through) or '—'} |"


def render() -> str:
    registered = patterns()
    indexes: dict[str, list[str]] = {}
    for pattern in registered:
        where = pattern.index or "table"
        if where not in indexes.setdefault(_kind(pattern), []):
            indexes[_kind(pattern)] = sorted([*indexes[_kind(pattern)], where], key=lambda name: name != "table")
    lines = [
        "# Access patterns",
        "",
        "<!-- Generated from the @access_pattern registry (layers/agentplane/python/agentplane/entities/)"
        " by `make access-patterns`; do not edit. -->",
        "",
        "agentplane keeps everything in one DynamoDB table. Items have `PK`/`SK`; three overloaded indexes,",
        "`GSI1` (`GSI1PK`/`GSI1SK`), `GSI2` (`GSI2PK`/`GSI2SK`) and `GSI3` (`GSI3PK`/`GSI3SK`),",
        "serve the other access paths; `ttl` (epoch seconds) expires short-lived items and `entity`",
        "names the item's kind. Every key of a workspace-owned item contains the workspace id, so no",
        "query reaches another workspace. Request paths read with GetItem, BatchGetItem or one Query",
        "at a time; never Scan.",
        "",
        "## Queries",
        "",
        "Every way the code reads the table is one query function, registered with `@access_pattern`",
        "beside the entity it reads. The partition key is shown as its builder in `agentplane.keys`",
        "makes it, with the builder's parameters as placeholders; the sort-key column says how the",
        "query narrows the partition (`prefix …`: `begins_with`, `range …`: `BETWEEN`, `all`: the",
        "whole partition). Reads by key (GetItem, BatchGetItem) need no pattern: every kind's key is",
        "in the table below.",
        "",
        "| kind | query | index | partition key | sort key | purpose |",
        "|---|---|---|---|---|---|",
        *(_pattern_row(pattern) for pattern in registered),
        "",
        "## Item kinds",
        "",
        "Each kind is an `Entity` class; its `where()` builds the key from the item's own attributes",
        "(shown as placeholders; `…` is a part the writer chooses, held only in the key). “By key”",
        "kinds are kept by a key their owner builds and do not say where they live. The last column",
        "names where the queries above read the kind (none: it is only read by key).",
        "",
        "| kind | entity | PK | SK | queried on |",
        "|---|---|---|---|---|",
        *(_kind_row(cls, indexes.get(cls.kind(), [])) for cls in kinds()),
    ]
    return "\n".join(lines) + "\n"


# --- the check that every query is registered -------------------------------------------------------


def _functions(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef]]:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            yield node.name, node
        elif isinstance(node, ast.ClassDef):
            for inner in node.body:
                if isinstance(inner, ast.FunctionDef):
                    yield f"{node.name}.{inner.name}", inner


def unregistered_in(source: str) -> list[str]:
    """The public functions of an entity module's source that read the table (a store or
    pynamodb query, directly or through the module's private helpers) without `@access_pattern`."""
    functions = dict(_functions(ast.parse(source)))
    direct: dict[str, bool] = {}
    helpers: dict[str, set[str]] = {}
    for name, node in functions.items():
        calls = [call for call in ast.walk(node) if isinstance(call, ast.Call)]
        direct[name] = any(isinstance(c.func, ast.Attribute) and c.func.attr in QUERY_CALLS for c in calls)
        helpers[name] = {c.func.id for c in calls if isinstance(c.func, ast.Name) and c.func.id in functions}

    def queries(name: str, seen: frozenset[str] = frozenset()) -> bool:
        return direct[name] or any(queries(h, seen | {name}) for h in helpers[name] - seen)

    def registered(node: ast.FunctionDef) -> bool:
        return any(re.match(r"access_pattern\b", ast.unparse(decorator)) for decorator in node.decorator_list)

    return [
        name
        for name, node in functions.items()
        if not name.rsplit(".", 1)[-1].startswith("_") and queries(name) and not registered(node)
    ]


def unregistered(directory: Path = ENTITIES) -> list[str]:
    """`module.function` for each unregistered query function of the entity modules."""
    return [
        f"{path.stem}.{name}"
        for path in sorted(directory.glob("*.py"))
        if path.stem not in FRAMEWORK
        for name in unregistered_in(path.read_text())
    ]


def main() -> int:
    missing = unregistered()
    if missing:
        print(f"query functions without @access_pattern: {', '.join(missing)}", file=sys.stderr)
        return 1
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({len(patterns())} access patterns, {len(kinds())} item kinds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

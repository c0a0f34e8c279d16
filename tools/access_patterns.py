"""docs/access-patterns.md, generated from the key builders in agentplane/keys.py:
`make access-patterns` (`python -m tools.access_patterns`).

Each builder is called with its parameter names as placeholders, so the table shows the exact key
shapes the code writes; "used by" lists the modules that call the builder.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from typing import Any

from devstack.lambdas import LAYER_PATH, ensure_layer_on_path
from devstack.template import ROOT

KEYS_FILE = LAYER_PATH / "agentplane" / "keys.py"
OUTPUT = ROOT / "docs" / "access-patterns.md"
REGENERATE = "make access-patterns  (or: python -m tools.access_patterns)"
GENERIC = {"key"}  # the raw (pk, sk) helper every builder uses, not an access pattern
SUFFIXES = ("_key", "_pk", "_gsi", "_prefix")


@dataclass(frozen=True)
class Builder:
    name: str
    params: list[str]
    returns: str
    doc: str
    numeric: frozenset[str] = frozenset()  # parameters annotated int (sprint numbers, event ids)


def builders(source: str | None = None) -> list[Builder]:
    """Every public key builder of keys.py, in file order."""
    tree = ast.parse(source if source is not None else KEYS_FILE.read_text())
    found = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or node.name.startswith("_") or node.name in GENERIC:
            continue
        returns = ast.unparse(node.returns) if node.returns else ""
        doc = " ".join((ast.get_docstring(node) or "").split())
        numeric = frozenset(
            a.arg for a in node.args.args if a.annotation is not None and ast.unparse(a.annotation) == "int"
        )
        found.append(Builder(node.name, [arg.arg for arg in node.args.args], returns, doc, numeric))
    return found


def prefix_constants() -> list[tuple[str, str]]:
    tree = ast.parse(KEYS_FILE.read_text())
    found = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name) and "#" in node.value.value:
                    found.append((target.id, node.value.value))
    return found


def _users() -> dict[str, list[str]]:
    """Builder name -> the modules (layer and functions) that call it."""
    sources = [p for p in (LAYER_PATH / "agentplane").rglob("*.py") if p != KEYS_FILE]
    sources += sorted((ROOT / "functions").glob("*/*.py"))
    used: dict[str, list[str]] = {}
    names = {b.name for b in builders()}
    for path in sorted(sources):
        text = path.read_text()
        if "keys" not in text:
            continue
        module = (
            str(path.relative_to(LAYER_PATH).with_suffix("")).replace("/", ".")
            if path.is_relative_to(LAYER_PATH)
            else str(path.relative_to(ROOT))
        )
        for name in names:
            if re.search(rf"\b{name}\(", text):
                used.setdefault(name, []).append(module)
    return used


def _entity(name: str) -> str:
    for suffix in SUFFIXES:
        name = name.removesuffix(suffix)
    return name.replace("_", " ")


def _index(builder: Builder) -> str:
    mentioned = re.search(r"\bGSI[123]\b", builder.doc)
    if mentioned:
        return mentioned.group(0)
    if builder.returns == "Key":
        return "table"
    return "table (SK prefix)" if builder.name.endswith("_prefix") else "table"


def _replace_sample(value: Any, sample: int, param: str) -> Any:
    if isinstance(value, dict):
        return {k: _replace_sample(v, sample, param) for k, v in value.items()}
    return re.sub(rf"0*{sample}\b", f"{{{param}}}", str(value)) if isinstance(value, str) else value


def _row(builder: Builder, used_by: list[str]) -> str:
    ensure_layer_on_path()
    from agentplane import keys

    # Numbers are formatted by the builder (zero padding), so a sample number stands in for them.
    sample = 7
    value = getattr(keys, builder.name)(
        *[sample if param in builder.numeric else f"{{{param}}}" for param in builder.params]
    )
    if builder.numeric:
        (param,) = sorted(builder.numeric)[:1]
        value = _replace_sample(value, sample, param)
    if isinstance(value, dict):
        pk, sk = f"`{value['PK']}`", f"`{value['SK']}`"
    elif builder.name.endswith("_prefix"):
        pk, sk = "", f"`{value}`…"
    else:
        pk, sk = f"`{value}`", ""
    call = f"`{builder.name}({', '.join(builder.params)})`"
    users = ", ".join(f"`{user}`" for user in used_by) or "—"
    purpose = builder.doc.replace("|", "\\|") or "—"
    return f"| {_entity(builder.name)} | {call} | {pk} | {sk} | {_index(builder)} | {purpose} | {users} |"


def render() -> str:
    used = _users()
    lines = [
        "# Access patterns",
        "",
        "<!-- Generated from layers/agentplane/python/agentplane/keys.py by `make access-patterns`; do not edit. -->",
        "",
        "agentplane keeps everything in one DynamoDB table. Items have `PK`/`SK`; three overloaded indexes,",
        "`GSI1` (`GSI1PK`/`GSI1SK`), `GSI2` (`GSI2PK`/`GSI2SK`) and `GSI3` (`GSI3PK`/`GSI3SK`),",
        "serve the other access paths; `ttl`",
        "(epoch seconds) expires short-lived items and `entity` names the item's kind. Every key of a",
        "workspace-owned item contains the workspace id, so no query built from these builders reaches",
        "another workspace. Request paths read with GetItem, BatchGetItem or one Query; never Scan.",
        "",
        "For builders that return a string, the value is a partition key (on the table or on the index",
        "named) or, for `*_prefix`, the sort-key prefix a Query uses with `begins_with`.",
        "",
        "| entity | builder | PK | SK | index | purpose | used by |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [_row(builder, used.get(builder.name, [])) for builder in builders()]
    lines += ["", "## Key prefixes", "", "| constant | value |", "|---|---|"]
    lines += [f"| `{name}` | `{value}` |" for name, value in prefix_constants()]
    return "\n".join(lines) + "\n"


def main() -> int:
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({len(builders())} key builders)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

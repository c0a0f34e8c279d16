"""Imports only point down: handler → logic → store, with models as plain shapes beside them.

The layer never reaches up into what deploys or exercises it, a model never imports the edge or the
domain, the HTTP edge knows no family, the store knows no domain, and a deployed function never
carries the local stack. Every AWS client the layer calls comes from one registry. Imports made
inside functions and under TYPE_CHECKING count as much as those at the top of a module.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "agentplane" / "python"
FUNCTIONS = ROOT / "functions"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # what it imports, dotted: `from a import b` is `a.b`
    path: Path

    def __str__(self) -> str:
        return f"{self.module}:{self.target}"


def _module_name(path: Path, base: Path) -> str:
    parts = path.relative_to(base).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(tree: ast.AST, package: str) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing module's package
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            yield from (base if alias.name == "*" else f"{base}.{alias.name}" for alias in node.names)


def _imports_under(directory: Path, base: Path) -> list[Import]:
    found = []
    for path in sorted(directory.rglob("*.py")):
        module = _module_name(path, base)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        found += [Import(module, target, path) for target in _targets(tree, package)]
    return found


@cache
def layer_imports() -> tuple[Import, ...]:
    return tuple(_imports_under(LAYER / "agentplane", LAYER))


@cache
def function_imports() -> tuple[Import, ...]:
    return tuple(_imports_under(FUNCTIONS, ROOT))


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def offending(imports: tuple[Import, ...], importer: str, forbidden: tuple[str, ...]) -> list[str]:
    """`module:import` for each import of `importer` (a module or package) that reaches `forbidden`."""
    return sorted(
        str(found)
        for found in imports
        if _within(found.module, importer) and any(_within(found.target, package) for package in forbidden)
    )


def test_the_layer_never_imports_what_deploys_or_exercises_it():
    bad = offending(layer_imports(), "agentplane", ("functions", "devstack", "bench", "tests"))
    assert not bad, "the layer imports functions, devstack, bench or tests:\n" + "\n".join(bad)


def test_models_never_import_the_edge_the_logic_the_store_or_access():
    forbidden = ("agentplane.http", "agentplane.logic", "agentplane.store", "agentplane.access")
    bad = offending(layer_imports(), "agentplane.models", forbidden)
    assert not bad, "models import what is above or beside them:\n" + "\n".join(bad)


def test_the_http_edge_never_imports_logic():
    bad = offending(layer_imports(), "agentplane.http", ("agentplane.logic",))
    assert not bad, "agentplane.http imports logic:\n" + "\n".join(bad)


def test_the_store_never_imports_logic_models_or_the_edge():
    forbidden = ("agentplane.logic", "agentplane.models", "agentplane.http")
    bad = offending(layer_imports(), "agentplane.store", forbidden)
    assert not bad, "agentplane.store imports logic, models or http:\n" + "\n".join(bad)


def test_no_deployed_function_imports_the_local_stack():
    bad = sorted(
        str(found) for found in function_imports() if any(_within(found.target, p) for p in ("devstack", "tools"))
    )
    assert not bad, "functions import the local stack or its tools:\n" + "\n".join(bad)


def _builds_a_client(call: ast.Call) -> bool:
    """`boto3.client(…)`, `boto3.resource(…)`, a session of its own (`boto3.Session(…)`,
    botocore's) or a client made from one (`….create_client(…)`)."""
    name = ast.unparse(call.func)
    sessions = ("boto3.Session", "boto3.session.Session", "botocore.session.Session", "botocore.session.get_session")
    return name in ("boto3.client", "boto3.resource", *sessions) or name.endswith(".create_client")


def test_only_the_client_registry_builds_aws_clients():
    building = []
    for path in sorted((LAYER / "agentplane").rglob("*.py")):
        module = _module_name(path, LAYER)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and _builds_a_client(node) and module != "agentplane.clients":
                building.append(f"{module}:{ast.unparse(node.func)} (line {node.lineno})")
    assert not building, "AWS clients built outside agentplane.clients:\n" + "\n".join(building)


def test_reset_forgets_every_client_the_registry_built():
    from agentplane import clients

    builders = [
        value
        for name, value in vars(clients).items()
        if callable(value) and hasattr(value, "cache_clear") and getattr(value, "__module__", "") == clients.__name__
    ]
    for builder in builders:
        arguments = ["https://api.execute-api.us-east-1.amazonaws.com/dev"] * len(inspect.signature(builder).parameters)
        assert builder(*arguments) is builder(*arguments)  # built once, then kept

    clients.reset()

    kept = sorted(builder.__name__ for builder in builders if builder.cache_info().currsize)
    assert not kept, "clients.reset() leaves these clients built:\n" + "\n".join(kept)


# Items of any kind as plain dicts: the workspace export and import, and nothing else of the layer.
RAW_ITEM_USERS = ("agentplane.raw_items", "agentplane.logic.transfer")


def test_only_the_export_and_import_handle_items_as_plain_dicts():
    bad = sorted(
        str(found)
        for found in layer_imports()
        if _within(found.target, "agentplane.raw_items") and found.module not in RAW_ITEM_USERS
    )
    assert not bad, "modules of the layer import agentplane.raw_items:\n" + "\n".join(bad)


def test_the_store_answers_entities_only():
    from agentplane import store

    dict_api = {"Expr", "Update", "Page", "attr_eq", "attr_in", "exists", "not_exists", "serialize", "deserialize"}
    assert not dict_api & set(vars(store)), "agentplane.store still has its dict API"
    assert not {"get", "get_many", "put", "update", "delete", "query"} & set(dir(store.Store))
    assert not {"put", "update", "delete", "check"} & set(dir(store.Transaction))


def _imports_at_module_level(tree: ast.Module) -> Iterator[str]:
    for node in tree.body:  # top-level statements only (TYPE_CHECKING blocks hold no runtime import)
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_no_module_of_the_layer_imports_boto3_when_it_is_imported():
    """boto3 costs every function a tenth of a second of cold start for nothing it uses: clients
    come from botocore, and only the plain-dict serializer of export and import loads boto3."""
    eager = []
    for path in sorted((LAYER / "agentplane").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        if any(_within(target, "boto3") for target in _imports_at_module_level(tree)):
            eager.append(_module_name(path, LAYER))
    assert not eager, "modules import boto3 at import time:\n" + "\n".join(eager)
    lazy = sorted({found.module for found in layer_imports() if _within(found.target, "boto3")})
    assert lazy == ["agentplane.raw_items"], lazy

"""Imports point one way: deployed code never imports the local stack or the tools, the local stack
never imports the tools, and no module of either imports itself back through the others (lazy and
type-checking imports counted)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOYED = [ROOT / "functions", ROOT / "layers"]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def imported(path: Path) -> set[str]:
    """Every module the file imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


def graph(*packages: str) -> dict[str, set[str]]:
    modules = {module_name(path): path for package in packages for path in (ROOT / package).rglob("*.py")}
    return {name: {other for other in imported(path) if other in modules} - {name} for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Each set of modules that import each other round (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in edges[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while (popped := stack.pop()) != module:
                component.append(popped)
            if component:
                found.append(sorted([module, *component]))

    for module in edges:
        if module not in index:
            visit(module)
    return found


def importers(folders: list[Path], packages: tuple[str, ...]) -> dict[str, list[str]]:
    """File -> the modules of `packages` it imports, for each file that imports any."""
    found = {}
    for path in sorted(p for folder in folders for p in folder.rglob("*.py")):
        names = sorted(name for name in imported(path) if name.split(".")[0] in packages)
        if names:
            found[str(path.relative_to(ROOT))] = names
    return found


def test_deployed_code_imports_neither_the_local_stack_nor_the_tools() -> None:
    assert importers(DEPLOYED, ("devstack", "tools")) == {}


def test_the_local_stack_imports_no_tool() -> None:
    assert importers([ROOT / "devstack"], ("tools",)) == {}


def test_no_module_of_the_local_stack_or_the_tools_imports_itself_back() -> None:
    assert cycles(graph("devstack", "tools")) == []


def test_a_cycle_would_be_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]

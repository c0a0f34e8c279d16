"""A module imported when first used, for code paths most invocations of a function never take
(the module would otherwise weigh on every cold start). Type checkers see the module itself:

    if TYPE_CHECKING:
        from agentplane.logic.deploy import runs as deploy_runs
    else:
        deploy_runs = lazy_module("agentplane.logic.deploy.runs")
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class _LazyModule:
    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)


def lazy_module(name: str) -> Any:
    return _LazyModule(name)

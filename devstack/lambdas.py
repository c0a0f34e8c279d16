"""Running the functions in-process, the way Lambda runs them.

Each function keeps a pool of instances (its module loaded separately), and an instance serves one
invocation at a time, as a Lambda execution environment does. Concurrent calls therefore get
separate instances with separate module state, exactly like concurrent Lambda invocations.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from devstack import patches
from devstack.template import ROOT, Function

LAYER_PATH = ROOT / "layers" / "agentplane" / "python"
_counter = itertools.count()


def ensure_layer_on_path() -> None:
    """What Lambda does with /opt/python: the shared layer is importable by every function."""
    if str(LAYER_PATH) not in sys.path:
        sys.path.insert(0, str(LAYER_PATH))


@dataclass
class LambdaContext:
    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int = 512
    timeout_seconds: int = 15

    def __post_init__(self) -> None:
        self._deadline = time.time() + self.timeout_seconds
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"
        self.function_version = "$LATEST"
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


class _Instance:
    def __init__(self, function: Function) -> None:
        ensure_layer_on_path()
        patches.apply("aws-lambda-powertools")  # instances of one function share the process
        module_file, attribute = function.handler.rsplit(".", 1)
        path = function.code_uri / f"{module_file}.py"
        name = f"agentplane_fn_{function.name}_{next(_counter)}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # pydantic resolves annotations through sys.modules
        spec.loader.exec_module(module)
        self.module: ModuleType = module
        self.handler = getattr(module, attribute)


class FunctionPool:
    def __init__(self, function: Function, max_instances: int = 16) -> None:
        self.function = function
        self._idle: list[_Instance] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_instances)

    def invoke(self, event: dict[str, Any]) -> Any:
        with self._slots:
            with self._lock:
                instance = self._idle.pop() if self._idle else None
            if instance is None:
                instance = _Instance(self.function)
            try:
                context = LambdaContext(self.function.physical_name, str(uuid.uuid4()))
                return instance.handler(event, context)
            finally:
                with self._lock:
                    self._idle.append(instance)


class Lambdas:
    """Every function of the template, invocable by logical id or by code folder name."""

    def __init__(self, functions: dict[str, Function]) -> None:
        self._pools = {logical_id: FunctionPool(function) for logical_id, function in functions.items()}
        # The code folder's name, unless two functions share the folder (see Function.physical_name).
        self._by_name = {pool.function.physical_name: pool for pool in self._pools.values()}

    def invoke(self, function: Function | str, event: dict[str, Any]) -> Any:
        key = function if isinstance(function, str) else function.logical_id
        pool = self._pools.get(key) or self._by_name[key]
        return pool.invoke(event)

    def find(self, reference: str) -> Function | None:
        """The function a name, logical id or ARN (with or without a qualifier) points at."""
        name = reference
        if reference.startswith("arn:"):
            parts = reference.split(":")
            name = parts[6] if len(parts) > 6 else ""
        else:
            name = reference.split(":", 1)[0]
        pool = self._pools.get(name) or self._by_name.get(name)
        return pool.function if pool else None

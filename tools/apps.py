"""The functions' Powertools resolvers, read from the code: which routes each serves, the body
model of each route, and a small valid sample body for it.

The OpenAPI generator, the sample events, the template checks and the bench all start here, so
none of them keeps its own list of routes.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import typing
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

from devstack import template
from devstack.lambdas import ensure_layer_on_path

# What a function needs to be importable outside Lambda; never valid anywhere real.
IMPORT_ENVIRONMENT = {
    "TABLE_NAME": "agentplane-table",
    "SIGNING_SECRET": "offline-signing-secret-0123456789",
    "RUN_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:agentplane-runs",
    "KMS_KEY_ID": "offline-key",
    "ARTIFACTS_BUCKET": "agentplane-artifacts",
    "SCHEDULE_FIRED_FUNCTION_ARN": "arn:aws:lambda:us-east-1:123456789012:function:agentplane-schedule-fired",
    "SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/agentplane-scheduler",
    "STRIPE_API_KEY": "sk_test_local",
    "STRIPE_WEBHOOK_SECRET": "whsec_local_dev",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
}


@dataclass(frozen=True)
class RouteInfo:
    method: str
    path: str  # template style: /api/v1/workspaces/{ws}
    function: template.Function
    handler: Any  # the route's Python function
    public: bool = False  # reached without a token (`security=PUBLIC` on the route)

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


def template_path(resolver_path: str) -> str:
    """Powertools writes path parameters as <ws>; the template and OpenAPI as {ws}."""
    return re.sub(r"<(\w+)>", r"{\1}", resolver_path)


def _import(function: template.Function) -> ModuleType | None:
    module_file = function.handler.rsplit(".", 1)[0]
    path = function.code_uri / f"{module_file}.py"
    if not path.is_file():
        return None
    ensure_layer_on_path()
    added = {name: value for name, value in IMPORT_ENVIRONMENT.items() if name not in os.environ}
    os.environ.update(added)
    try:
        name = f"agentplane_app_{function.logical_id}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # pydantic resolves annotations through sys.modules
        spec.loader.exec_module(module)
    finally:
        # Leave no trace: a stack started later in this process sets the real values.
        for added_name in added:
            os.environ.pop(added_name, None)
        if added:
            from agentplane.settings import get_settings

            get_settings.cache_clear()
    return module


@cache
def load_app(logical_id: str) -> Any:
    """The function's resolver (its module's `app`), or None when it has no code or no resolver."""
    function = template.functions()[logical_id]
    module = _import(function)
    resolver = getattr(module, "app", None) if module else None
    return resolver if resolver is not None and hasattr(resolver, "get_openapi_schema") else None


def http_functions() -> dict[str, template.Function]:
    """Functions that serve at least one HttpApi route, by logical id, in template order."""
    serving = {route.function.logical_id for route in template.http_routes()}
    return {logical_id: fn for logical_id, fn in template.functions().items() if logical_id in serving}


def resolver_routes(logical_id: str) -> list[RouteInfo]:
    """Every route the function's resolver registered (empty when the function has no code yet)."""
    resolver = load_app(logical_id)
    if resolver is None:
        return []
    function = template.functions()[logical_id]
    registered = [*resolver._static_routes, *resolver._dynamic_routes]
    return [
        RouteInfo(route.method.upper(), template_path(route.path), function, route.func, route.security == [])
        for route in registered
    ]


def public_route_keys() -> set[str]:
    """Route keys of every route reached without a token, from the code that serves them."""
    return {
        served.route_key for logical_id in http_functions() for served in resolver_routes(logical_id) if served.public
    }


def find_route(method: str, path: str) -> RouteInfo | None:
    """The code behind a template route, or None when its function does not serve it (yet)."""
    for route in template.http_routes():
        if route.method == method and route.path == path:
            for served in resolver_routes(route.function.logical_id):
                if served.method == method and served.path == path:
                    return served
            return None
    return None


def body_model(route: RouteInfo) -> type[Any] | None:
    """The pydantic model the route validates its JSON body against, if it takes one."""
    from pydantic import BaseModel

    try:
        hints = typing.get_type_hints(route.handler, include_extras=True)
    except Exception:
        return None
    hints.pop("return", None)
    for annotation in hints.values():
        for candidate in _unwrap(annotation):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                return candidate
    return None


def _unwrap(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin is not None:
        return [inner for arg in typing.get_args(annotation) for inner in _unwrap(arg)]
    return [annotation]


# ---------------------------------------------------------------- sample values

SAMPLE_STRINGS = {
    "email": "dev@example.com",
    "password": "correct horse battery",
    "new_password": "correct horse battery staple",
    "current_password": "correct horse battery",
    "username": "dev",
    "name": "Sample",
    "title": "Sample title",
    "description": "A sample created from the route's model.",
    "role": "member",
    "url": "https://example.com",
}


def sample_path_value(name: str) -> str:
    """A well-formed id for a path parameter: `ws` -> ws_000..., `task_id` -> task_000..."""
    prefix = {"ws": "ws", "user_id": "usr", "invite_id": "inv", "key_id": "key"}.get(name)
    if prefix is None and name.endswith("_id"):
        prefix = name.removesuffix("_id")
    if prefix is None:
        return f"sample-{name.replace('_', '-')}"
    return f"{prefix}_{'0' * 26}"


def sample_body(model: type[Any]) -> dict[str, Any]:
    """A small body the model accepts: its required fields, or one optional field when nothing is
    required (so an update changes something). Fields the sample gets wrong are dropped."""
    schema = model.model_json_schema()
    definitions = schema.get("$defs", {})
    properties: dict[str, Any] = schema.get("properties", {})
    required = list(schema.get("required", []))
    names = required or [name for name, prop in properties.items() if _is_simple(prop, definitions)][:1]
    body = {name: _sample(name, properties[name], definitions) for name in names}
    for _ in range(len(body) + 1):
        failing = _failing_fields(model, body)
        if not failing:
            break
        for name in failing:
            body.pop(name, None)
    return body


def _failing_fields(model: type[Any], body: dict[str, Any]) -> set[str]:
    from pydantic import ValidationError

    try:
        model.model_validate(body)
    except ValidationError as exc:
        return {str(error["loc"][0]) for error in exc.errors() if error.get("loc") and error["loc"][0] in body}
    return set()


def _resolve(prop: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in prop:
        prop = definitions[prop["$ref"].rsplit("/", 1)[-1]]
    variants = prop.get("anyOf") or prop.get("oneOf")
    if variants:
        concrete = [v for v in variants if v.get("type") != "null"]
        return _resolve(concrete[0], definitions) if concrete else prop
    return prop


def _is_simple(prop: dict[str, Any], definitions: dict[str, Any]) -> bool:
    resolved = _resolve(prop, definitions)
    return resolved.get("type") in ("string", "integer", "boolean") and "pattern" not in resolved


def _sample(name: str, prop: dict[str, Any], definitions: dict[str, Any]) -> Any:
    prop = _resolve(prop, definitions)
    if "const" in prop:
        return prop["const"]
    if "enum" in prop:
        return prop["enum"][0]
    kind = prop.get("type")
    if kind == "boolean":
        return True  # consent flags must be true; elsewhere any boolean is valid
    if kind in ("integer", "number"):
        return prop.get("minimum", prop.get("exclusiveMinimum", 0) + 1)
    if kind == "array":
        count = int(prop.get("minItems", 0))
        return [_sample(name, prop.get("items", {}), definitions) for _ in range(count)]
    if kind == "object":
        nested = prop.get("properties") or {}
        return {key: _sample(key, nested[key], definitions) for key in prop.get("required", [])}
    return _sample_string(name, prop)


def _sample_string(name: str, prop: dict[str, Any]) -> str:
    if prop.get("format") == "email":
        return SAMPLE_STRINGS["email"]
    if prop.get("format") in ("uri", "url"):
        return SAMPLE_STRINGS["url"]
    candidates = [SAMPLE_STRINGS.get(name, ""), "sample", f"{name}-sample"]
    pattern = prop.get("pattern")
    if pattern:
        prefix = re.match(r"\^([a-z]+_)", pattern)
        if prefix:
            candidates.insert(0, prefix.group(1) + "0" * 26)
        for candidate in candidates:
            if candidate and re.search(pattern, candidate):
                return candidate
    value = next(c for c in candidates if c)
    minimum, maximum = int(prop.get("minLength", 0)), prop.get("maxLength")
    value = value.ljust(minimum, "x")
    return value[: int(maximum)] if maximum else value

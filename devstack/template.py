"""Reading template.yaml: routes, functions and resources, with CloudFormation's short tags."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(tag: str) -> Any:
    name = "Fn::GetAtt" if tag == "GetAtt" else ("Ref" if tag == "Ref" else f"Fn::{tag}")

    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    return construct


for _name in (
    "Ref",
    "Sub",
    "GetAtt",
    "Join",
    "If",
    "Equals",
    "Select",
    "Split",
    "ImportValue",
    "FindInMap",
    "Not",
    "And",
    "Or",
    "Base64",
    "Cidr",
    "GetAZs",
):
    _CfnLoader.add_constructor(f"!{_name}", _tag(_name))


@lru_cache(maxsize=1)
def load() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


@dataclass(frozen=True)
class Function:
    logical_id: str
    code_uri: Path
    handler: str  # module.attribute

    @property
    def name(self) -> str:
        return self.code_uri.name


@dataclass(frozen=True)
class HttpRoute:
    method: str
    path: str  # as in the template: /api/v1/workspaces/{ws}
    function: Function
    authorized: bool

    @property
    def pattern(self) -> re.Pattern[str]:
        regex = re.sub(r"\{(\w+)\+\}", r"(?P<\1>.+)", self.path)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        return re.compile(f"^{regex}$")

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


def resources() -> dict[str, Any]:
    return load()["Resources"]


def functions() -> dict[str, Function]:
    found = {}
    for logical_id, resource in resources().items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        found[logical_id] = Function(logical_id, ROOT / props["CodeUri"], props.get("Handler", "app.lambda_handler"))
    return found


def http_routes() -> list[HttpRoute]:
    routes = []
    for logical_id, function in functions().items():
        events = resources()[logical_id]["Properties"].get("Events") or {}
        for event in events.values():
            if event["Type"] != "HttpApi":
                continue
            props = event["Properties"]
            auth = (props.get("Auth") or {}).get("Authorizer")
            routes.append(HttpRoute(props["Method"].upper(), props["Path"], function, auth != "NONE"))
    # Literal segments win over parameters, as in API Gateway.
    routes.sort(key=lambda r: (r.path.count("{"), -len(r.path)))
    return routes


def function_events(event_type: str) -> list[tuple[Function, dict[str, Any]]]:
    """(function, event properties) for every event of a type: Schedule, DynamoDB, WebSocket..."""
    found = []
    for logical_id, function in functions().items():
        for event in (resources()[logical_id]["Properties"].get("Events") or {}).values():
            if event["Type"] == event_type:
                found.append((function, event.get("Properties") or {}))
    return found


def authorizer_cache_seconds() -> int:
    return int(load()["Parameters"]["AuthorizerCacheSeconds"]["Default"])


def global_environment() -> dict[str, Any]:
    return dict(load()["Globals"]["Function"]["Environment"]["Variables"])

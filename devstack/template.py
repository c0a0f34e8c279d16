"""Reading template.yaml: routes, functions and resources, with CloudFormation's short tags."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no types
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


_current = Path(os.environ.get("AGENTPLANE_TEMPLATE") or TEMPLATE).resolve()


def use(path: Path | str | None = None) -> None:
    """Serve another template (tests use small fixture templates); None goes back to template.yaml."""
    global _current
    _current = Path(path).resolve() if path else TEMPLATE
    load.cache_clear()
    _declared_functions.cache_clear()


def path() -> Path:
    return _current


@lru_cache(maxsize=1)
def load() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(_current.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    return loaded


@dataclass(frozen=True)
class Function:
    logical_id: str
    code_uri: Path
    handler: str  # module.attribute
    function_name: str = ""  # the deployed name locally; unique even when functions share code

    @property
    def name(self) -> str:
        return self.code_uri.name

    @property
    def physical_name(self) -> str:
        return self.function_name or self.name


DEFAULT_ROUTE = "$default"


@dataclass(frozen=True)
class HttpRoute:
    method: str  # ANY for the $default route
    path: str  # as in the template: /api/v1/workspaces/{ws}, or $default
    function: Function

    @property
    def pattern(self) -> re.Pattern[str]:
        if self.path == DEFAULT_ROUTE:
            return re.compile(r"^.*$", re.S)
        regex = re.sub(r"\{(\w+)\+\}", r"(?P<\1>.+)", self.path)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        return re.compile(f"^{regex}$")

    @property
    def route_key(self) -> str:
        return DEFAULT_ROUTE if self.path == DEFAULT_ROUTE else f"{self.method} {self.path}"


def resources() -> dict[str, Any]:
    declared: dict[str, Any] = load()["Resources"]
    return declared


def functions() -> dict[str, Function]:
    """Every function the template declares, by logical id (worked out once per loaded template)."""
    return dict(_declared_functions())


@lru_cache(maxsize=1)
def _declared_functions() -> dict[str, Function]:
    declared = {
        logical_id: resource["Properties"]
        for logical_id, resource in resources().items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    folders = [Path(str(props["CodeUri"])).name for props in declared.values()]
    found = {}
    for logical_id, props in declared.items():
        # CodeUri is relative to the template, as for `sam build`.
        code_uri = _current.parent / props["CodeUri"]
        # Named after its code folder, unless another function shares that folder.
        shared = folders.count(code_uri.name) > 1
        function_name = f"{code_uri.name}-{logical_id.lower()}" if shared else code_uri.name
        found[logical_id] = Function(logical_id, code_uri, props.get("Handler", "app.lambda_handler"), function_name)
    return found


def http_routes() -> list[HttpRoute]:
    routes = []
    for logical_id, function in functions().items():
        events = resources()[logical_id]["Properties"].get("Events") or {}
        for event in events.values():
            if event["Type"] != "HttpApi":
                continue
            props = event["Properties"]
            if "Path" not in props:  # SAM's $default route: whatever no other route matches
                routes.append(HttpRoute("ANY", DEFAULT_ROUTE, function))
                continue
            routes.append(HttpRoute(props["Method"].upper(), props["Path"], function))
    # Literal segments win over parameters, as in API Gateway; $default comes last.
    routes.sort(key=lambda r: (r.path == DEFAULT_ROUTE, r.path.count("{"), -len(r.path)))
    return routes


def function_events(event_type: str) -> list[tuple[Function, dict[str, Any]]]:
    """(function, event properties) for every event of a type: Schedule, DynamoDB, WebSocket..."""
    found = []
    for logical_id, function in functions().items():
        for event in (resources()[logical_id]["Properties"].get("Events") or {}).values():
            if event["Type"] == event_type:
                found.append((function, event.get("Properties") or {}))
    return found


def global_environment() -> dict[str, Any]:
    globals_ = (load().get("Globals") or {}).get("Function") or {}
    return dict((globals_.get("Environment") or {}).get("Variables") or {})


def function_environment(logical_id: str) -> dict[str, Any]:
    """A function's own variables (they win over the Globals ones on AWS)."""
    props = resources()[logical_id].get("Properties") or {}
    return dict((props.get("Environment") or {}).get("Variables") or {})


def http_cors() -> dict[str, Any] | None:
    for resource in resources().values():
        if resource["Type"] == "AWS::Serverless::HttpApi":
            cors = (resource.get("Properties") or {}).get("CorsConfiguration")
            if isinstance(cors, dict):
                return cors
    return None


def references(value: Any) -> list[str]:
    """Logical ids a property value points at through Ref, GetAtt, Sub or Join, in order."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.append(inner)
            elif key == "Fn::GetAtt":
                found.append(inner[0] if isinstance(inner, list) else str(inner).split(".", 1)[0])
            elif key == "Fn::Sub":
                text = inner[0] if isinstance(inner, list) else inner
                found += [m.split(".", 1)[0] for m in re.findall(r"\$\{([^}!]+)\}", text)]
                if isinstance(inner, list) and len(inner) > 1:
                    found += references(inner[1])
            else:
                found += references(inner)
    elif isinstance(value, list):
        for inner in value:
            found += references(inner)
    return found


def _referenced(value: Any, resource_type: str) -> str | None:
    for logical_id in references(value):
        resource = resources().get(logical_id)
        if resource and resource["Type"] == resource_type:
            return logical_id
    return None


@dataclass(frozen=True)
class WebSocketRoute:
    route_key: str
    function: Function
    two_way: bool  # a RouteResponseSelectionExpression sends the function's body back
    authorizer: Function | None = None


@dataclass(frozen=True)
class WebSocketApi:
    logical_id: str
    selection_expression: str
    stage: str
    routes: dict[str, WebSocketRoute] = field(default_factory=dict)

    @property
    def api_id(self) -> str:
        return re.sub(r"[^a-z0-9]", "", self.logical_id.lower())[:10] or "websocket"

    @property
    def domain_name(self) -> str:
        # The shape moto recognises for the API Gateway Management API.
        return f"{self.api_id}.execute-api.us-east-1.amazonaws.com"


def websocket_apis() -> list[WebSocketApi]:
    """Every ApiGatewayV2 WEBSOCKET API: its routes, integrations and the functions behind them."""
    apis = []
    all_functions = functions()
    for logical_id, resource in resources().items():
        props = resource.get("Properties") or {}
        if resource["Type"] != "AWS::ApiGatewayV2::Api" or props.get("ProtocolType") != "WEBSOCKET":
            continue
        stage = "$default"
        routes: dict[str, WebSocketRoute] = {}
        for other in resources().values():
            other_props = other.get("Properties") or {}
            if logical_id not in references(other_props.get("ApiId")):
                continue
            if other["Type"] == "AWS::ApiGatewayV2::Stage":
                stage = str(other_props.get("StageName", stage))
            if other["Type"] != "AWS::ApiGatewayV2::Route":
                continue
            integration_id = _referenced(other_props.get("Target"), "AWS::ApiGatewayV2::Integration")
            if not integration_id:
                continue
            integration = resources()[integration_id].get("Properties") or {}
            function_id = _referenced(integration.get("IntegrationUri"), "AWS::Serverless::Function")
            if not function_id:
                continue
            authorizer = None
            if other_props.get("AuthorizationType") == "CUSTOM":
                authorizer_id = _referenced(other_props.get("AuthorizerId"), "AWS::ApiGatewayV2::Authorizer")
                if authorizer_id:
                    authorizer_props = resources()[authorizer_id].get("Properties") or {}
                    uri = authorizer_props.get("AuthorizerUri")
                    authorizer_fn = _referenced(uri, "AWS::Serverless::Function")
                    authorizer = all_functions.get(authorizer_fn or "")
            route_key = str(other_props["RouteKey"])
            routes[route_key] = WebSocketRoute(
                route_key,
                all_functions[function_id],
                bool(other_props.get("RouteResponseSelectionExpression")),
                authorizer,
            )
        expression = str(props.get("RouteSelectionExpression", "$request.body.action"))
        apis.append(WebSocketApi(logical_id, expression, stage, routes))
    return apis


@dataclass(frozen=True)
class StateMachine:
    logical_id: str
    definition: str  # ASL text, before substitutions
    substitutions: dict[str, Any]
    type: str

    @property
    def name(self) -> str:
        return f"agentplane-{self.logical_id.lower()}"


def state_machines() -> list[StateMachine]:
    import json

    found = []
    for logical_id, resource in resources().items():
        if resource["Type"] != "AWS::Serverless::StateMachine":
            continue
        props = resource.get("Properties") or {}
        if props.get("DefinitionUri"):
            definition = (_current.parent / str(props["DefinitionUri"])).read_text()
        else:
            definition = json.dumps(props.get("Definition") or {})
        found.append(
            StateMachine(
                logical_id,
                definition,
                dict(props.get("DefinitionSubstitutions") or {}),
                str(props.get("Type", "STANDARD")),
            )
        )
    return found

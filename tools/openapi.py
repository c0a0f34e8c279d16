"""Build-time generator of functions/docs/openapi.json: `make openapi`
(`python -m tools.openapi`, from the repository root).

The document is generated from the code: every HTTP function of template.yaml is imported and the
OpenAPI schemas of their Powertools resolvers are merged into one. The docs function serves the
committed file, so its cold start imports none of the other functions.

`--check` exits 1 when the committed file differs from a fresh generation.
"""

from __future__ import annotations

import json
import sys
import typing
from typing import Any

from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel

from devstack import template
from devstack.lambdas import ensure_layer_on_path
from tools import apps

OUTPUT = template.ROOT / "functions" / "docs" / "openapi.json"
REGENERATE = "make openapi  (or: python -m tools.openapi)"
PROBLEM_JSON = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"
BEARER = "bearerAuth"
DESCRIPTION = (
    "Control plane for teams of humans and AI coding agents.\n\n"
    'Success bodies are `{"data": ...}`; lists add `{"meta": {"next_cursor", "limit"}}`. Every error is an '
    "RFC 9457 `application/problem+json` document. Authenticate with `Authorization: Bearer <token>` (a session "
    "token from login, a personal access token, a workspace API key or an agent key).\n\n"
    "A missing, invalid or revoked token is a 401 problem on the very next request, and a path no route "
    "matches is a 404 problem. Every answer carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and "
    "`X-RateLimit-Reset`."
)


class SchemaConflict(RuntimeError):
    """Two functions publish different schemas under one name, or both serve one operation."""


def problem_schema() -> dict[str, Any]:
    from agentplane.models.envelope import Problem

    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schema["description"] = (
        "An RFC 9457 problem document. Extension members appear where useful: `errors` (field validation), "
        "`current_status` (a refused state transition), `required_scope`, `retry_after`."
    )
    schema["additionalProperties"] = True
    return schema


def _service_version() -> str:
    return str(template.global_environment().get("SERVICE_VERSION", "0.0.0"))


def _family(function: template.Function) -> str:
    return function.name.replace("_", "-")


def _problem_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}}}


def _refs(value: Any) -> set[str]:
    if isinstance(value, dict):
        found = {value["$ref"].rsplit("/", 1)[-1]} if isinstance(value.get("$ref"), str) else set()
        for inner in value.values():
            found |= _refs(inner)
        return found
    if isinstance(value, list):
        return set().union(*(_refs(inner) for inner in value)) if value else set()
    return set()


def _reachable(doc: dict[str, Any]) -> set[str]:
    schemas = doc["components"]["schemas"]
    pending = _refs(doc["paths"])
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen or name not in schemas:
            continue
        seen.add(name)
        pending |= _refs(schemas[name])
    return seen


def _fix_operation(operation: dict[str, Any], family: str, public: bool) -> None:
    operation.setdefault("tags", [family])
    if public:
        operation["security"] = []  # reached without a token
    responses = operation.setdefault("responses", {})
    if "204" in responses:
        responses["204"].pop("content", None)  # no body, so no media type (Powertools adds one)
    # Validation failures leave as problems (agentplane.http), not as Powertools' default shape.
    if "422" in responses:
        content = responses["422"].get("content") or {}
        if PROBLEM_JSON not in content:
            responses["422"] = _problem_response("Validation failed")


def _declare_success(resolver: Any) -> None:
    """A route that lists only its problem responses still answers 200 with its return model;
    Powertools documents the return model only under a declared success status, so declare it."""
    for route in [*resolver._static_routes, *resolver._dynamic_routes]:
        declared = route.responses or {}
        if declared and not any(200 <= int(status) < 300 for status in declared):
            route.responses = {200: {"description": "Successful Response"}, **declared}


def _query_models(resolver: Any) -> dict[tuple[str, str], type[BaseModel]]:
    """(METHOD, path) -> the query model of each route that reads its query string as one model."""
    found: dict[tuple[str, str], type[BaseModel]] = {}
    for route in [*resolver._static_routes, *resolver._dynamic_routes]:
        for hint in typing.get_type_hints(route.func, include_extras=True).values():
            if typing.get_origin(hint) is not typing.Annotated:
                continue
            model, *extras = typing.get_args(hint)
            is_model = isinstance(model, type) and issubclass(model, BaseModel)
            if is_model and any(isinstance(extra, Query) for extra in extras):
                found[(route.method, route.openapi_path)] = model
    return found


def _document_query_models(resolver: Any, part: dict[str, Any]) -> None:
    """Powertools documents each field of a query model with its bare type; give each parameter
    its field's own schema instead (bounds, defaults, enums, the field's description)."""
    schemas = (part.setdefault("components", {})).setdefault("schemas", {})
    for (method, path), model in _query_models(resolver).items():
        document = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, schema in document.pop("$defs", {}).items():
            schemas.setdefault(name, schema)
        properties = document.get("properties", {})
        for parameter in part["paths"][path][method.lower()].get("parameters", []):
            if parameter.get("in") == "query" and parameter["name"] in properties:
                parameter["schema"] = properties[parameter["name"]]


def resolver_schemas() -> list[tuple[str, str, dict[str, Any]]]:
    """(logical id, family, OpenAPI part) of every HTTP function that has a resolver."""
    ensure_layer_on_path()
    parts = []
    for logical_id, function in apps.http_functions().items():
        resolver = apps.load_app(logical_id)
        if resolver is None:
            continue  # declared in the template, not written yet
        _declare_success(resolver)
        part = json.loads(resolver.get_openapi_json_schema())
        _document_query_models(resolver, part)
        parts.append((logical_id, _family(function), part))
    return parts


def merge(parts: list[tuple[str, str, dict[str, Any]]], public: set[str]) -> dict[str, Any]:
    """One document from the functions' parts; `public` holds the route keys reached without a token."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Problem": problem_schema()}
    owners: dict[str, str] = {}
    for logical_id, family, part in parts:
        for path, operations in (part.get("paths") or {}).items():
            for method, operation in operations.items():
                where = f"{method.upper()} {path}"
                if where in owners:
                    raise SchemaConflict(f"{where} is served by both {owners[where]} and {logical_id}")
                owners[where] = logical_id
                _fix_operation(operation, family, where in public)
                paths.setdefault(path, {})[method] = operation
        for name, schema in ((part.get("components") or {}).get("schemas") or {}).items():
            if name in schemas and schemas[name] != schema:
                raise SchemaConflict(
                    f"two different schemas are named {name!r} (one in {logical_id}); rename one of the models"
                )
            schemas[name] = schema
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "agentplane API", "version": _service_version(), "description": DESCRIPTION},
        "servers": [
            {"url": "/", "description": "Where this document was served from (a deployment or `make dev`)"},
        ],
        "security": [{BEARER: []}],
        "paths": {path: paths[path] for path in sorted(paths)},
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A session token, personal access token, workspace API key or agent key.",
                }
            },
        },
    }
    used = _reachable(doc) | {"Problem"}
    doc["components"]["schemas"] = {name: schemas[name] for name in sorted(schemas) if name in used}
    return doc


def generate() -> dict[str, Any]:
    parts = resolver_schemas()
    return merge(parts, apps.public_route_keys())


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render(generate())
    if "--check" in argv:
        if not OUTPUT.is_file() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.name} is out of date; regenerate it with: {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(template.ROOT)} ({len(json.loads(text)['paths'])} paths)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

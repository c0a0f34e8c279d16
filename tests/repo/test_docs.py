"""The API documents itself: one OpenAPI document generated from the code, Swagger UI, and the
access-pattern tables generated from the registry of query functions."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from devstack import template
from devstack.lambdas import Lambdas
from tests.conftest import Client
from tools import access_patterns, apps, events, openapi

EXPECTED_PUBLIC = [
    *(f"GET {path}" for path in ("/api/health", "/api/v1/health", "/api/ready", "/api/v1/ready")),
    *(f"GET {path}" for path in ("/api/version", "/api/v1/version", "/api/site/status", "/api/v1/config/constants")),
    *(f"POST /api/v1/auth/{name}" for name in ("register", "login", "token", "refresh")),
    "POST /api/v1/auth/forgot-password",
    "POST /api/v1/auth/reset-password",
    "GET /api/openapi.json",
    "GET /api/docs",
    "GET /api/docs/{asset}",
    "GET /api/v1/public/thread-shares/{token}",
    "GET /api/v1/billing/tiers",
    "GET /api/v1/billing/pricing",
    "POST /api/v1/billing/webhook",  # signed by Stripe instead
]

DOCUMENT = openapi.OUTPUT


def _committed() -> dict[str, Any]:
    return dict(json.loads(DOCUMENT.read_text()))


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return found + [ref for inner in value.values() for ref in _refs(inner)]
    if isinstance(value, list):
        return [ref for inner in value for ref in _refs(inner)]
    return []


def test_committed_openapi_document_matches_the_code() -> None:
    fresh = openapi.render(openapi.generate())
    committed = DOCUMENT.read_text() if DOCUMENT.is_file() else ""
    if fresh != committed:
        new, old = json.loads(fresh), json.loads(committed or "{}")
        added = sorted(set(new["paths"]) - set(old.get("paths", {})))
        removed = sorted(set(old.get("paths", {})) - set(new["paths"]))
        raise AssertionError(
            f"functions/docs/openapi.json is out of date (paths added {added}, removed {removed}, or schemas "
            f"changed); regenerate it with: {openapi.REGENERATE}"
        )


def test_every_reference_in_the_document_resolves() -> None:
    document = _committed()
    schemas = document["components"]["schemas"]
    dangling = [ref for ref in _refs(document) if ref.rsplit("/", 1)[-1] not in schemas]
    assert dangling == []


def test_document_describes_only_routes_api_gateway_serves() -> None:
    routes = {route.route_key for route in template.http_routes()}
    documented = {f"{method.upper()} {path}" for path, ops in _committed()["paths"].items() for method in ops}
    assert sorted(documented - routes) == []


def test_public_routes_need_no_token_and_the_rest_need_a_bearer_token() -> None:
    document = _committed()
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert document["security"] == [{"bearerAuth": []}]
    public = apps.public_route_keys()
    # Probes, sign-up and sign-in, the docs, a public share link, the price list and Stripe's
    # webhook: nothing else is reached without a token.
    assert sorted(public) == sorted(EXPECTED_PUBLIC)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            expected_public = f"{method.upper()} {path}" in public
            assert (operation.get("security") == []) == expected_public, f"{method.upper()} {path}"


def test_every_error_response_is_a_problem_document() -> None:
    document = _committed()
    assert {"type", "title", "status", "detail"} <= set(document["components"]["schemas"]["Problem"]["properties"])
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert set(response["content"]) == {"application/problem+json"}, f"{method} {path} {status}"


def test_every_operation_documents_its_success_body() -> None:
    for path, operations in _committed()["paths"].items():
        for method, operation in operations.items():
            successes = [status for status in operation["responses"] if 200 <= int(status) < 300]
            assert successes, f"{method.upper()} {path} documents no success response"


def test_openapi_route_serves_the_committed_document(api: Client) -> None:
    response = api.get("/api/openapi.json", token="")

    assert response.status == 200
    assert response.header("content-type") == "application/json"
    assert response.json == _committed()


def test_docs_page_is_swagger_ui_reading_the_document(api: Client) -> None:
    response = api.get("/api/docs", token="")

    assert response.status == 200
    assert (response.header("content-type") or "").startswith("text/html")
    assert 'url: "/api/openapi.json"' in response.body
    # Everything the page loads comes from this API: it works offline.
    loaded = re.findall(r'(?:src|href)="([^"]+)"', response.body)
    assert loaded == ["/api/docs/swagger-ui.css", "/api/docs/swagger-ui-bundle.js"]
    for path in loaded:
        asset = api.get(path, token="")
        assert asset.status == 200, path
        assert len(asset.body) > 100_000
    assert api.get("/api/docs/swagger-ui-bundle.js", token="").header("content-type").startswith("text/javascript")


def test_an_unknown_docs_asset_is_a_404_problem(api: Client) -> None:
    response = api.get("/api/docs/secrets.txt", token="")

    assert response.status == 404
    assert "secrets.txt" in response.json["detail"]


def test_the_document_names_no_fixed_host_so_try_it_out_follows_the_request() -> None:
    assert [server["url"] for server in _committed()["servers"]] == ["/"]


def test_docs_answers_carry_the_rate_limit_headers_of_the_callers_ip(api: Client) -> None:
    first = api.get("/api/openapi.json", token="", ip="10.9.9.1")
    second = api.get("/api/docs", token="", ip="10.9.9.1")
    elsewhere = api.get("/api/docs", token="", ip="10.9.9.2")

    assert first.header("X-RateLimit-Limit") == "600"
    assert int(second.header("X-RateLimit-Remaining")) == int(first.header("X-RateLimit-Remaining")) - 1
    assert elsewhere.header("X-RateLimit-Remaining") == "599"


def test_committed_access_patterns_doc_matches_the_registry() -> None:
    committed = access_patterns.OUTPUT.read_text() if access_patterns.OUTPUT.is_file() else ""
    assert committed == access_patterns.render(), (
        f"docs/access-patterns.md is out of date; regenerate it with: {access_patterns.REGENERATE}"
    )


def test_access_patterns_doc_has_a_row_per_registered_query_and_per_item_kind() -> None:
    doc = access_patterns.OUTPUT.read_text()
    registered = access_patterns.patterns()
    queries = doc.split("## Item kinds")[0]

    assert len(registered) >= 80
    for pattern in registered:
        module, name = pattern.function.removeprefix("agentplane.entities.").rsplit(".", 1)
        assert f"| `{module}.{name}` |" in queries, pattern.function
    row = next(line for line in queries.splitlines() if "`teams.teams_of_workspace`" in line)
    assert row.startswith("| team |") and "| GSI1 | `WS#{ws_id}#TEAMS` |" in row and "creation order" in row
    assert "| sprint | `sprints.SprintItem` | `WS#{workspace_id}` | `SPRINT#{number:010d}` |" in doc


def test_every_query_of_an_entity_module_is_registered() -> None:
    assert access_patterns.unregistered() == [], (
        "these entity functions read the table without @access_pattern; register them so "
        "docs/access-patterns.md lists them"
    )


def test_the_registration_check_notices_a_query_without_access_pattern() -> None:
    source = """
def _every(spec):
    return get_store().select(GadgetItem, spec, limit=10).items

@access_pattern(GadgetItem, partition=keys.ws_pk)
def gadgets(ws_id):
    return _every(QuerySpec(keys.ws_pk(ws_id)))

def gadgets_again(ws_id):
    return _every(QuerySpec(keys.ws_pk(ws_id)))

def raw_gadgets(ws_id):
    return get_store().query(keys.ws_pk(ws_id), limit=5).items

class GadgetItem(Entity):
    @classmethod
    def newest(cls, ws_id):
        return get_store().fill(cls, QuerySpec(keys.ws_pk(ws_id)), limit=1)

def gadget_label(item):
    return item.name.upper()
"""
    assert access_patterns.unregistered_in(source) == ["gadgets_again", "raw_gadgets", "GadgetItem.newest"]


def test_a_query_registered_in_the_code_shows_in_the_generated_doc(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentplane import keys
    from agentplane.entities import patterns
    from agentplane.entities.teams import TeamItem

    access_patterns.patterns()  # the registry, full
    monkeypatch.setattr(patterns, "PATTERNS", list(patterns.PATTERNS))

    def gadget_teams(ws_id: str) -> None:
        """The teams a gadget uses. Nothing else."""

    # Named as a query of an entity module is.
    gadget_teams.__module__, gadget_teams.__qualname__ = "agentplane.entities.gadgets", "gadget_teams"
    patterns.access_pattern(TeamItem, partition=keys.team_list_gsi, index=keys.GSI1, sort="prefix G#")(gadget_teams)

    rendered = access_patterns.render()
    assert (
        "| team | `gadgets.gadget_teams` | GSI1 | `WS#{ws_id}#TEAMS` | prefix G# | The teams a gadget uses. |"
        in rendered
    )
    assert "gadget_teams" not in access_patterns.OUTPUT.read_text()


def _part(path: str, schema_name: str, schema: dict[str, Any]) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema_name}"}
    operation = {"responses": {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}}
    return {"paths": {path: {"get": operation}}, "components": {"schemas": {schema_name: schema}}}


def test_two_families_publishing_different_models_under_one_name_are_refused() -> None:
    first = _part("/api/v1/a", "Item", {"type": "object", "properties": {"a": {"type": "string"}}})
    second = _part("/api/v1/b", "Item", {"type": "object", "properties": {"b": {"type": "integer"}}})

    with pytest.raises(openapi.SchemaConflict, match="Item"):
        openapi.merge([("AFunction", "a", first), ("BFunction", "b", second)], set())


def test_two_functions_serving_one_operation_are_refused() -> None:
    same = _part("/api/v1/a", "Item", {"type": "object"})

    with pytest.raises(openapi.SchemaConflict, match="GET /api/v1/a"):
        openapi.merge([("AFunction", "a", same), ("BFunction", "b", same)], set())


def test_merged_document_drops_schemas_no_route_uses_and_tags_operations_by_family() -> None:
    part = _part("/api/v1/a", "Item", {"type": "object"})
    part["components"]["schemas"]["HTTPValidationError"] = {"type": "object"}

    document = openapi.merge([("AFunction", "alpha", part)], {"GET /api/v1/a"})

    assert set(document["components"]["schemas"]) == {"Item", "Problem"}
    assert document["paths"]["/api/v1/a"]["get"]["tags"] == ["alpha"]
    assert document["paths"]["/api/v1/a"]["get"]["security"] == []


def test_generator_check_passes_on_the_committed_document() -> None:
    assert openapi.main(["--check"]) == 0


def test_docs_function_answers_an_unknown_path_with_a_problem(lambdas: Lambdas) -> None:
    event = events.http_event(events.representative_route(template.functions()["DocsFunction"]))
    assert event["routeKey"] == "GET /api/openapi.json"
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/api/nothing-here"

    result = lambdas.invoke("DocsFunction", event)

    assert result["statusCode"] == 404
    assert result["headers"]["Content-Type"] == "application/problem+json"
    assert json.loads(result["body"])["instance"] == "/api/nothing-here"

"""Tenant isolation, route by route, generated from the OpenAPI document: a new route is covered
without anyone writing a test for it.

One workspace is filled with one of everything the routes act on (the builders `make bench` uses);
then a member of another workspace calls every route that names a workspace or an item, with the
first workspace's real ids. Each call must be a 404 problem, and afterwards every item of the first
workspace and of its owner reads back exactly as before.
"""

from __future__ import annotations

import json
import re
from typing import Any

from bench import dynamo
from devstack import template
from tools import apps
from tools.openapi import OUTPUT as OPENAPI

PROBLEM = "application/problem+json"
# Routes whose path ids are not a tenant's items: secrets presented as the path (an invite's or a
# share's token, which are their own proof), and public routes.
NOT_TENANT_ITEMS = {"POST /api/v1/invites/{token}/accept", "GET /api/v1/public/thread-shares/{token}"}
# What the owner may see change while the stranger calls: the owner's own rate-limit and usage counters.
VOLATILE_PREFIXES = ("RATE#",)


def _operations() -> list[tuple[str, str, str]]:
    """(method, path, query) of every operation naming an id; the query fills its required parameters."""
    document = json.loads(OPENAPI.read_text())
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            route_key = f"{method.upper()} {path}"
            if "{" in path and route_key not in NOT_TENANT_ITEMS and route_key not in apps.public_route_keys():
                found.append((method.upper(), path, _required_query(operation)))
    return found


def _required_query(operation: dict[str, Any]) -> str:
    pairs = []
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "query" and parameter.get("required"):
            schema = parameter.get("schema") or {}
            value = (schema.get("enum") or [None])[0] or ("1" if schema.get("type") == "integer" else "word")
            pairs.append(f"{parameter['name']}={value}")
    return "&".join(pairs)


def _build_everything(world: dynamo.World) -> None:
    dynamo._user(world)
    built: list[str] = []
    for scenario in dynamo.SCENARIOS:
        if scenario.caller != "token":
            continue
        for need in scenario.needs:
            if need in built:
                continue
            built.append(need)
            try:
                dynamo.BUILDERS[need](world)
            except dynamo.Skip:
                continue


def _items_of(prefixes: tuple[str, ...]) -> dict[tuple[str, str], Any]:
    """Every item whose partition starts with one of `prefixes` (a Scan: this is a test's read-back)."""
    from agentplane.raw_items import deserialize
    from agentplane.store import get_store

    store = get_store()
    found: dict[tuple[str, str], Any] = {}
    for page in store.client.get_paginator("scan").paginate(TableName=store.table_name):
        for raw in page["Items"]:
            item = deserialize(raw) or {}
            if str(item["PK"]).startswith(prefixes) and not str(item["PK"]).startswith(VOLATILE_PREFIXES):
                found[(item["PK"], item["SK"])] = item
    return found


def _path(world: dynamo.World, template_path: str, ws: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "ws":
            return ws
        return world.values.get(dynamo.PATH_VALUES.get(name, name)) or apps.sample_path_value(name)

    return re.sub(r"\{(\w+)\}", value, template_path)


def _body(world: dynamo.World, method: str, template_path: str) -> str | None:
    """A body the route accepts (the bench's, else a sample from its model), so the call gets as
    far as the access check rather than stopping at validation."""
    if method not in ("POST", "PUT", "PATCH"):
        return None
    scenario = next((s for s in dynamo.SCENARIOS if (s.method, s.path) == (method, template_path) and s.body), None)
    try:
        return json.dumps(scenario.body(world) if scenario and scenario.body else world.sample(method, template_path))
    except (dynamo.Skip, KeyError):
        return "{}"


def test_another_workspaces_member_reaches_nothing_and_changes_nothing(api, executions):
    world = dynamo.World(api.http)
    _build_everything(world)
    owner_ws = world.values["ws"]
    owner_id = world.values["user_id"]
    stranger_token = world.register("stranger")["token"]
    own = api.post("/api/v1/workspaces", {"name": "Elsewhere"}, token=stranger_token)
    assert own.status == 201, own.body
    prefixes = (f"WS#{owner_ws}", f"USER#{owner_id}")
    before = _items_of(prefixes)

    operations = _operations()
    assert len(operations) > 150  # the whole API, not a sample of it
    leaks = []
    for method, template_path, query in operations:
        path = _path(world, template_path, owner_ws) + (f"?{query}" if query else "")
        headers = {"Authorization": f"Bearer {stranger_token}", "Content-Type": "application/json"}
        answer = api.http.handle(method, path, headers, _body(world, method, template_path), source_ip="10.77.0.1")
        is_problem = answer.header("content-type") == PROBLEM
        if answer.status != 404 or not is_problem:
            leaks.append(f"{method} {template_path} -> {answer.status} {answer.body[:160]}")
    assert not leaks, "\n".join(leaks)

    after = _items_of(prefixes)
    changed = sorted(str(key) for key in before.keys() | after.keys() if before.get(key) != after.get(key))
    assert changed == []


def test_the_matrix_covers_every_route_that_names_an_id() -> None:
    routes = {route.route_key for route in template.http_routes() if "{" in route.path}
    covered = {f"{method} {path}" for method, path, _ in _operations()}
    assert sorted(routes - covered - NOT_TENANT_ITEMS - apps.public_route_keys()) == []

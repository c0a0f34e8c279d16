"""events/: one sample API Gateway event per template route, and every one of them runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devstack import apps, events, template
from devstack.lambdas import Lambdas

EVENT_FILES = sorted(events.EVENTS_DIR.glob("*.json"))


def test_every_template_route_has_its_event_file() -> None:
    expected = set(events.route_events())
    present = {path.name for path in EVENT_FILES}
    missing = sorted(expected - present)
    assert not missing, f"routes without a sample event: {missing}; regenerate with: {events.REGENERATE}"


def test_no_event_file_is_left_from_a_route_that_is_gone() -> None:
    expected = set(events.route_events())
    stale = sorted(path.name for path in EVENT_FILES if path.name not in expected)
    assert not stale, (
        f"event files for routes no longer in template.yaml: {stale}; regenerate with: {events.REGENERATE}"
    )


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda path: path.stem)
def test_event_file_describes_the_route_its_name_says(path: Path) -> None:
    routes = events.route_events()
    if path.name not in routes:
        pytest.skip("not a route of the template (reported by the stale-file test)")
    route, _ = routes[path.name]
    event = json.loads(path.read_text())
    assert event["routeKey"] == route.route_key, f"regenerate with: {events.REGENERATE}"
    assert event["requestContext"]["http"]["method"] == route.method or route.method == "ANY"
    assert route.pattern.match(event["rawPath"]), event["rawPath"]
    served = apps.find_route(route.method, route.path)
    public = served is None or served.public
    assert ("authorization" in event["headers"]) == (not public)


def _assert_gateway_response(result: Any) -> None:
    assert isinstance(result, dict), f"not an API Gateway response: {result!r}"
    assert isinstance(result.get("statusCode"), int)
    assert isinstance(result.get("headers", {}), dict)
    body = result.get("body", "")
    assert isinstance(body, str)
    content_type = next((str(v) for k, v in result.get("headers", {}).items() if k.lower() == "content-type"), "")
    if body and "json" in content_type and not result.get("isBase64Encoded"):
        json.loads(body)
    if result["statusCode"] >= 400:
        assert content_type.startswith("application/problem+json"), content_type


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda path: path.stem)
def test_event_file_runs_without_a_server_error(path: Path, lambdas: Lambdas) -> None:
    routes = events.route_events()
    if path.name not in routes:
        pytest.skip("not a route of the template (reported by the stale-file test)")
    route, _ = routes[path.name]
    module = route.function.code_uri / f"{route.function.handler.rsplit('.', 1)[0]}.py"
    if not module.is_file():
        pytest.skip(f"{template.functions()[route.function.logical_id].code_uri.name} has no code yet")

    # What `sam local invoke <Function> -e <file>` does: the event, as is, to the handler.
    result = lambdas.invoke(route.function, json.loads(path.read_text()))

    _assert_gateway_response(result)
    assert result["statusCode"] < 500, f"{path.name} -> {result['statusCode']}: {result.get('body')}"

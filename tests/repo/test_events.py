"""`make events`: a sample event per route family and per scheduled function, and an env.json, for
`sam local invoke`; generated on demand, each one the event its trigger would send, and each runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model, EventBridgeModel

from devstack import template
from devstack.lambdas import Lambdas
from tools import apps, events

HTTP_FUNCTIONS = list(apps.http_functions())
SCHEDULED_FUNCTIONS = ["AgentStallCheckFunction", "ScheduleFiredFunction"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("events")
    events.write(directory)
    return directory


def sample(directory: Path, logical_id: str) -> dict[str, Any]:
    return dict(json.loads((directory / events.file_name(template.functions()[logical_id])).read_text()))


def test_each_route_family_and_each_scheduled_function_gets_one_sample(generated: Path) -> None:
    families = {template.functions()[logical_id].name for logical_id in HTTP_FUNCTIONS}
    assert len(families) == len(HTTP_FUNCTIONS)  # one HTTP function per family, so one sample each
    expected = {events.file_name(template.functions()[i]) for i in HTTP_FUNCTIONS + SCHEDULED_FUNCTIONS}
    assert {path.name for path in generated.glob("*.json")} == expected | {events.ENV_FILE}
    assert (generated / "tasks.json").is_file() and (generated / "api-keys.json").is_file()


@pytest.mark.parametrize("logical_id", HTTP_FUNCTIONS)
def test_a_family_sample_is_an_http_api_event_for_a_route_of_its_function(generated: Path, logical_id: str) -> None:
    event = sample(generated, logical_id)
    APIGatewayProxyEventV2Model.model_validate(event)  # the payload 2.0 shape, as Powertools parses it
    routes = [r for r in template.http_routes() if r.function.logical_id == logical_id]
    route = next((r for r in routes if r.route_key == event["routeKey"]), None)
    assert route is not None, f"{event['routeKey']} is not a route of {logical_id}"
    assert event["requestContext"]["routeKey"] == route.route_key
    assert event["requestContext"]["http"]["method"] == route.method or route.method == "ANY"
    matched = route.pattern.match(event["rawPath"])
    assert matched, event["rawPath"]
    assert matched.groupdict() == event.get("pathParameters", {})
    assert event["requestContext"]["http"]["path"] == event["rawPath"]
    served = apps.find_route(route.method, route.path)
    public = served is None or served.public
    assert ("authorization" in event["headers"]) == (not public)


def test_the_stall_check_sample_is_the_notification_scheduler_sends(generated: Path) -> None:
    notification = EventBridgeModel.model_validate(sample(generated, "AgentStallCheckFunction"))
    assert (notification.source, notification.detail_type) == ("aws.scheduler", "Scheduled Event")


def test_the_fired_schedule_sample_is_the_input_the_schedules_family_gives_scheduler(generated: Path) -> None:
    from agentplane.models.schedules import ScheduleFiredEvent

    firing = sample(generated, "ScheduleFiredFunction")
    assert ScheduleFiredEvent.model_validate(firing).model_dump() == firing


def test_env_json_names_every_function_with_the_variables_its_template_entry_declares(generated: Path) -> None:
    environment = json.loads((generated / events.ENV_FILE).read_text())
    assert set(environment) == set(template.functions())
    for logical_id, variables in environment.items():
        declared = {**template.global_environment(), **template.function_environment(logical_id)}
        assert set(variables) == set(declared), logical_id
        assert all(isinstance(value, str) and value for value in variables.values()), logical_id
    assert environment["TasksFunction"]["TABLE_NAME"] == "<Table>"  # the deployed stack's to fill in
    assert environment["AgentsFunction"]["AGENT_STALL_TIMEOUT_SECONDS"] == str(
        template.load()["Parameters"]["AgentStallTimeoutSeconds"]["Default"]
    )


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


@pytest.mark.parametrize("logical_id", HTTP_FUNCTIONS)
def test_a_family_sample_runs_without_a_server_error(generated: Path, logical_id: str, lambdas: Lambdas) -> None:
    # What `sam local invoke <Function> -e events/<file>` does: the event, as is, to the handler.
    result = lambdas.invoke(logical_id, sample(generated, logical_id))

    _assert_gateway_response(result)
    assert result["statusCode"] < 500, f"{logical_id} -> {result['statusCode']}: {result.get('body')}"

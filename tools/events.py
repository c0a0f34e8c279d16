"""Sample events for `sam local invoke`: `make events` (`python -m tools.events`) writes them to
events/ (generated on demand, not committed), with an env.json for `--env-vars`.

- One per route family: an API Gateway HTTP API (payload 2.0) event for a representative route of
  the family's function (its first GET in the template, else its first route), as API Gateway
  hands it over: a sample bearer token on a protected route (a token the function checks itself:
  it answers 401 unless that token exists in the table it reads), well-formed sample ids in the
  path and, for POST/PUT/PATCH, a small body the route's pydantic model accepts.
- One per function EventBridge Scheduler invokes: the notification of its `Schedule` or
  `ScheduleV2` event (Scheduler sends a target without its own Input), or, for a function a
  Scheduler-trusted role may invoke, the Input the schedules family gives the schedules it creates.

Functions fed by a table's stream, a WebSocket or a state machine get none: `make dev` runs those
triggers. Each file is named after its function (`TasksFunction` -> tasks.json); env.json gives
every function the variables its template entry declares, Globals included, with each resource
standing for itself (`<Table>`): fill in the deployed stack's names. The files are the same on
every run (fixed request ids and times).
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from devstack import aws, template
from devstack.gateway import HttpApi
from devstack.lambdas import Lambdas, ensure_layer_on_path
from devstack.schedules import scheduled_event
from tools import apps

EVENTS_DIR = template.ROOT / "events"
ENV_FILE = "env.json"
REGENERATE = "make events  (or: python -m tools.events)"
SAMPLE_ISO_TIME = "2025-01-01T00:00:00Z"
SAMPLE_TIME = "01/Jan/2025:00:00:00 +0000"
SAMPLE_EPOCH_MS = 1735689600000
SAMPLE_IP = "203.0.113.10"  # TEST-NET-3: never a real caller
SAMPLE_WORKSPACE = apps.sample_path_value("ws")
BODY_METHODS = ("POST", "PUT", "PATCH")
SAMPLE_TOKEN = "aps_sample-token"
UNMATCHED_SAMPLE_PATH = "/api/v1/no-such-route"


def kebab(name: str) -> str:
    """CreateTask -> create-task, HealthV1 -> health-v1, api_keys -> api-keys."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name)
    return spaced.replace("_", "-").lower()


def file_name(function: template.Function) -> str:
    """TasksFunction -> tasks.json, AgentStallCheckFunction -> agent-stall-check.json."""
    return f"{kebab(function.logical_id.removesuffix('Function'))}.json"


# ---------------------------------------------------------------- HTTP API


def representative_route(function: template.Function) -> template.HttpRoute:
    """The function's first GET route in the template (a read, safe to run), else its first."""
    declared: list[template.HttpRoute] = []
    routes = {(route.method, route.path): route for route in template.http_routes() if route.function == function}
    for event in (template.resources()[function.logical_id]["Properties"].get("Events") or {}).values():
        if event["Type"] == "HttpApi":
            props = event["Properties"]
            key = (props["Method"].upper(), props["Path"]) if "Path" in props else ("ANY", template.DEFAULT_ROUTE)
            declared.append(routes[key])
    return next((route for route in declared if route.method == "GET"), declared[0])


def sample_body(route: template.HttpRoute) -> str | None:
    if route.method not in BODY_METHODS:
        return None
    served = apps.find_route(route.method, route.path)
    model = apps.body_model(served) if served else None
    return json.dumps(apps.sample_body(model) if model else {})


def http_event(route: template.HttpRoute) -> dict[str, Any]:
    """What API Gateway hands the route's function, built as the local stack builds it."""
    params = {name: apps.sample_path_value(name) for name in re.findall(r"\{(\w+)\+?\}", route.path)}
    path = UNMATCHED_SAMPLE_PATH if route.path == template.DEFAULT_ROUTE else route.path
    for name, value in params.items():
        path = re.sub(r"\{" + name + r"\+?\}", value, path)
    body = sample_body(route)
    headers = {"Host": "api.example.com", "User-Agent": "curl/8.5.0", "Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    served = apps.find_route(route.method, route.path)
    if served is not None and not served.public:
        headers["Authorization"] = f"Bearer {SAMPLE_TOKEN}"
    method = "GET" if route.method == "ANY" else route.method
    event = HttpApi(Lambdas({})).build_event(route, params, method, path, "", headers, body, SAMPLE_IP)
    event["requestContext"].update(
        requestId=str(uuid.uuid5(uuid.NAMESPACE_URL, route.route_key)),
        time=SAMPLE_TIME,
        timeEpoch=SAMPLE_EPOCH_MS,
        domainName="api.example.com",
        domainPrefix="api",
    )
    return event


def http_events() -> dict[str, tuple[template.HttpRoute, dict[str, Any]]]:
    """File name -> (route, event) for each function that serves HTTP routes (one per family)."""
    found = {}
    for function in apps.http_functions().values():
        route = representative_route(function)
        found[file_name(function)] = (route, http_event(route))
    return found


# ---------------------------------------------------------------- EventBridge Scheduler


def _scheduler_targets() -> list[str]:
    """Logical ids of the functions a role that EventBridge Scheduler assumes may invoke."""
    found: list[str] = []
    for resource in template.resources().values():
        props = resource.get("Properties") or {}
        trust = json.dumps(props.get("AssumeRolePolicyDocument") or {})
        if resource["Type"] != "AWS::IAM::Role" or "scheduler.amazonaws.com" not in trust:
            continue
        for policy in props.get("Policies") or []:
            for statement in (policy.get("PolicyDocument") or {}).get("Statement") or []:
                if "lambda:InvokeFunction" in json.dumps(statement.get("Action")):
                    found += template.references(statement.get("Resource"))
    return [logical_id for logical_id in dict.fromkeys(found) if logical_id in template.functions()]


def _schedule_notification(function: template.Function, event_name: str, event: dict[str, Any]) -> dict[str, Any]:
    props = event.get("Properties") or {}
    if props.get("Input"):
        return json.loads(props["Input"])  # type: ignore[no-any-return]
    source, kind = ("aws.scheduler", "schedule/default") if event["Type"] == "ScheduleV2" else ("aws.events", "rule")
    name = f"{function.logical_id}-{event_name}"
    arn = f"arn:aws:{source.removeprefix('aws.')}:{aws.REGION}:{aws.ACCOUNT}:{kind}/{name}"
    moment = datetime.fromisoformat(SAMPLE_ISO_TIME.replace("Z", "+00:00"))
    notification = scheduled_event(source, arn, moment)
    notification["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, arn))
    return notification


def scheduled_events() -> dict[str, tuple[template.Function, dict[str, Any]]]:
    """File name -> (function, the event Scheduler invokes it with), one per scheduled function."""
    found: dict[str, tuple[template.Function, dict[str, Any]]] = {}
    for logical_id, function in template.functions().items():
        events = template.resources()[logical_id]["Properties"].get("Events") or {}
        scheduled = [(name, event) for name, event in events.items() if event["Type"] in ("Schedule", "ScheduleV2")]
        if scheduled:
            found[file_name(function)] = (function, _schedule_notification(function, *scheduled[0]))
    ensure_layer_on_path()
    from agentplane.models.schedules import ScheduleFiredEvent

    for logical_id in _scheduler_targets():
        function = template.functions()[logical_id]
        firing = ScheduleFiredEvent(
            workspace_id=SAMPLE_WORKSPACE,
            schedule_id="sch_" + "0" * 26,
            scheduled_time=SAMPLE_ISO_TIME,
        )
        found[file_name(function)] = (function, firing.model_dump())
    return dict(sorted(found.items()))


# ---------------------------------------------------------------- env.json


def _attributes(value: Any) -> list[tuple[str, str]]:
    """(logical id, attribute) of every GetAtt in a value, `${X.Attr}` of a Sub included."""
    if isinstance(value, list):
        return [found for inner in value for found in _attributes(inner)]
    if not isinstance(value, dict):
        return []
    found: list[tuple[str, str]] = []
    for key, inner in value.items():
        if key == "Fn::GetAtt":
            logical_id, attribute = inner if isinstance(inner, list) else str(inner).split(".", 1)
            found.append((logical_id, attribute))
        elif key == "Fn::Sub":
            text = inner[0] if isinstance(inner, list) else inner
            found += [tuple(m.split(".", 1)) for m in re.findall(r"\$\{([^}!]+\.[^}]+)\}", text)]
            found += _attributes(inner[1:] if isinstance(inner, list) else [])
        else:
            found += _attributes(inner)
    return found


def environment() -> dict[str, dict[str, str]]:
    """`sam local invoke --env-vars` content: every function's variables (Globals and its own), with
    parameters at their defaults and each resource as a placeholder for the deployed one's."""
    variables = {
        logical_id: {**template.global_environment(), **template.function_environment(logical_id)}
        for logical_id in template.functions()
    }
    placeholders = aws.Resources(names={logical_id: f"<{logical_id}>" for logical_id in template.resources()})
    placeholders.names["SigningSecret"] = "<the value of the SigningSecret secret>"
    for key in ("api_key", "webhook_secret"):
        placeholders.names[f"StripeSecret:{key}"] = f"<the {key} of the StripeSecret secret>"
    for values in variables.values():
        for logical_id, attribute in _attributes(list(values.values())):
            placeholders.arns[f"{logical_id}.{attribute}"] = f"<{logical_id}.{attribute}>"
    return {
        logical_id: {name: aws.resolve(value, placeholders) for name, value in values.items()}
        for logical_id, values in variables.items()
    }


# ---------------------------------------------------------------- writing


def sample_events() -> dict[str, dict[str, Any]]:
    """File name -> event, for every function a sample can drive."""
    found = {name: event for name, (_, event) in http_events().items()}
    found.update({name: event for name, (_, event) in scheduled_events().items()})
    return dict(sorted(found.items()))


def _json(value: Any) -> str:
    return json.dumps(value, indent=2) + "\n"


def write(directory: Path = EVENTS_DIR) -> list[str]:
    """Write every sample event and env.json into `directory`; the names written."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {name: _json(event) for name, event in sample_events().items()}
    files[ENV_FILE] = _json(environment())
    for name, text in files.items():
        (directory / name).write_text(text)
    return sorted(files)


def main() -> int:
    written = write()
    print(f"wrote {len(written) - 1} sample events and {ENV_FILE} to {EVENTS_DIR.relative_to(template.ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

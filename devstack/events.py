"""Sample API Gateway (HTTP API, payload 2.0) events, one per route of template.yaml: `make events`
(`python -m devstack.events`) writes events/<family>-<route-event-name>.json.

Each is what API Gateway hands the function, so `sam local invoke <Function> -e events/<file>`
runs the route: a sample bearer token on protected routes (a token the function checks itself: it
answers 401 unless that token exists in the table it reads), well-formed sample ids in the path
and, for POST/PUT/PATCH, a small body the route's pydantic model accepts. The files are stable
across runs (fixed request ids and times), so regenerating changes only what the code changed.

The functions EventBridge Scheduler invokes get theirs in events/scheduled/: one per `Schedule` or
`ScheduleV2` event of the template (the notification Scheduler sends a target without its own
Input), and one per function a Scheduler-trusted role may invoke (the Input the schedules family
gives the schedules it creates, with the scheduled time filled in).
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from devstack import apps, template
from devstack.gateway import HttpApi
from devstack.lambdas import Lambdas, ensure_layer_on_path

EVENTS_DIR = template.ROOT / "events"
SCHEDULED_DIR = EVENTS_DIR / "scheduled"
SAMPLE_ISO_TIME = "2025-01-01T00:00:00Z"
REGENERATE = "make events  (or: python -m devstack.events)"
SAMPLE_TIME = "01/Jan/2025:00:00:00 +0000"
SAMPLE_EPOCH_MS = 1735689600000
SAMPLE_IP = "203.0.113.10"  # TEST-NET-3: never a real caller
SAMPLE_USER = "usr_" + "0" * 26
SAMPLE_WORKSPACE = apps.sample_path_value("ws")
BODY_METHODS = ("POST", "PUT", "PATCH")
SAMPLE_TOKEN = "aps_sample-token"
UNMATCHED_SAMPLE_PATH = "/api/v1/no-such-route"


def kebab(name: str) -> str:
    """CreateTask -> create-task, HealthV1 -> health-v1, api_keys -> api-keys."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name)
    return spaced.replace("_", "-").lower()


def route_events() -> dict[str, tuple[template.HttpRoute, str]]:
    """File name -> (route, the template's event name) for every HttpApi event of the template."""
    found: dict[str, tuple[template.HttpRoute, str]] = {}
    routes = {(route.function.logical_id, route.method, route.path): route for route in template.http_routes()}
    for logical_id, function in template.functions().items():
        events = template.resources()[logical_id]["Properties"].get("Events") or {}
        for event_name, event in events.items():
            if event["Type"] != "HttpApi":
                continue
            props = event["Properties"]
            if "Path" not in props:
                route = routes[(logical_id, "ANY", template.DEFAULT_ROUTE)]
            else:
                route = routes[(logical_id, props["Method"].upper(), props["Path"])]
            found[f"{kebab(function.name)}-{kebab(event_name)}.json"] = (route, event_name)
    return found


def sample_body(route: template.HttpRoute) -> str | None:
    if route.method not in BODY_METHODS:
        return None
    served = apps.find_route(route.method, route.path)
    model = apps.body_model(served) if served else None
    return json.dumps(apps.sample_body(model) if model else {})


def build(route: template.HttpRoute, gateway: HttpApi) -> dict[str, Any]:
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
    event = gateway.build_event(route, params, method, path, "", headers, body, SAMPLE_IP)
    context = event["requestContext"]
    context.update(
        requestId=str(uuid.uuid5(uuid.NAMESPACE_URL, route.route_key)),
        time=SAMPLE_TIME,
        timeEpoch=SAMPLE_EPOCH_MS,
        domainName="api.example.com",
        domainPrefix="api",
    )
    return event


def generate() -> dict[str, str]:
    """File name -> JSON text of every event the template's routes call for."""
    gateway = HttpApi(Lambdas({}))
    return {
        name: json.dumps(build(route, gateway), indent=2) + "\n" for name, (route, _) in sorted(route_events().items())
    }


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


def scheduled_events() -> dict[str, tuple[template.Function, dict[str, Any]]]:
    """File name (under events/scheduled/) -> (function, the event Scheduler invokes it with)."""
    from devstack import aws
    from devstack.schedules import scheduled_event

    found: dict[str, tuple[template.Function, dict[str, Any]]] = {}
    moment = datetime.fromisoformat(SAMPLE_ISO_TIME.replace("Z", "+00:00"))
    for logical_id, function in template.functions().items():
        events = template.resources()[logical_id]["Properties"].get("Events") or {}
        for event_name, event in events.items():
            if event["Type"] not in ("Schedule", "ScheduleV2"):
                continue
            props = event.get("Properties") or {}
            name = f"{kebab(logical_id.removesuffix('Function'))}-{kebab(event_name)}.json"
            if props.get("Input"):
                found[name] = (function, json.loads(props["Input"]))
                continue
            source, kind = (
                ("aws.scheduler", "schedule/default") if event["Type"] == "ScheduleV2" else ("aws.events", "rule")
            )
            arn = f"arn:aws:{source.removeprefix('aws.')}:{aws.REGION}:{aws.ACCOUNT}:{kind}/{logical_id}-{event_name}"
            notification = scheduled_event(source, arn, moment)
            notification["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, arn))
            found[name] = (function, notification)
    ensure_layer_on_path()
    from agentplane.models.schedules import ScheduleFiredEvent

    for logical_id in _scheduler_targets():
        firing = ScheduleFiredEvent(
            workspace_id=SAMPLE_WORKSPACE,
            schedule_id="sch_" + "0" * 26,
            scheduled_time=SAMPLE_ISO_TIME,
        )
        found[f"{kebab(logical_id.removesuffix('Function'))}.json"] = (
            template.functions()[logical_id],
            firing.model_dump(),
        )
    return dict(sorted(found.items()))


def _write_all(directory: Path, events: dict[str, str]) -> list[str]:
    directory.mkdir(exist_ok=True)
    for name, text in events.items():
        (directory / name).write_text(text)
    removed = []
    for stale in sorted(directory.glob("*.json")):
        if stale.name not in events:
            stale.unlink()
            removed.append(stale.name)
    return removed


def write(directory: Path = EVENTS_DIR) -> tuple[int, list[str]]:
    """Write every event; remove the event files of routes (and schedules) the template no longer has."""
    events = generate()
    removed = _write_all(directory, events)
    scheduled = {name: json.dumps(event, indent=2) + "\n" for name, (_, event) in scheduled_events().items()}
    removed += [f"scheduled/{name}" for name in _write_all(directory / SCHEDULED_DIR.name, scheduled)]
    return len(events) + len(scheduled), removed


def main() -> int:
    count, removed = write()
    print(f"wrote {count} events to {EVENTS_DIR.relative_to(template.ROOT)}/")
    for name in removed:
        print(f"removed {name} (its route is gone from template.yaml)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

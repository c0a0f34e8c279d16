"""Tracing and business metrics: every entry point runs in an X-Ray subsegment, and what the
platform does (runs, heartbeats, notifications) is counted in the metrics each invocation
publishes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from agentplane import raw_items
from devstack.lambdas import LAYER_PATH, Lambdas
from tests.conftest import Client
from tests.published_metrics import publish_metrics, published

STREAM_EVENT = {
    "Records": [
        {
            "eventID": "1",
            "eventName": "INSERT",
            "eventSource": "aws:dynamodb",
            "dynamodb": {"NewImage": {"PK": {"S": "probe"}, "SK": {"S": "probe"}}, "SequenceNumber": "1"},
        }
    ]
}
# One harmless event for each function that API Gateway's HTTP API does not call.
NON_HTTP_EVENTS: dict[str, dict[str, Any]] = {
    "AgentStallCheckFunction": {},
    "SearchIndexerFunction": STREAM_EVENT,
    "RealtimeFanoutFunction": STREAM_EVENT,
    "RealtimeFunction": {"requestContext": {"connectionId": "conn-probe", "routeKey": "$disconnect"}},
    "ScheduleFiredFunction": {"not": "a firing"},
    "RunLifecycleFunction": {"action": "finalize", "workspace_id": "ws_probe", "run_id": "run_probe"},
}


class Subsegment:
    def __init__(self, name: str) -> None:
        self.name = name
        self.annotations: dict[str, Any] = {}
        self.metadata: dict[str, Any] = {}

    def put_annotation(self, key: str, value: Any) -> None:
        self.annotations[key] = value

    def put_metadata(self, key: str, value: Any, namespace: str = "") -> None:
        self.metadata[key] = value


class RecordingProvider:
    """A tracing provider that keeps what the tracer asks of X-Ray."""

    def __init__(self) -> None:
        self.subsegments: list[Subsegment] = []
        self.patched: list[str] = []

    @contextlib.contextmanager
    def in_subsegment(self, name: str, **_: Any) -> Iterator[Subsegment]:
        self.subsegments.append(Subsegment(name))
        yield self.subsegments[-1]

    def patch(self, modules: Any) -> None:
        self.patched.extend(modules)

    def patch_all(self) -> None:
        self.patched.append("everything")


@pytest.fixture
def xray(monkeypatch: pytest.MonkeyPatch, stack: Any) -> Iterator[RecordingProvider]:
    """Tracing on, as in Lambda, with X-Ray replaced by a recording provider."""
    from aws_lambda_powertools import Tracer

    from agentplane import observability

    provider = RecordingProvider()
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "false")
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")  # Powertools traces only inside Lambda
    # Tracers share one configuration (Powertools keeps it on the class): the provider goes there.
    monkeypatch.setattr(Tracer, "_config", {**Tracer._default_config, "provider": provider})
    observability.tracer.cache_clear()
    yield provider
    observability.tracer.cache_clear()


def assert_traced(provider: RecordingProvider, handler_name: str) -> None:
    [segment] = [s for s in provider.subsegments if s.name == f"## {handler_name}"]
    assert isinstance(segment.annotations.get("ColdStart"), bool)
    assert segment.annotations.get("Service") == "agentplane"
    # Responses carry secrets shown once (keys, tokens): they never go into a trace.
    assert not [key for key in segment.metadata if key.endswith("response")]
    assert provider.patched == ["botocore"]


def test_an_http_request_runs_in_a_subsegment_with_the_cold_start_annotated(xray, api: Client):
    assert api.get("/api/health").status == 200
    assert_traced(xray, "handler")


@pytest.mark.parametrize("logical_id", sorted(NON_HTTP_EVENTS))
def test_every_other_entry_point_runs_in_a_subsegment(xray, lambdas: Lambdas, logical_id: str):
    lambdas.invoke(logical_id, NON_HTTP_EVENTS[logical_id])
    assert_traced(xray, "lambda_handler")


def test_a_function_import_does_not_load_the_xray_sdk():
    environment = {
        "TABLE_NAME": "agentplane-table",
        "SIGNING_SECRET": "a-signing-secret-of-some-length",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PATH": os.environ.get("PATH", ""),
    }
    probe = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import app; "
        "print(sorted(m for m in sys.modules if m.startswith('aws_xray_sdk')))"
    )
    code = str(LAYER_PATH.parents[2] / "functions" / "health")
    result = subprocess.run(
        [sys.executable, "-c", probe, code, str(LAYER_PATH)], env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------- business metrics


def runs_path(ws: dict[str, Any]) -> str:
    return f"/api/v1/workspaces/{ws['id']}/runs"


@pytest.mark.parametrize(
    ("ending", "body", "metric"),
    [
        ("complete", {"worker_id": "w1"}, "RunsCompleted"),
        ("fail", {"worker_id": "w1", "reason": "tests failed"}, "RunsFailed"),
        ("cancel", None, "RunsCancelled"),
    ],
)
def test_a_runs_start_heartbeats_and_end_are_counted(
    api: Client, executions, user, workspace, monkeypatch, capsys, ending, body, metric
):
    api.token = user["token"]
    publish_metrics(monkeypatch)
    run = api.post(runs_path(workspace), {"title": "Add login", "prompt": "Build it", "agent": "builder"}).json["data"]
    path = f"{runs_path(workspace)}/{run['id']}"
    assert api.post(f"{path}/start").status == 200
    assert api.post(f"{path}/claim", {"worker_id": "w1"}).status == 200
    for _ in range(2):
        assert api.post(f"{path}/heartbeat", {"worker_id": "w1"}).status == 200
    assert api.post(f"{path}/{ending}", body).status == 200, ending

    # The state machine's last step finalizes the run, in the background.
    counted: Counter[str] = Counter()
    deadline = time.monotonic() + 45
    while not counted[metric] and time.monotonic() < deadline:
        time.sleep(0.1)
        counted += published(capsys.readouterr().out)
    assert counted["RunsStarted"] == 1
    assert counted["RunHeartbeats"] == 2
    assert counted[metric] == 1
    assert counted["RunsCompleted"] + counted["RunsFailed"] + counted["RunsCancelled"] == 1


def test_a_run_finalized_twice_is_counted_once(api: Client, lambdas: Lambdas, user, workspace, monkeypatch, capsys):
    api.token = user["token"]
    run = api.post(runs_path(workspace), {"title": "Add login", "prompt": "Build it", "agent": "builder"}).json["data"]
    assert api.post(f"{runs_path(workspace)}/{run['id']}/cancel").status == 200
    publish_metrics(monkeypatch)
    task = {"action": "finalize", "workspace_id": workspace["id"], "run_id": run["id"]}
    lambdas.invoke("RunLifecycleFunction", task)
    lambdas.invoke("RunLifecycleFunction", task)  # a retried step
    assert published(capsys.readouterr().out)["RunsCancelled"] == 1


def test_a_notification_is_counted_once_per_recipient(api: Client, user, workspace, monkeypatch, capsys):
    from agentplane.auth.scopes import Role
    from agentplane.ids import iso
    from agentplane.logic.workspaces import member_item
    from tests.conftest import register_and_login

    other = register_and_login(api)
    raw_items.put(member_item(workspace["id"], workspace["name"], other["user"]["id"], Role.member, iso()))
    publish_metrics(monkeypatch)
    sent = api.post(
        f"/api/v1/workspaces/{workspace['id']}/notifications",
        {"title": "Deploy at noon", "all_members": True},
        token=user["token"],
    )
    assert sent.status == 201, sent.body
    assert published(capsys.readouterr().out)["NotificationsDelivered"] == 2


def test_with_metrics_off_an_invocation_leaves_nothing_behind(api: Client, user, workspace):
    from agentplane.observability import metrics

    api.token = user["token"]
    run = api.post(runs_path(workspace), {"title": "Add login", "prompt": "Build it", "agent": "builder"}).json["data"]
    assert api.post(f"{runs_path(workspace)}/{run['id']}/start").status == 200
    # Off (as in the suite and the local stack), nothing is flushed, so nothing may pile up either.
    assert metrics.metric_set == {}

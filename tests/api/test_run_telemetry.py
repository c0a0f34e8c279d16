"""Run telemetry: event append and backfill, SSE with resume, redaction, and what events materialize."""

from __future__ import annotations

import base64
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests

from agentplane import keys, raw_items
from agentplane.settings import get_settings
from tests.conftest import Client, register_and_login

pytestmark = pytest.mark.usefixtures("executions")

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
BEARER = "Bearer abcdefghijklmnopqrstuvwxyz012345"
PRIVATE_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq\n-----END RSA PRIVATE KEY-----"
ENV_SECRET = "hunter2-database-password"


@pytest.fixture(autouse=True)
def quick_streams(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Streams wait 1 s at most here, polling often, so idle answers come back quickly."""
    from agentplane import clients
    from agentplane.logic import sse

    monkeypatch.setenv("SSE_MAX_WAIT_SECONDS", "1")
    monkeypatch.setenv("SSE_POLL_SECONDS", "0.05")
    sse.get_stream_settings.cache_clear()
    clients.reset()
    yield
    sse.get_stream_settings.cache_clear()


def runs_path(ws: dict[str, Any]) -> str:
    return f"/api/v1/workspaces/{ws['id']}/runs"


def run_path(ws: dict[str, Any], run: dict[str, Any]) -> str:
    return f"{runs_path(ws)}/{run['id']}"


def new_run(api: Client, ws: dict[str, Any]) -> dict[str, Any]:
    created = api.post(runs_path(ws), {"title": "Add login page", "prompt": "Build it", "agent": "builder"})
    assert created.status == 201, created.body
    return created.json["data"]


def running_run(api: Client, ws: dict[str, Any]) -> dict[str, Any]:
    run = new_run(api, ws)
    assert api.post(f"{run_path(ws, run)}/start").status == 200
    claimed = api.post(f"{run_path(ws, run)}/claim", {"worker_id": "w1"})
    assert claimed.status == 200, claimed.body
    return run  # events 1 (queued) and 2 (running) are the lifecycle's


def append(api: Client, ws: dict[str, Any], run: dict[str, Any], *events: dict[str, Any], **kw: Any) -> Any:
    return api.post(f"{run_path(ws, run)}/events", {"events": list(events)}, **kw)


def log_event(n: int, **fields: Any) -> dict[str, Any]:
    return {"event_type": "log", "severity": "info", "data": {"n": n}, **fields}


def stored_run(ws: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    return raw_items.get(keys.run_key(ws["id"], run["id"])) or {}


def stored_telemetry(ws: dict[str, Any], run: dict[str, Any]) -> str:
    """Everything stored for the run's telemetry, as text."""
    items = raw_items.query(keys.run_events_pk(ws["id"], run["id"]), limit=1000, consistent=True).items
    data = raw_items.query(keys.run_data_pk(ws["id"], run["id"]), limit=1000, consistent=True).items
    return str(items) + str(data)


def parse_sse(body: str) -> list[dict[str, str]]:
    """Blocks of `field: value` lines; comment lines are kept as {"comment": ...}."""
    blocks = []
    for raw in body.split("\n\n"):
        block: dict[str, str] = {}
        for line in raw.split("\n"):
            if not line:
                continue
            if line.startswith(":"):
                block["comment"] = line[1:].strip()
                continue
            name, _, value = line.partition(": ")
            block[name] = value
        if block:
            blocks.append(block)
    return blocks


def stream(api: Client, ws: dict[str, Any], run: dict[str, Any], last_event_id: int | None = None, query: str = ""):
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    return api.get(f"{run_path(ws, run)}/events/stream{query}", headers=headers)


def streamed_events(response: Any) -> list[dict[str, Any]]:
    import json

    return [
        {"id": int(b["id"]), "event": b["event"], "data": json.loads(b["data"])}
        for b in parse_sse(response.body)
        if "id" in b
    ]


# ------------------------------------------------------------------------------ append


def test_append_answers_dense_ids_after_the_lifecycle_events(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    appended = append(api, workspace, run, log_event(1), log_event(2, severity="warning", path="src/app.py"))
    assert appended.status == 201, appended.body
    assert appended.json["data"] == {"run_id": run["id"], "ids": [3, 4], "first_id": 3, "last_id": 4}
    listed = api.get(f"{run_path(workspace, run)}/events").json["data"]
    assert [e["id"] for e in listed] == [1, 2, 3, 4]
    assert [e["event_type"] for e in listed] == ["status_changed", "status_changed", "log", "log"]
    assert listed[3] == {**listed[3], "severity": "warning", "path": "src/app.py", "data": {"n": 2}}
    assert stored_run(workspace, run)["last_event_id"] == 4


def test_concurrent_appenders_get_dense_strictly_increasing_ids(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    answered: list[list[int]] = []
    failures: list[Any] = []
    barrier = threading.Barrier(6)

    def appender(worker: int) -> None:
        barrier.wait()
        for round_ in range(5):
            response = append(api, workspace, run, *(log_event(worker * 100 + round_) for _ in range(3)))
            if response.status != 201:
                failures.append(response.json["detail"])
            else:
                answered.append(response.json["data"]["ids"])

    threads = [threading.Thread(target=appender, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    for ids in answered:
        assert ids == list(range(ids[0], ids[0] + 3))  # one append's ids are consecutive
    assert sorted(i for ids in answered for i in ids) == list(range(3, 3 + 6 * 5 * 3))
    events = []
    cursor = ""
    while True:
        page = api.get(f"{run_path(workspace, run)}/events?limit=50{cursor}").json
        events += page["data"]
        if not page["meta"]["next_cursor"]:
            break
        cursor = f"&cursor={page['meta']['next_cursor']}"
    assert [e["id"] for e in events] == list(range(1, 3 + 6 * 5 * 3))


def test_append_to_a_draft_or_finished_run_is_409_with_current_status(api, user, workspace):
    api.token = user["token"]
    draft = new_run(api, workspace)
    refused = append(api, workspace, draft, log_event(1))
    assert refused.status == 409 and refused.json["current_status"] == "draft"
    run = running_run(api, workspace)
    api.post(f"{run_path(workspace, run)}/complete", {"worker_id": "w1"})
    refused = append(api, workspace, run, log_event(1))
    assert refused.status == 409 and refused.json["current_status"] == "completed"
    assert stored_run(workspace, run)["last_event_id"] == 3  # queued, running, completed


@pytest.mark.parametrize(
    "body",
    [
        {"events": []},
        {"events": [log_event(n) for n in range(501)]},
        {"events": [{"event_type": "log", "data": {"blob": "x" * 17_000}}]},
        {"events": [{"event_type": "status_changed"}]},
        {"events": [{"event_type": "end"}]},
        {"events": [{"event_type": "Not A Type"}]},
        {"events": [{"event_type": "log", "severity": "fatal"}]},
        {"events": [{"event_type": "file_changed", "data": {"change": "modified"}}]},
        {"events": [{"event_type": "file_changed", "data": {"path": "a.py", "change": "renamed"}}]},
        {"events": [{"event_type": "command_executed", "data": {"exit_code": 0}}]},
        {"events": [{"event_type": "snapshot_created", "data": {}}]},
        {"events": [log_event(1)], "extra": True},
        {"events": [{**log_event(1), "surprise": 1}]},
        {"events": [{"event_type": "file_changed", "data": {"path": f"f{n}", "change": "added"}} for n in range(81)]},
    ],
    ids=[
        "empty", "too-many", "too-large", "reserved-type", "reserved-end", "bad-type", "bad-severity",
        "file-without-path", "bad-change", "command-without-command", "snapshot-without-label", "unknown-field",
        "unknown-event-field", "too-many-files",
    ],
)  # fmt: skip
def test_bad_appends_are_422_and_write_nothing(api, user, workspace, body):
    api.token = user["token"]
    run = running_run(api, workspace)
    refused = api.post(f"{run_path(workspace, run)}/events", body)
    assert refused.status == 422, refused.body
    assert refused.header("content-type") == "application/problem+json"
    assert stored_run(workspace, run)["last_event_id"] == 2


def test_invalid_json_is_400(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    refused = api.request(
        "POST", f"{run_path(workspace, run)}/events", raw="{not json", headers={"Content-Type": "application/json"}
    )
    assert refused.status == 400


def test_strangers_get_404_and_viewers_cannot_append(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    stranger = register_and_login(api)
    for path in ("events", "events/stream", "files", "diff", "commands", "snapshots", "summary"):
        assert api.get(f"{run_path(workspace, run)}/{path}", token=stranger["token"]).status == 404, path
    assert append(api, workspace, run, log_event(1), token=stranger["token"]).status == 404
    viewer = register_and_login(api)
    added = api.post(
        f"/api/v1/workspaces/{workspace['id']}/members", {"user_id": viewer["user"]["id"], "role": "viewer"}
    )
    assert added.status == 201, added.body
    assert api.get(f"{run_path(workspace, run)}/events", token=viewer["token"]).status == 200
    refused = append(api, workspace, run, log_event(1), token=viewer["token"])
    assert refused.status == 403 and refused.json["required_scope"] == "runs:control"
    assert api.put(f"{run_path(workspace, run)}/summary", {"text": "x"}, token=viewer["token"]).status == 403
    missing = f"{runs_path(workspace)}/run_missing"
    assert api.get(f"{missing}/events").status == 404
    assert api.get(f"{missing}/events/stream").status == 404
    assert api.get(f"{missing}/files").status == 404
    assert api.get(f"{missing}/summary").status == 404
    assert append(api, workspace, {"id": "run_missing"}, log_event(1)).status == 404


def test_question_event_notifies_the_runs_creator(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    asked = append(api, workspace, run, log_event(1), {"event_type": "question", "data": {"question": "Which DB?"}})
    assert asked.status == 201
    inbox = api.get(f"/api/v1/workspaces/{workspace['id']}/notifications?type=needs_input").json["data"]
    assert len(inbox) == 1
    assert inbox[0]["body"] == "Which DB?"
    assert inbox[0]["data"] == {"run_id": run["id"], "event_id": 4, "event_type": "question"}
    append(api, workspace, run, log_event(2))
    assert len(api.get(f"/api/v1/workspaces/{workspace['id']}/notifications?type=needs_input").json["data"]) == 1


# ------------------------------------------------------------------------------ backfill


def test_backfill_filters_by_since_type_severity_and_path(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    append(
        api, workspace, run,
        log_event(1, path="src/a.py"),
        log_event(2, severity="error", path="src/b.py"),
        {"event_type": "tool_call", "severity": "debug", "path": "docs/readme.md"},
        log_event(3, severity="warning", path="src/sub/c.py"),
    )  # fmt: skip
    base = f"{run_path(workspace, run)}/events"
    assert [e["id"] for e in api.get(f"{base}?since=4").json["data"]] == [5, 6]
    assert [e["id"] for e in api.get(f"{base}?event_types=tool_call,status_changed").json["data"]] == [1, 2, 5]
    assert [e["id"] for e in api.get(f"{base}?severity=error,warning").json["data"]] == [4, 6]
    assert [e["id"] for e in api.get(f"{base}?path=src/").json["data"]] == [3, 4, 6]
    assert [e["id"] for e in api.get(f"{base}?path=src/&severity=info").json["data"]] == [3]
    assert api.get(f"{base}?severity=fatal").status == 422
    assert api.get(f"{base}?since=-1").status == 422
    assert api.get(f"{base}?since=99").json == {"data": [], "meta": {"next_cursor": None, "limit": 50}}


def test_backfill_pages_with_a_cursor_bound_to_the_query(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    for batch in range(4):
        append(
            api, workspace, run, *(log_event(batch * 10 + n, severity="error" if n % 2 else "info") for n in range(10))
        )
    base = f"{run_path(workspace, run)}/events"
    seen: list[int] = []
    url = f"{base}?limit=7&severity=error"
    pages = 0
    while url:
        body = api.get(url).json
        assert len(body["data"]) <= 7
        seen += [e["id"] for e in body["data"]]
        pages += 1
        url = (
            f"{base}?limit=7&severity=error&cursor={body['meta']['next_cursor']}" if body["meta"]["next_cursor"] else ""
        )
    assert seen == [e for e in range(3, 43) if (e - 3) % 2 == 1]
    assert pages >= 3
    first = api.get(f"{base}?limit=5").json["meta"]["next_cursor"]
    assert api.get(f"{base}?limit=5&severity=info&cursor={first}").status == 400
    assert api.get(f"{base}?limit=5&cursor={first}x").status == 400
    other = running_run(api, workspace)
    assert api.get(f"{run_path(workspace, other)}/events?limit=5&cursor={first}").status == 400


# ----------------------------------------------------------------------------------- SSE


def test_stream_speaks_server_sent_events(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    append(api, workspace, run, log_event(1, path="a.py"))
    response = stream(api, workspace, run)
    assert response.status == 200
    assert response.header("content-type").startswith("text/event-stream")
    assert response.header("cache-control") == "no-cache"
    lines = response.body.split("\n")
    assert lines[0].startswith("retry: ") and int(lines[0][7:]) >= 0
    assert lines[1] == ": ping"
    assert "id: 3\nevent: log\ndata: {" in response.body
    events = streamed_events(response)
    assert [(e["id"], e["event"]) for e in events] == [(1, "status_changed"), (2, "status_changed"), (3, "log")]
    assert events[2]["data"] == {**events[2]["data"], "id": 3, "run_id": run["id"], "path": "a.py", "data": {"n": 1}}
    assert [e["id"] for e in streamed_events(stream(api, workspace, run, query="?since=2"))] == [3]
    assert [e["id"] for e in streamed_events(stream(api, workspace, run, 1, query="?since=2"))] == [2, 3]


def test_idle_stream_answers_a_ping_after_the_bounded_wait(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    started = time.monotonic()
    response = stream(api, workspace, run, 2)
    elapsed = time.monotonic() - started
    assert response.status == 200
    assert 0.9 <= elapsed < 5
    assert [b for b in parse_sse(response.body) if "event" in b] == []
    assert {"comment": "ping"} in parse_sse(response.body) or ": ping" in response.body


def test_stream_answers_as_soon_as_an_event_arrives(api, user, workspace, monkeypatch):
    from agentplane.logic import sse

    monkeypatch.setenv("SSE_MAX_WAIT_SECONDS", "10")
    sse.get_stream_settings.cache_clear()
    api.token = user["token"]
    run = running_run(api, workspace)
    result: dict[str, Any] = {}

    def listen() -> None:
        started = time.monotonic()
        result["response"] = stream(api, workspace, run, 2)
        result["elapsed"] = time.monotonic() - started

    listener = threading.Thread(target=listen)
    listener.start()
    time.sleep(0.4)
    append(api, workspace, run, log_event(1))
    listener.join()
    assert [e["id"] for e in streamed_events(result["response"])] == [3]
    assert result["elapsed"] < 5


def test_stream_of_a_finished_run_ends_at_once(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    api.post(f"{run_path(workspace, run)}/complete", {"worker_id": "w1"})
    assert [e["event"] for e in streamed_events(stream(api, workspace, run, 0))][-1] == "status_changed"
    started = time.monotonic()
    response = stream(api, workspace, run, 3)
    assert time.monotonic() - started < 0.9
    blocks = [b for b in parse_sse(response.body) if "event" in b]
    assert [b["event"] for b in blocks] == ["end"]
    assert "id" not in blocks[0]  # the client's Last-Event-ID stays on the last real event
    assert '"status":"completed"' in blocks[0]["data"]


def test_stream_caps_one_response_at_500_events(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    for batch in range(2):
        assert append(api, workspace, run, *(log_event(batch * 500 + n) for n in range(400))).status == 201
    first = streamed_events(stream(api, workspace, run, 0))
    assert [e["id"] for e in first] == list(range(1, 501))
    rest = streamed_events(stream(api, workspace, run, 500))
    assert [e["id"] for e in rest] == list(range(501, 803))


@pytest.mark.slow
@pytest.mark.timeout(400)  # the emulated table copies itself on every transaction: big runs are slow here
def test_resuming_from_random_cut_points_over_3000_events_loses_and_repeats_nothing(api, user, workspace):
    """A writer appends ~3000 events in random batches and finishes the run while a reader keeps
    reconnecting, each time having kept only a random prefix of what it was sent."""
    api.token = user["token"]
    run = running_run(api, workspace)
    rng = random.Random(20240611)
    sizes = []
    while sum(sizes) < 3000:
        sizes.append(rng.randint(100, 500))

    def writer() -> None:
        for size in sizes:
            assert append(api, workspace, run, *(log_event(n) for n in range(size))).status == 201
        api.post(f"{run_path(workspace, run)}/complete", {"worker_id": "w1"})

    writing = threading.Thread(target=writer)
    writing.start()
    received: list[int] = []
    last: int | None = None
    for _ in range(2000):
        response = stream(api, workspace, run, last)
        assert response.status == 200
        blocks = [b for b in parse_sse(response.body) if "event" in b]
        if blocks and blocks[0]["event"] == "end":
            break
        cut = rng.randint(0, len(blocks)) if blocks else 0
        for block in blocks[:cut]:
            received.append(int(block["id"]))
            last = int(block["id"])
    writing.join()
    total = 2 + sum(sizes) + 1  # queued, running, the appended events, completed
    assert received == list(range(1, total + 1))


# --------------------------------------------------------------------------- redaction


def test_secrets_are_redacted_before_anything_is_stored(api, user, workspace):
    api.token = user["token"]
    put = api.put(f"/api/v1/workspaces/{workspace['id']}/common-env", {"variables": {"DB_PASSWORD": ENV_SECRET}})
    assert put.status == 200, put.body
    run = running_run(api, workspace)
    leaked = f"key {AWS_KEY} auth {BEARER} pem {PRIVATE_KEY} db {ENV_SECRET}"
    appended = append(
        api, workspace, run,
        {"event_type": "log", "path": f"cfg/{ENV_SECRET}", "data": {"line": leaked, "nested": [{ENV_SECRET: AWS_KEY}]}},
        {"event_type": "command_executed",
         "data": {"command": f"psql --password {ENV_SECRET}", "exit_code": 1, "stdout": leaked, "stderr": BEARER}},
        {"event_type": "file_changed", "data": {"path": ".env", "change": "modified", "diff": f"+KEY={AWS_KEY}"}},
    )  # fmt: skip
    assert appended.status == 201, appended.body
    stored = stored_telemetry(workspace, run)
    served = api.get(f"{run_path(workspace, run)}/events").body + stream(api, workspace, run, 0).body
    for secret in (AWS_KEY, "abcdefghijklmnopqrstuvwxyz012345", "MIIEowIBAAKCAQEA7bq", ENV_SECRET):
        assert secret not in stored, secret
        assert secret not in served, secret
    assert "[REDACTED]" in stored
    command = api.get(f"{run_path(workspace, run)}/commands").json["data"][0]
    detail = api.get(f"{run_path(workspace, run)}/commands/{command['id']}").json["data"]
    stdout = requests.get(detail["stdout_url"], timeout=10).text
    assert "[REDACTED]" in stdout and AWS_KEY not in stdout and ENV_SECRET not in stdout
    assert ENV_SECRET not in detail["command"]


def test_an_agents_configured_api_key_is_masked_when_a_run_echoes_it(api, user, workspace):
    from agentplane.logic import known_secrets

    api.token = user["token"]
    agents = f"/api/v1/workspaces/{workspace['id']}/agents"
    assert api.post(agents, {"name": "builder"}).status == 201
    engine_key = "engine-credential-7f3a9c2e41b8"  # no token shape: only the known values can find it
    assert api.put(f"{agents}/builder/config", {"api_key": engine_key}).status == 200
    assert known_secrets.read(workspace["id"]) == (engine_key,)
    run = running_run(api, workspace)
    encoded = base64.b64encode(engine_key.encode()).decode()
    echoed = {"event_type": "log", "data": {"line": f"calling the engine with {engine_key}", "config": encoded}}

    assert append(api, workspace, run, echoed).status == 201
    served = api.get(f"{run_path(workspace, run)}/events").body
    for leaked in (engine_key, encoded):
        assert leaked not in stored_telemetry(workspace, run) and leaked not in served, leaked
    assert "calling the engine with [REDACTED]" in served

    # A cleared key is no longer the workspace's, nor is a deleted agent's.
    assert api.put(f"{agents}/builder/config", {"api_key": None}).status == 200
    assert known_secrets.read(workspace["id"]) == ()
    assert api.put(f"{agents}/builder/config", {"api_key": engine_key}).status == 200
    assert api.delete(f"{agents}/builder").status == 204
    assert known_secrets.read(workspace["id"]) == ()


def test_summary_is_structured_and_redacted(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    before = api.get(f"{run_path(workspace, run)}/summary")
    assert before.status == 200 and before.json["data"]["version"] == 0 and before.json["data"]["changed_files"] == []
    body = {
        "text": f"Added login; used {AWS_KEY} by mistake",
        "changed_files": [{"path": "src/login.py", "change": "added"}],
        "risks": [{"level": "high", "description": "Session cookies are not rotated"}],
        "tests": {"passed": 12, "failed": 0, "skipped": 1, "command": "pytest -q"},
        "docs": ["docs/login.md"],
    }
    put = api.put(f"{run_path(workspace, run)}/summary", body)
    assert put.status == 200, put.body
    summary = api.get(f"{run_path(workspace, run)}/summary").json["data"]
    assert summary["version"] == 1 and summary["updated_by"] == user["user"]["id"]
    assert summary["text"] == "Added login; used [REDACTED] by mistake"
    assert summary["changed_files"] == [{"path": "src/login.py", "change": "added", "note": None}]
    assert summary["risks"][0]["level"] == "high" and summary["tests"]["passed"] == 12
    assert api.get(run_path(workspace, run)).json["data"]["summary"] == summary["text"]
    assert (
        api.put(f"{run_path(workspace, run)}/summary", {"risks": [{"level": "dire", "description": "x"}]}).status == 422
    )
    assert api.put(f"{run_path(workspace, run)}/summary", {"text": "x", "surprise": 1}).status == 422
    assert api.put(f"{run_path(workspace, run)}/summary", {"text": "again"}).json["data"]["version"] == 2


# ------------------------------------------------------------- files, diff, commands, snapshots


def test_file_changes_materialize_files_and_an_aggregate_diff(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)

    def changed(path: str, change: str, diff: str, *, in_data: bool = True) -> dict[str, Any]:
        if in_data:
            return {"event_type": "file_changed", "data": {"path": path, "change": change, "diff": diff}}
        return {"event_type": "file_changed", "path": path, "data": {"change": change, "diff": diff}}

    append(
        api, workspace, run,
        changed("src/app.py", "modified", "@@ -1 +1 @@\n-old\n+first"),
        changed("README.md", "added", "+# Title\n+text"),
    )  # fmt: skip
    append(api, workspace, run, changed("src/app.py", "modified", "@@ -1 +1,2 @@\n-old\n+new\n+more", in_data=False))
    files = api.get(f"{run_path(workspace, run)}/files").json["data"]
    assert sorted(f["path"] for f in files) == ["README.md", "src/app.py"]
    app_file = next(f for f in files if f["path"] == "src/app.py")
    assert app_file["event_id"] == 5 and app_file["additions"] == 2 and app_file["deletions"] == 1
    assert "diff" not in app_file
    detail = api.get(f"{run_path(workspace, run)}/files/{app_file['id']}").json["data"]
    assert detail["diff"] == "@@ -1 +1,2 @@\n-old\n+new\n+more"  # the latest change wins
    assert api.get(f"{run_path(workspace, run)}/files/fil_nope").status == 404
    diff = api.get(f"{run_path(workspace, run)}/diff").json["data"]
    assert diff["files"] == ["README.md", "src/app.py"]
    assert diff["diff"].startswith("diff --git a/README.md b/README.md\n--- /dev/null\n+++ b/README.md\n+# Title")
    assert "--- a/src/app.py\n+++ b/src/app.py\n@@ -1 +1,2 @@\n-old\n+new\n+more\n" in diff["diff"]
    events = api.get(f"{run_path(workspace, run)}/events?event_types=file_changed").json["data"]
    assert events[-1]["data"]["file_id"] == app_file["id"]
    paged = api.get(f"{run_path(workspace, run)}/files?limit=1").json
    more = api.get(f"{run_path(workspace, run)}/files?limit=1&cursor={paged['meta']['next_cursor']}").json["data"]
    assert {paged["data"][0]["path"], more[0]["path"]} == {"README.md", "src/app.py"}


def test_commands_keep_output_in_s3_behind_signed_urls(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    output = {"stdout": "3 passed, 1 failed\n", "stderr": ""}
    ran = {"command": "pytest -q", "exit_code": 1, "duration_ms": 4200, **output}
    append(api, workspace, run, {"event_type": "command_executed", "data": ran})
    commands = api.get(f"{run_path(workspace, run)}/commands").json["data"]
    assert len(commands) == 1
    assert commands[0] == {**commands[0], "command": "pytest -q", "exit_code": 1, "duration_ms": 4200,
                           "stdout_bytes": 19, "stderr_bytes": 0, "event_id": 3}  # fmt: skip
    detail = api.get(f"{run_path(workspace, run)}/commands/{commands[0]['id']}").json["data"]
    assert detail["stderr_url"] is None
    assert "X-Amz-Expires=300" in detail["stdout_url"] and detail["urls_expire_at"]
    assert requests.get(detail["stdout_url"], timeout=10).text == "3 passed, 1 failed\n"
    key = keys.run_command_output_object(workspace["id"], run["id"], commands[0]["id"], "stdout")
    body = boto3.client("s3").get_object(Bucket=get_settings().artifacts_bucket, Key=key)["Body"].read()
    assert body == b"3 passed, 1 failed\n"
    assert api.get(f"{run_path(workspace, run)}/commands/cmd_nope").status == 404


def test_refused_append_leaves_no_command_output_behind(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    api.post(f"{run_path(workspace, run)}/complete", {"worker_id": "w1"})
    event = {"event_type": "command_executed", "data": {"command": "ls", "stdout": "a\nb\n"}}
    assert append(api, workspace, run, event).status == 409
    listed = boto3.client("s3").list_objects_v2(
        Bucket=get_settings().artifacts_bucket, Prefix=f"runs/{workspace['id']}/"
    )
    assert listed.get("KeyCount", 0) == 0


def test_snapshots_are_listed_from_their_events(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    append(
        api, workspace, run, {"event_type": "snapshot_created", "data": {"label": "before refactor", "files": ["a.py"]}}
    )
    append(api, workspace, run, {"event_type": "snapshot_created", "data": {"label": "after", "files": []}})
    snapshots = api.get(f"{run_path(workspace, run)}/snapshots").json["data"]
    assert [(s["label"], s["event_id"], s["files"]) for s in snapshots] == [
        ("before refactor", 3, ["a.py"]),
        ("after", 4, []),
    ]
    assert all(s["id"].startswith("rsnap_") for s in snapshots)


# ----------------------------------------------------------------------------- artifacts


def test_artifact_gets_a_signed_upload_url(api, user, workspace):
    api.token = user["token"]
    run = running_run(api, workspace)
    created = api.post(
        f"{run_path(workspace, run)}/artifacts", {"name": "report.zip", "content_type": "application/zip", "size": 7}
    )
    assert created.status == 201, created.body
    artifact = created.json["data"]
    assert artifact["id"].startswith("art_") and artifact["size"] == 7 and artifact["upload_expires_at"]
    uploaded = requests.put(
        artifact["upload_url"], data=b"zipdata", headers={"Content-Type": "application/zip"}, timeout=10
    )
    assert uploaded.status_code == 200
    key = keys.run_artifact_object(workspace["id"], run["id"], artifact["id"], "report.zip")
    assert boto3.client("s3").get_object(Bucket=get_settings().artifacts_bucket, Key=key)["Body"].read() == b"zipdata"
    too_big = {"name": "huge.bin", "size": 100 * 1024 * 1024 + 1}
    assert api.post(f"{run_path(workspace, run)}/artifacts", too_big).status == 422
    assert api.post(f"{run_path(workspace, run)}/artifacts", {"name": "../etc/passwd", "size": 1}).status == 422
    draft = new_run(api, workspace)
    assert api.post(f"{run_path(workspace, draft)}/artifacts", {"name": "a.txt", "size": 1}).status == 409


# ------------------------------------------------------------------ notification stream


def test_notification_stream_resumes_after_the_last_event_id(api, user, workspace):
    api.token = user["token"]
    base = f"/api/v1/workspaces/{workspace['id']}/notifications"
    first = api.post(base, {"title": "Build is green", "type": "success"}).json["data"]
    response = api.get(f"{base}/stream", headers={"Last-Event-ID": "ntf_" + "0" * 26})
    assert response.status == 200 and response.header("content-type").startswith("text/event-stream")
    blocks = [b for b in parse_sse(response.body) if "event" in b]
    assert [(b["id"], b["event"]) for b in blocks] == [(first["id"], "success")]
    assert '"title":"Build is green"' in blocks[0]["data"]
    second = api.post(base, {"title": "Needs review", "type": "needs_input"}).json["data"]
    resumed = api.get(f"{base}/stream", headers={"Last-Event-ID": first["id"]})
    assert [b["id"] for b in parse_sse(resumed.body) if "event" in b] == [second["id"]]
    idle = api.get(f"{base}/stream", headers={"Last-Event-ID": second["id"]})
    assert [b for b in parse_sse(idle.body) if "event" in b] == []
    assert api.get(f"{base}/stream", headers={"Last-Event-ID": "garbage"}).status == 400
    stranger = register_and_login(api)
    assert api.get(f"{base}/stream", token=stranger["token"]).status == 404


def test_a_notification_written_after_a_newer_one_was_streamed_is_still_streamed(api, user, workspace, monkeypatch):
    """A notification's id is minted before it is written: one minted first may land after a newer
    one was already streamed, however late. Resuming after the newer one still delivers it, once."""
    from agentplane.ids import new_id
    from agentplane.logic import notifications

    api.token = user["token"]
    base = f"/api/v1/workspaces/{workspace['id']}/notifications"
    minted_early = new_id("ntf")
    newer = api.post(base, {"title": "Newer"}).json["data"]
    streamed = api.get(f"{base}/stream", headers={"Last-Event-ID": minted_early})
    assert [b["id"] for b in parse_sse(streamed.body) if "event" in b] == [newer["id"]]

    ids = iter([minted_early])
    monkeypatch.setattr(notifications, "new_id", lambda prefix: next(ids, None) or new_id(prefix))
    notifications.notify(None, workspace["id"], [user["user"]["id"]], "info", "Written late")

    resumed = api.get(f"{base}/stream", headers={"Last-Event-ID": newer["id"]})
    late = [b for b in parse_sse(resumed.body) if "event" in b]
    assert len(late) == 1 and '"title":"Written late"' in late[0]["data"]
    assert late[0]["id"] > newer["id"]
    again = api.get(f"{base}/stream", headers={"Last-Event-ID": late[0]["id"]})
    assert [b for b in parse_sse(again.body) if "event" in b] == []
    titles = [n["title"] for n in api.get(base).json["data"]]
    assert sorted(titles) == ["Newer", "Written late"]  # written once

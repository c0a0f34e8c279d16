"""`python -m devstack` as a user runs it: a real process, real HTTP and WebSocket, a restart."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.stackprocess import BANNER_END

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).parents[1] / "fixtures" / "devstack" / "template.yaml"

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    base: str
    ws_url: str
    log: Path

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(self.base + path, method=method)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, data, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def interrupt(self) -> int:
        """Ctrl-C, as a user stops `make dev`; returns the exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=15)


@contextmanager
def dev_stack(data_dir: Path, logs: Path, template: Path | None = None) -> Iterator[Running]:
    http_port, ws_port = free_port(), free_port()
    env = {
        **os.environ,
        "AGENTPLANE_HTTP_PORT": str(http_port),
        "AGENTPLANE_WS_PORT": str(ws_port),
        "AGENTPLANE_DATA_DIR": str(data_dir),
        "AGENTPLANE_SAVE_INTERVAL": "1",
    }
    env.pop("AGENTPLANE_TEMPLATE", None)
    if template:
        env["AGENTPLANE_TEMPLATE"] = str(template)
    log = logs / f"devstack-{http_port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack"], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    running = Running(process, f"http://127.0.0.1:{http_port}", f"ws://127.0.0.1:{ws_port}", log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the local stack exited early:\n{log.read_text()}")
            try:
                # The servers listen before the banner is printed; ready means both.
                if BANNER_END in log.read_text() and running.call("GET", "/api/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the local stack is not ready (banner and /api/health):\n{log.read_text()}")
            time.sleep(0.1)
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_dev_stack_serves_the_api_and_keeps_tasks_across_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    account = {
        "username": "newcomer",
        "email": "newcomer@example.com",
        "password": "correct horse battery",
        "terms_accepted": True,
        "privacy_accepted": True,
    }
    with dev_stack(data_dir, tmp_path) as stack:
        assert stack.call("POST", "/api/v1/auth/register", account)[0] == 201
        status, login = stack.call(
            "POST", "/api/v1/auth/login", {"email": account["email"], "password": account["password"]}
        )
        assert status == 200, login
        token = login["data"]["token"]
        status, workspace = stack.call("POST", "/api/v1/workspaces", {"name": "Acme"}, token)
        assert status == 201, workspace
        tasks = f"/api/v1/workspaces/{workspace['data']['id']}/tasks"
        status, task = stack.call("POST", tasks, {"title": "Survive a restart"}, token)
        assert status == 201, task
        status, listed = stack.call("GET", tasks, token=token)
        assert [t["id"] for t in listed["data"]] == [task["data"]["id"]]
        assert stack.call("GET", tasks)[0] == 401  # the authorizer guards the route
        assert stack.interrupt() == 0
        assert "stopped." in stack.log.read_text()

    assert (data_dir / "signing-secret").exists()
    with dev_stack(data_dir, tmp_path) as stack:
        # The same session token still works: table, signing secret and keys all came back.
        status, listed = stack.call("GET", tasks, token=token)
        assert status == 200, listed
        assert [t["title"] for t in listed["data"]] == ["Survive a restart"]
        assert stack.interrupt() == 0


def test_dev_stack_serves_the_templates_websocket_api(tmp_path: Path) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with dev_stack(tmp_path / "data", tmp_path, template=FIXTURE) as stack:
        with pytest.raises(InvalidStatus):
            connect(f"{stack.ws_url}/?token=wrong", open_timeout=5)
        with connect(f"{stack.ws_url}/?token=let-me-in", open_timeout=5) as client:
            client.send(json.dumps({"action": "echo", "text": "over the wire"}))
            assert json.loads(client.recv(timeout=5)) == {"echo": "over the wire", "endpoint_matches": True}
        assert stack.interrupt() == 0


def _sse(stack: Running, path: str, token: str, last_event_id: int) -> list[dict[str, str]]:
    """One bounded SSE response: its event blocks (`id`, `event`, `data`)."""
    request = urllib.request.Request(stack.base + path, method="GET")
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Last-Event-ID", str(last_event_id))
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        body = response.read().decode()
    blocks = []
    for raw in body.split("\n\n"):
        block = dict(line.split(": ", 1) for line in raw.split("\n") if line and not line.startswith(":"))
        if "event" in block:
            blocks.append(block)
    return blocks


def test_dev_stack_runs_a_gated_run_live_and_fails_a_silent_agents_run_on_its_own(tmp_path: Path) -> None:
    """What a client of `make dev` does: create a run and watch it live over WebSocket and SSE while
    an agent claims it, reports events and heartbeats; pause, resume, approve and commit it. A run
    whose agent goes silent fails as stalled without anyone touching it."""
    from websockets.sync.client import connect

    account = {"username": "lead", "email": "lead@example.com", "password": "correct horse battery",
               "terms_accepted": True, "privacy_accepted": True}  # fmt: skip
    with dev_stack(tmp_path / "data", tmp_path) as stack:
        assert stack.call("POST", "/api/v1/auth/register", account)[0] == 201
        token = stack.call("POST", "/api/v1/auth/login", {"email": account["email"], "password": account["password"]})[
            1
        ]["data"]["token"]
        ws = stack.call("POST", "/api/v1/workspaces", {"name": "Acme"}, token)[1]["data"]["id"]
        runs = f"/api/v1/workspaces/{ws}/runs"
        status, created = stack.call(
            "POST", runs, {"title": "Add login", "prompt": "Build it", "agent": "builder", "requires_approval": True},
            token,
        )  # fmt: skip
        assert status == 201, created
        run = f"{runs}/{created['data']['id']}"

        with connect(f"{stack.ws_url}/?token={token}", open_timeout=5) as socket:
            channel = f"runs/{created['data']['id']}"
            socket.send(json.dumps({"action": "subscribe", "channel": channel, "workspace_id": ws}))
            assert json.loads(socket.recv(timeout=10))["type"] == "subscribed"

            def act(action: str, body: Any = None) -> Any:
                status, answer = stack.call("POST", f"{run}/{action}", body, token)
                assert status in (200, 201), (action, answer)
                return answer["data"]

            assert act("start")["status"] == "queued"
            assert act("claim", {"worker_id": "w1"})["status"] == "running"
            assert act("heartbeat", {"worker_id": "w1", "progress": 10})["desired_state"] == "run"
            logs = [{"event_type": "log", "data": {"line": line}} for line in ("cloning", "building")]
            assert stack.call("POST", f"{run}/events", {"events": logs}, token)[0] == 201
            assert act("pause")["status"] == "paused"
            assert act("heartbeat", {"worker_id": "w1"})["desired_state"] == "pause"
            assert act("resume")["status"] == "running"
            assert act("heartbeat", {"worker_id": "w1"})["desired_state"] == "run"
            assert act("complete", {"worker_id": "w1", "summary": "done"})["status"] == "awaiting_approval"
            assert act("approve", {"notes": "ship it"})["status"] == "completed"
            committed = act("commit", {"message": "Add login"})
            assert committed["committed_at"]
            last = committed["last_event_id"]

            pushed: list[dict[str, Any]] = []
            deadline = time.monotonic() + 20
            while (not pushed or pushed[-1]["id"] < last) and time.monotonic() < deadline:
                message = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
                if "type" not in message:
                    pushed.append(message)
        assert [p["id"] for p in pushed] == list(range(1, last + 1))  # each once, in order

        streamed: list[dict[str, str]] = []
        while not streamed or int(streamed[-1]["id"]) < last:
            streamed += _sse(stack, f"{run}/events/stream", token, int(streamed[-1]["id"]) if streamed else 0)
        assert [int(b["id"]) for b in streamed] == [p["id"] for p in pushed]
        assert [b["event"] for b in streamed] == [p["event"] for p in pushed]
        moves = [(p["data"]["data"]["from"], p["data"]["data"]["to"]) for p in pushed if p["event"] == "status_changed"]
        assert moves == [("draft", "queued"), ("queued", "running"), ("running", "paused"), ("paused", "running"),
                         ("running", "awaiting_approval"), ("awaiting_approval", "completed")]  # fmt: skip
        assert [p["data"]["data"]["line"] for p in pushed if p["event"] == "log"] == ["cloning", "building"]
        assert pushed[-1]["event"] == "git_commit_requested"

        # The execution finished the run's bookkeeping: its creator hears that it completed.
        finished = f"/api/v1/workspaces/{ws}/notifications?type=finished"
        deadline = time.monotonic() + 20
        while not stack.call("GET", finished, token=token)[1]["data"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [n["data"]["status"] for n in stack.call("GET", finished, token=token)[1]["data"]] == ["completed"]

        status, silent = stack.call(
            "POST", runs, {"title": "Goes quiet", "prompt": "x", "heartbeat_timeout_seconds": 5}, token
        )
        assert status == 201, silent
        silent_run = f"{runs}/{silent['data']['id']}"
        assert stack.call("POST", f"{silent_run}/start", token=token)[0] == 200
        assert stack.call("POST", f"{silent_run}/claim", {"worker_id": "w2"}, token)[0] == 200
        deadline = time.monotonic() + 40
        while (current := stack.call("GET", silent_run, token=token)[1]["data"])["status"] != "failed":
            assert time.monotonic() < deadline, current
            time.sleep(0.5)
        assert current["failure_reason"] == "stalled"
        assert stack.interrupt() == 0


def test_a_live_runs_timers_survive_a_restart_of_the_dev_stack(tmp_path: Path) -> None:
    """Executions are started again when `make dev` comes back, and the wait a run was in keeps its
    clock: an agent that went silent before a stop is reported stalled one heartbeat timeout after
    its last beat, as if the stack had never stopped, not a whole timeout after the restart."""
    data_dir = tmp_path / "data"
    account = {"username": "ops", "email": "ops@example.com", "password": "correct horse battery",
               "terms_accepted": True, "privacy_accepted": True}  # fmt: skip
    timeout, downtime = 20, 6.0
    with dev_stack(data_dir, tmp_path) as stack:
        assert stack.call("POST", "/api/v1/auth/register", account)[0] == 201
        login = {"email": account["email"], "password": account["password"]}
        token = stack.call("POST", "/api/v1/auth/login", login)[1]["data"]["token"]
        ws = stack.call("POST", "/api/v1/workspaces", {"name": "Acme"}, token)[1]["data"]["id"]
        runs = f"/api/v1/workspaces/{ws}/runs"
        body = {"title": "Across a restart", "prompt": "x", "heartbeat_timeout_seconds": timeout}
        run = f"{runs}/{stack.call('POST', runs, body, token)[1]['data']['id']}"
        assert stack.call("POST", f"{run}/start", None, token)[0] == 200
        assert stack.call("POST", f"{run}/claim", {"worker_id": "w1"}, token)[0] == 200
        time.sleep(1)
        assert stack.call("POST", f"{run}/heartbeat", {"worker_id": "w1"}, token)[0] == 200
        last_beat = time.time()
        assert stack.interrupt() == 0
        assert "1 running executions" not in stack.log.read_text()  # the first start restored nothing
    time.sleep(downtime)

    with dev_stack(data_dir, tmp_path) as stack:
        assert "1 running executions" in stack.log.read_text()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answer = stack.call("GET", run, token=token)[1]["data"]
            if answer["status"] != "running":
                break
            time.sleep(0.25)
        stalled_after = time.time() - last_beat
        assert (answer["status"], answer["failure_reason"]) == ("failed", "stalled")
        # On time within a few seconds; a timer started over would be at least `downtime` late.
        assert timeout - 1 < stalled_after < timeout + downtime - 2, stalled_after
        assert stack.interrupt() == 0

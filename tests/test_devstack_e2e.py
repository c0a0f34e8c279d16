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

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "devstack" / "template.yaml"

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
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the local stack exited early:\n{log.read_text()}")
            try:
                if running.call("GET", "/api/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the local stack did not answer /api/health:\n{log.read_text()}")
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

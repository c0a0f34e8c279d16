"""`make dev` as a user runs it, in a child process on free ports, and a small JSON client for it."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BANNER_END = "Ctrl-C stops the stack"  # the banner's last line, printed once everything listens


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class StackProcess:
    """`python -m devstack` on its own data directory; `kill()` is a kill -9."""

    def __init__(self, data_dir: Path, **environment: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.environment = {
            **os.environ,
            "AGENTPLANE_HTTP_PORT": str(self.port),
            "AGENTPLANE_WS_PORT": str(free_port()),
            "AGENTPLANE_DATA_DIR": str(data_dir),
            "AGENTPLANE_LOG_LEVEL": "WARNING",
            **environment,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.output = data_dir / "stack.out"  # what it prints: the banner
        self.errors = data_dir / "stack.err"  # its log; a file, so a chatty stack never blocks on a full pipe

    def start(self, timeout: float = 120.0) -> StackProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.output.open("wb") as output, self.errors.open("wb") as errors:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "devstack"], cwd=ROOT, env=self.environment, stdout=output, stderr=errors
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the stack exited: {self.errors.read_text()[-2000:]}")
            # The servers listen before the banner is printed; ready means both.
            if BANNER_END in self.output.read_text() and self._healthy():
                return self
            time.sleep(0.2)
        raise RuntimeError("the stack did not print its banner and answer /api/health in time")

    def _healthy(self) -> bool:
        try:
            return Client(self.port).request("GET", "/api/health").status == 200
        except OSError:
            return False

    def rss_mb(self) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Answer:
    status: int
    json: Any
    seconds: float


class Client:
    """One keep-alive connection; reconnects once if the server closed it. A 429 is waited out as
    its Retry-After says (counted in `throttled`), as a well-behaved client does."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.port = port
        self.token = token
        self.throttled = 0
        self._connection: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: Any = None) -> Answer:
        for _ in range(10):
            answer, retry_after = self._once(method, path, body)
            if answer.status != 429:
                return answer
            self.throttled += 1
            time.sleep(retry_after)
        return answer

    def _once(self, method: str, path: str, body: Any) -> tuple[Answer, float]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if method == "POST":
            headers["Idempotency-Key"] = str(uuid.uuid4())
        payload = json.dumps(body).encode() if body is not None else None
        for attempt in (0, 1):
            if self._connection is None:
                self._connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            started = time.perf_counter()
            try:
                self._connection.request(method, path, body=payload, headers=headers)
                response = self._connection.getresponse()
                raw = response.read()
            except (ConnectionError, http.client.HTTPException):
                self._connection.close()
                self._connection = None
                if attempt:
                    raise
                continue
            seconds = time.perf_counter() - started
            retry_after = float(response.getheader("Retry-After") or 1)
            return Answer(response.status, json.loads(raw) if raw else None, seconds), retry_after
        raise AssertionError("unreachable")


def signed_in(port: int, name: str) -> tuple[Client, str]:
    """A new account with a workspace of its own: (its client, the workspace id)."""
    client = Client(port)
    email = f"{name}@example.com"
    password = "correct horse battery"
    registered = client.request(
        "POST",
        "/api/v1/auth/register",
        {"username": name, "email": email, "password": password, "terms_accepted": True, "privacy_accepted": True},
    )
    assert registered.status == 201, registered.json
    login = client.request("POST", "/api/v1/auth/login", {"email": email, "password": password})
    assert login.status == 200, login.json
    client.token = login.json["data"]["token"]
    workspace = client.request("POST", "/api/v1/workspaces", {"name": f"{name} bench"})
    assert workspace.status == 201, workspace.json
    return client, workspace.json["data"]["id"]

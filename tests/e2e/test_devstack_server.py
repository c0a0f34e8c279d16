"""The local HTTP server: bursts are queued, and every answer it gives itself is a problem."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from devstack.gateway import HttpResponse
from devstack.server import LocalHttpServer


class SlowApi:
    """Stands in for the gateway: answers after a pause, or fails for /boom."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes | None, ip: str) -> HttpResponse:
        if path.startswith("/boom"):
            raise RuntimeError("the function blew up")
        self.release.wait(timeout=0.2)
        return HttpResponse(200, {"content-type": "application/json"}, '{"ok":true}')


@pytest.fixture
def server() -> Iterator[LocalHttpServer]:
    running = LocalHttpServer(SlowApi(), "127.0.0.1", 0)  # type: ignore[arg-type]
    running.start()
    try:
        yield running
    finally:
        running.stop()


def raw(server: LocalHttpServer, request: bytes) -> tuple[int, dict[str, str], Any]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


def test_a_burst_of_connections_is_served_not_reset(server: LocalHttpServer) -> None:
    def one(_: int) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.request("GET", "/api/health")
        return connection.getresponse().status

    with ThreadPoolExecutor(max_workers=80) as pool:
        statuses = list(pool.map(one, range(160)))
    assert statuses == [200] * 160


def test_connections_arriving_while_every_worker_is_busy_wait_in_the_queue() -> None:
    # Not serving yet: what the kernel holds for the server is all that can connect.
    waiting = LocalHttpServer(SlowApi(), "127.0.0.1", 0)  # type: ignore[arg-type]
    try:

        def connects(_: int) -> bool:
            try:
                socket.create_connection(("127.0.0.1", waiting.port), timeout=0.5).close()
                return True
            except OSError:
                return False

        with ThreadPoolExecutor(max_workers=60) as pool:
            connected = sum(pool.map(connects, range(60)))
        assert connected == 60  # socketserver's default listen backlog of 5 held 6
    finally:
        waiting.server_close()


def test_a_method_no_route_can_have_is_a_405_problem(server: LocalHttpServer) -> None:
    status, headers, body = raw(server, b"TRACE /api/v1/me HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 405
    assert headers["content-type"] == "application/problem+json"
    assert body["status"] == 405 and "TRACE" in body["detail"]
    assert "GET" in headers["allow"]


def test_a_request_line_too_long_is_a_414_problem(server: LocalHttpServer) -> None:
    status, headers, body = raw(server, b"GET /api/v1/me?q=" + b"x" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 414
    assert headers["content-type"] == "application/problem+json"
    assert body["title"] == "URI Too Long" and "body" in body["detail"]


def test_too_many_headers_is_a_431_problem(server: LocalHttpServer) -> None:
    headers = b"".join(b"X-H%d: v\r\n" % n for n in range(150))
    status, _, body = raw(server, b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert status == 431
    assert body["type"].endswith("/request-header-fields-too-large")


def test_a_failing_integration_is_a_500_problem(server: LocalHttpServer) -> None:
    status, headers, body = raw(server, b"GET /boom?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 500
    assert headers["content-type"] == "application/problem+json"
    assert body == {
        "type": "https://agentplane.dev/problems/internal-server-error",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "the function failed; the local stack's log has the traceback",
        "instance": "/boom",
    }

"""The HTTP API on a local port: a threaded HTTP/1.1 server in front of gateway.HttpApi.

Each request becomes one HttpApi.handle call (route match, then the handler, which checks the token), and
the result is written back with its status, headers, cookies and body. CORS follows the template's
CorsConfiguration, as API Gateway applies it before any route.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devstack import template
from devstack.gateway import HttpApi, HttpResponse

log = logging.getLogger("devstack.http")


class Cors:
    def __init__(self, config: dict[str, Any] | None) -> None:
        config = config or {}
        self.enabled = bool(config)
        self.origins = [str(o) for o in config.get("AllowOrigins") or []]
        self.methods = ", ".join(str(m) for m in config.get("AllowMethods") or [])
        self.headers = ", ".join(str(h) for h in config.get("AllowHeaders") or [])
        self.expose = ", ".join(str(h) for h in config.get("ExposeHeaders") or [])
        self.max_age = str(config.get("MaxAge", ""))
        self.credentials = bool(config.get("AllowCredentials"))

    def allowed_origin(self, origin: str | None) -> str | None:
        if not origin or not self.enabled:
            return None
        if "*" in self.origins:
            return "*" if not self.credentials else origin
        return origin if origin in self.origins else None

    def headers_for(self, origin: str | None, preflight: bool) -> dict[str, str]:
        allowed = self.allowed_origin(origin)
        if allowed is None:
            return {}
        headers = {"access-control-allow-origin": allowed}
        if self.credentials:
            headers["access-control-allow-credentials"] = "true"
        if preflight:
            if self.methods:
                headers["access-control-allow-methods"] = self.methods
            if self.headers:
                headers["access-control-allow-headers"] = self.headers
            if self.max_age:
                headers["access-control-max-age"] = self.max_age
        elif self.expose:
            headers["access-control-expose-headers"] = self.expose
        return headers


_SERVER_ERRORS = {
    400: "the request could not be read as HTTP/1.1",
    414: "the request line is too long (at most 65,536 bytes): send long input in the body",
    431: "the request headers are too large or too many",
    505: "only HTTP/1.0 and HTTP/1.1 are served",
}
_TITLES = {405: "Method Not Allowed", 414: "URI Too Long", 431: "Request Header Fields Too Large"}


def problem(status: int, detail: str, instance: str = "") -> HttpResponse:
    """An RFC 9457 problem, the one error shape of the API, for answers the server gives itself."""
    title = _TITLES.get(status) or HTTPStatus(status).phrase
    slug = title.lower().replace(" ", "-")
    body = {
        "type": f"https://agentplane.dev/problems/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance.split("?", 1)[0],
    }
    return HttpResponse(status, {"content-type": "application/problem+json"}, json.dumps(body))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LocalHttpServer

    def _body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _headers(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            if key in merged:
                # Repeated headers arrive joined, as API Gateway passes them.
                merged[key] += ("; " if key == "cookie" else ", ") + value
            else:
                merged[key] = value
        return merged

    def _serve(self) -> None:
        started = time.perf_counter()
        body = self._body()
        headers = self._headers()
        origin = headers.get("origin")
        cors = self.server.cors
        if self.command == "OPTIONS" and cors.enabled and "access-control-request-method" in headers:
            response = HttpResponse(204, cors.headers_for(origin, preflight=True), "")
        else:
            try:
                response = self.server.api.handle(self.command, self.path, headers, body, self.client_address[0])
            except Exception:
                log.exception("%s %s failed", self.command, self.path)
                response = problem(500, "the function failed; the local stack's log has the traceback", self.path)
            response.headers.update(cors.headers_for(origin, preflight=False))
        self._write(response)
        log.info("%s %s %s %.0fms", self.command, self.path, response.status, (time.perf_counter() - started) * 1000)

    def _write(self, response: HttpResponse) -> None:
        payload = response.body_bytes
        self.send_response(response.status)
        for name, value in response.headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        for cookie in response.cookies:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What http.server answers itself (a request line or headers too long, a method no route
        can have, a malformed request) as a problem like every other answer, not an HTML page."""
        self.close_connection = True  # the rest of a malformed request cannot be trusted
        path = getattr(self, "path", "") if code != 414 else ""  # a 414's path is the too-long part
        if code == 501:  # http.server's answer to a method it has no do_ for
            response = problem(405, f"{self.command} is not a method of this API", path)
            response.headers["allow"] = "GET, POST, PUT, PATCH, DELETE, OPTIONS, HEAD"
        else:
            response = problem(
                code, _SERVER_ERRORS.get(code, message or explain or "the request could not be read"), path
            )
        response.headers["connection"] = "close"
        self._write(response)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request is logged by _serve instead


class LocalHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver listens with a backlog of 5: a burst of 20 connections had some reset. API
    # Gateway takes them all, so the local stack does too.
    request_queue_size = 1024

    def __init__(self, api: HttpApi, host: str, port: int) -> None:
        self.api = api
        self.cors = Cors(template.http_cors())
        super().__init__((host, port), _Handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="http-api", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread:
            self._thread.join(timeout=5)

"""The WebSocket API on a local port, generic over the template's ApiGatewayV2 WEBSOCKET APIs.

Clients connect with the `websockets` library's server; each connection gets an API Gateway style
connection id, `$connect` / route / `$disconnect` functions receive API Gateway WebSocket events,
and a `$connect` answering 400 or more refuses the handshake. Pushes go the AWS way: a function
calls the API Gateway Management API (`post_to_connection`), and moto's backend for it is
answered here (through devstack.patches) so the post reaches the live socket, or fails with
GoneException (410) when the server no longer holds that connection.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import string
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from devstack import patches, template
from devstack.lambdas import Lambdas

log = logging.getLogger("devstack.websocket")

MAX_MESSAGE_BYTES = 128 * 1024  # API Gateway's WebSocket message limit
_ID_ALPHABET = string.ascii_letters + string.digits


def _new_connection_id() -> str:
    # API Gateway ids are 16 opaque characters; these stay URL-safe for the management API path.
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(15)) + "="


def _request_time(now: datetime) -> str:
    return now.strftime("%d/%b/%Y:%H:%M:%S +0000")


@dataclass
class LiveConnection:
    connection_id: str
    gateway: WebSocketGateway
    socket: Any  # websockets.asyncio.server.ServerConnection
    connected_at: int  # epoch ms
    source_ip: str
    user_agent: str
    last_active_at: float = 0.0


class ConnectionRegistry:
    """Every live connection of every local WebSocket API, by connection id."""

    def __init__(self) -> None:
        self._connections: dict[str, LiveConnection] = {}
        self._lock = threading.Lock()

    def add(self, connection: LiveConnection) -> None:
        with self._lock:
            self._connections[connection.connection_id] = connection

    def remove(self, connection_id: str) -> None:
        with self._lock:
            self._connections.pop(connection_id, None)

    def get(self, connection_id: str) -> LiveConnection | None:
        with self._lock:
            return self._connections.get(connection_id)

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._connections)


registry = ConnectionRegistry()


# ---------------------------------------------------------------- API Gateway Management API


def _gone(connection_id: str) -> Exception:
    from moto.core.exceptions import JsonRESTError

    class GoneException(JsonRESTError):
        code = 410

    return GoneException("GoneException", f"Connection {connection_id} is gone")


def post_to_connection(connection_id: str, data: bytes) -> None:
    connection = registry.get(connection_id)
    if connection is None or not connection.gateway.send(connection, data):
        raise _gone(connection_id)


class _LiveManagementApi:
    """moto's API Gateway Management API, answered from the live sockets. moto hands over the id
    as it appeared in the URL path ("=" arrives as %3D)."""

    def post_to_connection(self, data: bytes, connection_id: str) -> None:
        post_to_connection(unquote(connection_id), data)

    def get_connection(self, connection_id: str) -> Any:
        from moto.apigatewaymanagementapi.models import Connection

        connection_id = unquote(connection_id)
        live = registry.get(connection_id)
        if live is None:
            raise _gone(connection_id)
        described = Connection()
        described.connected_at = live.connected_at / 1000
        described.source_ip = live.source_ip
        described.user_agent = live.user_agent
        return described

    def delete_connection(self, connection_id: str) -> None:
        connection_id = unquote(connection_id)
        live = registry.get(connection_id)
        if live is None:
            raise _gone(connection_id)
        live.gateway.close(live)


def install_management_api() -> None:
    """Route moto's API Gateway Management API to the live local sockets."""
    patches.serve_connections(_LiveManagementApi())


def uninstall_management_api() -> None:
    patches.serve_connections(None)


# ---------------------------------------------------------------- the server


class WebSocketGateway:
    """One WEBSOCKET API of the template, served on host:port from its own event loop thread."""

    def __init__(self, api: template.WebSocketApi, lambdas: Lambdas, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api = api
        self.lambdas = lambdas
        self.host = host
        self.port = port
        self._executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix=f"ws-{api.api_id}")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future[None] | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._pending: dict[Any, tuple[str, dict[str, Any]]] = {}

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # --- lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"websocket-{self.api.api_id}", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=10)
        if self._startup_error:
            raise self._startup_error

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced to start()
            self._startup_error = exc
            self._ready.set()

    async def _main(self) -> None:
        from websockets.asyncio.server import serve

        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        async with serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._connect,
            max_size=MAX_MESSAGE_BYTES,
            backlog=1024,  # a burst of connections is queued, not reset
        ) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop
            server.close()
            try:
                await asyncio.wait_for(server.wait_closed(), timeout=5)
            except TimeoutError:
                log.warning("WebSocket connections did not close in time")

    def stop(self) -> None:
        if self._loop and self._stop and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(lambda: self._stop.done() or self._stop.set_result(None))  # type: ignore[union-attr]
        if self._thread:
            self._thread.join(timeout=10)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- called from other threads by the management API

    def send(self, connection: LiveConnection, data: bytes) -> bool:
        """Deliver a post; False when the socket is already gone."""
        if self._loop is None:
            return False
        try:
            payload: str | bytes = data.decode("utf-8")
        except UnicodeDecodeError:
            payload = data
        future = asyncio.run_coroutine_threadsafe(connection.socket.send(payload), self._loop)
        try:
            future.result(timeout=10)
        except Exception:
            return False
        return True

    def close(self, connection: LiveConnection) -> None:
        if self._loop:
            asyncio.run_coroutine_threadsafe(connection.socket.close(1000, "closed by the API"), self._loop)

    # --- events

    def _context(self, connection_id: str, route_key: str, event_type: str, extra: dict[str, Any]) -> dict[str, Any]:
        now = datetime.now(UTC)
        request_id = str(uuid.uuid4())
        return {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": _request_time(now),
            "messageDirection": "IN",
            "stage": self.api.stage,
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "requestId": request_id,
            "domainName": self.api.domain_name,
            "connectionId": connection_id,
            "apiId": self.api.api_id,
            **extra,
        }

    async def _invoke(self, function: template.Function, event: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.lambdas.invoke, function, event)

    async def _connect(self, socket: Any, request: Any) -> Any:
        connection_id = _new_connection_id()
        headers = {name.lower(): value for name, value in request.headers.raw_items()}
        multi_headers: dict[str, list[str]] = {}
        for name, value in request.headers.raw_items():
            multi_headers.setdefault(name, []).append(value)
        query: dict[str, list[str]] = {}
        for name, value in parse_qsl(urlsplit(request.path).query, keep_blank_values=True):
            query.setdefault(name, []).append(value)
        source_ip = str(socket.remote_address[0]) if socket.remote_address else "127.0.0.1"
        connected_at = int(time.time() * 1000)
        identity = {"sourceIp": source_ip, "userAgent": headers.get("user-agent", "")}
        base = {"connectedAt": connected_at, "identity": identity}
        event: dict[str, Any] = {
            "headers": headers,
            "multiValueHeaders": multi_headers,
            "requestContext": self._context(connection_id, "$connect", "CONNECT", base),
            "isBase64Encoded": False,
        }
        if query:
            event["queryStringParameters"] = {k: v[-1] for k, v in query.items()}
            event["multiValueQueryStringParameters"] = query
        route = self.api.routes.get("$connect")
        if route is not None:
            if route.authorizer is not None:
                decision = await self._authorize(route, event)
                if decision is None:
                    return socket.respond(403, "Forbidden\n")
                event["requestContext"]["authorizer"] = decision
            try:
                result = await self._invoke(route.function, event)
            except Exception:
                log.exception("$connect failed")
                return socket.respond(500, "Internal server error\n")
            status = int(result.get("statusCode", 200)) if isinstance(result, dict) else 200
            if status >= 400:
                body = result.get("body") if isinstance(result, dict) else None
                return socket.respond(status, (body or "Forbidden") + "\n")
        self._pending[socket] = (connection_id, base)
        return None

    async def _authorize(self, route: template.WebSocketRoute, event: dict[str, Any]) -> dict[str, Any] | None:
        assert route.authorizer is not None
        auth_event = {
            **event,
            "type": "REQUEST",
            "methodArn": f"arn:aws:execute-api:us-east-1:123456789012:{self.api.api_id}/{self.api.stage}/$connect",
        }
        try:
            result = await self._invoke(route.authorizer, auth_event)
        except Exception:
            log.exception("WebSocket authorizer failed")
            return None
        if not isinstance(result, dict):
            return None
        allowed = result.get("isAuthorized") is True or any(
            statement.get("Effect") == "Allow"
            for statement in (result.get("policyDocument") or {}).get("Statement") or []
        )
        if not allowed:
            return None
        return {"principalId": result.get("principalId", ""), **(result.get("context") or {})}

    async def _handle(self, socket: Any) -> None:
        connection_id, base = self._pending.pop(socket)
        live = LiveConnection(
            connection_id,
            self,
            socket,
            base["connectedAt"],
            base["identity"]["sourceIp"],
            base["identity"]["userAgent"],
            time.time(),
        )
        registry.add(live)
        try:
            async for message in socket:
                live.last_active_at = time.time()
                await self._message(live, base, message)
        except Exception:
            log.debug("connection %s ended", connection_id, exc_info=True)
        finally:
            registry.remove(connection_id)
            await self._disconnect(live, base)

    def _select_route(self, body: str) -> template.WebSocketRoute | None:
        expression = self.api.selection_expression
        if expression.startswith("$request.body."):
            try:
                value: Any = json.loads(body)
                for part in expression.removeprefix("$request.body.").split("."):
                    value = value.get(part) if isinstance(value, dict) else None
            except ValueError:
                value = None
            if isinstance(value, str) and value in self.api.routes and not value.startswith("$"):
                return self.api.routes[value]
        return self.api.routes.get("$default")

    async def _message(self, live: LiveConnection, base: dict[str, Any], message: str | bytes) -> None:
        is_binary = isinstance(message, bytes)
        body = base64.b64encode(message).decode() if isinstance(message, bytes) else message
        route = self._select_route("" if is_binary else str(message))
        context = self._context(
            live.connection_id,
            route.route_key if route else "$default",
            "MESSAGE",
            {**base, "messageId": str(uuid.uuid4())},
        )
        if route is None:
            await self._error(live, "Forbidden", context["requestId"])
            return
        event = {"requestContext": context, "body": body, "isBase64Encoded": is_binary}
        try:
            result = await self._invoke(route.function, event)
        except Exception:
            log.exception("route %s failed", route.route_key)
            await self._error(live, "Internal server error", context["requestId"])
            return
        if route.two_way and isinstance(result, dict) and result.get("body"):
            await live.socket.send(str(result["body"]))

    @staticmethod
    async def _error(live: LiveConnection, message: str, request_id: str) -> None:
        error = {"message": message, "connectionId": live.connection_id, "requestId": request_id}
        try:
            await live.socket.send(json.dumps(error))
        except Exception:
            log.debug("could not report an error to %s", live.connection_id)

    async def _disconnect(self, live: LiveConnection, base: dict[str, Any]) -> None:
        route = self.api.routes.get("$disconnect")
        if route is None:
            return
        extra = {
            **base,
            "disconnectStatusCode": live.socket.close_code or 1006,
            "disconnectReason": live.socket.close_reason or "",
        }
        event = {
            "headers": {"host": self.api.domain_name},
            "multiValueHeaders": {"Host": [self.api.domain_name]},
            "requestContext": self._context(live.connection_id, "$disconnect", "DISCONNECT", extra),
            "isBase64Encoded": False,
        }
        try:
            await self._invoke(route.function, event)
        except Exception:
            log.exception("$disconnect failed")


def start_gateways(lambdas: Lambdas, host: str, first_port: int) -> list[WebSocketGateway]:
    """One server per WEBSOCKET API of the template, on consecutive ports."""
    gateways = []
    for index, api in enumerate(template.websocket_apis()):
        gateway = WebSocketGateway(api, lambdas, host, first_port + index if first_port else 0)
        gateway.start()
        gateways.append(gateway)
    if gateways:
        install_management_api()
    return gateways

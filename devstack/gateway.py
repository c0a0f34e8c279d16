"""The HTTP API, emulated: route matching (the $default route included), API Gateway v2 events
and the response mapping, all driven by template.yaml. There is no authorizer: the functions
check the bearer token themselves."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from devstack import template
from devstack.lambdas import Lambdas


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: str
    cookies: list[str] = field(default_factory=list)
    raw_body: bytes | None = None  # the exact bytes of a base64-encoded (binary) body

    @property
    def body_bytes(self) -> bytes:
        return self.raw_body if self.raw_body is not None else self.body.encode()

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


def _not_found() -> HttpResponse:
    # What API Gateway answers for a path no route matches, when the API has no $default route.
    return HttpResponse(404, {"content-type": "application/json"}, '{"message":"Not Found"}')


class HttpApi:
    def __init__(self, lambdas: Lambdas) -> None:
        self.lambdas = lambdas
        self.routes = template.http_routes()

    def match(self, method: str, path: str) -> tuple[template.HttpRoute, dict[str, str]] | None:
        for route in self.routes:
            if route.method not in (method, "ANY"):
                continue
            found = route.pattern.match(path)
            if found:
                return route, found.groupdict()
        return None

    def build_event(
        self,
        route: template.HttpRoute,
        params: dict[str, str],
        method: str,
        raw_path: str,
        query: str,
        headers: dict[str, str],
        body: str | bytes | None,
        source_ip: str,
    ) -> dict[str, Any]:
        lowered = {k.lower(): v for k, v in headers.items()}
        cookies = [c.strip() for c in lowered.pop("cookie", "").split(";") if c.strip()]
        multi: dict[str, list[str]] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            multi.setdefault(name, []).append(value)
        is_binary = isinstance(body, bytes)
        if is_binary:
            try:
                body = body.decode("utf-8")  # type: ignore[union-attr]
                is_binary = False
            except UnicodeDecodeError:
                body = base64.b64encode(body).decode()  # type: ignore[arg-type]
        now = datetime.now(UTC)
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.route_key,
            "rawPath": raw_path,
            "rawQueryString": query,
            "headers": lowered,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "local",
                "domainName": "127.0.0.1",
                "domainPrefix": "127",
                "http": {
                    "method": method,
                    "path": raw_path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": source_ip,
                    "userAgent": lowered.get("user-agent", ""),
                },
                "requestId": str(uuid.uuid4()),
                "routeKey": route.route_key,
                "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(now.timestamp() * 1000),
            },
            "isBase64Encoded": is_binary,
        }
        if cookies:
            event["cookies"] = cookies
        if multi:
            event["queryStringParameters"] = {k: ",".join(v) for k, v in multi.items()}
        if params:
            event["pathParameters"] = params
        if body:
            event["body"] = body
        return event

    def handle(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        body: str | bytes | None = None,
        source_ip: str = "127.0.0.1",
    ) -> HttpResponse:
        parts = urlsplit(url)
        path = parts.path or "/"
        matched = self.match(method.upper(), path)
        if matched is None:
            return _not_found()
        route, params = matched
        event = self.build_event(route, params, method.upper(), path, parts.query, headers or {}, body, source_ip)
        result = self.lambdas.invoke(route.function, event)
        return self._to_response(result)

    @staticmethod
    def _to_response(result: Any) -> HttpResponse:
        if not isinstance(result, dict) or "statusCode" not in result:
            # Payload 2.0 infers a 200 JSON response from a bare value.
            return HttpResponse(200, {"content-type": "application/json"}, json.dumps(result))
        body = result.get("body") or ""
        raw_body = None
        if result.get("isBase64Encoded"):
            raw_body = base64.b64decode(body)
            body = raw_body.decode("utf-8", "replace")
        headers = {k.lower(): str(v) for k, v in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[name.lower()] = ", ".join(str(v) for v in values)
        return HttpResponse(int(result["statusCode"]), headers, body, list(result.get("cookies") or []), raw_body)

"""Every operation of the generated OpenAPI document, fuzzed with schemathesis against the
in-process stack: no input gives a 500, and every answer matches the schema the document gives
(body, content type). Examples are few per operation so the suite stays fast; the operations are
all of them, so a new route is fuzzed without anyone writing a test for it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from devstack.gateway import HttpApi

EXAMPLES_PER_OPERATION = 4
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
# Streams answer text/event-stream for as long as the client stays: fuzzing them adds nothing.
# These end the caller's session, workspace or account: fuzzed last, so they do not end the run's.
LAST = ("POST /api/v1/auth/logout", "DELETE /api/v1/workspaces/{ws}", "DELETE /api/v1/users/me")
SKIPPED = {"GET /api/v1/workspaces/{ws}/notifications/stream", "GET /api/v1/workspaces/{ws}/runs/{run_id}/stream"}


def as_wsgi(http: HttpApi) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """The emulated API Gateway as a WSGI app, which is how schemathesis calls an app in-process."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else None
        query = environ.get("QUERY_STRING", "")
        url = environ.get("PATH_INFO", "/") + (f"?{query}" if query else "")
        answer = http.handle(environ["REQUEST_METHOD"], url, headers, body or None, source_ip="10.88.0.1")
        start_response(f"{answer.status} {HTTPStatus(answer.status).phrase}", list(answer.headers.items()))
        return [answer.body_bytes]

    return app


def _label(operation: Any) -> str:
    return f"{operation.method.upper()} {operation.path}"


def test_no_operation_answers_a_500_or_outside_its_schema(api, user, workspace, monkeypatch):
    monkeypatch.setenv("RATE_LIMIT_PER_MINUTE", "100000")
    from agentplane.settings import get_settings

    get_settings.cache_clear()
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", as_wsgi(api.http))
    auth = {"Authorization": f"Bearer {user['token']}"}
    failures: list[str] = []
    operations = 0
    every = [result.ok() for result in schema.get_all_operations()]
    every.sort(key=lambda op: LAST.index(_label(op)) if _label(op) in LAST else -1)
    for operation in every:
        label = _label(operation)
        if label in SKIPPED:
            continue
        operations += 1

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,  # the same examples on every run: CI fails only when the code changed
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            if "ws" in (case.path_parameters or {}):
                case.path_parameters["ws"] = workspace["id"]  # reach the handlers, not only the 404
            case.headers = {**(case.headers or {}), **auth}  # the generated bearer value is not a token
            response = case.call()
            case.validate_response(response, checks=CHECKS, headers=auth)

        try:
            fuzz()
        except Exception as failure:
            failures.append(f"{label}: {str(failure)[:600]}")
    assert operations > 150
    assert failures == []

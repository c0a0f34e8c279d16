"""Test fixtures: the real handlers, behind the emulated HTTP API, against moto."""

from __future__ import annotations

import itertools
import json
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from devstack import aws
from devstack.gateway import HttpApi, HttpResponse
from devstack.lambdas import Lambdas, ensure_layer_on_path
from devstack.template import functions

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
ensure_layer_on_path()
aws.set_offline_environment()
# Cheap argon2 parameters: the suite registers hundreds of accounts (production keeps the defaults).
os.environ.update({"PASSWORD_TIME_COST": "1", "PASSWORD_MEMORY_KIB": "1024"})


class Client:
    """Speaks HTTP to the emulated API Gateway, as a user's client would."""

    def __init__(self, http: HttpApi) -> None:
        self.http = http
        self.token: str | None = None

    def request(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: str | None = None,
        ip: str = "10.0.0.1",
    ) -> HttpResponse:
        sent = dict(headers or {})
        bearer = token if token is not None else self.token
        if bearer:
            sent.setdefault("Authorization", f"Bearer {bearer}")
        body = raw
        if json_body is not None:
            body = json.dumps(json_body)
            sent.setdefault("Content-Type", "application/json")
        return self.http.handle(method, path, sent, body, source_ip=ip)

    def get(self, path: str, **kw: Any) -> HttpResponse:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> HttpResponse:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> HttpResponse:
        return self.request("PUT", path, body, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> HttpResponse:
        return self.request("PATCH", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> HttpResponse:
        return self.request("DELETE", path, **kw)


@pytest.fixture
def store() -> Iterator[Any]:
    """The store alone, over a fresh emulated table: for tests of entities and store primitives
    that need no handlers."""
    from agentplane import clients
    from agentplane import store as store_module
    from agentplane.settings import get_settings

    mock = aws.start()
    try:
        aws.provision(SIGNING_SECRET)
        get_settings.cache_clear()
        clients.reset()
        yield store_module.get_store()
    finally:
        clients.reset()
        mock.stop()


@pytest.fixture
def stack() -> Iterator[aws.Resources]:
    from agentplane import clients, idempotency, ratelimit
    from agentplane.auth import caller
    from agentplane.settings import get_settings

    mock = aws.start()
    try:
        resources = aws.provision(SIGNING_SECRET)
        get_settings.cache_clear()  # each stack has its own KMS key, so settings read earlier are stale
        clients.reset()  # clients built earlier belong to the previous test's emulation
        idempotency.reset()
        ratelimit.reset_local_counters()
        caller.forget_all()
        yield resources
    finally:
        mock.stop()
        clients.reset()
        idempotency.reset()


@pytest.fixture
def lambdas(stack: aws.Resources) -> Lambdas:
    return Lambdas(functions())


@pytest.fixture
def executions(stack: aws.Resources, lambdas: Lambdas) -> Iterator[aws.Resources]:
    """Step Functions executions that really run, their Lambda tasks calling the real handlers."""
    from devstack import stepfunctions

    aws.create_lambda_functions(stack)
    stepfunctions.install_lambda_bridge(lambdas)
    try:
        yield stack
    finally:
        # Executions still waiting (a queue wait lasts up to an hour) must not outlive this test.
        stepfunctions.end_running_executions()
        stepfunctions.uninstall_lambda_bridge()


@pytest.fixture
def api(lambdas: Lambdas) -> Client:
    return Client(HttpApi(lambdas))


_serial = itertools.count(1)


def register_and_login(api: Client, name: str | None = None, password: str = "correct horse battery") -> dict[str, Any]:
    """A new account, logged in: returns the login body plus the credentials used."""
    # A random part too: pytest may import this module twice (as `conftest` and `tests.conftest`).
    n = next(_serial)
    username = name or f"user{n}x{secrets.token_hex(3)}"
    email = f"{username}@example.com"
    ip = f"10.{secrets.randbelow(250)}.{n // 250 % 250}.{n % 250}"  # each account its own per-IP budget
    created = api.post(
        "/api/v1/auth/register",
        {"username": username, "email": email, "password": password, "terms_accepted": True, "privacy_accepted": True},
        token="",
        ip=ip,
    )
    assert created.status == 201, created.body
    login = api.post("/api/v1/auth/login", {"email": email, "password": password}, token="", ip=ip)
    assert login.status == 200, login.body
    return {**login.json["data"], "email": email, "password": password}


@pytest.fixture
def user(api: Client) -> dict[str, Any]:
    return register_and_login(api)


@pytest.fixture
def workspace(api: Client, user: dict[str, Any]) -> dict[str, Any]:
    from agentplane.auth.tokens import resolve_principal
    from agentplane.logic.workspaces import create_workspace
    from agentplane.models.workspaces import WorkspaceCreate

    created = create_workspace(resolve_principal(user["token"]), WorkspaceCreate(name="Acme"))
    return created.model_dump()


def put_common_env(api: Client, ws: dict[str, Any], **variables: str) -> None:
    """Set the workspace's common env (its values are secrets redaction knows)."""
    response = api.put(f"/api/v1/workspaces/{ws['id']}/common-env", {"variables": variables})
    assert response.status == 200, response.body

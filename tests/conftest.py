"""Test fixtures: the real handlers, behind the emulated HTTP API, against moto."""

from __future__ import annotations

import itertools
import json
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
def stack() -> Iterator[aws.Resources]:
    from agentplane import crypto, idempotency, ratelimit, store

    mock = aws.start()
    try:
        resources = aws.provision(SIGNING_SECRET)
        store.reset_store()
        crypto.reset()
        idempotency.reset()
        ratelimit.reset_local_counters()
        yield resources
    finally:
        mock.stop()
        store.reset_store()
        idempotency.reset()


@pytest.fixture
def lambdas(stack: aws.Resources) -> Lambdas:
    return Lambdas(functions())


@pytest.fixture
def api(lambdas: Lambdas) -> Client:
    # No authorizer cache by default, so each test sees token changes at once; the cache
    # itself has its own tests.
    return Client(HttpApi(lambdas, cache_seconds=0))


_serial = itertools.count(1)


def register_and_login(api: Client, name: str | None = None, password: str = "correct horse battery") -> dict[str, Any]:
    """A new account, logged in: returns the login body plus the credentials used."""
    n = next(_serial)
    username = name or f"user{n}"
    email = f"{username}@example.com"
    ip = f"10.1.{n // 250}.{n % 250}"
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

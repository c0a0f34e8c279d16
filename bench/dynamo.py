"""DynamoDB calls per request, route by route, counted at botocore's `before-call` hook.

Every scenario gets a fresh emulated stack (moto + the template), builds what the route needs
through the API itself (a registered user, a workspace, a task...), then sends one request through
the emulated API Gateway with the real authorizer. Calls made while the authorizer runs and while
the route's function runs are counted apart: API Gateway caches the authorizer's answer per token
(AuthorizerCacheSeconds), so steady-state traffic pays only the handler's calls.

Before the measured request the authorizer cache is emptied (so its cost shows, and the principal
includes everything set up) and the per-principal rate-limit counters are reset (the limiter folds
its count into the table on every SYNC_EVERY-th call, not on this one).
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3

from devstack import apps, aws, template
from devstack.gateway import HttpApi, HttpResponse
from devstack.lambdas import Lambdas, ensure_layer_on_path

SIGNING_SECRET = "bench-signing-secret-0123456789abcdef"
PASSWORD = "correct horse battery"
AUTHORIZER = "AuthorizerFunction"
_invoking: contextvars.ContextVar[str | None] = contextvars.ContextVar("invoking", default=None)


# ---------------------------------------------------------------- targets and scenarios


@dataclass(frozen=True)
class Target:
    label: str
    met_by: Callable[[list[str]], bool]


ONE_READ = Target("1 call", lambda ops: len(ops) == 1)
ONE_QUERY = Target("1 Query", lambda ops: ops == ["Query"])
ONE_TRANSACTION = Target("1 TransactWriteItems", lambda ops: ops == ["TransactWriteItems"])
NO_CALLS = Target("0 calls", lambda ops: ops == [])
READ_AND_TRANSACTION = Target(
    "1 read + 1 TransactWriteItems",
    lambda ops: ops in (["GetItem", "TransactWriteItems"], ["BatchGetItem", "TransactWriteItems"]),
)


@dataclass(frozen=True)
class Scenario:
    method: str
    path: str  # as in template.yaml
    target: Target | None = None
    needs: tuple[str, ...] = ()  # built first, in order (see BUILDERS)
    body: Callable[[World], dict[str, Any]] | None = None  # None: a sample from the route's model
    anonymous: bool = False
    caller: str = "token"  # whose token: the owner's ("token") or the newcomer's ("newcomer_token")

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


WS = "/api/v1/workspaces/{ws}"


def _new_account(world: World) -> dict[str, Any]:
    return {
        "username": "newcomer",
        "email": "newcomer@example.com",
        "password": PASSWORD,
        "terms_accepted": True,
        "privacy_accepted": True,
    }


def _credentials(world: World) -> dict[str, Any]:
    return {"email": world.values["email"], "password": PASSWORD}


SCENARIOS: list[Scenario] = [
    # health
    Scenario("GET", "/api/health", anonymous=True),
    Scenario("GET", "/api/v1/health", anonymous=True),
    Scenario("GET", "/api/ready", anonymous=True),
    Scenario("GET", "/api/version", anonymous=True),
    Scenario("GET", "/api/site/status", anonymous=True),
    Scenario("GET", "/api/v1/config/constants", anonymous=True),
    # auth
    Scenario("POST", "/api/v1/auth/register", body=_new_account, anonymous=True),
    Scenario("POST", "/api/v1/auth/login", body=_credentials, anonymous=True),
    Scenario("POST", "/api/v1/auth/token", body=_credentials, anonymous=True),
    Scenario(
        "POST", "/api/v1/auth/refresh", body=lambda w: {"refresh_token": w.values["refresh_token"]}, anonymous=True
    ),
    Scenario("POST", "/api/v1/auth/forgot-password", body=lambda w: {"email": w.values["email"]}, anonymous=True),
    Scenario("POST", "/api/v1/auth/reset-password", anonymous=True),  # the emailed token is unknowable: a 4xx
    Scenario("GET", "/api/v1/auth/me", ONE_READ),
    Scenario("POST", "/api/v1/auth/logout"),
    Scenario("DELETE", "/api/v1/users/me"),
    # me
    Scenario("GET", "/api/v1/me", ONE_READ),
    Scenario("PATCH", "/api/v1/me"),
    Scenario("GET", "/api/v1/me/workspaces", ONE_QUERY, needs=("workspace",)),
    Scenario("GET", "/api/v1/me/personal-access-tokens", ONE_QUERY, needs=("pat",)),
    Scenario("POST", "/api/v1/me/personal-access-tokens", ONE_TRANSACTION),
    Scenario("DELETE", "/api/v1/me/personal-access-tokens/{pat_id}", needs=("pat",)),
    # workspaces
    Scenario("POST", "/api/v1/workspaces", ONE_TRANSACTION),
    Scenario("GET", "/api/v1/workspaces", ONE_QUERY, needs=("workspace",)),
    Scenario("GET", WS, ONE_READ, needs=("workspace",)),
    Scenario("PATCH", WS, needs=("workspace",)),
    Scenario("GET", f"{WS}/members", ONE_QUERY, needs=("workspace",)),
    Scenario("POST", f"{WS}/members", needs=("workspace", "newcomer")),
    Scenario("PATCH", f"{WS}/members/{{user_id}}", needs=("workspace", "member")),
    Scenario("DELETE", f"{WS}/members/{{user_id}}", needs=("workspace", "member")),
    Scenario("GET", f"{WS}/invites", ONE_QUERY, needs=("workspace", "invite")),
    Scenario("POST", f"{WS}/invites", ONE_TRANSACTION, needs=("workspace",)),
    Scenario("DELETE", f"{WS}/invites/{{invite_id}}", needs=("workspace", "invite")),
    Scenario("GET", f"{WS}/teams", ONE_QUERY, needs=("workspace", "team")),
    Scenario("POST", f"{WS}/teams", ONE_TRANSACTION, needs=("workspace",)),
    Scenario("GET", f"{WS}/teams/{{team_id}}", ONE_READ, needs=("workspace", "team")),
    Scenario("PATCH", f"{WS}/teams/{{team_id}}", needs=("workspace", "team")),
    Scenario("GET", f"{WS}/teams/{{team_id}}/members", ONE_QUERY, needs=("workspace", "team")),
    Scenario("DELETE", f"{WS}/teams/{{team_id}}", needs=("workspace", "team")),
    Scenario(
        "POST",
        f"{WS}/teams/{{team_id}}/members",
        needs=("workspace", "team", "member"),
        body=lambda w: w.sample("POST", f"{WS}/teams/{{team_id}}/members", {"user_id": w.values["member_id"]}),
    ),
    Scenario("DELETE", f"{WS}/teams/{{team_id}}/members/{{user_id}}", needs=("workspace", "team", "team_member")),
    Scenario(
        "POST", "/api/v1/invites/{token}/accept", needs=("workspace", "invite", "newcomer"), caller="newcomer_token"
    ),
    Scenario("GET", f"{WS}/common-env", ONE_READ, needs=("workspace",)),
    Scenario("PUT", f"{WS}/common-env", needs=("workspace",)),
    Scenario("DELETE", f"{WS}/common-env", needs=("workspace",)),
    Scenario("GET", f"{WS}/export", needs=("workspace", "task")),
    Scenario("POST", f"{WS}/import", needs=("workspace",)),
    Scenario("DELETE", WS, needs=("workspace",)),
    # api keys
    Scenario("POST", f"{WS}/api-keys", ONE_TRANSACTION, needs=("workspace",)),
    Scenario("GET", f"{WS}/api-keys", ONE_QUERY, needs=("workspace", "api_key")),
    Scenario("GET", f"{WS}/api-keys/{{key_id}}", ONE_READ, needs=("workspace", "api_key")),
    Scenario("PATCH", f"{WS}/api-keys/{{key_id}}", needs=("workspace", "api_key")),
    Scenario("POST", f"{WS}/api-keys/{{key_id}}/revoke", needs=("workspace", "api_key")),
    Scenario("POST", f"{WS}/api-keys/{{key_id}}/rotate", needs=("workspace", "api_key")),
    Scenario("POST", f"{WS}/api-keys/{{key_id}}/roll", needs=("workspace", "api_key")),
    Scenario("DELETE", f"{WS}/api-keys/{{key_id}}", needs=("workspace", "api_key")),
    Scenario("GET", f"{WS}/api-keys/{{key_id}}/usage", ONE_QUERY, needs=("workspace", "api_key")),
    # tasks
    Scenario("POST", f"{WS}/tasks", ONE_TRANSACTION, needs=("workspace",)),
    Scenario("GET", f"{WS}/tasks", ONE_QUERY, needs=("workspace", "task")),
    Scenario("GET", f"{WS}/tasks/{{task_id}}", ONE_READ, needs=("workspace", "task")),
    Scenario("PATCH", f"{WS}/tasks/{{task_id}}", needs=("workspace", "task")),
    Scenario("DELETE", f"{WS}/tasks/{{task_id}}", needs=("workspace", "task")),
    # run telemetry: an append of 100 events is one read (the run with the workspace's secrets, in one
    # BatchGetItem) and one TransactWriteItems; a backfill page is one Query
    Scenario(
        "POST",
        f"{WS}/runs/{{run_id}}/events",
        READ_AND_TRANSACTION,
        needs=("workspace", "telemetry_run"),
        body=lambda w: _hundred_events(),
    ),
    Scenario("GET", f"{WS}/runs/{{run_id}}/events", ONE_QUERY, needs=("workspace", "telemetry_run", "run_events")),
    Scenario("GET", f"{WS}/runs/{{run_id}}/events/stream", needs=("workspace", "telemetry_run", "run_events")),
    Scenario("GET", f"{WS}/runs/{{run_id}}/files", ONE_QUERY, needs=("workspace", "telemetry_run", "run_events")),
    Scenario("GET", f"{WS}/runs/{{run_id}}/commands", ONE_QUERY, needs=("workspace", "telemetry_run", "run_events")),
    Scenario("GET", f"{WS}/runs/{{run_id}}/summary", ONE_READ, needs=("workspace", "telemetry_run")),
    # docs: a file, no table
    Scenario("GET", "/api/openapi.json", NO_CALLS, anonymous=True),
    Scenario("GET", "/api/docs", NO_CALLS, anonymous=True),
]


# ---------------------------------------------------------------- counting


@dataclass
class Call:
    function: str
    operation: str
    detail: str = ""  # what a transaction holds, e.g. "2 ConditionCheck + 2 Put"


@dataclass
class Counter:
    active: bool = False
    calls: list[Call] = field(default_factory=list)
    _transaction: str = ""

    def hook(self, model: Any, **_: Any) -> None:
        """`before-call.dynamodb`: once per API call, whatever its retries."""
        function = _invoking.get()
        if not self.active or function is None:
            return
        detail = self._transaction if model.name == "TransactWriteItems" else ""
        self.calls.append(Call(function, model.name, detail))

    def transaction_hook(self, params: dict[str, Any], **_: Any) -> None:
        """`before-parameter-build.dynamodb.TransactWriteItems`: what the transaction holds."""
        kinds: dict[str, int] = {}
        for item in params.get("TransactItems", []):
            for kind in item:
                kinds[kind] = kinds.get(kind, 0) + 1
        self._transaction = " + ".join(f"{n} {kind}" for kind, n in kinds.items())


class CountingLambdas(Lambdas):
    """Tags every DynamoDB call with the function that made it."""

    def invoke(self, function: template.Function | str, event: dict[str, Any]) -> Any:
        name = function if isinstance(function, str) else function.logical_id
        token = _invoking.set(name)
        try:
            return super().invoke(function, event)
        finally:
            _invoking.reset(token)


@contextmanager
def local_stack() -> Iterator[tuple[HttpApi, Counter]]:
    """A fresh emulated stack whose DynamoDB calls are counted."""
    ensure_layer_on_path()
    from agentplane import crypto, idempotency, ratelimit, store
    from agentplane.settings import get_settings

    mock = aws.start()
    try:
        aws.provision(SIGNING_SECRET)
        get_settings.cache_clear()  # this stack's KMS key and secret, not a previous one's
        counter = Counter()
        # Clients made from the default session from here on (the store's included) carry the hook.
        events = boto3._get_default_session().events
        events.register("before-call.dynamodb", counter.hook)
        events.register("before-parameter-build.dynamodb.TransactWriteItems", counter.transaction_hook)
        store.reset_store()
        crypto.reset()
        idempotency.reset()
        ratelimit.reset_local_counters()
        with quiet_functions():
            yield HttpApi(CountingLambdas(template.functions()), cache_seconds=60), counter
    finally:
        mock.stop()
        store.reset_store()
        idempotency.reset()
        get_settings.cache_clear()


# ---------------------------------------------------------------- the world a route needs


@contextmanager
def quiet_functions() -> Iterator[None]:
    """The functions' own log lines would drown the figures; restored afterwards."""
    import warnings

    from agentplane.observability import logger

    level = logger.log_level
    logger.setLevel("ERROR")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No application metrics to publish")
            yield
    finally:
        logger.setLevel(level)


class Skip(Exception):
    """The scenario cannot run yet (its route, or one it needs to set up, is not implemented)."""


PATH_VALUES = {
    "ws": "ws",
    "task_id": "task_id",
    "key_id": "key_id",
    "pat_id": "pat_id",
    "team_id": "team_id",
    "invite_id": "invite_id",
    "user_id": "member_id",
    "token": "invite_token",
}


class World:
    def __init__(self, http: HttpApi) -> None:
        self.http = http
        self.values: dict[str, str] = {}

    def path(self, template_path: str) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            found = self.values.get(PATH_VALUES.get(name, name))
            if found is None:
                raise Skip(f"nothing built for {{{name}}}")
            return found

        return re.sub(r"\{(\w+)\}", value, template_path)

    def request(
        self, method: str, template_path: str, body: dict[str, Any] | None = None, token: str | None = None
    ) -> HttpResponse:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        raw = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            raw = json.dumps(body)
        return self.http.handle(method, self.path(template_path), headers, raw, source_ip="198.51.100.7")

    def sample(self, method: str, template_path: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        route = apps.find_route(method, template_path)
        if route is None:
            raise Skip(f"{method} {template_path} is not implemented")
        model = apps.body_model(route)
        body = apps.sample_body(model) if model else {}
        fields = getattr(model, "model_fields", {})
        body.update({k: v for k, v in (overrides or {}).items() if k in fields})
        return body

    def setup(self, method: str, template_path: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create something through the API; its answer's `data`."""
        body = self.sample(method, template_path, overrides)
        response = self.request(method, template_path, body, self.values.get("token"))
        if response.status >= 300:
            raise Skip(f"setting up with {method} {template_path} answered {response.status}")
        return dict(response.json["data"])

    def register(self, username: str) -> dict[str, Any]:
        account = {**_new_account(self), "username": username, "email": f"{username}@example.com"}
        created = self.request("POST", "/api/v1/auth/register", account)
        if created.status != 201:
            raise Skip(f"registering answered {created.status}")
        login = self.request("POST", "/api/v1/auth/login", {"email": account["email"], "password": PASSWORD})
        if login.status != 200:
            raise Skip(f"logging in answered {login.status}")
        return dict(login.json["data"])


def _user(world: World) -> None:
    session = world.register("benchuser")
    world.values.update(
        token=session["token"],
        refresh_token=session["refresh_token"],
        user_id=session["user"]["id"],
        email=session["user"]["email"],
    )


def _workspace(world: World) -> None:
    world.values["ws"] = world.setup("POST", "/api/v1/workspaces", {"name": "Acme"})["id"]


def _task(world: World) -> None:
    world.values["task_id"] = world.setup("POST", f"{WS}/tasks", {"title": "Measure the store"})["id"]


def _api_key(world: World) -> None:
    world.values["key_id"] = world.setup("POST", f"{WS}/api-keys", {"name": "ci"})["id"]


def _pat(world: World) -> None:
    world.values["pat_id"] = world.setup("POST", "/api/v1/me/personal-access-tokens", {"name": "laptop"})["id"]


def _team(world: World) -> None:
    world.values["team_id"] = world.setup("POST", f"{WS}/teams", {"name": "Platform"})["id"]


def _invite(world: World) -> None:
    invite = world.setup("POST", f"{WS}/invites", {"email": "invitee@example.com", "role": "member"})
    world.values["invite_id"] = invite["id"]
    if invite.get("token"):
        world.values["invite_token"] = invite["token"]


def _newcomer(world: World) -> None:
    """A registered user who is not in the workspace yet (the member a request adds)."""
    session = world.register("newcomer")
    world.values.update(
        member_id=session["user"]["id"], member_email=session["user"]["email"], newcomer_token=session["token"]
    )


def _member(world: World) -> None:
    _newcomer(world)
    overrides = {"user_id": world.values["member_id"], "email": world.values["member_email"], "role": "member"}
    world.setup("POST", f"{WS}/members", overrides)


def _team_member(world: World) -> None:
    _member(world)
    world.setup("POST", f"{WS}/teams/{{team_id}}/members", {"user_id": world.values["member_id"]})


def _hundred_events() -> dict[str, Any]:
    return {
        "events": [
            {"event_type": "log", "severity": "info", "path": f"src/module_{n}.py", "data": {"line": n}}
            for n in range(100)
        ]
    }


def _telemetry_run(world: World) -> None:
    """A run an agent has claimed, so it takes events."""
    run_id = world.setup("POST", f"{WS}/runs", {"title": "Measure telemetry", "prompt": "Report events"})["id"]
    world.values["run_id"] = run_id
    for action, body in (("start", None), ("claim", {"worker_id": "bench"})):
        response = world.request("POST", f"{WS}/runs/{{run_id}}/{action}", body, world.values["token"])
        if response.status >= 300:
            raise Skip(f"{action} of the run answered {response.status}")


def _run_events(world: World) -> None:
    """The run's telemetry: 100 events, a changed file and a command."""
    events = _hundred_events()["events"] + [
        {"event_type": "file_changed", "data": {"path": "src/app.py", "change": "modified", "diff": "+x"}},
        {"event_type": "command_executed", "data": {"command": "pytest -q", "exit_code": 0, "stdout": "ok"}},
    ]
    response = world.request("POST", f"{WS}/runs/{{run_id}}/events", {"events": events}, world.values["token"])
    if response.status >= 300:
        raise Skip(f"appending events answered {response.status}")


BUILDERS: dict[str, Callable[[World], None]] = {
    "workspace": _workspace,
    "task": _task,
    "api_key": _api_key,
    "pat": _pat,
    "team": _team,
    "invite": _invite,
    "newcomer": _newcomer,
    "member": _member,
    "team_member": _team_member,
    "telemetry_run": _telemetry_run,
    "run_events": _run_events,
}


# ---------------------------------------------------------------- running


@dataclass
class Result:
    scenario: Scenario
    status: int | None = None
    authorizer: list[Call] = field(default_factory=list)
    handler: list[Call] = field(default_factory=list)
    skipped: str | None = None

    @property
    def handler_ops(self) -> list[str]:
        return [call.operation for call in self.handler]

    @property
    def verdict(self) -> str:
        if self.skipped:
            return "skipped"
        if self.status is None or self.status >= 500:
            return "SERVER ERROR"
        if self.status >= 400:
            return f"answered {self.status}"
        target = self.scenario.target
        if target is None:
            return "-"
        return "ok" if target.met_by(self.handler_ops) else "MISSED"


def run(scenario: Scenario) -> Result:
    result = Result(scenario)
    if scenario.route_key not in {route.route_key for route in template.http_routes()}:
        result.skipped = "not in template.yaml"
        return result
    if apps.find_route(scenario.method, scenario.path) is None:
        result.skipped = "not implemented"
        return result
    with local_stack() as (http, counter):
        world = World(http)
        try:
            _user(world)
            for need in scenario.needs:
                BUILDERS[need](world)
            body = None
            if scenario.method in ("POST", "PUT", "PATCH"):
                body = scenario.body(world) if scenario.body else world.sample(scenario.method, scenario.path)
            world.path(scenario.path)  # raises Skip when a path value could not be built
        except Skip as reason:
            result.skipped = str(reason)
            return result
        from agentplane import ratelimit

        http.clear_authorizer_cache()
        ratelimit.reset_local_counters()
        counter.active = True
        token = None if scenario.anonymous else world.values[scenario.caller]
        response = world.request(scenario.method, scenario.path, body, token)
        counter.active = False
        result.status = response.status
        result.authorizer = [call for call in counter.calls if call.function == AUTHORIZER]
        result.handler = [call for call in counter.calls if call.function != AUTHORIZER]
    return result


def find(method: str, path: str) -> Scenario:
    return next(s for s in SCENARIOS if s.method == method and s.path == path)


def _describe(calls: list[Call]) -> str:
    if not calls:
        return "0"
    parts = [call.operation + (f"[{call.detail}]" if call.detail else "") for call in calls]
    return f"{len(calls)}: " + ", ".join(parts)


def report(scenarios: list[Scenario] | None = None) -> bool:
    with contextlib.redirect_stdout(io.StringIO()):  # the cold-start metric is printed, not logged
        results = [run(scenario) for scenario in scenarios or SCENARIOS]
    print("DynamoDB calls per request (fresh data per route; authorizer on a cache miss, counted apart)\n")
    rows = [("route", "status", "authorizer", "handler", "target", "verdict")]
    for r in results:
        if r.skipped:
            rows.append((r.scenario.route_key, "-", "", "", "", f"skipped: {r.skipped}"))
            continue
        target = r.scenario.target.label if r.scenario.target else "-"
        rows.append(
            (r.scenario.route_key, str(r.status), _describe(r.authorizer), _describe(r.handler), target, r.verdict)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[5])
    covered = {r.scenario.route_key for r in results}
    unmeasured = [route.route_key for route in template.http_routes() if route.route_key not in covered]
    if unmeasured and scenarios is None:
        print(f"\n  routes of other families with no scenario yet: {len(unmeasured)}")
    print()
    return not any(r.verdict in ("MISSED", "SERVER ERROR") for r in results)

"""What every function shares: settings checked at import, rate limits on every answer, path ids
that can never reach DynamoDB malformed, `Idempotency-Key`, and the local stack's data folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from devstack import template
from devstack.lambdas import LAYER_PATH
from tests.conftest import register_and_login

ROOT = template.ROOT
PROBLEM_JSON = "application/problem+json"


def is_problem(response: Any, status: int) -> bool:
    return response.status == status and response.header("content-type") == PROBLEM_JSON


# --- settings ---------------------------------------------------------------------------------------


def import_without_settings(function: str) -> subprocess.CompletedProcess[str]:
    """Import a function's module the way Lambda does, with neither TABLE_NAME nor SIGNING_SECRET."""
    environment = {
        k: v for k, v in os.environ.items() if k not in ("TABLE_NAME", "SIGNING_SECRET") and not k.startswith("COV")
    }
    probe = "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import app"
    code = str(ROOT / "functions" / function)
    return subprocess.run(
        [sys.executable, "-c", probe, code, str(LAYER_PATH)], env=environment, capture_output=True, text=True
    )


@pytest.mark.parametrize("function", ["workspaces", "health"])
def test_a_function_without_its_settings_fails_at_import_naming_them(function):
    result = import_without_settings(function)
    assert result.returncode != 0
    assert "SettingsError" in result.stderr
    assert "TABLE_NAME" in result.stderr and "SIGNING_SECRET" in result.stderr


@pytest.mark.parametrize("function", ["runs", "projects"])
def test_a_function_that_starts_runs_fails_at_import_without_the_state_machine(function):
    environment = {k: v for k, v in os.environ.items() if k != "RUN_STATE_MACHINE_ARN" and not k.startswith("COV")}
    environment.update(TABLE_NAME="agentplane-table", SIGNING_SECRET="a-signing-secret-of-some-length")
    probe = "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import app"
    code = str(ROOT / "functions" / function)
    result = subprocess.run(
        [sys.executable, "-c", probe, code, str(LAYER_PATH)], env=environment, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "SettingsError" in result.stderr and "RUN_STATE_MACHINE_ARN" in result.stderr


def test_every_function_that_starts_runs_is_given_the_state_machine_by_the_template():
    from devstack import template

    for logical_id in ("RunsFunction", "ProjectsFunction"):
        props = template.resources()[logical_id]["Properties"]
        variables = (props.get("Environment") or {}).get("Variables") or {}
        assert variables.get("RUN_STATE_MACHINE_ARN") == {"Ref": "RunStateMachine"}, logical_id
        assert any("StepFunctionsExecutionPolicy" in policy for policy in props["Policies"]), logical_id


@pytest.fixture
def settings_cache():
    from agentplane.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_create_app_refuses_a_malformed_setting(monkeypatch, settings_cache):
    from agentplane.http import create_app
    from agentplane.settings import SettingsError

    monkeypatch.setenv("TABLE_NAME", "agentplane-table")
    monkeypatch.setenv("SIGNING_SECRET", "too-short")
    with pytest.raises(SettingsError, match="SIGNING_SECRET"):
        create_app()


# --- rate limits on every answer -------------------------------------------------------------------


def test_a_forged_token_gets_a_401_problem_with_the_ips_rate_limit(api):
    refused = api.get("/api/v1/me", token="aps_forged", ip="10.20.0.1")
    assert is_problem(refused, 401)
    assert refused.header("X-RateLimit-Limit") == "600"
    assert refused.header("X-RateLimit-Remaining") == "599"


def test_validation_failures_on_auth_routes_carry_rate_limit_headers(api):
    malformed = api.post("/api/v1/auth/login", raw="{not json", token="", ip="10.20.0.2")
    invalid = api.post("/api/v1/auth/register", {"username": "x"}, token="", ip="10.20.0.2")
    assert is_problem(malformed, 400) and is_problem(invalid, 422)
    assert malformed.header("X-RateLimit-Remaining") == "599"
    assert invalid.header("X-RateLimit-Remaining") == "598"


def test_the_601st_request_of_a_principal_in_a_minute_is_429(api, user, monkeypatch):
    from agentplane import ratelimit

    twenty_seconds_into_a_minute = 1_900_000_040.0  # all 601 calls in one minute, whatever the real clock says
    monkeypatch.setattr(ratelimit, "_now", lambda: twenty_seconds_into_a_minute)
    for n in range(600):
        allowed = api.get("/api/v1/auth/me", token=user["token"])
        assert allowed.status == 200, (n, allowed.body)
    assert allowed.header("X-RateLimit-Remaining") == "0"

    limited = api.get("/api/v1/auth/me", token=user["token"])

    assert is_problem(limited, 429)
    assert limited.header("X-RateLimit-Limit") == "600" and limited.header("X-RateLimit-Remaining") == "0"
    assert limited.header("Retry-After") == "40"
    assert limited.json["retry_after"] == 40
    # Another caller is not affected.
    assert api.get("/api/health", ip="10.20.0.3").status == 200


# --- path ids ---------------------------------------------------------------------------------------


def test_path_ids_too_long_or_with_foreign_characters_are_404_before_any_read(api, user, workspace, monkeypatch):
    from agentplane.store import Store

    api.token = user["token"]
    ws = workspace["id"]
    malformed = ("a" * 300, "key_$1", "team_'or'1", "x" * 201)

    def reads_no_malformed_key(real: Any) -> Any:
        def read(self: Store, *args: Any, **kwargs: Any) -> Any:
            # The caller's token (and workspace) are read to answer the 401/404; no path id is.
            assert not any(bad in repr(args) for bad in malformed), "a malformed path id reached DynamoDB"
            return real(self, *args, **kwargs)

        return read

    for method in ("get_raw", "_get_raw", "_query_raw", "_batch_get_raw"):
        monkeypatch.setattr(Store, method, reads_no_malformed_key(getattr(Store, method)))
    paths = [
        f"/api/v1/workspaces/ws_{'a' * 300}",
        f"/api/v1/workspaces/{ws}/api-keys/key_$1",
        f"/api/v1/workspaces/{ws}/teams/team_'or'1",
        f"/api/v1/workspaces/{ws}/tasks/task_{'x' * 201}",
    ]
    for path in paths:
        refused = api.get(path)
        assert is_problem(refused, 404), (path, refused.body)
        assert refused.header("X-RateLimit-Limit") == "600"


def test_a_forged_token_is_401_even_on_a_malformed_path(api):
    assert is_problem(api.get(f"/api/v1/workspaces/ws_{'a' * 300}", token="aps_forged"), 401)


# --- Idempotency-Key ---------------------------------------------------------------------------------


def test_a_replayed_api_key_create_answers_the_same_key_with_its_secret_masked(api, user, workspace):
    api.token = user["token"]
    path = f"/api/v1/workspaces/{workspace['id']}/api-keys"
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = api.post(path, {"name": "ci"}, headers=key)
    again = api.post(path, {"name": "ci"}, headers=key)

    assert first.status == again.status == 201
    assert again.json["data"]["id"] == first.json["data"]["id"]
    assert first.json["data"]["key"].startswith("apk_")
    assert again.json["data"]["key"] == "[shown once]"
    assert api.get(f"/api/v1/workspaces/{workspace['id']}/tasks", token=first.json["data"]["key"]).status == 200
    assert [k["id"] for k in api.get(path).json["data"]] == [first.json["data"]["id"]]


def test_the_same_idempotency_key_with_another_body_is_a_422_problem(api, user, workspace):
    api.token = user["token"]
    path = f"/api/v1/workspaces/{workspace['id']}/tasks"
    key = {"Idempotency-Key": str(uuid.uuid4())}
    assert api.post(path, {"title": "First"}, headers=key).status == 201

    other = api.post(path, {"title": "Second"}, headers=key)
    reordered = api.post(path, raw='{ "title" : "First" }', headers={**key, "Content-Type": "application/json"})

    assert is_problem(other, 422)
    assert reordered.status == 201  # the same content, spaced differently, is the same request
    assert [t["title"] for t in api.get(path).json["data"]] == ["First"]


def test_an_idempotency_key_over_255_characters_is_a_400_and_creates_nothing(api, user, workspace):
    api.token = user["token"]
    path = f"/api/v1/workspaces/{workspace['id']}/tasks"
    refused = api.post(path, {"title": "Nope"}, headers={"Idempotency-Key": "k" * 256})
    assert is_problem(refused, 400)
    assert api.get(path).json["data"] == []
    assert api.post(path, {"title": "Fine"}, headers={"Idempotency-Key": "k" * 255}).status == 201


# --- the local stack's data ------------------------------------------------------------------------


def test_make_dev_reset_wipes_the_local_data_folder(tmp_path: Path, monkeypatch):
    from devstack import persist

    monkeypatch.delenv("AGENTPLANE_DATA_DIR", raising=False)
    assert persist.data_dir() == ROOT / ".local"  # where `make dev` keeps its data
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / ".local" / "tables").mkdir(parents=True)
    (tmp_path / ".local" / "tables" / "Table.json").write_text("{}")
    (tmp_path / "keep.txt").write_text("not local data")

    result = subprocess.run(["make", "-C", str(tmp_path), "dev-reset"], capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stderr
    assert not (tmp_path / ".local").exists()
    assert (tmp_path / "keep.txt").exists()


def test_concurrent_requests_to_one_function_are_each_answered_from_their_own_event(api, user, workspace) -> None:
    """The local stack runs concurrent invocations in one process, as separate instances; each is
    answered from its own request (its caller, path and body), never from another's."""
    from agentplane.auth.tokens import resolve_principal
    from agentplane.logic.workspaces import create_workspace
    from agentplane.models.workspaces import WorkspaceCreate

    other = register_and_login(api)
    theirs = create_workspace(resolve_principal(other["token"]), WorkspaceCreate(name="Other")).model_dump()
    callers = [(user, workspace), (other, theirs)]
    for _round in range(3):
        plan = [(callers[n % 2], f"task {n} of {callers[n % 2][1]['id']}") for n in range(32)]
        answers: list[Any] = [None] * len(plan)
        start = threading.Barrier(len(plan))

        def create(n: int) -> None:
            (person, ws), title = plan[n]
            start.wait()
            answers[n] = api.post(f"/api/v1/workspaces/{ws['id']}/tasks", {"title": title}, token=person["token"])

        threads = [threading.Thread(target=create, args=(n,)) for n in range(len(plan))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [a.status for a in answers] == [201] * len(plan), [a.body for a in answers if a.status != 201]
        assert [a.json["data"]["title"] for a in answers] == [title for _, title in plan]
        assert [a.json["data"]["created_by"] for a in answers] == [p["user"]["id"] for (p, _), _ in plan]

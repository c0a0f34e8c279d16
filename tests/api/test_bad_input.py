"""Bad input is a problem that says what is wrong, never a 500, and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.test_workspaces import ws_path

PROBLEM = "application/problem+json"


def tasks_path(ws: dict[str, Any]) -> str:
    return f"{ws_path(ws)}/tasks"


def send(api, method: str, path: str, body: str | bytes, content_type: str | None, token: str) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return api.http.handle(method, path, headers, body)


def stored_titles(api, ws: dict[str, Any], token: str) -> list[str]:
    return [t["title"] for t in api.get(tasks_path(ws), token=token).json["data"]]


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "*/*",
        "application/merge-patch+json",
        "multipart/form-data",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin-1",
    ],
)
def test_a_body_of_another_media_type_is_415_and_writes_nothing(api, user, workspace, content_type):
    answer = send(api, "POST", tasks_path(workspace), json.dumps({"title": "typed"}), content_type, user["token"])
    assert answer.status == 415 and answer.header("content-type") == PROBLEM
    assert "application/json" in answer.json["detail"] or "UTF-8" in answer.json["detail"]
    assert stored_titles(api, workspace, user["token"]) == []


@pytest.mark.parametrize("content_type", ["APPLICATION/JSON", "application/json; charset=UTF-8", None])
def test_json_is_json_whatever_the_case_or_charset_or_when_undeclared(api, user, workspace, content_type):
    answer = send(api, "POST", tasks_path(workspace), json.dumps({"title": "cased"}), content_type, user["token"])
    assert answer.status == 201, answer.body


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/auth/register", "TASKS"])
def test_a_body_that_is_not_utf8_is_400(api, user, workspace, path):
    target = tasks_path(workspace) if path == "TASKS" else path
    answer = send(api, "POST", target, b'{"title": "\xff\xfe caf\xe9"}', "application/json", user["token"])
    assert answer.status == 400 and answer.header("content-type") == PROBLEM
    assert "UTF-8" in answer.json["detail"]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ("[" * 1000 + "]" * 1000, 400, "nested"),
        ('{"title": "deep", "metadata": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}", 400, "nested"),
        ('{"title": "big", "metadata": {"n": ' + "9" * 4400 + "}}", 422, "digits"),
        ('{"title": "wide", "metadata": {"n": ' + "1" * 39 + "}}", 422, "digits"),
        ('{"title": "nan", "metadata": {"n": NaN}}', 422, "NaN"),
        ('{"title": "inf", "metadata": {"n": Infinity}}', 422, "Infinity"),
        ('{"title": "huge", "metadata": {"n": 1e400}}', 422, "range"),
        ('{"title": "tiny", "metadata": {"n": 1e-200}}', 422, "range"),
        ('{"title": "broken"', 400, "not valid JSON"),
        ('{"title": "keyless", "metadata": {"": 1}}', 422, "empty key"),
    ],
)
def test_json_no_store_can_hold_is_a_problem_naming_why(api, user, workspace, body, status, says):
    answer = send(api, "POST", tasks_path(workspace), body, "application/json", user["token"])
    assert answer.status == status, answer.body
    assert answer.header("content-type") == PROBLEM and says in answer.json["detail"]
    assert stored_titles(api, workspace, user["token"]) == []


def test_a_number_within_what_dynamodb_holds_is_stored_as_sent(api, user, workspace):
    data = {"ratio": 0.125, "count": 10**37, "small": 1e-100, "nested": {"deep": [1, 2, {"x": -3}]}}
    created = api.post(f"{ws_path(workspace)}/notifications", {"title": "measured", "data": data}, token=user["token"])
    assert created.status == 201, created.body
    listed = api.get(f"{ws_path(workspace)}/notifications", token=user["token"]).json["data"]
    assert listed[0]["data"] == data


def test_an_unknown_path_is_a_404_problem_with_or_without_a_token(api, user):
    for token in ("", user["token"], "aps_forged"):
        answer = api.get("/api/v1/no-such-thing/here", token=token)
        assert answer.status == 404 and answer.header("content-type") == PROBLEM, answer.body
        assert answer.json["instance"] == "/api/v1/no-such-thing/here"


def test_a_missing_token_is_a_401_problem_from_the_function(api, workspace):
    answer = api.get(tasks_path(workspace), token="")
    assert answer.status == 401 and answer.header("content-type") == PROBLEM
    assert answer.header("X-RateLimit-Limit")


def test_a_204_carries_no_content_type(api, user, workspace):
    task = api.post(tasks_path(workspace), {"title": "gone soon"}, token=user["token"]).json["data"]
    answer = api.delete(f"{tasks_path(workspace)}/{task['id']}", token=user["token"])
    assert answer.status == 204 and answer.header("content-type") is None and answer.body == ""


def _body_routes() -> list[Any]:
    from devstack import template

    return [r for r in template.http_routes() if r.method in ("POST", "PUT", "PATCH")]


def test_every_route_that_takes_a_body_refuses_other_media_types_and_non_utf8(api, user):
    import re

    from tools import apps

    for route in _body_routes():
        path = re.sub(r"\{(\w+)\+?\}", lambda m: apps.sample_path_value(m.group(1)), route.path)
        typed = send(api, route.method, path, '{"a": 1}', "text/plain", user["token"])
        assert typed.status == 415 and typed.header("content-type") == PROBLEM, (route.route_key, typed.body)
        garbled = send(api, route.method, path, b"\xff\xfe\x00", "application/json", user["token"])
        assert garbled.status == 400 and garbled.header("content-type") == PROBLEM, (route.route_key, garbled.body)


def test_a_cursor_of_any_text_is_a_400_not_a_500(api, user, workspace):
    answer = api.get(f"{ws_path(workspace)}/memories/search?q=x&cursor=%C3%AB%15.%C3%94%C2%B8", token=user["token"])
    assert answer.status == 400 and answer.header("content-type") == PROBLEM, answer.body


def test_a_queue_payload_nested_900_deep_is_a_400_and_queues_nothing(api, user, workspace):
    payload = '{"a": ' * 900 + "1" + "}" * 900
    body = '{"task_type": "report", "payload": ' + payload + "}"
    jobs = f"{ws_path(workspace)}/queue/jobs"
    answer = send(api, "POST", jobs, body, "application/json", user["token"])
    assert answer.status == 400 and "nested" in answer.json["detail"], answer.body
    assert api.get(jobs, token=user["token"]).json["data"] == []

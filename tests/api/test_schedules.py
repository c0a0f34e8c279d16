"""Schedules: CRUD kept in step with EventBridge Scheduler, and firings (the fired function, `run
now`, and the local scheduler of `make dev`) that submit a queue job or create a run draft."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from agentplane import raw_items
from tests.conftest import register_and_login

QUEUE_TARGET = {
    "type": "queue_job",
    "task_type": "discovery.scan",
    "payload": {"layer": "security"},
    "priority": "high",
}
RUN_TARGET = {"type": "run", "title": "Nightly audit", "prompt": "Audit the dependencies", "agent": "auditor"}


def schedules_path(ws: dict, rest: str = "") -> str:
    return f"/api/v1/workspaces/{ws['id']}/schedules{rest}"


def create(api, ws: dict, **fields: Any) -> dict:
    body = {"name": "Security discovery", "expression": "rate(5 minutes)", "target": QUEUE_TARGET, **fields}
    response = api.post(schedules_path(ws), body)
    assert response.status == 201, response.body
    return response.json["data"]


def scheduler() -> Any:
    return boto3.client("scheduler", region_name="us-east-1")


def aws_schedule(schedule_id: str) -> dict:
    return scheduler().get_schedule(Name=f"agentplane-dev-{schedule_id}", GroupName="default")


def aws_schedule_names() -> list[str]:
    return [s["Name"] for s in scheduler().list_schedules()["Schedules"]]


def audit_rows(ws: dict) -> list[dict]:
    from agentplane import keys

    return raw_items.query(keys.audit_pk(ws["id"]), limit=500).items


def jobs(api, ws: dict) -> list[dict]:
    response = api.get(f"/api/v1/workspaces/{ws['id']}/queue/jobs")
    assert response.status == 200, response.body
    return response.json["data"]


def add_member(api, ws: dict, role: str) -> dict:
    from agentplane.auth.scopes import Role
    from agentplane.ids import iso
    from agentplane.logic.workspaces import member_item

    person = register_and_login(api)
    raw_items.put(member_item(ws["id"], ws["name"], person["user"]["id"], Role(role), iso()))
    return person


# ------------------------------------------------------------------------------------ create


def test_created_schedule_exists_in_eventbridge_scheduler_targeting_the_fired_function(api, user, workspace, stack):
    api.token = user["token"]
    schedule = create(api, workspace, expression="cron(0 9 ? * MON-FRI *)", timezone="Europe/Paris")
    assert schedule["id"].startswith("sch_")
    assert (schedule["enabled"], schedule["version"], schedule["fire_count"]) == (True, 1, 0)
    assert schedule["target"] == {
        **QUEUE_TARGET, "queue_name": "default", "priority": 8, "max_attempts": 3, "timeout_seconds": 300
    }  # fmt: skip
    remote = aws_schedule(schedule["id"])
    assert remote["ScheduleExpression"] == "cron(0 9 ? * MON-FRI *)"
    assert remote["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert remote["State"] == "ENABLED"
    assert remote["Target"]["Arn"] == stack.arns["ScheduleFiredFunction"]
    assert remote["Target"]["RoleArn"].startswith("arn:aws:iam::123456789012:role/")
    assert json.loads(remote["Target"]["Input"]) == {
        "workspace_id": workspace["id"],
        "schedule_id": schedule["id"],
        "scheduled_time": "<aws.scheduler.scheduled-time>",
    }
    assert api.get(schedules_path(workspace, f"/{schedule['id']}")).json["data"] == schedule


def test_disabled_schedule_is_disabled_in_scheduler_until_enabled(api, user, workspace):
    api.token = user["token"]
    schedule = create(api, workspace, enabled=False)
    assert aws_schedule(schedule["id"])["State"] == "DISABLED"
    enabled = api.patch(schedules_path(workspace, f"/{schedule['id']}"), {"enabled": True})
    assert enabled.status == 200, enabled.body
    assert enabled.json["data"]["version"] == 2
    assert aws_schedule(schedule["id"])["State"] == "ENABLED"


def test_run_target_schedule_keeps_the_run_draft_fields(api, user, workspace):
    api.token = user["token"]
    schedule = create(api, workspace, target=RUN_TARGET)
    assert schedule["target"]["type"] == "run"
    assert schedule["target"]["title"] == "Nightly audit"
    assert schedule["target"]["kind"] == "agent"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("expression", "rate(0 minutes)"),
        ("expression", "rate(1 minutes)"),
        ("expression", "rate(5 minute)"),
        ("expression", "rate(5 weeks)"),
        ("expression", "every 5 minutes"),
        ("expression", "cron(0 12 * * MON *)"),
        ("expression", "cron(0 12 ? * ? *)"),
        ("expression", "cron(0 12 * * ?)"),
        ("expression", "cron(60 12 * * ? *)"),
        ("expression", "cron(0 12 ? * FUNDAY *)"),
        ("expression", "cron(0 12 ? * 6#6 *)"),
        ("timezone", "Mars/Olympus_Mons"),
        ("name", ""),
        ("target", {"type": "email", "to": "x"}),
        ("target", {"type": "run", "prompt": "no title"}),
        ("target", {"type": "queue_job", "task_type": "x", "payload": {"blob": "x" * (64 * 1024)}}),
        ("target", {"type": "queue_job", "task_type": "x", "surprise": True}),
        ("surprise", 1),
    ],
)
def test_invalid_schedules_are_422_and_create_nothing(api, user, workspace, field, value):
    api.token = user["token"]
    body = {"name": "x", "expression": "rate(5 minutes)", "target": QUEUE_TARGET, field: value}
    response = api.post(schedules_path(workspace), body)
    assert response.status == 422, response.body
    assert response.header("content-type") == "application/problem+json"
    assert api.get(schedules_path(workspace)).json["data"] == []
    assert aws_schedule_names() == []


@pytest.mark.parametrize(
    "expression",
    ["rate(1 minute)", "rate(2 hours)", "rate(1 day)", "cron(0/15 * * * ? *)", "cron(0 0 L * ? *)",
     "cron(0 10 ? * 6#3 *)", "cron(30 6 1 JAN,JUL ? 2030-2032)", "cron(0 0 15W * ? *)", "cron(0 18 ? * 6L *)"],
)  # fmt: skip
def test_expressions_scheduler_accepts_are_accepted(api, user, workspace, expression):
    api.token = user["token"]
    assert create(api, workspace, expression=expression)["expression"] == expression


def test_run_target_with_an_unknown_project_is_422(api, user, workspace):
    api.token = user["token"]
    response = api.post(
        schedules_path(workspace),
        {"name": "x", "expression": "rate(1 hour)", "target": {**RUN_TARGET, "project_id": "prj_missing"}},
    )
    assert response.status == 422
    assert aws_schedule_names() == []


def test_scheduler_refusing_a_new_schedule_is_422_and_writes_nothing(api, user, workspace, monkeypatch):
    from agentplane import clients

    class Refusing:
        def create_schedule(self, **kwargs: Any) -> None:
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "bad expression"}}, "CreateSchedule")

    monkeypatch.setattr(clients, "scheduler", lambda: Refusing())
    api.token = user["token"]
    response = api.post(
        schedules_path(workspace), {"name": "x", "expression": "rate(5 minutes)", "target": QUEUE_TARGET}
    )
    assert response.status == 422
    assert "bad expression" in response.json["detail"]
    assert api.get(schedules_path(workspace)).json["data"] == []


# ------------------------------------------------------------------------------------ update


def test_patch_updates_scheduler_and_a_stale_version_is_412(api, user, workspace):
    api.token = user["token"]
    schedule = create(api, workspace)
    path = schedules_path(workspace, f"/{schedule['id']}")
    updated = api.patch(path, {"expression": "rate(1 hour)", "timezone": "Asia/Tokyo", "version": 1})
    assert updated.status == 200, updated.body
    assert (updated.json["data"]["expression"], updated.json["data"]["version"]) == ("rate(1 hour)", 2)
    remote = aws_schedule(schedule["id"])
    assert (remote["ScheduleExpression"], remote["ScheduleExpressionTimezone"]) == ("rate(1 hour)", "Asia/Tokyo")
    stale = api.patch(path, {"name": "other"}, headers={"If-Match": "1"})
    assert stale.status == 412
    assert api.get(path).json["data"]["name"] == "Security discovery"


def test_patch_can_replace_the_target(api, user, workspace):
    api.token = user["token"]
    schedule = create(api, workspace)
    updated = api.patch(schedules_path(workspace, f"/{schedule['id']}"), {"target": RUN_TARGET})
    assert updated.status == 200
    assert updated.json["data"]["target"]["type"] == "run"


def test_scheduler_refusing_an_update_leaves_the_schedule_as_it_was(api, user, workspace, monkeypatch):
    from agentplane import clients

    api.token = user["token"]
    schedule = create(api, workspace)

    class Refusing:
        def update_schedule(self, **kwargs: Any) -> None:
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "no"}}, "UpdateSchedule")

    monkeypatch.setattr(clients, "scheduler", lambda: Refusing())
    path = schedules_path(workspace, f"/{schedule['id']}")
    refused = api.patch(path, {"expression": "rate(10 minutes)"})
    assert refused.status == 422
    monkeypatch.undo()
    assert api.get(path).json["data"] == schedule
    assert aws_schedule(schedule["id"])["ScheduleExpression"] == "rate(5 minutes)"
    # The audit trail does not claim the change stuck: the update is followed by its reversal.
    rows = [r for r in audit_rows(workspace) if r["target_id"] == schedule["id"]]
    assert [r["action"] for r in rows] == ["schedule.created", "schedule.updated", "schedule.update_reverted"]
    assert rows[-1]["details"]["fields"] == ["expression"]
    assert rows[-1]["details"]["version"] == 2


def test_concurrent_patches_leave_scheduler_with_the_stored_definition(api, user, workspace, monkeypatch):
    import threading

    from agentplane import clients

    api.token = user["token"]
    schedule = create(api, workspace)
    path = schedules_path(workspace, f"/{schedule['id']}")
    real = clients.scheduler()
    first_push_waiting, let_it_go = threading.Event(), threading.Event()

    class Slow:
        """The first update's push reaches Scheduler only after the second update is done."""

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def update_schedule(self, **definition: Any) -> Any:
            if definition["ScheduleExpression"] == "rate(10 minutes)" and not let_it_go.is_set():
                first_push_waiting.set()
                let_it_go.wait(10)
            return real.update_schedule(**definition)

    monkeypatch.setattr(clients, "scheduler", lambda: Slow())
    answers: list[Any] = []
    first = threading.Thread(target=lambda: answers.append(api.patch(path, {"expression": "rate(10 minutes)"})))
    first.start()
    assert first_push_waiting.wait(10)
    second = api.patch(path, {"expression": "rate(2 hours)", "timezone": "Asia/Tokyo"})
    assert second.status == 200, second.body
    let_it_go.set()
    first.join()
    assert answers[0].status == 200, answers[0].body
    stored = api.get(path).json["data"]
    assert (stored["expression"], stored["timezone"], stored["version"]) == ("rate(2 hours)", "Asia/Tokyo", 3)
    remote = aws_schedule(schedule["id"])
    assert (remote["ScheduleExpression"], remote["ScheduleExpressionTimezone"]) == ("rate(2 hours)", "Asia/Tokyo")


# ------------------------------------------------------------------------------------ delete


def test_deleted_schedule_leaves_scheduler_and_is_404(api, user, workspace):
    api.token = user["token"]
    schedule = create(api, workspace)
    path = schedules_path(workspace, f"/{schedule['id']}")
    assert api.delete(path).status == 204
    assert api.get(path).status == 404
    assert aws_schedule_names() == []
    assert api.delete(path).status == 404
    assert api.post(f"{path}/run").status == 404


# ------------------------------------------------------------------------------------ listing


def test_list_is_paginated_and_filters_by_enabled(api, user, workspace):
    api.token = user["token"]
    ids = [create(api, workspace, name=f"s{n}", enabled=n % 2 == 0)["id"] for n in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        response = api.get(schedules_path(workspace, "?limit=2" + (f"&cursor={cursor}" if cursor else "")))
        assert response.status == 200
        seen += [s["id"] for s in response.json["data"]]
        cursor = response.json["meta"]["next_cursor"]
        if not cursor:
            break
    assert seen == ids
    disabled = api.get(schedules_path(workspace, "?enabled=false")).json["data"]
    assert [s["id"] for s in disabled] == [ids[1], ids[3]]


# ------------------------------------------------------------------------------------ firing


def test_run_now_submits_the_queue_job_and_records_the_firing(api, user, workspace):
    api.token = user["token"]
    schedule = create(api, workspace)
    fired = api.post(schedules_path(workspace, f"/{schedule['id']}/run"))
    assert fired.status == 200, fired.body
    result = fired.json["data"]
    assert result["fired"] is True
    job = result["job"]
    assert (job["task_type"], job["payload"], job["priority"], job["status"]) == (
        "discovery.scan", {"layer": "security"}, 8, "pending"
    )  # fmt: skip
    assert job["source"] == {"type": "schedule", "schedule_id": schedule["id"]}
    assert [j["id"] for j in jobs(api, workspace)] == [job["id"]]
    after = api.get(schedules_path(workspace, f"/{schedule['id']}")).json["data"]
    assert after["fire_count"] == 1
    assert after["last_fired_at"]
    assert after["last_result"] == {"type": "queue_job", "id": job["id"], "at": after["last_fired_at"], "manual": True}


def test_run_now_of_a_run_target_creates_a_run_draft(api, user, workspace):
    api.token = user["token"]
    schedule = create(api, workspace, target=RUN_TARGET)
    fired = api.post(schedules_path(workspace, f"/{schedule['id']}/run"))
    assert fired.status == 200, fired.body
    run = fired.json["data"]["run"]
    assert (run["status"], run["title"], run["agent"]) == ("draft", "Nightly audit", "auditor")
    stored = api.get(f"/api/v1/workspaces/{workspace['id']}/runs/{run['id']}")
    assert stored.status == 200
    assert stored.json["data"]["status"] == "draft"


def test_run_now_works_on_a_disabled_schedule(api, user, workspace):
    api.token = user["token"]
    schedule = create(api, workspace, enabled=False)
    assert api.post(schedules_path(workspace, f"/{schedule['id']}/run")).json["data"]["fired"] is True


def test_fired_function_submits_the_job_once_per_scheduled_time(api, user, workspace, lambdas):
    api.token = user["token"]
    schedule = create(api, workspace)
    event = {"workspace_id": workspace["id"], "schedule_id": schedule["id"], "scheduled_time": "2030-01-01T09:00:00Z"}
    first = lambdas.invoke("ScheduleFiredFunction", event)
    assert first["fired"] is True
    again = lambdas.invoke("ScheduleFiredFunction", event)  # Scheduler delivers at least once
    assert (again["fired"], again["duplicate"], again["job"]["id"]) == (False, True, first["job"]["id"])
    later = lambdas.invoke("ScheduleFiredFunction", {**event, "scheduled_time": "2030-01-01T09:05:00Z"})
    assert later["fired"] is True
    assert len(jobs(api, workspace)) == 2
    after = api.get(schedules_path(workspace, f"/{schedule['id']}")).json["data"]
    assert after["fire_count"] == 2
    assert after["last_result"]["manual"] is False
    assert [j["created_by"] for j in jobs(api, workspace)] == [user["user"]["id"]] * 2


def test_fired_function_creates_one_run_draft_per_scheduled_time(api, user, workspace, lambdas):
    api.token = user["token"]
    schedule = create(api, workspace, target=RUN_TARGET)
    event = {"workspace_id": workspace["id"], "schedule_id": schedule["id"], "scheduled_time": "2030-01-01T09:00:00Z"}
    first = lambdas.invoke("ScheduleFiredFunction", event)
    again = lambdas.invoke("ScheduleFiredFunction", event)
    assert first["fired"] is True and again["duplicate"] is True
    assert again["run"]["id"] == first["run"]["id"]
    runs = api.get(f"/api/v1/workspaces/{workspace['id']}/runs").json["data"]
    assert [r["id"] for r in runs] == [first["run"]["id"]]


def test_fired_function_skips_a_disabled_schedule(api, user, workspace, lambdas):
    api.token = user["token"]
    schedule = create(api, workspace, enabled=False)
    result = lambdas.invoke("ScheduleFiredFunction", {"workspace_id": workspace["id"], "schedule_id": schedule["id"]})
    assert result["fired"] is False
    assert jobs(api, workspace) == []


def test_firing_of_a_schedule_whose_item_is_gone_deletes_it_from_scheduler(api, user, workspace, lambdas, stack):
    scheduler().create_schedule(
        Name="agentplane-dev-sch_orphan",
        ScheduleExpression="rate(5 minutes)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": stack.arns["ScheduleFiredFunction"], "RoleArn": "arn:aws:iam::123456789012:role/x"},
    )
    result = lambdas.invoke("ScheduleFiredFunction", {"workspace_id": workspace["id"], "schedule_id": "sch_orphan"})
    assert result["fired"] is False
    assert aws_schedule_names() == []


def fire(lambdas, ws: dict, schedule: dict, at: str = "2030-01-01T09:00:00Z") -> dict:
    return lambdas.invoke(
        "ScheduleFiredFunction", {"workspace_id": ws["id"], "schedule_id": schedule["id"], "scheduled_time": at}
    )


def assert_retired(api, ws: dict, schedule: dict, reason: str) -> None:
    """The schedule made nothing, is disabled with the reason, and is gone from Scheduler."""
    from agentplane import keys

    item = raw_items.get(keys.schedule_key(ws["id"], schedule["id"]))
    assert item is not None
    assert item["enabled"] is False
    assert reason in item["last_error"]
    assert item.get("fire_count", 0) == 0
    assert aws_schedule_names() == []
    disabled = [r for r in audit_rows(ws) if r["action"] == "schedule.disabled"]
    assert [r["target_id"] for r in disabled] == [schedule["id"]]
    assert reason in disabled[0]["details"]["reason"]


@pytest.mark.parametrize("target", [QUEUE_TARGET, RUN_TARGET], ids=["queue_job", "run"])
def test_a_schedule_whose_creator_left_the_workspace_stops_firing(api, user, workspace, lambdas, target):
    creator = add_member(api, workspace, "member")
    api.token = creator["token"]
    schedule = create(api, workspace, target=target)
    api.token = user["token"]
    removed = api.delete(f"/api/v1/workspaces/{workspace['id']}/members/{creator['user']['id']}")
    assert removed.status == 204, removed.body
    result = fire(lambdas, workspace, schedule)
    assert result["fired"] is False
    assert "no longer a member" in result["error"]
    assert jobs(api, workspace) == []
    assert api.get(f"/api/v1/workspaces/{workspace['id']}/runs").json["data"] == []
    assert_retired(api, workspace, schedule, "no longer a member")
    shown = api.get(schedules_path(workspace, f"/{schedule['id']}")).json["data"]
    assert shown["enabled"] is False and "no longer a member" in shown["last_error"]
    # Later deliveries do nothing either.
    assert fire(lambdas, workspace, schedule, "2030-01-01T09:05:00Z")["fired"] is False
    assert jobs(api, workspace) == []


def test_a_schedule_whose_creator_lost_the_scope_stops_firing(api, user, workspace, lambdas):
    creator = add_member(api, workspace, "member")
    api.token = creator["token"]
    schedule = create(api, workspace)
    api.token = user["token"]
    demoted = api.patch(f"/api/v1/workspaces/{workspace['id']}/members/{creator['user']['id']}", {"role": "viewer"})
    assert demoted.status == 200, demoted.body
    result = fire(lambdas, workspace, schedule)
    assert (result["fired"], jobs(api, workspace)) == (False, [])
    assert "tasks:write" in result["error"]
    assert_retired(api, workspace, schedule, "tasks:write")


def test_a_schedule_created_by_an_agent_key_stops_firing_once_the_key_is_revoked(api, user, workspace, lambdas):
    api.token = user["token"]
    issued = api.post(f"/api/v1/workspaces/{workspace['id']}/api-keys", {"name": "scout", "agent": "scout"})
    assert issued.status == 201, issued.body
    key = issued.json["data"]
    api.token = key["key"]
    schedule = create(api, workspace)
    assert fire(lambdas, workspace, schedule)["fired"] is True
    api.token = user["token"]
    assert api.post(f"/api/v1/workspaces/{workspace['id']}/api-keys/{key['id']}/revoke").status == 200
    result = fire(lambdas, workspace, schedule, "2030-01-01T09:05:00Z")
    assert result["fired"] is False
    assert len(jobs(api, workspace)) == 1
    assert "agent key" in result["error"]


def test_a_schedule_of_a_deleted_workspace_stops_firing_and_leaves_scheduler(api, user, workspace, lambdas):
    api.token = user["token"]
    schedule = create(api, workspace)
    assert aws_schedule_names() == [f"agentplane-dev-{schedule['id']}"]
    assert api.delete(f"/api/v1/workspaces/{workspace['id']}").status == 204
    result = fire(lambdas, workspace, schedule)
    assert result["fired"] is False
    assert "workspace was deleted" in result["error"]
    from agentplane import keys

    ws = workspace["id"]
    made = raw_items.query(keys.ws_pk(ws), sk_prefix=keys.QUEUE_JOB_PREFIX).items
    assert made == []
    assert_retired(api, workspace, schedule, "workspace was deleted")


def test_access_lost_while_a_firing_is_prepared_stops_it(api, user, workspace, lambdas, monkeypatch):
    from agentplane import keys
    from agentplane.entities.schedules import ScheduleItem
    from agentplane.logic import schedules
    from agentplane.store import get_store

    creator = add_member(api, workspace, "member")
    api.token = creator["token"]
    schedule = create(api, workspace)
    item = get_store().read(ScheduleItem, keys.schedule_key(workspace["id"], schedule["id"]))
    assert item is not None
    allowed = schedules._creator(workspace["id"], item)  # the check passes...
    api.token = user["token"]
    assert api.delete(f"/api/v1/workspaces/{workspace['id']}/members/{creator['user']['id']}").status == 204
    real = schedules._creator
    calls = iter([allowed])
    monkeypatch.setattr(schedules, "_creator", lambda ws, it: next(calls, None) or real(ws, it))
    result = fire(lambdas, workspace, schedule)  # ...and the membership goes before the commit
    assert result["fired"] is False
    assert jobs(api, workspace) == []
    assert_retired(api, workspace, schedule, "no longer a member")


def test_a_retired_schedule_enabled_again_is_back_in_scheduler(api, user, workspace, lambdas):
    creator = add_member(api, workspace, "member")
    api.token = creator["token"]
    schedule = create(api, workspace)
    api.token = user["token"]
    api.patch(f"/api/v1/workspaces/{workspace['id']}/members/{creator['user']['id']}", {"role": "viewer"})
    fire(lambdas, workspace, schedule)
    assert aws_schedule_names() == []
    api.patch(f"/api/v1/workspaces/{workspace['id']}/members/{creator['user']['id']}", {"role": "member"})
    enabled = api.patch(schedules_path(workspace, f"/{schedule['id']}"), {"enabled": True})
    assert enabled.status == 200, enabled.body
    assert aws_schedule(schedule["id"])["State"] == "ENABLED"
    assert fire(lambdas, workspace, schedule, "2030-01-01T10:00:00Z")["fired"] is True
    assert len(jobs(api, workspace)) == 1


def test_the_fired_function_sample_event_is_current_and_runs(lambdas, tmp_path):
    from tools import events

    function, event = events.scheduled_events()["schedule-fired.json"]
    assert function.logical_id == "ScheduleFiredFunction"
    events.write(tmp_path)  # what `make events` writes to events/
    path = tmp_path / "schedule-fired.json"
    assert path.is_file(), f"regenerate with: {events.REGENERATE}"
    on_disk = json.loads(path.read_text())
    assert on_disk == event, f"stale; regenerate with: {events.REGENERATE}"
    assert set(on_disk) == {"workspace_id", "schedule_id", "scheduled_time"}
    # What `sam local invoke ScheduleFiredFunction -e events/schedule-fired.json` does
    # against a table without that schedule: nothing to fire.
    result = lambdas.invoke(function, on_disk)
    assert (result["fired"], result["error"]) == (False, "schedule not found")


def test_malformed_firing_event_is_dropped(lambdas):
    assert lambdas.invoke("ScheduleFiredFunction", {"hello": "world"}) == {
        "fired": False,
        "error": "not a schedule firing",
    }


def test_run_target_whose_project_was_deleted_records_the_error(api, user, workspace, lambdas):
    api.token = user["token"]
    project = api.post(f"/api/v1/workspaces/{workspace['id']}/projects", {"name": "api"}).json["data"]
    schedule = create(api, workspace, target={**RUN_TARGET, "project_id": project["id"]})
    assert api.delete(f"/api/v1/workspaces/{workspace['id']}/projects/{project['id']}").status == 204
    result = lambdas.invoke("ScheduleFiredFunction", {"workspace_id": workspace["id"], "schedule_id": schedule["id"]})
    assert result["fired"] is False
    assert "not found" in result["error"]
    after = api.get(schedules_path(workspace, f"/{schedule['id']}")).json["data"]
    assert "not found" in after["last_error"]
    assert api.post(schedules_path(workspace, f"/{schedule['id']}/run")).status == 422


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 6, 3, 8, 0, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_local_scheduler_fires_a_created_schedule_which_enqueues_a_job(api, user, workspace, lambdas, stack):
    from devstack.schedules import Scheduler

    api.token = user["token"]
    schedule = create(api, workspace, expression="rate(5 minutes)")
    clock = Clock()
    local = Scheduler(lambdas, stack, clock=clock, inline=True)
    key = aws_schedule(schedule["id"])["Arn"]
    assert key not in local.tick(clock.now)
    assert jobs(api, workspace) == []
    assert key in local.tick(clock.now + timedelta(minutes=5))
    [job] = jobs(api, workspace)
    assert job["source"] == {"type": "schedule", "schedule_id": schedule["id"]}
    assert key in local.tick(clock.now + timedelta(minutes=10))
    assert len(jobs(api, workspace)) == 2
    api.patch(schedules_path(workspace, f"/{schedule['id']}"), {"enabled": False})
    assert key not in local.tick(clock.now + timedelta(minutes=15))
    assert len(jobs(api, workspace)) == 2


# ------------------------------------------------------------------------------------ access


def test_non_member_gets_404(api, user, workspace):
    api.token = user["token"]
    schedule = create(api, workspace)
    api.token = register_and_login(api)["token"]
    assert api.get(schedules_path(workspace)).status == 404
    assert api.get(schedules_path(workspace, f"/{schedule['id']}")).status == 404
    assert api.post(schedules_path(workspace, f"/{schedule['id']}/run")).status == 404
    assert api.delete(schedules_path(workspace, f"/{schedule['id']}")).status == 404
    assert (
        api.post(schedules_path(workspace), {"name": "x", "expression": "rate(1 hour)", "target": QUEUE_TARGET}).status
        == 404
    )


def test_viewer_reads_schedules_but_cannot_change_or_fire_them(api, user, workspace):
    api.token = user["token"]
    schedule = create(api, workspace)
    api.token = add_member(api, workspace, "viewer")["token"]
    assert api.get(schedules_path(workspace)).status == 200
    refused = api.post(schedules_path(workspace, f"/{schedule['id']}/run"))
    assert refused.status == 403
    assert api.patch(schedules_path(workspace, f"/{schedule['id']}"), {"enabled": False}).status == 403
    assert api.delete(schedules_path(workspace, f"/{schedule['id']}")).status == 403
    assert aws_schedule(schedule["id"])["State"] == "ENABLED"


def test_changes_and_firings_are_audited(api, user, workspace):
    from agentplane import keys

    api.token = user["token"]
    schedule = create(api, workspace)
    api.patch(schedules_path(workspace, f"/{schedule['id']}"), {"name": "renamed"})
    api.post(schedules_path(workspace, f"/{schedule['id']}/run"))
    api.delete(schedules_path(workspace, f"/{schedule['id']}"))
    rows = raw_items.query(keys.audit_pk(workspace["id"]), limit=100).items
    actions = [r["action"] for r in rows if r["target_id"] == schedule["id"]]
    assert actions == ["schedule.created", "schedule.updated", "schedule.fired", "schedule.deleted"]

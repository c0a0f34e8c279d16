"""Deploy runs: plan → approve → apply → destroy through the API with a stand-in runner, the
capsule held by one apply at a time, stale plans, cancel and force-cancel, and no secret left
anywhere a person or a log could read it."""

from __future__ import annotations

import base64
import json
import logging
import threading
from typing import Any

import pytest

from agentplane.settings import get_settings
from tests.api.test_runs import wait_for
from tests.conftest import Client, register_and_login

pytestmark = pytest.mark.usefixtures("executions")

ACCESS_KEY = "AKIAEXAMPLE7QWERTY12"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DB_PASSWORD = "pw-correct-horse-9137"
PLAN_FILE = b"\x00tfplan\x01saved plan bytes"
SECRETS = (ACCESS_KEY, SECRET_KEY, DB_PASSWORD)


class Deploy:
    """One workspace's deploy setup, driven as a person and a runner would."""

    def __init__(self, api: Client, ws: dict[str, Any]) -> None:
        self.api, self.ws = api, ws
        self.base = f"/api/v1/workspaces/{ws['id']}"
        self.seen: list[str] = []  # every answer body, to look for secrets in afterwards

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        answer = self.api.request(method, f"{self.base}{path}", body, **kw)
        self.seen.append(answer.body)
        return answer

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> dict[str, Any]:
        answer = self.call(method, path, body)
        assert answer.status == status, answer.body
        return dict(answer.json["data"])

    def connection(self) -> dict[str, Any]:
        credentials = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        body = {"name": "prod aws", "provider": "aws", "credentials": credentials}
        return self.ok("POST", "/connections", body, 201)

    def capsule(self, **fields: Any) -> dict[str, Any]:
        source = {"repository_url": "https://git.example.com/infra.git", "path": "stacks/web", "ref": "main"}
        body = {"name": "web", "source": source, "tool_version": "1.8.2", **fields}
        capsule = self.ok("POST", "/capsules", body, 201)
        connection = self.connection()
        bindings = {"bindings": [{"provider": "aws", "connection_id": connection["id"]}]}
        bound = self.ok("PUT", f"/capsules/{capsule['id']}/bindings", bindings)
        assert [b["resolution"] for b in bound["bindings"]] == ["resolved_provider_connection"]
        return capsule

    def run(self, **body: Any) -> dict[str, Any]:
        return self.ok("POST", "/runs", body, 201)

    def act(self, run: dict[str, Any], action: str, body: Any = None) -> Any:
        return self.call("POST", f"/runs/{run['id']}/{action}", body)

    def get(self, run: dict[str, Any]) -> dict[str, Any]:
        return self.ok("GET", f"/runs/{run['id']}")

    def claim(self, run: dict[str, Any]) -> dict[str, Any]:
        claimed = self.act(run, "claim", {"worker_id": "runner-1"})
        assert claimed.status == 200, claimed.body
        return dict(claimed.json["data"])

    def plan(self, capsule: dict[str, Any], *, is_destroy: bool = False, approve: bool = True) -> dict[str, Any]:
        """A plan run started, claimed, completed (planned) and, unless told not to, approved."""
        run = self.run(kind="plan", capsule_id=capsule["id"], is_destroy=is_destroy)
        assert self.act(run, "start").status == 200
        self.claim(run)
        done = self.act(
            run,
            "complete",
            {
                "worker_id": "runner-1",
                "plan": {"add": 0 if is_destroy else 2, "change": 1, "destroy": 3 if is_destroy else 0},
                "plan_file": base64.b64encode(PLAN_FILE).decode(),
                "source_commit": "0123abc4567def",
                "provider_lock_digest": "sha256:" + "ab" * 32,
            },
        )
        assert done.status == 200, done.body
        assert done.json["data"]["status"] == "planned"
        if approve:
            approved = self.act(run, "approve", {"notes": "looks right"})
            assert approved.status == 200, approved.body
        return self.get(run)

    def carry_out(self, plan: dict[str, Any], kind: str = "apply") -> dict[str, Any]:
        run = self.run(kind=kind, plan_run_id=plan["id"])
        started = self.act(run, "start")
        assert started.status == 200, started.body
        return dict(started.json["data"])

    def complete_apply(self, run: dict[str, Any], serial: int, *, resources: int = 2, **extra: Any) -> Any:
        state = {
            "version": 4,
            "serial": serial,
            "lineage": "lin-1",
            "resources": [{"type": "aws_s3_bucket", "name": f"b{i}"} for i in range(resources)],
        }
        outputs = {
            "bucket": {"value": "web-assets"},
            "db_password": {"value": DB_PASSWORD, "sensitive": True},
        }
        reported = {"serial": serial, "lineage": "lin-1", "body": state}
        body = {"worker_id": "runner-1", "state": reported, "outputs": outputs}
        return self.act(run, "complete", {**body, **extra})


def a_member(api: Client, deploy: Deploy, owner: dict[str, Any]) -> Deploy:
    """A new member (role member: `deploy:plan`, not `deploy:apply`) of the deploy's workspace."""
    member = register_and_login(api)
    added = api.post(
        f"{deploy.base}/members", {"user_id": member["user"]["id"], "role": "member"}, token=owner["token"]
    )
    assert added.status == 201, added.body
    client = Client(api.http)
    client.token = member["token"]
    return Deploy(client, deploy.ws)


@pytest.fixture
def deploy(api: Client, user: dict[str, Any], workspace: dict[str, Any]) -> Deploy:
    api.token = user["token"]
    return Deploy(api, workspace)


def test_plan_approve_apply_destroy_end_to_end_with_state_versions_and_outputs(deploy, caplog):
    caplog.set_level(logging.INFO)  # what a deployed function logs (LogLevel INFO)
    capsule = deploy.capsule()

    plan = deploy.run(kind="plan", capsule_id=capsule["id"])
    assert plan["status"] == "draft" and plan["title"] == "Plan of web"
    assert deploy.act(plan, "start").json["data"]["status"] == "queued"
    claimed = deploy.claim(plan)
    # The runner gets the source, the tool and the credentials, as the connection's recipe says.
    assert claimed["deploy"]["source"] == {
        "repository_url": "https://git.example.com/infra.git",
        "path": "stacks/web",
        "ref": "main",
    }
    assert claimed["deploy"]["tool"] == "opentofu" and claimed["deploy"]["tool_version"] == "1.8.2"
    assert claimed["deploy"]["state"] is None and claimed["deploy"]["state_serial"] == 0
    assert claimed["credentials"]["env"] == {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    # What the runner prints is stored with the credentials masked.
    printed = {"events": [{"event_type": "log", "data": {"line": f"using key {SECRET_KEY} for {ACCESS_KEY}"}}]}
    assert deploy.act(plan, "events", printed).status == 201
    done = deploy.act(
        plan,
        "complete",
        {
            "worker_id": "runner-1",
            "plan": {"add": 2, "change": 1, "destroy": 0},
            "plan_file": base64.b64encode(PLAN_FILE).decode(),
            "source_commit": "0123abc4567def",
            "provider_lock_digest": "sha256:" + "ab" * 32,
        },
    ).json["data"]
    assert done["status"] == "planned"
    assert done["deploy"]["plan"] == {"add": 2, "change": 1, "destroy": 0}
    assert done["deploy"]["injected_env"] == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    assert done["deploy"]["source"]["commit"] == "0123abc4567def"
    assert done["actions"]["can_approve"] and done["actions"]["can_discard"] and not done["actions"]["can_apply"]

    approved = deploy.act(plan, "approve").json["data"]
    assert approved["status"] == "planned" and approved["actions"]["can_apply"]

    apply = deploy.carry_out(approved)
    assert apply["status"] == "queued" and apply["deploy"]["plan_run_id"] == plan["id"]
    assert deploy.ok("GET", f"/capsules/{capsule['id']}")["active_run_id"] == apply["id"]
    claimed = deploy.claim(apply)
    # The apply runs the plan that was approved, from the commit the plan ran on.
    assert base64.b64decode(claimed["deploy"]["plan_file"]) == PLAN_FILE
    assert claimed["deploy"]["source"]["commit"] == "0123abc4567def"
    applied = deploy.complete_apply(apply, serial=1).json["data"]
    assert applied["status"] == "applied" and applied["deploy"]["state_serial"] == 1

    shown = deploy.ok("GET", f"/capsules/{capsule['id']}")
    assert shown["state"]["serial"] == 1 and shown["state"]["run_id"] == apply["id"]
    assert shown["active_run_id"] is None
    outputs = {o["name"]: o for o in deploy.call("GET", f"/capsules/{capsule['id']}/outputs").json["data"]}
    assert outputs["bucket"]["value"] == "web-assets"
    assert outputs["db_password"] == {**outputs["db_password"], "value": None, "sensitive": True}

    destroy_plan = deploy.plan(capsule, is_destroy=True)
    destroy = deploy.carry_out(destroy_plan, kind="destroy")
    claimed = deploy.claim(destroy)
    # A destroy plans and runs against the state the apply left.
    assert claimed["deploy"]["state_serial"] == 1 and len(claimed["deploy"]["state"]["resources"]) == 2
    destroyed = deploy.complete_apply(destroy, serial=2, resources=0).json["data"]
    assert destroyed["status"] == "destroyed"

    versions = deploy.call("GET", f"/capsules/{capsule['id']}/state-versions").json["data"]
    assert [(v["serial"], v["run_id"]) for v in versions] == [(2, destroy["id"]), (1, apply["id"])]
    assert all(len(v["checksum"]) == 64 and v["lineage"] == "lin-1" for v in versions)

    # Nothing a person, a log or the audit trail can read holds a credential or a sensitive value,
    # except the claim's answer to the runner.
    claims = [text for text in deploy.seen if '"credentials":{' in text.replace(" ", "")]
    others = [text for text in deploy.seen if text not in claims]
    events = deploy.call("GET", f"/runs/{plan['id']}/events").body
    audit = deploy.api.get(f"{deploy.base}/audit-logs?limit=200").body
    for secret in SECRETS:
        assert not any(secret in text for text in others), secret
        assert secret not in events and secret not in audit
        assert secret not in caplog.text
    assert "deploy.credentials_issued" in audit


def test_a_stale_plan_is_refused_once_another_apply_moved_the_state(deploy):
    capsule = deploy.capsule()
    first, second = deploy.plan(capsule), deploy.plan(capsule)
    apply = deploy.carry_out(first)
    deploy.claim(apply)
    assert deploy.complete_apply(apply, serial=1).status == 200

    refused = deploy.call("POST", "/runs", {"kind": "apply", "plan_run_id": second["id"]})
    assert refused.status == 409
    assert "stale" in refused.json["detail"] and refused.json["state_serial"] == 1


def test_one_apply_holds_the_capsule_and_the_next_waits_then_fails_stale(deploy):
    capsule = deploy.capsule()
    first, second = deploy.plan(capsule), deploy.plan(capsule)
    holder = deploy.carry_out(first)
    waiting = deploy.carry_out(second)
    assert waiting["status"] == "queued" and waiting["status_detail"] == "waiting_for_capsule"
    refused = deploy.act(waiting, "claim", {"worker_id": "runner-2"})
    assert refused.status == 409 and holder["id"] in refused.json["detail"]

    deploy.claim(holder)
    assert deploy.complete_apply(holder, serial=1).status == 200
    # The capsule passed to the waiting run, whose plan the first apply made stale.
    assert deploy.ok("GET", f"/capsules/{capsule['id']}")["active_run_id"] == waiting["id"]
    assert deploy.get(waiting)["status_detail"] is None
    stale = deploy.act(waiting, "claim", {"worker_id": "runner-2"})
    assert stale.status == 409 and "plan again" in stale.json["detail"]
    failed = deploy.get(waiting)
    assert failed["status"] == "failed" and failed["failure_reason"] == "stale_plan"
    assert deploy.ok("GET", f"/capsules/{capsule['id']}")["active_run_id"] is None


def test_two_applies_of_one_plan_started_at_once_have_one_winner(deploy):
    capsule = deploy.capsule()
    plan = deploy.plan(capsule)
    drafts = [deploy.run(kind="apply", plan_run_id=plan["id"]) for _ in range(2)]
    answers: list[int] = []
    barrier = threading.Barrier(2)

    def start(run: dict[str, Any]) -> None:
        barrier.wait()
        answers.append(deploy.act(run, "start").status)

    threads = [threading.Thread(target=start, args=(run,)) for run in drafts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [200, 409]
    assert deploy.get(plan)["deploy"]["applied_by"] in {run["id"] for run in drafts}
    held = deploy.ok("GET", f"/capsules/{capsule['id']}")
    assert held["active_run_id"] == deploy.get(plan)["deploy"]["applied_by"] and held["queued_run_ids"] == []


def test_a_complete_whose_serial_is_not_the_next_one_is_refused(deploy):
    capsule = deploy.capsule()
    apply = deploy.carry_out(deploy.plan(capsule))
    deploy.claim(apply)
    refused = deploy.complete_apply(apply, serial=3)
    assert refused.status == 409 and "not the next one" in refused.json["detail"]
    assert deploy.get(apply)["status"] == "running"
    assert deploy.call("GET", f"/capsules/{capsule['id']}/state-versions").json["data"] == []


def test_a_plan_with_a_blocked_binding_is_refused_with_the_bindings_listed(deploy):
    capsule = deploy.capsule()
    connection_id = deploy.ok("GET", f"/capsules/{capsule['id']}")["bindings"][0]["connection_id"]
    assert deploy.call("DELETE", f"/connections/{connection_id}").status == 204

    refused = deploy.call("POST", "/runs", {"kind": "plan", "capsule_id": capsule["id"]})
    assert refused.status == 409
    assert refused.json["blocked_bindings"][0]["resolution"] == "blocked_missing_connection"


def test_apply_needs_an_approved_plan_and_a_discarded_plan_is_never_applied(deploy):
    capsule = deploy.capsule()
    unapproved = deploy.plan(capsule, approve=False)
    refused = deploy.call("POST", "/runs", {"kind": "apply", "plan_run_id": unapproved["id"]})
    assert refused.status == 409 and "approval" in refused.json["detail"]

    discarded = deploy.act(unapproved, "discard").json["data"]
    assert discarded["status"] == "discarded" and not discarded["actions"]["can_apply"]
    refused = deploy.call("POST", "/runs", {"kind": "apply", "plan_run_id": unapproved["id"]})
    assert refused.status == 409 and refused.json["current_status"] == "discarded"
    destroy = deploy.call("POST", "/runs", {"kind": "destroy", "plan_run_id": deploy.plan(capsule)["id"]})
    assert destroy.status == 409 and "destroy plan" in destroy.json["detail"]


def test_deploy_scopes_name_what_is_missing(api, deploy, user):
    capsule = deploy.capsule()
    plan = deploy.plan(capsule, approve=False)
    # A member plans (deploy:plan) but neither approves nor applies (deploy:apply).
    as_member = a_member(api, deploy, user)
    assert as_member.call("POST", "/runs", {"kind": "plan", "capsule_id": capsule["id"]}).status == 201
    refused = as_member.act(plan, "approve")
    assert refused.status == 403 and "deploy:apply" in refused.json["detail"]
    deploy.act(plan, "approve")
    refused = as_member.call("POST", "/runs", {"kind": "apply", "plan_run_id": plan["id"]})
    assert refused.status == 403 and "deploy:apply" in refused.json["detail"]


def test_cancel_asks_the_runner_to_stop_and_force_cancel_waits_for_the_cool_off(deploy, monkeypatch):
    capsule = deploy.capsule()
    apply = deploy.carry_out(deploy.plan(capsule))
    deploy.claim(apply)

    asked = deploy.act(apply, "cancel").json["data"]
    assert asked["status"] == "running" and asked["status_detail"] == "cancel_requested"
    beat = deploy.act(apply, "heartbeat", {"worker_id": "runner-1"}).json["data"]
    assert beat["desired_state"] == "cancel"
    early = deploy.act(apply, "force-cancel")
    assert early.status == 409 and early.json["retry_after"] >= 1

    monkeypatch.setenv("DEPLOY_FORCE_CANCEL_AFTER_SECONDS", "0")
    get_settings.cache_clear()
    try:
        forced = deploy.act(apply, "force-cancel").json["data"]
    finally:
        monkeypatch.delenv("DEPLOY_FORCE_CANCEL_AFTER_SECONDS")
        get_settings.cache_clear()
    assert forced["status"] == "cancelled"
    assert deploy.ok("GET", f"/capsules/{capsule['id']}")["active_run_id"] is None
    # What the runner reports afterwards is refused: the run is over.
    late = deploy.complete_apply(apply, serial=1)
    assert late.status == 409


def test_a_runner_that_stops_on_cancel_records_the_state_it_left(deploy):
    capsule = deploy.capsule()
    apply = deploy.carry_out(deploy.plan(capsule))
    deploy.claim(apply)
    deploy.act(apply, "cancel")
    ended = deploy.complete_apply(apply, serial=1, resources=1).json["data"]
    assert ended["status"] == "cancelled"
    assert deploy.ok("GET", f"/capsules/{capsule['id']}")["state"]["serial"] == 1


def test_auto_apply_goes_from_plan_to_apply_without_approval(deploy):
    capsule = deploy.capsule(auto_apply=True)
    plan = deploy.plan(capsule, approve=False)
    assert plan["review"]["decision"] == "approved" and plan["deploy"]["applied_by"]
    apply = deploy.ok("GET", f"/runs/{plan['deploy']['applied_by']}")
    assert apply["kind"] == "apply" and apply["status"] == "queued" and apply["created_by"] == plan["created_by"]
    deploy.claim(apply)
    assert deploy.complete_apply(apply, serial=1).json["data"]["status"] == "applied"


def test_the_creator_hears_of_a_ready_plan_and_of_the_apply(deploy):
    capsule = deploy.capsule()
    apply = deploy.carry_out(deploy.plan(capsule))
    deploy.claim(apply)
    deploy.complete_apply(apply, serial=1)

    def events() -> list[str]:
        listed = deploy.call("GET", "/notifications?limit=50").json["data"]
        return sorted(str((n.get("data") or {}).get("event")) for n in listed if (n.get("data") or {}).get("event"))

    assert wait_for(lambda: events() == ["deploy.applied", "deploy.planned"])


def test_the_claim_answer_replayed_by_idempotency_holds_no_credentials(deploy):
    capsule = deploy.capsule()
    plan = deploy.run(kind="plan", capsule_id=capsule["id"])
    deploy.act(plan, "start")
    headers = {"Idempotency-Key": "claim-once"}
    first = deploy.call("POST", f"/runs/{plan['id']}/claim", {"worker_id": "runner-1"}, headers=headers)
    again = deploy.call("POST", f"/runs/{plan['id']}/claim", {"worker_id": "runner-1"}, headers=headers)
    assert first.status == again.status == 200
    assert first.json["data"]["credentials"]["env"]["AWS_SECRET_ACCESS_KEY"] == SECRET_KEY
    assert SECRET_KEY not in again.body and json.loads(again.body)["data"]["credentials"] == "[shown once]"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"kind": "plan"}, "a plan run needs capsule_id"),
        ({"kind": "apply", "capsule_id": "cap_x"}, "needs plan_run_id"),
        ({"kind": "plan", "capsule_id": "cap_x", "plan_run_id": "run_x"}, "takes no plan_run_id"),
        ({"kind": "destroy", "plan_run_id": "run_x", "is_destroy": True}, "is_destroy is for plan runs"),
        ({"kind": "plan", "capsule_id": "cap_x", "requires_approval": True}, "gated by their plan's approval"),
        ({"kind": "agent", "title": "t"}, "needs prompt"),
        ({"title": "t", "prompt": "p", "capsule_id": "cap_x"}, "are for plan, apply and destroy runs"),
    ],
)
def test_a_run_body_of_the_wrong_shape_for_its_kind_is_a_422_that_says_why(deploy, body, message):
    refused = deploy.call("POST", "/runs", body)
    assert refused.status == 422 and refused.header("content-type") == "application/problem+json"
    assert message in refused.body
    assert deploy.call("GET", "/runs").json["data"] == []


def test_a_schedule_cannot_fire_deploy_runs(deploy):
    target = {"type": "run", "kind": "plan", "capsule_id": "cap_x"}
    refused = deploy.call("POST", "/schedules", {"name": "nightly plan", "expression": "rate(1 day)", "target": target})
    assert refused.status == 422 and "not plan, apply or destroy runs" in refused.body


def test_a_plan_of_an_unknown_capsule_is_a_404_and_of_another_workspace_too(api, deploy, user):
    capsule = deploy.capsule()
    assert deploy.call("POST", "/runs", {"kind": "plan", "capsule_id": "cap_00000000000000000000000000"}).status == 404
    other = register_and_login(api)
    theirs = api.post("/api/v1/workspaces", {"name": "Theirs"}, token=other["token"]).json["data"]
    stranger = api.post(
        f"/api/v1/workspaces/{theirs['id']}/runs", {"kind": "plan", "capsule_id": capsule["id"]}, token=other["token"]
    )
    assert stranger.status == 404


def test_turning_auto_apply_on_takes_deploy_apply(api, deploy, user):
    capsule = deploy.capsule()
    as_member = a_member(api, deploy, user)
    refused = as_member.call("PATCH", f"/capsules/{capsule['id']}", {"auto_apply": True})
    assert refused.status == 403 and "deploy:apply" in refused.json["detail"]
    source = {"repository_url": "https://git.example.com/infra.git"}
    refused = as_member.call("POST", "/capsules", {"name": "api", "source": source, "auto_apply": True})
    assert refused.status == 403
    assert as_member.call("PATCH", f"/capsules/{capsule['id']}", {"description": "web stack"}).status == 200


def test_whoever_planned_and_approved_hears_of_the_apply_too(api, deploy, user):
    capsule = deploy.capsule()
    as_member = a_member(api, deploy, user)
    plan = as_member.run(kind="plan", capsule_id=capsule["id"])
    as_member.act(plan, "start")
    deploy.claim(plan)
    done = deploy.act(plan, "complete", {"worker_id": "runner-1", "plan": {"add": 1, "change": 0, "destroy": 0}})
    assert done.status == 200, done.body
    deploy.act(plan, "approve")
    apply = deploy.carry_out(deploy.get(plan))
    deploy.claim(apply)
    deploy.complete_apply(apply, serial=1)

    def applied_for(client: Client) -> list[str]:
        listed = client.get(f"{deploy.base}/notifications?limit=50").json["data"]
        return [n["data"]["run_id"] for n in listed if (n.get("data") or {}).get("event") == "deploy.applied"]

    assert wait_for(lambda: applied_for(as_member.api) == [apply["id"]])
    assert applied_for(deploy.api) == [apply["id"]]


def test_cancelling_a_waiting_apply_takes_it_out_of_the_capsules_queue(deploy):
    capsule = deploy.capsule()
    first, second, third = deploy.plan(capsule), deploy.plan(capsule), deploy.plan(capsule)
    holder, waiting, last = deploy.carry_out(first), deploy.carry_out(second), deploy.carry_out(third)
    assert deploy.ok("GET", f"/capsules/{capsule['id']}")["queued_run_ids"] == [waiting["id"], last["id"]]

    assert deploy.act(waiting, "cancel").json["data"]["status"] == "cancelled"
    held = deploy.ok("GET", f"/capsules/{capsule['id']}")
    assert held["active_run_id"] == holder["id"] and held["queued_run_ids"] == [last["id"]]
    # The holder cancelled before it was claimed passes the capsule to the next in line.
    assert deploy.act(holder, "cancel").json["data"]["status"] == "cancelled"
    held = deploy.ok("GET", f"/capsules/{capsule['id']}")
    assert held["active_run_id"] == last["id"] and held["queued_run_ids"] == []
    assert deploy.get(last)["status_detail"] is None


def test_sensitive_outputs_join_the_workspaces_redaction(deploy):
    capsule = deploy.capsule()
    apply = deploy.carry_out(deploy.plan(capsule))
    deploy.claim(apply)
    outputs = {
        "db_password": {"value": DB_PASSWORD, "sensitive": True},
        "db": {"value": {"account": 908172635401, "user": "admin-7e1f29"}, "sensitive": True},
    }
    assert deploy.complete_apply(apply, serial=1, outputs=outputs).status == 200

    plan = deploy.run(kind="plan", capsule_id=capsule["id"])
    deploy.act(plan, "start")
    deploy.claim(plan)
    line = f"connecting as admin-7e1f29 to 908172635401 with {DB_PASSWORD}"
    assert deploy.act(plan, "events", {"events": [{"event_type": "log", "data": {"line": line}}]}).status == 201
    stored = deploy.call("GET", f"/runs/{plan['id']}/events").body
    for secret in (DB_PASSWORD, "908172635401", "admin-7e1f29"):
        assert secret not in stored

"""The work queue: submit, claim (each job to exactly one worker), complete, fail with backoff and
dead-lettering, expired claims handed out again, idempotency keys, stats."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest

from agentplane import raw_items
from agentplane.redact import MASK
from tests.conftest import put_common_env, register_and_login
from tests.fixtures.secret_corpus import fake

ENV_SECRET = "hunter2-database-password"


def queue_path(ws: dict, rest: str = "") -> str:
    return f"/api/v1/workspaces/{ws['id']}/queue{rest}"


def add_member(api, ws: dict, role: str) -> dict:
    from agentplane.auth.scopes import Role
    from agentplane.ids import iso
    from agentplane.logic.workspaces import member_item

    person = register_and_login(api)
    raw_items.put(member_item(ws["id"], ws["name"], person["user"]["id"], Role(role), iso()))
    return person


class Clock:
    """Stands in for the queue's clock, so timeouts and backoff pass without sleeping."""

    def __init__(self) -> None:
        from agentplane.ids import now

        self.now: datetime = now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    from agentplane.logic import queue

    fake = Clock()
    monkeypatch.setattr(queue, "clock", fake)
    return fake


def submit(api, ws: dict, **fields) -> dict:
    body = {"task_type": "build", **fields}
    response = api.post(queue_path(ws, "/jobs"), body)
    assert response.status == 201, response.body
    return response.json["data"]


def claim(api, ws: dict, worker: str, batch_size: int = 1, **extra) -> list[dict]:
    response = api.post(queue_path(ws, "/claim"), {"worker_id": worker, "batch_size": batch_size, **extra})
    assert response.status == 200, response.body
    assert response.json["data"]["worker_id"] == worker
    return response.json["data"]["jobs"]


def stats(api, ws: dict) -> dict:
    response = api.get(queue_path(ws, "/stats"))
    assert response.status == 200, response.body
    return response.json["data"]


# ------------------------------------------------------------------------------------- submit


def test_submitted_job_is_pending_with_defaults_and_round_trips_its_payload(api, user, workspace):
    api.token = user["token"]
    payload = {"repo": "acme/api", "depth": 3, "ratio": 0.25, "tags": ["a", "b"], "nested": {"ok": True, "none": None}}
    job = submit(api, workspace, payload=payload)
    assert job["id"].startswith("job_")
    assert job["status"] == "pending"
    assert job["payload"] == payload
    assert (job["priority"], job["max_attempts"], job["timeout_seconds"], job["attempts"]) == (5, 3, 300, 0)
    assert job["available_at"] == job["created_at"]
    assert api.get(queue_path(workspace, f"/jobs/{job['id']}")).json["data"] == job


def test_named_priorities_map_to_numbers(api, user, workspace):
    api.token = user["token"]
    assert [submit(api, workspace, priority=p)["priority"] for p in ("low", "normal", "high", 10, 0)] == [
        2,
        5,
        8,
        10,
        0,
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"task_type": "build", "priority": 11},
        {"task_type": "build", "priority": "urgent"},
        {"task_type": "build", "max_attempts": 0},
        {"task_type": "build", "max_attempts": 21},
        {"task_type": "build", "timeout_seconds": 4},
        {"task_type": "build", "timeout_seconds": 86_401},
        {"task_type": ""},
        {"task_type": "has spaces"},
        {"task_type": "build", "payload": [1, 2]},
        {"task_type": "build", "payload": {"blob": "x" * (64 * 1024)}},
        {"task_type": "build", "idempotency_key": "has space"},
        {"task_type": "build", "surprise": 1},
        {},
    ],
)
def test_invalid_submissions_are_422_problems_and_write_nothing(api, user, workspace, body):
    api.token = user["token"]
    response = api.post(queue_path(workspace, "/jobs"), body)
    assert response.status == 422, response.body
    assert response.header("content-type") == "application/problem+json"
    assert stats(api, workspace)["total"] == 0
    assert api.get(queue_path(workspace, "/jobs")).json["data"] == []


def test_malformed_json_is_a_400_problem(api, user, workspace):
    api.token = user["token"]
    response = api.post(queue_path(workspace, "/jobs"), raw="{nope", headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert response.header("content-type") == "application/problem+json"


def test_a_payload_of_exactly_64_kb_is_accepted(api, user, workspace):
    api.token = user["token"]
    filler = "x" * (64 * 1024 - len('{"blob":""}'))
    job = submit(api, workspace, payload={"blob": filler})
    assert len(job["payload"]["blob"]) == len(filler)


def test_same_idempotency_key_returns_the_same_job(api, user, workspace):
    api.token = user["token"]
    body = {"task_type": "build", "payload": {"n": 1}, "idempotency_key": "deploy-42"}
    first = api.post(queue_path(workspace, "/jobs"), body)
    again = api.post(queue_path(workspace, "/jobs"), body)
    assert first.status == 201 and again.status == 200
    assert again.json["data"]["id"] == first.json["data"]["id"]
    assert len(api.get(queue_path(workspace, "/jobs")).json["data"]) == 1
    assert stats(api, workspace)["pending"] == 1


def test_reusing_an_idempotency_key_for_another_job_is_422(api, user, workspace):
    api.token = user["token"]
    first = submit(api, workspace, idempotency_key="k1", payload={"n": 1})
    other = api.post(
        queue_path(workspace, "/jobs"), {"task_type": "build", "payload": {"n": 2}, "idempotency_key": "k1"}
    )
    assert other.status == 422
    assert other.json["job_id"] == first["id"]
    assert stats(api, workspace)["total"] == 1


def test_concurrent_submits_with_one_idempotency_key_create_one_job(api, user, workspace):
    api.token = user["token"]
    answers: list[tuple[int, str]] = []

    def send() -> None:
        response = api.post(queue_path(workspace, "/jobs"), {"task_type": "build", "idempotency_key": "once"})
        answers.append((response.status, response.json["data"]["id"]))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(status for status, _ in answers) == [200] * 5 + [201]
    assert len({job_id for _, job_id in answers}) == 1
    assert stats(api, workspace)["total"] == 1


def test_idempotency_keys_are_per_workspace(api, user, workspace):
    api.token = user["token"]
    other_ws = api.post("/api/v1/workspaces", {"name": "Other"}).json["data"]
    first = submit(api, workspace, idempotency_key="shared")
    second = submit(api, other_ws, idempotency_key="shared")
    assert first["id"] != second["id"]


# -------------------------------------------------------------------------------------- claim


def test_claim_hands_out_higher_priority_first_then_oldest(api, user, workspace):
    api.token = user["token"]
    low = submit(api, workspace, priority="low")
    old_normal = submit(api, workspace)
    high = submit(api, workspace, priority="high")
    new_normal = submit(api, workspace)
    order = [claim(api, workspace, "w1")[0]["id"] for _ in range(4)]
    assert order == [high["id"], old_normal["id"], new_normal["id"], low["id"]]
    assert claim(api, workspace, "w1") == []


def test_claimed_job_carries_worker_attempt_and_claim_expiry(api, user, workspace, clock):
    api.token = user["token"]
    submit(api, workspace, timeout_seconds=60)
    [job] = claim(api, workspace, "worker-a")
    assert job["status"] == "claimed"
    assert job["worker_id"] == "worker-a"
    assert job["attempts"] == 1
    from agentplane.ids import iso

    assert job["claimed_at"] == iso(clock.now)
    assert job["claim_expires_at"] == iso(clock.now + timedelta(seconds=60))
    assert stats(api, workspace)["claimed"] == 1


def test_batch_claim_takes_up_to_batch_size_jobs(api, user, workspace):
    api.token = user["token"]
    for _ in range(5):
        submit(api, workspace)
    assert len(claim(api, workspace, "w", batch_size=3)) == 3
    assert len(claim(api, workspace, "w", batch_size=3)) == 2
    assert claim(api, workspace, "w", batch_size=3) == []


def test_claim_can_be_limited_to_task_types(api, user, workspace):
    api.token = user["token"]
    submit(api, workspace, task_type="build")
    lint = submit(api, workspace, task_type="lint")
    jobs = claim(api, workspace, "w", batch_size=5, task_types=["lint"])
    assert [j["id"] for j in jobs] == [lint["id"]]


def test_orkosi_claim_with_a_singular_task_type_claims_only_that_type(api, user, workspace):
    api.token = user["token"]
    submit(api, workspace, task_type="build")
    lint = submit(api, workspace, task_type="lint")
    test = submit(api, workspace, task_type="test")
    assert [j["id"] for j in claim(api, workspace, "w", batch_size=5, task_type="lint")] == [lint["id"]]
    both = claim(api, workspace, "w", batch_size=5, task_type="test", task_types=["lint"])
    assert [j["id"] for j in both] == [test["id"]]
    assert stats(api, workspace)["pending"] == 1


def test_named_queues_hold_their_own_jobs(api, user, workspace):
    api.token = user["token"]
    default = submit(api, workspace)
    assert default["queue_name"] == "default"
    # Orkosi's submit and claim bodies, queue_name included.
    body = {"task_type": "scan", "payload": {"repo": "acme/api"}, "priority": 7, "max_attempts": 2,
            "timeout_seconds": 60, "idempotency_key": "scan-1"}  # fmt: skip
    nightly = api.post(queue_path(workspace, "/jobs"), {**body, "queue_name": "nightly"})
    assert nightly.status == 201, nightly.body
    assert nightly.json["data"]["queue_name"] == "nightly"
    assert claim(api, workspace, "w", batch_size=5, queue_name="other") == []
    from_nightly = claim(api, workspace, "w", batch_size=5, queue_name="nightly", task_type="scan")
    assert [j["id"] for j in from_nightly] == [nightly.json["data"]["id"]]
    assert [j["id"] for j in claim(api, workspace, "w", batch_size=5)] == [default["id"]]
    # The same idempotency key for the same job in another queue is another job: refused.
    assert api.post(queue_path(workspace, "/jobs"), body).status == 422
    assert api.post(queue_path(workspace, "/jobs"), {**body, "queue_name": "nightly"}).status == 200
    bad = api.post(queue_path(workspace, "/claim"), {"worker_id": "w", "queue_name": "has#hash"})
    assert bad.status == 422


def test_delayed_job_is_not_claimable_before_it_is_due(api, user, workspace, clock):
    api.token = user["token"]
    job = submit(api, workspace, delay_seconds=30)
    assert claim(api, workspace, "w") == []
    clock.advance(30)
    assert [j["id"] for j in claim(api, workspace, "w")] == [job["id"]]


@pytest.mark.parametrize(
    "body", [{}, {"worker_id": ""}, {"worker_id": "w", "batch_size": 0}, {"worker_id": "w", "batch_size": 26}]
)
def test_invalid_claims_are_422(api, user, workspace, body):
    api.token = user["token"]
    submit(api, workspace)
    assert api.post(queue_path(workspace, "/claim"), body).status == 422
    assert stats(api, workspace)["pending"] == 1


def test_twenty_concurrent_claimers_deliver_each_of_fifty_jobs_exactly_once(api, user, workspace):
    api.token = user["token"]
    submitted = {submit(api, workspace, priority=n % 11)["id"] for n in range(50)}
    delivered: list[str] = []
    lock = threading.Lock()
    errors: list[str] = []

    def worker(n: int) -> None:
        while True:
            response = api.post(queue_path(workspace, "/claim"), {"worker_id": f"w{n}", "batch_size": 1 + n % 3})
            if response.status != 200:
                errors.append(response.body)
                return
            jobs = response.json["data"]["jobs"]
            if not jobs:
                return
            with lock:
                delivered.extend(job["id"] for job in jobs)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(delivered) == 50
    assert set(delivered) == submitted
    counted = stats(api, workspace)
    assert (counted["pending"], counted["claimed"]) == (0, 50)


# --------------------------------------------------------------------------- complete and fail


def test_claiming_worker_completes_its_job_with_a_result(api, user, workspace):
    api.token = user["token"]
    submit(api, workspace)
    [job] = claim(api, workspace, "w1")
    done = api.post(queue_path(workspace, f"/jobs/{job['id']}/complete"), {"worker_id": "w1", "result": {"ok": 1}})
    assert done.status == 200, done.body
    assert done.json["data"]["status"] == "completed"
    assert done.json["data"]["result"] == {"ok": 1}
    assert done.json["data"]["completed_at"]
    counted = stats(api, workspace)
    assert (counted["claimed"], counted["completed"], counted["open_by_priority"]) == (0, 1, {})
    assert claim(api, workspace, "w2") == []


def test_another_worker_cannot_complete_or_fail_a_claimed_job(api, user, workspace):
    api.token = user["token"]
    submit(api, workspace)
    [job] = claim(api, workspace, "w1")
    for verb, body in (("complete", {"worker_id": "w2"}), ("fail", {"worker_id": "w2", "error": "nope"})):
        refused = api.post(queue_path(workspace, f"/jobs/{job['id']}/{verb}"), body)
        assert refused.status == 409
        assert refused.json["current_status"] == "claimed"
    assert api.get(queue_path(workspace, f"/jobs/{job['id']}")).json["data"]["status"] == "claimed"


def test_completing_a_pending_or_completed_job_is_409_with_its_status(api, user, workspace):
    api.token = user["token"]
    pending = submit(api, workspace)
    refused = api.post(queue_path(workspace, f"/jobs/{pending['id']}/complete"), {"worker_id": "w1"})
    assert refused.status == 409 and refused.json["current_status"] == "pending"
    [job] = claim(api, workspace, "w1")
    assert api.post(queue_path(workspace, f"/jobs/{job['id']}/complete"), {"worker_id": "w1"}).status == 200
    again = api.post(queue_path(workspace, f"/jobs/{job['id']}/complete"), {"worker_id": "w1"})
    assert again.status == 409 and again.json["current_status"] == "completed"


def test_unknown_job_is_404(api, user, workspace):
    api.token = user["token"]
    assert api.get(queue_path(workspace, "/jobs/job_missing")).status == 404
    assert api.post(queue_path(workspace, "/jobs/job_missing/complete"), {"worker_id": "w"}).status == 404


def test_failed_job_is_retried_after_exponential_backoff(api, user, workspace, clock):
    from agentplane.ids import iso

    api.token = user["token"]
    submit(api, workspace, max_attempts=3)
    [job] = claim(api, workspace, "w1")
    failed = api.post(queue_path(workspace, f"/jobs/{job['id']}/fail"), {"worker_id": "w1", "error": "boom"})
    assert failed.status == 200, failed.body
    retried = failed.json["data"]
    assert retried["status"] == "pending"
    assert retried["worker_id"] is None
    assert retried["last_error"] == "boom"
    assert retried["available_at"] == iso(clock.now + timedelta(seconds=10))  # 5 s * 2^1
    assert claim(api, workspace, "w2") == []
    clock.advance(10)
    [again] = claim(api, workspace, "w2")
    assert (again["id"], again["attempts"]) == (job["id"], 2)
    second = api.post(queue_path(workspace, f"/jobs/{job['id']}/fail"), {"worker_id": "w2", "error": "boom 2"})
    assert second.json["data"]["available_at"] == iso(clock.now + timedelta(seconds=20))  # 5 s * 2^2
    assert [e["error"] for e in second.json["data"]["errors"]] == ["boom", "boom 2"]


def test_job_out_of_attempts_is_dead_lettered(api, user, workspace, clock):
    api.token = user["token"]
    submit(api, workspace, max_attempts=2)
    for worker in ("w1", "w2"):
        clock.advance(3600)
        [job] = claim(api, workspace, worker)
        last = api.post(queue_path(workspace, f"/jobs/{job['id']}/fail"), {"worker_id": worker, "error": worker})
    assert last.json["data"]["status"] == "dead"
    assert last.json["data"]["dead_at"]
    clock.advance(3600)
    assert claim(api, workspace, "w3") == []
    dead = api.get(queue_path(workspace, "/jobs?status=dead")).json["data"]
    assert [j["id"] for j in dead] == [job["id"]]
    counted = stats(api, workspace)
    assert (counted["dead"], counted["pending"], counted["claimed"]) == (1, 0, 0)


def test_a_failure_marked_not_retryable_dead_letters_at_once(api, user, workspace):
    api.token = user["token"]
    submit(api, workspace, max_attempts=5)
    [job] = claim(api, workspace, "w1")
    failed = api.post(
        queue_path(workspace, f"/jobs/{job['id']}/fail"), {"worker_id": "w1", "error": "bad input", "retryable": False}
    )
    assert failed.json["data"]["status"] == "dead"


def test_expired_claim_is_handed_to_another_worker(api, user, workspace, clock):
    api.token = user["token"]
    submit(api, workspace, timeout_seconds=30)
    [job] = claim(api, workspace, "silent")
    clock.advance(29)
    assert claim(api, workspace, "w2") == []
    clock.advance(1)
    [again] = claim(api, workspace, "w2")
    assert (again["id"], again["worker_id"], again["attempts"]) == (job["id"], "w2", 2)
    assert "silent" in again["last_error"]
    late = api.post(queue_path(workspace, f"/jobs/{job['id']}/complete"), {"worker_id": "silent"})
    assert late.status == 409
    assert api.post(queue_path(workspace, f"/jobs/{job['id']}/complete"), {"worker_id": "w2"}).status == 200
    assert stats(api, workspace)["claimed"] == 0


def test_worker_whose_claim_expired_may_still_finish_while_nobody_else_took_it(api, user, workspace, clock):
    api.token = user["token"]
    submit(api, workspace, timeout_seconds=30)
    [job] = claim(api, workspace, "slow")
    clock.advance(45)
    done = api.post(queue_path(workspace, f"/jobs/{job['id']}/complete"), {"worker_id": "slow"})
    assert done.status == 200
    assert claim(api, workspace, "w2") == []


def test_expired_claim_on_the_last_attempt_dead_letters_the_job(api, user, workspace, clock):
    api.token = user["token"]
    job = submit(api, workspace, max_attempts=1, timeout_seconds=10)
    claim(api, workspace, "silent")
    clock.advance(11)
    assert claim(api, workspace, "w2") == []
    dead = api.get(queue_path(workspace, f"/jobs/{job['id']}")).json["data"]
    assert dead["status"] == "dead"
    assert "expired" in dead["last_error"]
    counted = stats(api, workspace)
    assert (counted["dead"], counted["claimed"]) == (1, 0)


# ---------------------------------------------------------------------------- lists and stats


def test_list_is_newest_first_filtered_by_status_and_paginated(api, user, workspace):
    api.token = user["token"]
    ids = [submit(api, workspace)["id"] for _ in range(5)]
    [claimed] = claim(api, workspace, "w")
    seen: list[str] = []
    cursor = None
    while True:
        suffix = f"&cursor={cursor}" if cursor else ""
        response = api.get(queue_path(workspace, f"/jobs?limit=2{suffix}"))
        assert response.status == 200
        seen += [j["id"] for j in response.json["data"]]
        cursor = response.json["meta"]["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))
    pending = api.get(queue_path(workspace, "/jobs?status=pending")).json["data"]
    assert [j["id"] for j in pending] == [i for i in reversed(ids) if i != claimed["id"]]
    assert [j["id"] for j in api.get(queue_path(workspace, "/jobs?status=claimed")).json["data"]] == [claimed["id"]]


def test_forged_or_foreign_cursor_is_400(api, user, workspace):
    api.token = user["token"]
    for _ in range(3):
        submit(api, workspace)
    cursor = api.get(queue_path(workspace, "/jobs?limit=1")).json["meta"]["next_cursor"]
    assert api.get(queue_path(workspace, f"/jobs?limit=1&cursor={cursor}x")).status == 400
    assert api.get(queue_path(workspace, f"/jobs?limit=1&status=pending&cursor={cursor}")).status == 400


def test_stats_count_jobs_per_status_and_open_jobs_per_priority(api, user, workspace):
    api.token = user["token"]
    submit(api, workspace, priority=9)
    submit(api, workspace, priority=9)
    submit(api, workspace, priority=1)
    [job] = claim(api, workspace, "w")
    api.post(queue_path(workspace, f"/jobs/{job['id']}/complete"), {"worker_id": "w"})
    claim(api, workspace, "w")
    assert stats(api, workspace) == {
        "pending": 1,
        "claimed": 1,
        "completed": 1,
        "dead": 0,
        "total": 3,
        "open_by_priority": {"9": 1, "1": 1},
    }


# ------------------------------------------------------------------------------------- access


def test_non_member_gets_404_for_everything_in_the_queue(api, user, workspace):
    api.token = user["token"]
    job = submit(api, workspace)
    api.token = register_and_login(api)["token"]
    assert api.get(queue_path(workspace, "/jobs")).status == 404
    assert api.get(queue_path(workspace, f"/jobs/{job['id']}")).status == 404
    assert api.post(queue_path(workspace, "/jobs"), {"task_type": "x"}).status == 404
    assert api.post(queue_path(workspace, "/claim"), {"worker_id": "w"}).status == 404
    assert api.get(queue_path(workspace, "/stats")).status == 404
    api.token = user["token"]
    assert stats(api, workspace)["pending"] == 1


def test_viewer_reads_the_queue_but_cannot_submit_or_claim(api, user, workspace):
    api.token = user["token"]
    submit(api, workspace)
    api.token = add_member(api, workspace, "viewer")["token"]
    assert api.get(queue_path(workspace, "/jobs")).status == 200
    assert api.get(queue_path(workspace, "/stats")).status == 200
    refused = api.post(queue_path(workspace, "/jobs"), {"task_type": "x"})
    assert refused.status == 403
    assert refused.json["required_scope"] == "tasks:write"
    assert api.post(queue_path(workspace, "/claim"), {"worker_id": "w"}).status == 403
    api.token = user["token"]
    assert stats(api, workspace)["pending"] == 1


def test_every_change_is_audited(api, user, workspace):
    from agentplane import keys

    api.token = user["token"]
    submit(api, workspace)
    [job] = claim(api, workspace, "w")
    api.post(queue_path(workspace, f"/jobs/{job['id']}/complete"), {"worker_id": "w"})
    rows = raw_items.query(keys.audit_pk(workspace["id"]), limit=100).items
    actions = [r["action"] for r in rows if r["target_id"] == job["id"]]
    assert actions == ["queue_job.submitted", "queue_job.claimed", "queue_job.completed"]


# --------------------------------------------------------------------------- redaction


def test_a_workers_error_and_result_are_stored_and_served_redacted(api, user, workspace, clock):
    from agentplane import keys

    api.token = user["token"]
    put_common_env(api, workspace, DB_PASSWORD=ENV_SECRET)
    token = fake("aws access key id")
    job = submit(api, workspace)
    claim(api, workspace, "w1")
    error = f"upload as key_{token} refused by {ENV_SECRET}"
    failed = api.post(queue_path(workspace, f"/jobs/{job['id']}/fail"), {"worker_id": "w1", "error": error})
    assert failed.status == 200, failed.body
    assert failed.json["data"]["last_error"] == f"upload as key_{MASK} refused by {MASK}"
    clock.advance(3600)
    claim(api, workspace, "w2")
    result = {"log": f"export X={token}", ENV_SECRET: [ENV_SECRET, 3]}
    done = api.post(queue_path(workspace, f"/jobs/{job['id']}/complete"), {"worker_id": "w2", "result": result})
    assert done.status == 200, done.body
    assert done.json["data"]["result"] == {"log": f"export X={MASK}", MASK: [MASK, 3]}

    served = "".join(api.get(queue_path(workspace, path)).body for path in (f"/jobs/{job['id']}", "/jobs"))
    stored = str(raw_items.get(keys.queue_job_key(workspace["id"], job["id"])))
    stored += str(raw_items.query(keys.audit_pk(workspace["id"]), limit=500).items)
    for secret in (token, ENV_SECRET):
        assert secret not in served + failed.body + done.body, secret
        assert secret not in stored, secret

"""The DynamoDB budget of the busiest routes, measured the way `make bench` measures it."""

from __future__ import annotations

import pytest

from bench import dynamo

TASKS = "/api/v1/workspaces/{ws}/tasks"
RUN = "/api/v1/workspaces/{ws}/runs/{run_id}"
RUN_EVENTS = f"{RUN}/events"
TEAM = "/api/v1/workspaces/{ws}/teams/{team_id}"
PATS = "/api/v1/me/personal-access-tokens"


def test_reading_one_task_is_one_round_trip_that_also_checks_the_token() -> None:
    result = dynamo.run(dynamo.find("GET", f"{TASKS}/{{task_id}}"))

    assert result.status == 200, result.skipped
    # The task, the token, the workspace and the membership in one BatchGetItem.
    assert result.handler_ops == ["GetItem"]
    assert result.check == "in read" and result.round_trips == 1
    assert [call.operation for call in result.calls] == ["BatchGetItem"] and len(result.calls[0].keys) == 4


def test_creating_a_task_is_one_transaction_holding_its_guards_and_audit_row() -> None:
    result = dynamo.run(dynamo.find("POST", TASKS))

    assert result.status == 201, result.skipped
    assert result.handler_ops == ["TransactWriteItems"]
    # The live-token and membership guards are condition checks inside the same transaction
    # (no separate reads); the two puts are the task and its audit row, the update the day's
    # task counters (daily analytics).
    assert result.handler[0].detail == "2 ConditionCheck + 2 Put + 1 Update"
    # A write checks the token and membership first (one BatchGetItem), then runs.
    assert result.check == "before" and result.round_trips == 2


def test_listing_tasks_is_one_query_with_the_token_check_beside_it() -> None:
    result = dynamo.run(dynamo.find("GET", TASKS))

    assert result.status == 200, result.skipped
    assert result.handler_ops == ["Query"]
    assert result.check == "beside" and result.round_trips == 1


def test_appending_a_batch_of_100_run_events_is_one_read_and_one_batched_write() -> None:
    result = dynamo.run(dynamo.find("POST", RUN_EVENTS))

    assert result.status == 201, result.skipped
    # The run and the workspace's secrets in one BatchGetItem; then one transaction whose single
    # Put holds all 100 events, beside the run's event counter and the two guards.
    assert result.handler_ops == ["BatchGetItem", "TransactWriteItems"]
    assert result.handler[1].detail == "2 ConditionCheck + 1 Update + 1 Put"


def test_a_page_of_run_event_backfill_is_one_query() -> None:
    result = dynamo.run(dynamo.find("GET", RUN_EVENTS))

    assert result.status == 200, result.skipped
    assert result.handler_ops == ["Query"]


def test_listing_personal_access_tokens_is_one_query_with_their_last_use() -> None:
    result = dynamo.run(dynamo.find("GET", PATS))

    assert result.status == 200, result.skipped
    # A token's use is stamped on its listing item as it is checked, so no token record is read back.
    assert result.handler_ops == ["Query"]


def test_creating_a_personal_access_token_is_one_transaction() -> None:
    result = dynamo.run(dynamo.find("POST", PATS))

    assert result.status == 201, result.skipped
    # No profile read: the caller's live token (checked first) stands for their account; then the
    # token record, its listing and the audit row.
    assert result.handler_ops == ["TransactWriteItems"]
    assert result.handler[0].detail == "1 ConditionCheck + 3 Put"


def test_a_team_with_its_members_and_a_page_of_them_are_one_query_each() -> None:
    for scenario in (dynamo.find("GET", TEAM), dynamo.find("GET", f"{TEAM}/members")):
        result = dynamo.run(scenario)

        assert result.status == 200, result.skipped
        assert result.handler_ops == ["Query"], scenario.route_key


def test_an_api_keys_usage_page_with_its_total_is_one_query() -> None:
    result = dynamo.run(dynamo.find("GET", "/api/v1/workspaces/{ws}/api-keys/{key_id}/usage"))

    assert result.status == 200, result.skipped
    assert result.handler_ops == ["Query"]


def test_a_route_that_reads_nothing_still_checks_the_token_before_answering() -> None:
    result = dynamo.run(dynamo.find("GET", "/api/v1/auth/me"))

    assert result.status == 200, result.skipped
    assert result.check in ("in read", "after") and result.round_trips == 1


def test_a_route_without_code_is_reported_as_skipped_not_failed() -> None:
    scenario = dynamo.Scenario("GET", "/api/v1/no-such-family")

    result = dynamo.run(scenario)

    assert result.verdict == "skipped"


def test_a_short_soak_serves_every_round_and_reports_its_figures() -> None:
    from bench import soak

    result = soak.run(rounds=30)

    assert result.errors == []
    assert len(result.round_seconds) == 30
    assert result.rss_end_mb > 0 and result.rss_restored_mb > 0
    assert result.list_end_ms > 0


@pytest.mark.parametrize("action", ["start", "cancel", "claim", "complete"])
def test_a_run_transition_reads_the_run_once_then_writes_one_transaction(action: str) -> None:
    # The run read to tell which transition applies (an agent's or a deploy run's) is the read
    # the transition writes against: it is not read a second time.
    result = dynamo.run(dynamo.find("POST", f"{RUN}/{action}"))

    assert result.status == 200, result.skipped
    assert result.handler_ops[-2:] == ["GetItem", "TransactWriteItems"]
    assert result.handler_ops.count("GetItem") == 1

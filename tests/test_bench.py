"""The DynamoDB budget of the busiest routes, measured the way `make bench` measures it."""

from __future__ import annotations

from bench import dynamo

TASKS = "/api/v1/workspaces/{ws}/tasks"


def test_reading_one_task_costs_one_get_item_beyond_the_cached_authorizer() -> None:
    result = dynamo.run(dynamo.find("GET", f"{TASKS}/{{task_id}}"))

    assert result.status == 200, result.skipped
    # Membership comes from the authorizer's context, so the handler reads only the task.
    assert result.handler_ops == ["GetItem"]


def test_creating_a_task_is_one_transaction_holding_its_guards_and_audit_row() -> None:
    result = dynamo.run(dynamo.find("POST", TASKS))

    assert result.status == 201, result.skipped
    assert result.handler_ops == ["TransactWriteItems"]
    # The live-token and membership guards are condition checks inside the same transaction
    # (no separate reads); the two puts are the task and its audit row.
    assert result.handler[0].detail == "2 ConditionCheck + 2 Put"


def test_listing_tasks_is_one_query() -> None:
    result = dynamo.run(dynamo.find("GET", TASKS))

    assert result.status == 200, result.skipped
    assert result.handler_ops == ["Query"]


def test_the_authorizer_reads_the_token_and_memberships_once_per_cache_miss() -> None:
    result = dynamo.run(dynamo.find("GET", f"{TASKS}/{{task_id}}"))

    assert [call.operation for call in result.authorizer] == ["GetItem", "Query"]


def test_a_route_without_code_is_reported_as_skipped_not_failed() -> None:
    scenario = dynamo.Scenario("GET", "/api/v1/no-such-family")

    result = dynamo.run(scenario)

    assert result.verdict == "skipped"

"""The token ledger through the API: balance, transactions, consume; never negative, even with
many consumers at once, and the ledger always sums to the balance."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from agentplane import raw_items
from agentplane.logic.billing import tokens
from agentplane.logic.workspaces import member_item
from tests.conftest import Client, register_and_login


def path(ws: dict[str, Any], tail: str) -> str:
    return f"/api/v1/workspaces/{ws['id']}/tokens/{tail}"


def balance(api: Client, ws: dict[str, Any]) -> int:
    answer = api.get(path(ws, "balance"))
    assert answer.status == 200, answer.body
    return int(answer.json["data"]["balance"])


def ledger(api: Client, ws: dict[str, Any], query: str = "") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = ""
    while True:
        answer = api.get(path(ws, f"transactions?limit=200{query}{cursor}"))
        assert answer.status == 200, answer.body
        rows += answer.json["data"]
        if not answer.json["meta"]["next_cursor"]:
            return rows
        cursor = f"&cursor={answer.json['meta']['next_cursor']}"


def add_person(api: Client, ws: dict[str, Any], role: str) -> dict[str, Any]:
    from agentplane.auth.scopes import Role
    from agentplane.ids import iso

    person = register_and_login(api)
    raw_items.put(member_item(ws["id"], ws["name"], person["user"]["id"], Role(role), iso()))
    return person


def test_consume_takes_tokens_and_records_each_change_with_the_balance_after(api, user, workspace):
    api.token = user["token"]
    assert balance(api, workspace) == 0
    tokens.grant(workspace["id"], 100, reason="welcome")
    consumed = api.post(path(workspace, "consume"), {"amount": 30, "action": "embedding", "reference_id": "doc-1"})
    assert consumed.status == 200, consumed.body
    assert consumed.json["data"]["balance"] == 70
    row = consumed.json["data"]["transaction"]
    assert (row["type"], row["amount"], row["balance_after"], row["reason"]) == ("consume", -30, 70, "embedding")
    assert row["reference_id"] == "doc-1" and row["actor_id"] == user["user"]["id"]
    assert balance(api, workspace) == 70

    rows = ledger(api, workspace)
    assert [(r["type"], r["amount"], r["balance_after"]) for r in rows] == [("consume", -30, 70), ("grant", 100, 100)]
    assert [r["type"] for r in ledger(api, workspace, "&type=grant")] == ["grant"]


def test_a_consume_the_balance_cannot_cover_is_a_402_naming_both_and_changes_nothing(api, user, workspace):
    api.token = user["token"]
    tokens.grant(workspace["id"], 25, reason="welcome")
    short = api.post(path(workspace, "consume"), {"amount": 26, "action": "chat"})
    assert short.status == 402
    assert short.headers["content-type"].startswith("application/problem+json")
    assert (short.json["balance"], short.json["required"]) == (25, 26)
    assert balance(api, workspace) == 25
    assert len(ledger(api, workspace)) == 1


@pytest.mark.parametrize(
    "body",
    [{"amount": 0, "action": "x"}, {"amount": -5, "action": "x"}, {"amount": 5}, {"amount": "many", "action": "x"}],
)
def test_bad_consume_bodies_are_422_and_change_nothing(api, user, workspace, body):
    api.token = user["token"]
    tokens.grant(workspace["id"], 10, reason="welcome")
    assert api.post(path(workspace, "consume"), body).status == 422
    assert balance(api, workspace) == 10


def test_twenty_concurrent_consumers_on_a_small_balance_exactly_nine_succeed(api, user, workspace):
    api.token = user["token"]
    tokens.grant(workspace["id"], 95, reason="welcome")
    statuses: list[int] = []
    lock = threading.Lock()

    def consume() -> None:
        answer = api.post(path(workspace, "consume"), {"amount": 10, "action": "burst"})
        with lock:
            statuses.append(answer.status)

    threads = [threading.Thread(target=consume) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 9 + [402] * 11
    assert balance(api, workspace) == 5
    rows = ledger(api, workspace)
    assert sum(r["amount"] for r in rows) == 5
    # Each row's balance_after follows from the one before it: no two changes read the same balance.
    oldest_first = list(reversed(rows))
    running = 0
    for row in oldest_first:
        running += row["amount"]
        assert row["balance_after"] == running >= 0


def test_reading_needs_billing_read_and_consuming_billing_write(api, user, workspace):
    tokens.grant(workspace["id"], 50, reason="welcome")
    member = add_person(api, workspace, "member")
    api.token = member["token"]
    refused = api.get(path(workspace, "balance"))
    assert refused.status == 403 and refused.json["required_scope"] == "billing:read"
    assert api.post(path(workspace, "consume"), {"amount": 1, "action": "x"}).status == 403
    admin = add_person(api, workspace, "admin")
    api.token = admin["token"]
    assert api.post(path(workspace, "consume"), {"amount": 1, "action": "x"}).status == 200
    assert balance(api, workspace) == 49


def test_another_workspace_sees_neither_balance_nor_ledger(api, user, workspace):
    tokens.grant(workspace["id"], 50, reason="welcome")
    stranger = register_and_login(api)
    api.token = stranger["token"]
    assert api.get(path(workspace, "balance")).status == 404
    assert api.get(path(workspace, "transactions")).status == 404
    assert api.post(path(workspace, "consume"), {"amount": 1, "action": "x"}).status == 404

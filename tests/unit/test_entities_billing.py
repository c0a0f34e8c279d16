"""Billing's items: the month's spend rides on the balance item and starts again each month; an
auto top-up counts only this month's top-ups against its cap."""

from __future__ import annotations

from agentplane.entities.billing import AutoTopUpItem, TokenBalanceItem


def _set_values(actions: list) -> dict[str, object]:
    return {str(action.values[0]): action.values[1].value for action in actions}


def test_spending_adds_to_this_month_and_a_new_month_starts_from_zero() -> None:
    balance = TokenBalanceItem(workspace_id="ws_1", balance=100, sequence=3, spent_month="2026-05", spent_tokens=40)
    assert balance.spent_in("2026-05") == 40
    assert balance.spent_in("2026-06") == 0
    same_month = _set_values(balance.spending(10, "2026-05"))
    assert same_month == {"spent_month": {"S": "2026-05"}, "spent_tokens": {"N": "50"}}
    next_month = _set_values(balance.spending(10, "2026-06"))
    assert next_month == {"spent_month": {"S": "2026-06"}, "spent_tokens": {"N": "10"}}


def test_a_balance_that_never_spent_has_spent_nothing() -> None:
    assert TokenBalanceItem.empty("ws_1").spent_in("2026-05") == 0


def test_top_ups_of_an_earlier_month_do_not_count_against_this_one() -> None:
    config = AutoTopUpItem(workspace_id="ws_1", topups_month="2026-05", topups_this_month=2)
    assert config.used_in("2026-05") == 2
    assert config.used_in("2026-06") == 0

"""Bookkeeping by key whether or not the item exists: a counter's first count creates it, a cap
refuses by name, and a clean-up passes over records that are already gone."""

from __future__ import annotations

from typing import Any

import pytest

WS = "ws_bookkeeping"


def _count(cap: int | None = None) -> tuple[Any, list[Any], Any]:
    from agentplane import keys
    from agentplane.entities.teams import TeamItem

    below = None if cap is None else TeamItem.member_count.does_not_exist() | (TeamItem.member_count < cap)
    return keys.team_key(WS, "team_1"), [TeamItem.member_count.add(1)], below


def test_an_upsert_creates_its_counter_and_a_later_one_counts_on_it(store) -> None:
    from agentplane.entities.teams import TeamItem

    key, one_more, below = _count(cap=2)
    first = store.upsert(TeamItem, key, one_more, below)
    tx = store.transaction()
    tx.upsert(TeamItem, key, one_more, below, name="count")
    tx.commit()

    assert first.member_count == 1 and store.get(key)["member_count"] == 2


def test_an_upsert_at_its_cap_fails_by_name_and_counts_nothing(store) -> None:
    from agentplane.entities.teams import TeamItem
    from agentplane.store import TransactionFailed

    key, one_more, _ = _count()
    store.upsert(TeamItem, key, one_more)
    _, _, below = _count(cap=1)
    tx = store.transaction()
    tx.upsert(TeamItem, key, one_more, below, name="count")
    with pytest.raises(TransactionFailed) as refused:
        tx.commit()

    assert refused.value.failed == "count" and store.get(key)["member_count"] == 1


def test_a_discard_removes_what_is_there_and_passes_over_what_is_gone(store) -> None:
    from agentplane import keys
    from agentplane.entities.teams import TeamItem

    key, one_more, _ = _count()
    store.upsert(TeamItem, key, one_more)
    tx = store.transaction()
    tx.discard(TeamItem, key)
    tx.discard(TeamItem, keys.team_key(WS, "team_gone"))
    tx.commit()

    assert store.get(key) is None

"""The store's writes by key that need no item to be there: an upsert creates the item of its kind
on first use (counters), a discard deletes whether or not the item exists (link items), and an item
whose attribute names are data keeps them when read."""

from __future__ import annotations

from typing import Any

import pytest

WS = "ws_upserts"


def _tally_kind() -> Any:
    """A counter kind whose counts are named by data (`per#<name>`), like the tasks' counters."""
    from pynamodb.attributes import UnicodeAttribute

    from agentplane import keys
    from agentplane.entities.base import Entity, Keys

    class TallyItem(Entity, discriminator="test_tally"):
        workspace_id = UnicodeAttribute()
        counts: dict[str, int]

        def where(self) -> Keys:
            return Keys(keys.key(keys.ws_pk(self.workspace_id), "TALLY"))

        def read_undeclared(self, raw: Any) -> None:
            self.counts = {name: int(value["N"]) for name, value in raw.items() if "N" in value}

    return TallyItem


_TALLY = _tally_kind()


def _tally_key() -> Any:
    from agentplane import keys

    return keys.key(keys.ws_pk(WS), "TALLY")


def test_an_upsert_creates_the_item_as_its_kind_then_adds_to_it(store) -> None:
    from pynamodb.expressions.operand import Path

    for _ in range(2):
        tx = store.transaction()
        tx.upsert(_TALLY, _tally_key(), [_TALLY.workspace_id.set(WS), Path(["per#ada.lovelace"]).add(3)])
        tx.commit()

    raw = store.get(_tally_key())
    assert raw["entity"] == "test_tally" and raw["workspace_id"] == WS
    assert raw["per#ada.lovelace"] == 6  # a dot in a name is part of it, not a nested path
    read = store.read(_TALLY, _tally_key())
    assert read.counts == {"per#ada.lovelace": 6}


def test_an_upsert_with_a_condition_refuses_when_it_does_not_hold(store) -> None:
    from agentplane.store import TransactionFailed

    tx = store.transaction()
    tx.upsert(_TALLY, _tally_key(), [_TALLY.workspace_id.set(WS)], _TALLY.PK.exists(), name="tally")
    with pytest.raises(TransactionFailed) as refused:
        tx.commit()
    assert refused.value.failed == "tally"
    assert store.get(_tally_key()) is None


def test_a_discard_deletes_an_item_and_passes_over_one_already_gone(store) -> None:
    tx = store.transaction()
    tx.upsert(_TALLY, _tally_key(), [_TALLY.workspace_id.set(WS)])
    tx.commit()

    for _ in range(2):
        tx = store.transaction()
        tx.discard(_TALLY, _tally_key())
        tx.commit()
        assert store.get(_tally_key()) is None

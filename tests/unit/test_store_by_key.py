"""The store's writes by key that need no item to be there: an upsert creates an absent one of its
kind with just the attributes it sets, counts on it after, and changes a present one without
touching its version, and still obeys a condition; attributes named by data keep their names; a
discard of an absent one passes. A transaction too big for one splits into parts that keep their
operations' names. Items of several kinds are read in one batch."""

from __future__ import annotations

from typing import Any

import pytest

from agentplane import raw_items

WS = "ws_upsert"


def _team() -> object:
    from agentplane.entities.teams import TeamItem

    return TeamItem(
        workspace_id=WS,
        id="team_1",
        name="Core",
        member_count=0,
        created_by="u_1",
        created_at="2026-12-01T00:00:00Z",
        updated_at="2026-12-01T00:00:00Z",
    )


def test_an_upsert_creates_an_absent_item_of_its_kind_with_only_what_it_sets(store) -> None:
    from agentplane import keys
    from agentplane.entities.teams import TeamItem

    found = store.upsert(TeamItem, keys.team_key(WS, "team_9"), [TeamItem.member_count.add(2)])
    assert found.member_count == 2
    tx = store.transaction()
    tx.upsert(TeamItem, keys.team_key(WS, "team_9"), [TeamItem.member_count.add(2)], name="count")
    tx.commit()

    assert raw_items.get(keys.team_key(WS, "team_9")) == {
        **keys.team_key(WS, "team_9"),
        "entity": "team",
        "member_count": 4,
    }
    assert isinstance(store.read(TeamItem, keys.team_key(WS, "team_9")), TeamItem)


def test_an_upsert_of_a_present_item_leaves_its_version_and_other_attributes(store) -> None:
    from agentplane import keys
    from agentplane.entities.teams import TeamItem

    store.create(_team())
    tx = store.transaction()
    tx.upsert(TeamItem, keys.team_key(WS, "team_1"), [TeamItem.member_count.add(3)], name="count")
    tx.commit()

    stored = raw_items.get(keys.team_key(WS, "team_1"))
    assert (stored["member_count"], stored["version"], stored["name"]) == (3, 1, "Core")


def test_an_upsert_obeys_its_condition(store) -> None:
    from agentplane import keys
    from agentplane.entities.teams import TeamItem
    from agentplane.store import ConditionFailed, TransactionFailed

    store.create(_team())
    with pytest.raises(ConditionFailed):
        store.upsert(TeamItem, keys.team_key(WS, "team_1"), [TeamItem.name.set("x")], TeamItem.member_count > 0)
    tx = store.transaction()
    tx.upsert(TeamItem, keys.team_key(WS, "team_1"), [TeamItem.name.set("x")], TeamItem.member_count > 0, name="n")
    with pytest.raises(TransactionFailed) as failure:
        tx.commit()
    assert failure.value.failed == "n"
    assert raw_items.get(keys.team_key(WS, "team_1"))["name"] == "Core"


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


def test_an_attribute_named_by_data_keeps_its_name_when_counted_and_read(store) -> None:
    from pynamodb.expressions.operand import Path

    from agentplane import keys

    tally, key = _tally_kind(), keys.key(keys.ws_pk(WS), "TALLY")
    for _ in range(2):
        store.upsert(tally, key, [tally.workspace_id.set(WS), Path(["per#ada.lovelace"]).add(3)])

    raw = raw_items.get(key)
    assert raw["entity"] == "test_tally" and raw["per#ada.lovelace"] == 6  # a dot is part of the name
    assert store.read(tally, key).counts == {"per#ada.lovelace": 6}


def test_a_discard_deletes_by_key_whether_or_not_the_item_is_there(store) -> None:
    from agentplane import keys
    from agentplane.entities.teams import TeamItem

    store.create(_team())
    tx = store.transaction()
    tx.discard(TeamItem, keys.team_key(WS, "team_1"))
    tx.discard(TeamItem, keys.team_key(WS, "team_gone"))
    tx.commit()
    assert raw_items.get(keys.team_key(WS, "team_1")) is None

    store.discard(TeamItem, keys.team_key(WS, "team_gone"))
    store.create(_team())
    store.discard(TeamItem, keys.team_key(WS, "team_1"))
    assert raw_items.get(keys.team_key(WS, "team_1")) is None


def test_a_transaction_splits_into_parts_that_keep_their_operations_names(store) -> None:
    from agentplane import keys
    from agentplane.entities.teams import TeamItem
    from agentplane.store import TransactionFailed

    tx = store.transaction()
    for number in range(5):
        tx.upsert(TeamItem, keys.team_key(WS, f"team_{number}"), [TeamItem.member_count.add(1)])
    tx.require(TeamItem, keys.team_key(WS, "team_0"), TeamItem.member_count > 5, name="crowded")
    parts = tx.parts(3)

    assert [part.size for part in parts] == [3, 3]
    parts[0].commit()
    with pytest.raises(TransactionFailed) as failure:
        parts[1].commit()
    assert failure.value.failed == "crowded"
    assert raw_items.get(keys.team_key(WS, "team_2")) is not None and raw_items.get(keys.team_key(WS, "team_3")) is None
    assert store.transaction().parts() == []


def test_items_of_different_kinds_are_read_in_one_batch_each_as_the_kind_asked_for(store) -> None:
    from agentplane import keys
    from agentplane.entities.teams import TeamItem, TeamMemberItem

    store.create(_team())
    # An item written before items carried their kind is read as the kind its key holds.
    raw_items.put({**keys.team_member_key(WS, "team_1", "u_2"), "workspace_id": WS, "team_id": "team_1",
               "user_id": "u_2", "role": "member", "added_at": "2026-12-01T00:00:00Z"})  # fmt: skip
    calls: list[str] = []
    store.client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))

    team, member, missing = store.read_each([
        (TeamItem, keys.team_key(WS, "team_1")),
        (TeamMemberItem, keys.team_member_key(WS, "team_1", "u_2")),
        (TeamItem, keys.team_key(WS, "team_gone")),
    ])  # fmt: skip

    assert calls == ["BatchGetItem"]
    assert isinstance(team, TeamItem) and team.name == "Core"
    assert isinstance(member, TeamMemberItem) and member.user_id == "u_2"
    assert missing is None


def test_a_batch_read_past_dynamodbs_100_keys_goes_out_in_batches_of_100(store, monkeypatch) -> None:
    from agentplane import keys
    from agentplane.entities.teams import TeamItem

    for n in range(0, 230, 2):  # every other key exists
        team = _team()
        team.id = f"team_{n}"  # type: ignore[attr-defined]
        store.create(team)
    sent: list[int] = []
    batch_get = store.client.batch_get_item

    def counting(**request: Any) -> Any:
        sent.append(sum(len(table["Keys"]) for table in request["RequestItems"].values()))
        return batch_get(**request)

    monkeypatch.setattr(store.client, "batch_get_item", counting)
    found = store.read_many(TeamItem, [keys.team_key(WS, f"team_{n}") for n in range(230)])

    assert sent == [100, 100, 30]
    assert [team is not None for team in found] == [n % 2 == 0 for n in range(230)]
    assert all(team.id == f"team_{n}" for n, team in enumerate(found) if team is not None)

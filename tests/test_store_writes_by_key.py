"""The store's writes by key that need no item to be there, and a read of several kinds at once:
an upsert brings an absent item into being as its kind and leaves a present one's version alone,
a discard of an absent item passes, and one BatchGetItem answers each key as the kind asked for."""

from __future__ import annotations

import pytest

WS = "ws_by_key"


def _team(team_id: str) -> object:
    from agentplane.entities.teams import TeamItem

    return TeamItem(
        workspace_id=WS,
        id=team_id,
        name="Core",
        member_count=0,
        created_by="u_1",
        created_at="2026-12-01T00:00:00Z",
        updated_at="2026-12-01T00:00:00Z",
    )


def test_an_upsert_creates_an_absent_item_as_its_kind_then_adds_to_it(store) -> None:
    from agentplane import keys
    from agentplane.entities.teams import TeamItem

    key = keys.team_key(WS, "team_9")
    for _ in range(2):
        tx = store.transaction()
        tx.upsert(TeamItem, key, [TeamItem.member_count.add(2)])
        tx.commit()

    assert store.get(key) == {**key, "entity": "team", "member_count": 4}
    assert isinstance(store.read(TeamItem, key), TeamItem)


def test_an_upsert_leaves_a_present_items_version_and_obeys_its_condition(store) -> None:
    from agentplane import keys
    from agentplane.entities.teams import TeamItem
    from agentplane.store import ConditionFailed

    store.create(_team("team_1"))
    key = keys.team_key(WS, "team_1")

    after = store.upsert(TeamItem, key, [TeamItem.member_count.add(1)], TeamItem.member_count < 1)
    with pytest.raises(ConditionFailed):
        store.upsert(TeamItem, key, [TeamItem.member_count.add(1)], TeamItem.member_count < 1)

    assert (after.member_count, after.version, after.name) == (1, 1, "Core")
    assert store.get(key)["member_count"] == 1


def test_a_discard_deletes_whether_or_not_the_item_is_there(store) -> None:
    from agentplane import keys
    from agentplane.entities.teams import TeamItem

    store.create(_team("team_1"))
    tx = store.transaction()
    tx.discard(TeamItem, keys.team_key(WS, "team_1"))
    tx.discard(TeamItem, keys.team_key(WS, "team_never"))
    tx.commit()
    store.discard(TeamItem, keys.team_key(WS, "team_1"))

    assert store.get(keys.team_key(WS, "team_1")) is None


def test_read_each_answers_every_key_as_the_kind_asked_for_in_one_batch(store) -> None:
    from agentplane import keys
    from agentplane.entities.teams import TeamItem, TeamMemberItem

    store.create(_team("team_1"))
    member = TeamMemberItem(workspace_id=WS, team_id="team_1", user_id="u_1", role="member", added_at="x")
    store.create(member)

    team, found, missing = store.read_each(
        [
            (TeamItem, keys.team_key(WS, "team_1")),
            (TeamMemberItem, keys.team_member_key(WS, "team_1", "u_1")),
            (TeamItem, keys.team_key(WS, "team_2")),
        ]
    )

    assert isinstance(team, TeamItem) and isinstance(found, TeamMemberItem)
    assert found.user_id == "u_1" and missing is None

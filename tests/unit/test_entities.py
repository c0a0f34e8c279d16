"""The entity layer and the store's primitives, against moto: kinds come back as their class,
versions guard every change, index attributes follow the fields, transactions name their
operations, filtered lists fill their pages, and writes that lose a race are retried."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from agentplane import raw_items

WS = "ws_entities"


def _team(team_id: str, name: str) -> object:
    from agentplane.entities.teams import TeamItem

    return TeamItem(
        workspace_id=WS,
        id=team_id,
        name=name,
        member_count=0,
        created_by="u_1",
        created_at="2026-12-01T00:00:00Z",
        updated_at="2026-12-01T00:00:00Z",
    )


def test_an_item_read_back_is_its_own_kind_with_keys_index_and_version_set(store) -> None:
    from agentplane import keys
    from agentplane.entities.base import Entity
    from agentplane.entities.teams import TeamItem

    store.create(_team("team_1", "Core"))

    raw = raw_items.get(keys.team_key(WS, "team_1"))
    assert raw["entity"] == "team"
    assert (raw["GSI1PK"], raw["GSI1SK"]) == (keys.team_list_gsi(WS), "team_1")
    assert raw["name_lower"] == "core" and raw["version"] == 1
    read = store.read(Entity, keys.team_key(WS, "team_1"))
    assert isinstance(read, TeamItem)
    assert read.to_model().model_dump()["name"] == "Core"
    assert "name_lower" not in read.to_model().model_dump()


def test_an_entity_converts_to_the_api_model_its_class_names() -> None:
    from agentplane.entities.accounts import SessionItem
    from agentplane.entities.agents import AgentProgressItem, LatestProgressItem
    from agentplane.entities.teams import TeamItem, TeamMemberItem
    from agentplane.models.agents import Progress
    from agentplane.models.workspaces import Team, TeamMember

    member = TeamMemberItem(workspace_id=WS, team_id="team_1", user_id="u_2", role="admin", added_at="2026-12-01")

    assert type(_team("team_1", "Core").to_model()) is Team
    assert member.to_model() == TeamMember(team_id="team_1", user_id="u_2", role="admin", added_at="2026-12-01")
    # Kinds that share a base share its model; bookkeeping kinds have none.
    assert AgentProgressItem.api_model() is Progress and LatestProgressItem.api_model() is Progress
    assert TeamItem.api_model() is Team and SessionItem.api_model() is None
    with pytest.raises(TypeError, match="SessionItem has no API model"):
        SessionItem(id="s_1", user_id="u_1", created_at="2026-12-01").to_model()


def test_creating_an_item_twice_fails_and_names_what_is_stored(store) -> None:
    from agentplane.store import ConditionFailed

    store.create(_team("team_1", "Core"))
    with pytest.raises(ConditionFailed) as lost:
        store.create(_team("team_1", "Other"))
    from agentplane.entities.teams import TeamItem

    assert lost.value.current_as(TeamItem).name == "Core"


def test_a_change_from_a_stale_read_loses_and_the_winner_bumps_the_version(store) -> None:
    from agentplane import keys
    from agentplane.entities.teams import TeamItem
    from agentplane.store import ConditionFailed

    store.create(_team("team_1", "Core"))
    first = store.read(TeamItem, keys.team_key(WS, "team_1"))
    second = store.read(TeamItem, keys.team_key(WS, "team_1"))

    saved = store.change(first, first.assign(name="Platform"))
    with pytest.raises(ConditionFailed):
        store.change(second, second.assign(description="stale"))

    assert saved.version == 2 and saved.name == "Platform"
    stored = raw_items.get(keys.team_key(WS, "team_1"))
    assert stored["version"] == 2 and stored["description"] == ""
    assert stored["name_lower"] == "platform"  # the derived attribute followed the name


def test_bookkeeping_by_key_leaves_the_version_alone(store) -> None:
    from agentplane import keys
    from agentplane.entities.teams import TeamItem

    store.create(_team("team_1", "Core"))
    after = store.adjust(TeamItem, keys.team_key(WS, "team_1"), [TeamItem.member_count.add(3)])

    assert after.member_count == 3 and after.version == 1


def test_a_cancelled_transaction_names_the_operation_that_failed_and_what_it_found(store) -> None:
    from agentplane import keys
    from agentplane.entities.teams import TeamItem
    from agentplane.store import TransactionFailed

    store.create(_team("team_1", "Core"))
    tx = store.transaction()
    tx.create(_team("team_2", "New"), name="new_team")
    tx.create(_team("team_1", "Again"), name="existing_team")
    with pytest.raises(TransactionFailed) as cancelled:
        tx.commit()

    assert cancelled.value.failed == "existing_team"
    assert cancelled.value.reason("new_team") == "None"
    assert cancelled.value.current("existing_team", TeamItem).name == "Core"
    assert raw_items.get(keys.team_key(WS, "team_2")) is None  # nothing of it was applied


def test_two_operations_of_one_transaction_cannot_share_a_name(store) -> None:
    tx = store.transaction()
    tx.create(_team("team_1", "A"), name="team")
    with pytest.raises(ValueError, match="named 'team'"):
        tx.create(_team("team_2", "B"), name="team")


def test_a_filtered_page_fills_up_across_rounds_and_resumes_after_its_last_item(store) -> None:
    from agentplane import keys
    from agentplane.entities.teams import TeamItem
    from agentplane.store import QuerySpec

    for n in range(250):
        store.create(_team(f"team_{n:03d}", "match" if n % 3 == 0 else "other"))
    spec = QuerySpec(keys.team_list_gsi(WS), index=keys.GSI1, filter=TeamItem.name_lower == "match")

    first = store.fill(TeamItem, spec, limit=40)
    second = store.fill(TeamItem, spec, limit=40, start=first.last_key)
    rest = store.fill(TeamItem, spec, limit=40, start=second.last_key)

    ids = [t.id for t in first.items + second.items + rest.items]
    assert len(first.items) == len(second.items) == 40  # more than one Query round each
    assert ids == [f"team_{n:03d}" for n in range(0, 250, 3)]  # none skipped, none twice
    assert rest.last_key is None


def test_a_filtered_page_stops_at_its_read_budget_with_a_cursor_to_go_on(store) -> None:
    from agentplane import keys
    from agentplane.entities.teams import TeamItem
    from agentplane.store import QuerySpec

    for n in range(30):
        store.create(_team(f"team_{n:03d}", "other"))
    spec = QuerySpec(keys.team_list_gsi(WS), index=keys.GSI1, filter=TeamItem.name_lower == "match")

    page = store.fill(TeamItem, spec, limit=10, budget=20)

    assert page.items == [] and page.last_key is not None


def test_read_or_404_says_what_is_missing(store) -> None:
    from agentplane import keys
    from agentplane.entities.teams import TeamItem
    from agentplane.errors import NotFound

    with pytest.raises(NotFound, match="team team_9 not found"):
        store.read_or_404(TeamItem, keys.team_key(WS, "team_9"), "team team_9 not found")


def _conflict() -> ClientError:
    return ClientError({"Error": {"Code": "TransactionConflict", "Message": "busy"}}, "TransactWriteItems")


def test_retrying_repeats_a_lost_race_until_it_wins() -> None:
    from agentplane.store import retrying

    calls: list[int] = []

    def write() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _conflict()
        return "written"

    assert retrying(write, retry_if=lambda e: isinstance(e, ClientError), base_delay=0) == "written"
    assert len(calls) == 3


def test_retrying_gives_up_after_its_attempts_and_never_retries_other_failures() -> None:
    from agentplane.store import retrying

    attempts: list[int] = []

    def always_busy() -> None:
        attempts.append(1)
        raise _conflict()

    with pytest.raises(ClientError):
        retrying(always_busy, retry_if=lambda e: isinstance(e, ClientError), attempts=4, base_delay=0)
    assert len(attempts) == 4

    def broken() -> None:
        attempts.append(1)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        retrying(broken, retry_if=lambda e: isinstance(e, ClientError), base_delay=0)
    assert len(attempts) == 5


def test_each_access_pattern_is_registered_with_its_entity_and_index() -> None:
    from agentplane import keys
    from agentplane.entities import teams
    from agentplane.entities.patterns import PATTERNS

    registered = {p.function: p for p in PATTERNS}
    listing = registered["agentplane.entities.teams.teams_of_workspace"]
    assert listing.entity is teams.TeamItem and listing.index == keys.GSI1
    assert listing.partition is keys.team_list_gsi
    assert "creation order" in listing.purpose


def test_an_upsert_creates_the_item_as_its_kind_then_moves_it_by_key(store) -> None:
    from agentplane import keys
    from agentplane.entities.base import Entity
    from agentplane.entities.teams import TeamItem

    key = keys.team_key(WS, "team_1")
    tx = store.transaction()
    tx.upsert(TeamItem, key, [TeamItem.member_count.add(2)])
    tx.commit()
    after = store.upsert(TeamItem, key, [TeamItem.member_count.add(3)])

    assert after.member_count == 5
    assert isinstance(store.read(Entity, key), TeamItem)  # the created item carries its kind


def test_a_discard_deletes_an_item_and_passes_over_an_absent_one(store) -> None:
    from agentplane import keys
    from agentplane.entities.teams import TeamItem

    store.create(_team("team_1", "Core"))
    tx = store.transaction()
    tx.discard(TeamItem, keys.team_key(WS, "team_1"))
    tx.discard(TeamItem, keys.team_key(WS, "team_never"))
    tx.commit()

    assert raw_items.get(keys.team_key(WS, "team_1")) is None


# A JSON document as code writes them: nested maps and lists, whole and fractional numbers, text,
# booleans and nulls.
_DOCUMENT = {
    "name": "deploy",
    "count": 3,
    "ratio": 0.25,
    "whole_float": 2.0,
    "tiny": -0.001,
    "big": 12345678901234567890,
    "flag": True,
    "nothing": None,
    "tags": ["a", 1, None, {"deep": [1.5, {"x": ""}]}],
    "empty": {},
    "nested": {"list": [], "map": {"k": False}},
}


def test_documents_are_stored_as_boto3_stored_them_and_items_written_that_way_read_the_same(store) -> None:
    from agentplane import keys
    from agentplane.entities.notifications import NotificationItem

    def notification(notification_id: str, data: dict[str, object]) -> NotificationItem:
        return NotificationItem(
            workspace_id=WS,
            user_id="u_1",
            id=notification_id,
            type="info",
            title="t",
            data=data,
            created_by="u_1",
            created_at="2026-12-01T00:00:00Z",
        )

    # The old way: the whole item as a plain dict through boto3's TypeSerializer.
    old = notification("ntf_old", {})
    old.stamp()
    raw_items.put({**old.as_item(), "data": _DOCUMENT})
    store.create(notification("ntf_new", _DOCUMENT))

    key_old, key_new = keys.notification_key(WS, "u_1", "ntf_old"), keys.notification_key(WS, "u_1", "ntf_new")
    stored_old, stored_new = store.get_raw([key_old, key_new], batch=True)
    assert stored_new["data"] == stored_old["data"]
    read = store.read(NotificationItem, key_old)
    assert read.data == raw_items.get(key_old)["data"]
    assert read.data["whole_float"] == 2 and isinstance(read.data["whole_float"], int)
    assert read.data["tags"][3] == {"deep": [1.5, {"x": ""}]}


def test_a_count_answers_how_many_match_across_pages_and_after_its_filter(store, monkeypatch) -> None:
    from agentplane import keys
    from agentplane.entities.teams import TeamItem
    from agentplane.store import QuerySpec

    for n in range(30):
        store.create(_team(f"team_{n:03d}", "match" if n % 3 == 0 else "other"))
    sent: list[dict[str, object]] = []
    real_query = store.client.query

    def query(**args: object) -> object:
        sent.append(args)
        return real_query(**{**args, "Limit": 7})  # pages as DynamoDB's 1 MB cut would

    monkeypatch.setattr(store.client, "query", query)
    every = store.count(QuerySpec(keys.team_list_gsi(WS), index=keys.GSI1))
    matching = store.count(QuerySpec(keys.team_list_gsi(WS), index=keys.GSI1, filter=TeamItem.name_lower == "match"))

    assert (every, matching) == (30, 10)
    assert all(args["Select"] == "COUNT" for args in sent) and len(sent) > 2
    assert store.count(QuerySpec(keys.team_list_gsi("ws_none"), index=keys.GSI1)) == 0

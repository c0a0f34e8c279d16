"""Notifications: a member's inbox per workspace, its unread counter, and delivery to members."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from agentplane import raw_items
from tests.conftest import register_and_login


def inbox(ws: dict) -> str:
    return f"/api/v1/workspaces/{ws['id']}/notifications"


def add_member(ws: dict, user: dict, role: str = "member") -> None:
    """Make `user` a member directly in the table (the members API is another family's)."""
    from agentplane.auth.scopes import Role
    from agentplane.ids import iso
    from agentplane.logic.workspaces import member_item

    raw_items.put(member_item(ws["id"], ws["name"], user["user"]["id"], Role(role), iso()))


def unread(api, ws: dict, token: str) -> int:
    answer = api.get(f"{inbox(ws)}/unread-count", token=token)
    assert answer.status == 200, answer.body
    return int(answer.json["data"]["count"])


def send(api, ws: dict, token: str | None = None, **fields: Any) -> dict:
    body = {"title": "Build finished", **fields}
    answer = api.post(inbox(ws), body, **({"token": token} if token else {}))
    assert answer.status == 201, answer.body
    return answer.json["data"]


# ---------------------------------------------------------------- create, list, count


def test_a_notification_to_oneself_is_listed_and_counted_unread(api, user, workspace):
    api.token = user["token"]
    created = send(api, workspace, type="finished", body="run_1 is done", link="/runs/run_1", data={"run": 1})
    assert created["id"].startswith("ntf_")
    assert created["recipients"] == [user["user"]["id"]]
    listed = api.get(inbox(workspace))
    assert listed.status == 200
    [item] = listed.json["data"]
    assert item["id"] == created["id"]
    assert item["user_id"] == user["user"]["id"]
    assert (item["type"], item["title"], item["body"], item["link"]) == (
        "finished",
        "Build finished",
        "run_1 is done",
        "/runs/run_1",
    )
    assert item["data"] == {"run": 1}
    assert item["read"] is False and item["read_at"] is None
    assert unread(api, workspace, user["token"]) == 1


def test_orkosi_message_field_is_accepted_as_the_body(api, user, workspace):
    api.token = user["token"]
    created = send(api, workspace, message="from Orkosi", source="orkosi")
    assert created["body"] == "from Orkosi"
    assert created["source"] == "orkosi"


def test_unread_count_is_zero_for_an_empty_inbox(api, user, workspace):
    assert unread(api, workspace, user["token"]) == 0


def test_a_notification_to_another_member_lands_only_in_their_inbox(api, user, workspace):
    colleague = register_and_login(api)
    add_member(workspace, colleague)
    api.token = user["token"]
    created = send(api, workspace, user_id=colleague["user"]["id"], type="mention", title="You were mentioned")
    assert created["recipients"] == [colleague["user"]["id"]]
    assert api.get(inbox(workspace)).json["data"] == []
    assert unread(api, workspace, user["token"]) == 0
    theirs = api.get(inbox(workspace), token=colleague["token"]).json["data"]
    assert [n["id"] for n in theirs] == [created["id"]]
    assert theirs[0]["created_by"] == user["user"]["id"]
    assert unread(api, workspace, colleague["token"]) == 1


def test_all_members_fan_out_reaches_every_inbox_with_one_id(api, user, workspace):
    others = [register_and_login(api) for _ in range(3)]
    for other in others:
        add_member(workspace, other)
    api.token = user["token"]
    created = send(api, workspace, all_members=True, type="info", title="Maintenance at noon")
    everyone = {user["user"]["id"], *(o["user"]["id"] for o in others)}
    assert set(created["recipients"]) == everyone
    for person in [user, *others]:
        [item] = api.get(inbox(workspace), token=person["token"]).json["data"]
        assert item["id"] == created["id"]
        assert item["user_id"] == person["user"]["id"]
        assert unread(api, workspace, person["token"]) == 1


def test_fan_out_beyond_one_transaction_delivers_to_everyone(api, user, workspace):
    from agentplane.logic import notifications

    ids = [f"usr_bulk{i:03d}" for i in range(notifications.RECIPIENTS_PER_TRANSACTION + 7)]
    created = notifications.notify(None, workspace["id"], ids, "stalled", "Agent stalled")
    assert created.recipients == ids
    from agentplane import keys

    counters = raw_items.get_many([keys.notification_counter_key(workspace["id"], i) for i in ids])
    assert all(c is not None and c["count"] == 1 for c in counters)


def test_created_notifications_are_stream_ready_items(api, user, workspace):
    from agentplane import keys

    api.token = user["token"]
    created = send(api, workspace)
    item = raw_items.get(keys.notification_key(workspace["id"], user["user"]["id"], created["id"]))
    assert item is not None
    assert (item["entity"], item["workspace_id"], item["user_id"]) == (
        "notification",
        workspace["id"],
        user["user"]["id"],
    )


def test_create_writes_an_audit_row(api, user, workspace):
    from agentplane import keys

    api.token = user["token"]
    created = send(api, workspace)
    rows = raw_items.query(keys.audit_pk(workspace["id"]), limit=20).items
    assert any(r["action"] == "notification.created" and r["target_id"] == created["id"] for r in rows)


# ---------------------------------------------------------------- notify() for other families


def test_notify_inside_a_callers_transaction_lands_only_when_it_commits(api, user, workspace):
    from agentplane.logic import notifications
    from agentplane.store import get_store

    me = user["user"]["id"]
    tx = get_store().transaction()
    created = notifications.notify(tx, workspace["id"], [me, me], "needs_input", "Run needs input", "Pick a branch")
    assert created.recipients == [me]
    assert unread(api, workspace, user["token"]) == 0
    tx.commit()
    assert unread(api, workspace, user["token"]) == 1
    [item] = api.get(inbox(workspace), token=user["token"]).json["data"]
    assert (item["type"], item["body"], item["created_by"]) == ("needs_input", "Pick a branch", "system")


def test_notify_refuses_more_recipients_than_fit_in_the_callers_transaction(workspace):
    from agentplane.logic import notifications
    from agentplane.store import get_store

    many = [f"usr_{i}" for i in range(notifications.MAX_RECIPIENTS_IN_CALLER_TX + 1)]
    with pytest.raises(ValueError, match="at most"):
        notifications.notify(get_store().transaction(), workspace["id"], many, "info", "x")


# ---------------------------------------------------------------- filters and pagination


def test_list_is_newest_first_and_filters_by_type_and_read(api, user, workspace):
    api.token = user["token"]
    first = send(api, workspace, title="one", type="info")
    second = send(api, workspace, title="two", type="stalled")
    third = send(api, workspace, title="three", type="info")
    assert [n["id"] for n in api.get(inbox(workspace)).json["data"]] == [third["id"], second["id"], first["id"]]
    infos = api.get(f"{inbox(workspace)}?type=info").json["data"]
    assert [n["id"] for n in infos] == [third["id"], first["id"]]
    assert api.patch(f"{inbox(workspace)}/{second['id']}/read").status == 200
    unread_ones = api.get(f"{inbox(workspace)}?read=false").json["data"]
    assert [n["id"] for n in unread_ones] == [third["id"], first["id"]]
    read_ones = api.get(f"{inbox(workspace)}?read=true").json["data"]
    assert [n["id"] for n in read_ones] == [second["id"]]
    assert read_ones[0]["read"] is True and read_ones[0]["read_at"]


def test_list_paginates_with_a_cursor_bound_to_the_inbox(api, user, workspace):
    api.token = user["token"]
    ids = [send(api, workspace, title=f"n{i}")["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        answer = api.get(f"{inbox(workspace)}?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert answer.status == 200
        assert answer.json["meta"]["limit"] == 2
        seen += [n["id"] for n in answer.json["data"]]
        cursor = answer.json["meta"]["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))
    cursor = api.get(f"{inbox(workspace)}?limit=1").json["meta"]["next_cursor"]
    assert api.get(f"{inbox(workspace)}?read=false&cursor={cursor}").status == 400
    colleague = register_and_login(api)
    add_member(workspace, colleague)
    assert api.get(f"{inbox(workspace)}?cursor={cursor}", token=colleague["token"]).status == 400


# ---------------------------------------------------------------- reading


def test_reading_one_notification_takes_the_count_down_once(api, user, workspace):
    api.token = user["token"]
    a = send(api, workspace)
    send(api, workspace)
    assert unread(api, workspace, user["token"]) == 2
    first = api.patch(f"{inbox(workspace)}/{a['id']}/read")
    assert first.status == 200
    assert first.json["data"]["read"] is True
    again = api.patch(f"{inbox(workspace)}/{a['id']}/read")
    assert again.status == 200
    assert again.json["data"]["read_at"] == first.json["data"]["read_at"]
    assert unread(api, workspace, user["token"]) == 1


def test_read_notifications_expire_later_and_unread_ones_never(api, user, workspace):
    from agentplane import keys

    api.token = user["token"]
    a = send(api, workspace)
    key = keys.notification_key(workspace["id"], user["user"]["id"], a["id"])
    assert "ttl" not in (raw_items.get(key) or {})
    api.patch(f"{inbox(workspace)}/{a['id']}/read")
    assert isinstance((raw_items.get(key) or {}).get("ttl"), int)


def test_read_all_marks_everything_read_and_resets_the_count(api, user, workspace):
    api.token = user["token"]
    for i in range(5):
        send(api, workspace, title=f"n{i}")
    api.patch(f"{inbox(workspace)}/{api.get(inbox(workspace)).json['data'][0]['id']}/read")
    answer = api.patch(f"{inbox(workspace)}/read-all")
    assert answer.status == 200, answer.body
    assert answer.json["data"] == {"updated": 4, "count": 0}
    assert unread(api, workspace, user["token"]) == 0
    assert api.get(f"{inbox(workspace)}?read=false").json["data"] == []
    assert all(n["read"] for n in api.get(inbox(workspace)).json["data"])
    assert api.patch(f"{inbox(workspace)}/read-all").json["data"] == {"updated": 0, "count": 0}


def test_read_all_spans_several_transactions(api, user, workspace):
    from agentplane.logic import notifications

    total = notifications.RECIPIENTS_PER_TRANSACTION + 5
    for i in range(total):
        notifications.notify(None, workspace["id"], [user["user"]["id"]], "info", f"n{i}")
    assert unread(api, workspace, user["token"]) == total
    answer = api.patch(f"{inbox(workspace)}/read-all", token=user["token"])
    assert answer.json["data"] == {"updated": total, "count": 0}


def test_read_all_leaves_other_members_inboxes_alone(api, user, workspace):
    colleague = register_and_login(api)
    add_member(workspace, colleague)
    api.token = user["token"]
    send(api, workspace, all_members=True)
    api.patch(f"{inbox(workspace)}/read-all")
    assert unread(api, workspace, user["token"]) == 0
    assert unread(api, workspace, colleague["token"]) == 1


def test_concurrent_reads_of_one_notification_count_once(api, user, workspace):
    api.token = user["token"]
    target = send(api, workspace)
    send(api, workspace)
    statuses: list[int] = []
    barrier = threading.Barrier(6)

    def read() -> None:
        barrier.wait()
        statuses.append(api.patch(f"{inbox(workspace)}/{target['id']}/read", token=user["token"]).status)

    threads = [threading.Thread(target=read) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 6
    assert unread(api, workspace, user["token"]) == 1


def test_concurrent_read_all_and_single_reads_never_drive_the_count_negative(api, user, workspace):
    api.token = user["token"]
    ids = [send(api, workspace, title=f"n{i}")["id"] for i in range(6)]
    barrier = threading.Barrier(4)
    results: list[int] = []

    def read_all() -> None:
        barrier.wait()
        results.append(api.patch(f"{inbox(workspace)}/read-all", token=user["token"]).status)

    def read_one(notification_id: str) -> None:
        barrier.wait()
        results.append(api.patch(f"{inbox(workspace)}/{notification_id}/read", token=user["token"]).status)

    threads = [threading.Thread(target=read_all), threading.Thread(target=read_all)]
    threads += [threading.Thread(target=read_one, args=(n,)) for n in ids[:2]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 4
    from agentplane import keys

    counter = raw_items.get(keys.notification_counter_key(workspace["id"], user["user"]["id"]))
    assert counter is not None and counter["count"] == 0


def test_another_members_notification_is_404_to_mark(api, user, workspace):
    colleague = register_and_login(api)
    add_member(workspace, colleague)
    theirs = send(api, workspace, token=colleague["token"])
    api.token = user["token"]
    assert api.patch(f"{inbox(workspace)}/{theirs['id']}/read").status == 404
    assert api.patch(f"{inbox(workspace)}/not-an-id/read").status == 404
    assert unread(api, workspace, colleague["token"]) == 1


# ---------------------------------------------------------------- who may do what


def test_non_member_gets_404_on_every_route(api, user, workspace):
    stranger = register_and_login(api)
    api.token = stranger["token"]
    assert api.get(inbox(workspace)).status == 404
    assert api.post(inbox(workspace), {"title": "x"}).status == 404
    assert api.get(f"{inbox(workspace)}/unread-count").status == 404
    assert api.patch(f"{inbox(workspace)}/read-all").status == 404


def test_a_viewer_may_only_notify_themselves(api, user, workspace):
    viewer = register_and_login(api)
    add_member(workspace, viewer, role="viewer")
    api.token = viewer["token"]
    to_owner = api.post(inbox(workspace), {"title": "hi", "user_id": user["user"]["id"]})
    assert to_owner.status == 403
    assert to_owner.header("content-type") == "application/problem+json"
    assert api.post(inbox(workspace), {"title": "hi", "all_members": True}).status == 403
    assert api.post(inbox(workspace), {"title": "note to self"}).status == 201
    assert unread(api, workspace, user["token"]) == 0


def test_notifying_someone_outside_the_workspace_is_422_and_writes_nothing(api, user, workspace):
    outsider = register_and_login(api)
    api.token = user["token"]
    answer = api.post(inbox(workspace), {"title": "x", "user_id": outsider["user"]["id"]})
    assert answer.status == 422
    assert answer.json["errors"][0]["field"] == "user_id"
    assert unread(api, workspace, user["token"]) == 0
    from agentplane import keys

    assert raw_items.get(keys.notification_counter_key(workspace["id"], outsider["user"]["id"])) is None
    rows = raw_items.query(keys.audit_pk(workspace["id"]), limit=50).items
    assert not any(r["action"] == "notification.created" for r in rows)


def test_bad_input_is_a_problem_and_writes_nothing(api, user, workspace):
    api.token = user["token"]
    malformed = api.post(inbox(workspace), raw="{nope", headers={"Content-Type": "application/json"})
    assert malformed.status == 400
    cases = [
        {},
        {"title": ""},
        {"title": "x" * 201},
        {"title": "x", "type": "shout"},
        {"title": "x", "link": "javascript:alert(1)"},
        {"title": "x", "data": {"blob": "x" * 9000}},
        {"title": "x", "colour": "red"},
        {"title": "x", "user_id": user["user"]["id"], "all_members": True},
    ]
    for body in cases:
        answer = api.post(inbox(workspace), body)
        assert answer.status == 422, (body, answer.body)
        assert answer.header("content-type") == "application/problem+json"
    assert api.get(f"{inbox(workspace)}?type=shout").status == 422
    assert api.get(f"{inbox(workspace)}?read=maybe").status == 422
    assert api.get(inbox(workspace)).json["data"] == []
    assert unread(api, workspace, user["token"]) == 0


def test_a_notification_addressed_to_oneself_by_user_id_is_delivered(api, user, workspace):
    base = f"/api/v1/workspaces/{workspace['id']}/notifications"
    sent = api.post(base, {"title": "Note to self", "user_id": user["user"]["id"]}, token=user["token"])
    assert sent.status == 201, sent.body
    assert [n["title"] for n in api.get(base, token=user["token"]).json["data"]] == ["Note to self"]

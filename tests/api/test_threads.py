from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agentplane import raw_items
from tests.conftest import register_and_login


def threads_path(ws: dict) -> str:
    return f"/api/v1/workspaces/{ws['id']}/threads"


def messages_path(ws: dict) -> str:
    return f"/api/v1/workspaces/{ws['id']}/messages"


def new_thread(api, ws: dict, title: str = "Debug login") -> dict:
    created = api.post(threads_path(ws), {"title": title})
    assert created.status == 201, created.body
    return created.json["data"]


def add_member(workspace: dict, account: dict, role: str) -> None:
    from agentplane.auth.scopes import Role
    from agentplane.ids import iso
    from agentplane.logic.workspaces import member_item

    raw_items.put(member_item(workspace["id"], workspace["name"], account["user"]["id"], Role(role), iso()))


def audit_actions(workspace: dict) -> list[str]:
    from agentplane import keys

    return [row["action"] for row in raw_items.query(keys.audit_pk(workspace["id"]), limit=200).items]


# --- threads ---------------------------------------------------------------------------------


def test_create_then_get_thread_round_trips(api, user, workspace):
    api.token = user["token"]
    thread = new_thread(api, workspace)
    assert thread["id"].startswith("thr_")
    assert thread["status"] == "active"
    assert thread["message_count"] == 0
    assert thread["version"] == 1
    fetched = api.get(f"{threads_path(workspace)}/{thread['id']}")
    assert fetched.status == 200
    assert fetched.json["data"] == thread
    assert "thread.created" in audit_actions(workspace)


def test_threads_list_most_recently_active_first_and_paginate(api, user, workspace):
    api.token = user["token"]
    first, second, third = (new_thread(api, workspace, f"T{i}") for i in range(3))
    api.post(f"{threads_path(workspace)}/{first['id']}/messages", {"content": "bump"})
    seen: list[str] = []
    cursor = None
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        listed = api.get(threads_path(workspace) + query)
        assert listed.status == 200
        seen += [t["id"] for t in listed.json["data"]]
        cursor = listed.json["meta"]["next_cursor"]
        if not cursor:
            break
    assert seen == [first["id"], third["id"], second["id"]]


def test_patch_thread_archives_and_stale_version_is_412(api, user, workspace):
    api.token = user["token"]
    thread = new_thread(api, workspace)
    path = f"{threads_path(workspace)}/{thread['id']}"
    archived = api.patch(path, {"status": "archived", "version": 1})
    assert archived.status == 200
    assert archived.json["data"]["status"] == "archived"
    assert archived.json["data"]["version"] == 2
    stale = api.patch(path, {"title": "Other", "version": 1})
    assert stale.status == 412
    assert api.get(path).json["data"]["title"] == "Debug login"
    assert [t["id"] for t in api.get(f"{threads_path(workspace)}?status=archived").json["data"]] == [thread["id"]]
    assert api.get(f"{threads_path(workspace)}?status=active").json["data"] == []


def test_posting_to_an_archived_thread_is_409_with_its_status(api, user, workspace):
    api.token = user["token"]
    thread = new_thread(api, workspace)
    api.patch(f"{threads_path(workspace)}/{thread['id']}", {"status": "archived"})
    refused = api.post(f"{threads_path(workspace)}/{thread['id']}/messages", {"content": "hello"})
    assert refused.status == 409
    assert refused.json["current_status"] == "archived"


def test_deleted_thread_is_404_and_leaves_lists(api, user, workspace):
    api.token = user["token"]
    thread = new_thread(api, workspace)
    path = f"{threads_path(workspace)}/{thread['id']}"
    assert api.delete(path).status == 204
    assert api.get(path).status == 404
    assert api.get(f"{path}/messages").status == 404
    assert api.post(f"{path}/messages", {"content": "x"}).status == 404
    assert api.get(threads_path(workspace)).json["data"] == []
    assert api.delete(path).status == 404
    assert "thread.deleted" in audit_actions(workspace)


# --- thread messages -------------------------------------------------------------------------


def test_messages_are_numbered_in_order_and_listed_oldest_first(api, user, workspace):
    api.token = user["token"]
    thread = new_thread(api, workspace)
    path = f"{threads_path(workspace)}/{thread['id']}/messages"
    posted = []
    for i in range(5):
        response = api.post(path, {"content": f"message {i}", "role": "assistant" if i % 2 else "user"})
        assert response.status == 201, response.body
        posted.append(response.json["data"])
    assert [m["sequence"] for m in posted] == [1, 2, 3, 4, 5]
    assert posted[0]["author"] == user["user"]["id"]
    seen: list[dict] = []
    cursor = None
    while True:
        listed = api.get(f"{path}?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert listed.status == 200
        seen += listed.json["data"]
        cursor = listed.json["meta"]["next_cursor"]
        if not cursor:
            break
    assert [m["content"] for m in seen] == [f"message {i}" for i in range(5)]
    assert [m["sequence"] for m in seen] == [1, 2, 3, 4, 5]
    assert api.get(f"{threads_path(workspace)}/{thread['id']}").json["data"]["message_count"] == 5


def test_concurrent_posts_get_distinct_consecutive_sequences(api, user, workspace):
    api.token = user["token"]
    thread = new_thread(api, workspace)
    path = f"{threads_path(workspace)}/{thread['id']}/messages"

    def post(i: int) -> Any:
        return api.post(path, {"content": f"m{i}"})

    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(post, range(10)))
    assert [r.status for r in responses] == [201] * 10, [r.body for r in responses if r.status != 201]
    assert sorted(r.json["data"]["sequence"] for r in responses) == list(range(1, 11))
    listed = api.get(f"{path}?limit=50").json["data"]
    assert [m["sequence"] for m in listed] == list(range(1, 11))
    assert api.get(f"{threads_path(workspace)}/{thread['id']}").json["data"]["message_count"] == 10


def test_message_cursor_of_another_thread_is_400(api, user, workspace):
    api.token = user["token"]
    one, other = new_thread(api, workspace, "one"), new_thread(api, workspace, "two")
    for i in range(2):
        api.post(f"{threads_path(workspace)}/{one['id']}/messages", {"content": f"m{i}"})
    cursor = api.get(f"{threads_path(workspace)}/{one['id']}/messages?limit=1").json["meta"]["next_cursor"]
    assert cursor
    replayed = api.get(f"{threads_path(workspace)}/{other['id']}/messages?cursor={cursor}")
    assert replayed.status == 400


def test_bad_message_input_is_a_problem_and_writes_nothing(api, user, workspace):
    api.token = user["token"]
    thread = new_thread(api, workspace)
    path = f"{threads_path(workspace)}/{thread['id']}/messages"
    assert api.post(path, {"content": ""}).status == 422
    assert api.post(path, {"content": "x", "role": "robot"}).status == 422
    assert api.post(path, {"content": "x", "colour": "red"}).status == 422
    assert api.post(path, raw="{nope", headers={"Content-Type": "application/json"}).status == 400
    assert api.post(threads_path(workspace), {"title": ""}).status == 422
    assert api.get(path).json["data"] == []


# --- shares ----------------------------------------------------------------------------------


def test_shared_thread_is_readable_without_a_token(api, user, workspace):
    api.token = user["token"]
    thread = new_thread(api, workspace)
    for text in ("first", "second"):
        api.post(f"{threads_path(workspace)}/{thread['id']}/messages", {"content": text})
    shared = api.post(f"{threads_path(workspace)}/{thread['id']}/share", {})
    assert shared.status == 201, shared.body
    share = shared.json["data"]
    assert share["token"].startswith("aph_")
    assert share["id"].startswith("shr_")
    assert share["path"] == f"/api/v1/public/thread-shares/{share['token']}"

    public = api.get(share["path"], token="")
    assert public.status == 200, public.body
    view = public.json["data"]
    assert view["id"] == thread["id"]
    assert view["title"] == "Debug login"
    assert [m["content"] for m in view["messages"]] == ["first", "second"]
    assert "created_by" not in view
    assert public.header("X-RateLimit-Limit") == "120"


def test_share_token_is_stored_only_as_a_hash_and_listed_without_it(api, user, workspace):
    from agentplane import keys
    from agentplane.auth.secrets import hash_secret

    api.token = user["token"]
    thread = new_thread(api, workspace)
    share = api.post(f"{threads_path(workspace)}/{thread['id']}/share").json["data"]
    record = raw_items.get(keys.token_key(hash_secret(share["token"])))
    assert record is not None and record["kind"] == "share"
    assert share["token"] not in str(record)
    listed = api.get(f"{threads_path(workspace)}/{thread['id']}/shares")
    assert listed.status == 200
    assert [s["id"] for s in listed.json["data"]] == [share["id"]]
    assert "token" not in listed.json["data"][0]
    assert share["token"] not in listed.body


def test_a_replayed_share_shows_its_token_nowhere_and_the_stored_answer_holds_none(api, user, workspace):
    from agentplane.store import get_store

    api.token = user["token"]
    thread = new_thread(api, workspace)
    path = f"{threads_path(workspace)}/{thread['id']}/share"
    first = api.post(path, headers={"Idempotency-Key": "share-once"}).json["data"]
    again = api.post(path, headers={"Idempotency-Key": "share-once"}).json["data"]
    assert first["path"].endswith(first["token"])
    assert again["token"] == "[shown once]" and again["path"].endswith("[shown once]")
    store = get_store()
    everything = str(store.client.scan(TableName=store.table_name)["Items"])
    assert first["token"] not in everything


def test_revoked_share_reads_404(api, user, workspace):
    api.token = user["token"]
    thread = new_thread(api, workspace)
    share = api.post(f"{threads_path(workspace)}/{thread['id']}/share").json["data"]
    assert api.get(share["path"], token="").status == 200
    revoked = api.delete(f"{threads_path(workspace)}/{thread['id']}/share/{share['id']}")
    assert revoked.status == 204
    gone = api.get(share["path"], token="")
    assert gone.status == 404
    assert gone.header("content-type") == "application/problem+json"
    again = api.delete(f"{threads_path(workspace)}/{thread['id']}/share/{share['id']}")
    assert again.status == 409
    assert again.json["current_status"] == "revoked"
    assert api.get(f"{threads_path(workspace)}/{thread['id']}/shares").json["data"][0]["revoked_at"]
    assert "thread.share_revoked" in audit_actions(workspace)


def test_unknown_token_and_a_bearer_token_are_404_on_the_public_route(api, user, workspace):
    assert api.get("/api/v1/public/thread-shares/aph_unknown", token="").status == 404
    # A session token is a secret too, but not a share: it reads nothing here.
    assert api.get(f"/api/v1/public/thread-shares/{user['token']}", token="").status == 404
    assert api.get("/api/v1/public/thread-shares/" + "x" * 600, token="").status in (404, 422)


def test_share_of_a_deleted_thread_reads_404(api, user, workspace):
    api.token = user["token"]
    thread = new_thread(api, workspace)
    share = api.post(f"{threads_path(workspace)}/{thread['id']}/share").json["data"]
    api.delete(f"{threads_path(workspace)}/{thread['id']}")
    assert api.get(share["path"], token="").status == 404


def test_expired_share_reads_404(api, user, workspace):
    from agentplane import keys
    from agentplane.auth.secrets import hash_secret
    from agentplane.raw_items import Update

    api.token = user["token"]
    thread = new_thread(api, workspace)
    share = api.post(f"{threads_path(workspace)}/{thread['id']}/share", {"expires_in_hours": 1}).json["data"]
    assert share["expires_at"]
    assert api.get(share["path"], token="").status == 200
    raw_items.update(keys.token_key(hash_secret(share["token"])), Update(set={"expires_at": 1}))
    assert api.get(share["path"], token="").status == 404


def test_public_messages_paginate_with_a_cursor_bound_to_the_share(api, user, workspace):
    api.token = user["token"]
    thread = new_thread(api, workspace)
    for i in range(3):
        api.post(f"{threads_path(workspace)}/{thread['id']}/messages", {"content": f"m{i}"})
    share = api.post(f"{threads_path(workspace)}/{thread['id']}/share").json["data"]
    first = api.get(f"{share['path']}?limit=2", token="").json
    assert [m["sequence"] for m in first["data"]["messages"]] == [1, 2]
    rest = api.get(f"{share['path']}?limit=2&cursor={first['meta']['next_cursor']}", token="").json
    assert [m["sequence"] for m in rest["data"]["messages"]] == [3]
    assert rest["meta"]["next_cursor"] is None
    member_cursor = api.get(f"{threads_path(workspace)}/{thread['id']}/messages?limit=1").json["meta"]["next_cursor"]
    assert api.get(f"{share['path']}?cursor={member_cursor}", token="").status == 400


def test_agent_scoped_token_cannot_publish_a_share(api, user, workspace):
    api.token = user["token"]
    thread = new_thread(api, workspace)
    scoped = api.post(
        "/api/v1/auth/token",
        {"email": user["email"], "password": user["password"], "abilities": ["tasks:read", "tasks:write"]},
        token="",
        ip="10.9.9.9",
    )
    assert scoped.status == 201, scoped.body
    token = scoped.json["data"]["token"]
    assert api.post(f"{threads_path(workspace)}/{thread['id']}/messages", {"content": "ok"}, token=token).status == 201
    refused = api.post(f"{threads_path(workspace)}/{thread['id']}/share", token=token)
    assert refused.status == 403
    assert refused.json["required_scope"] == "projects:write"


# --- access ----------------------------------------------------------------------------------


def test_non_member_gets_404_for_threads_shares_and_messages(api, user, workspace):
    api.token = user["token"]
    thread = new_thread(api, workspace)
    stranger = register_and_login(api)
    api.token = stranger["token"]
    path = f"{threads_path(workspace)}/{thread['id']}"
    assert api.get(threads_path(workspace)).status == 404
    assert api.get(path).status == 404
    assert api.post(f"{path}/messages", {"content": "x"}).status == 404
    assert api.post(f"{path}/share").status == 404
    assert api.get(messages_path(workspace)).status == 404
    assert api.post(messages_path(workspace), {"content": "x"}).status == 404


def test_viewer_reads_but_cannot_write(api, user, workspace):
    api.token = user["token"]
    thread = new_thread(api, workspace)
    viewer = register_and_login(api)
    add_member(workspace, viewer, "viewer")
    api.token = viewer["token"]
    assert api.get(f"{threads_path(workspace)}/{thread['id']}").status == 200
    refused = api.post(f"{threads_path(workspace)}/{thread['id']}/messages", {"content": "x"})
    assert refused.status == 403
    assert api.post(threads_path(workspace), {"title": "x"}).status == 403
    assert api.post(messages_path(workspace), {"content": "x"}).status == 403


# --- team messages ---------------------------------------------------------------------------


def test_team_messages_list_by_channel_newest_first_and_paginate(api, user, workspace):
    api.token = user["token"]
    for i in range(3):
        posted = api.post(messages_path(workspace), {"content": f"team {i}", "author": "manager"})
        assert posted.status == 201, posted.body
        assert posted.json["data"]["channel"] == "team"
        assert posted.json["data"]["mode"] == "team"
    direct = api.post(messages_path(workspace), {"content": "please prioritise login", "to": "builder"})
    assert direct.status == 201
    assert direct.json["data"]["channel"] == "builder"
    assert direct.json["data"]["mode"] == "direct"

    seen: list[str] = []
    cursor = None
    while True:
        listed = api.get(f"{messages_path(workspace)}?channel=team&limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert listed.status == 200
        seen += [m["content"] for m in listed.json["data"]]
        cursor = listed.json["meta"]["next_cursor"]
        if not cursor:
            break
    assert seen == ["team 2", "team 1", "team 0"]
    assert [m["content"] for m in api.get(f"{messages_path(workspace)}?channel=builder").json["data"]] == [
        "please prioritise login"
    ]
    team_only = api.get(f"{messages_path(workspace)}?mode=team").json["data"]
    assert [m["content"] for m in team_only] == ["team 2", "team 1", "team 0"]
    everything = api.get(messages_path(workspace)).json["data"]
    assert [m["content"] for m in everything] == ["please prioritise login", "team 2", "team 1", "team 0"]
    assert "message.posted" in audit_actions(workspace)


def test_tobans_message_body_from_to_content_is_accepted(api, user, workspace):
    api.token = user["token"]
    direct = api.post(
        messages_path(workspace), {"from": "user", "to": "manager", "content": "Please prioritize the login feature"}
    )
    assert direct.status == 201, direct.body
    message = direct.json["data"]
    assert (message["author"], message["to"], message["channel"], message["mode"]) == (
        "user",
        "manager",
        "manager",
        "direct",
    )
    team = api.post(messages_path(workspace), {"from": "manager", "to": "team", "content": "Sprint 2 starts now"})
    assert team.status == 201, team.body
    assert (team.json["data"]["channel"], team.json["data"]["mode"]) == ("team", "team")
    listed = api.get(f"{messages_path(workspace)}?channel=manager").json["data"]
    assert [m["content"] for m in listed] == ["Please prioritize the login feature"]
    # `from` and `author` name the same field: both at once, or an unknown field, are refused.
    assert api.post(messages_path(workspace), {"from": "a", "author": "b", "content": "x"}).status == 422
    assert api.post(messages_path(workspace), {"sender": "a", "content": "x"}).status == 422


def test_bad_team_message_input_is_a_problem(api, user, workspace):
    api.token = user["token"]
    assert api.post(messages_path(workspace), {"content": ""}).status == 422
    assert api.post(messages_path(workspace), {"content": "x", "mode": "direct"}).status == 422
    assert api.post(messages_path(workspace), {"content": "x", "channel": "bad#channel"}).status == 422
    assert api.get(f"{messages_path(workspace)}?channel=bad%23channel").status == 422
    assert api.get(messages_path(workspace)).json["data"] == []


def test_ids_that_were_never_minted_are_404_and_never_reach_the_table(api, user, workspace, monkeypatch):
    import pytest

    from agentplane.access import workspace_access
    from agentplane.auth.tokens import resolve_principal
    from agentplane.errors import NotFound
    from agentplane.logic import threads
    from agentplane.models.threads import ThreadMessageCreate, ThreadShareCreate, ThreadUpdate
    from tests.dynamo_limits import enforce_key_limits

    api.token = user["token"]
    real = api.post(threads_path(workspace), {"title": "Kept"}).json["data"]
    enforce_key_limits(monkeypatch)
    access = workspace_access(resolve_principal(user["token"]), workspace["id"], "projects:write")
    huge = "thr_" + "x" * 3000
    calls = [
        lambda: threads.get_thread(access, huge),
        lambda: threads.update_thread(access, huge, ThreadUpdate(title="x")),
        lambda: threads.delete_thread(access, huge),
        lambda: threads.post_message(access, huge, ThreadMessageCreate(content="x")),
        lambda: threads.list_messages(access, huge, limit=5, cursor=None),
        lambda: threads.create_share(access, huge, ThreadShareCreate()),
        lambda: threads.list_shares(access, huge, limit=5, cursor=None),
        lambda: threads.revoke_share(access, real["id"], "shr_" + "x" * 3000),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            call()
    for path in (f"{threads_path(workspace)}/thr_1", f"{threads_path(workspace)}/{huge}/messages"):
        assert api.get(path).status == 404, path
    assert api.delete(f"{threads_path(workspace)}/{real['id']}/share/shr_1").status == 404
    assert api.get(f"{threads_path(workspace)}/{real['id']}").json["data"]["title"] == "Kept"

"""Search: the stream indexer keeps a token index; the search route reads it, grouped by type.

Writes go through the real HTTP API; the table's stream is then pumped into the real indexer
function exactly as the local stack's stream consumer does it (filters, batches, item failures).
"""

from __future__ import annotations

from typing import Any

import pytest

from agentplane import raw_items
from devstack import aws, streams
from devstack.lambdas import Lambdas
from tests.conftest import register_and_login


@pytest.fixture
def indexer(stack: aws.Resources, lambdas: Lambdas) -> streams.Consumer:
    """The SearchIndexerFunction's stream subscription from template.yaml, positioned at the end."""
    [subscription] = [s for s in streams.subscriptions(stack) if s.function.logical_id == "SearchIndexerFunction"]
    consumer = streams.Consumer(subscription, lambdas, retry_delay=0)
    consumer.start_position()
    return consumer


def search_path(ws: dict) -> str:
    return f"/api/v1/workspaces/{ws['id']}/search"


def new_task(api, ws: dict, title: str, **fields: Any) -> dict:
    created = api.post(f"/api/v1/workspaces/{ws['id']}/tasks", {"title": title, **fields})
    assert created.status == 201, created.body
    return created.json["data"]


def find(api, ws: dict, query: str, **params: Any) -> dict:
    from urllib.parse import urlencode

    answer = api.get(f"{search_path(ws)}?{urlencode({'q': query, **params})}")
    assert answer.status == 200, answer.body
    return answer.json["data"]


def ids(found: dict, group: str) -> list[str]:
    return [hit["id"] for hit in found["results"][group]]


def put_item(ws: dict, entity: str, item_id: str, **fields: Any) -> None:
    """A stored item of a family whose routes are not under test here (messages, agents)."""
    from agentplane import keys

    key = keys.key(keys.ws_pk(ws["id"]), f"T#{item_id}")
    raw_items.put({**key, "entity": entity, "id": item_id, "workspace_id": ws["id"], **fields})


def put_thread(ws: dict, thread_id: str, **fields: Any) -> None:
    """A thread stored where the threads family keeps it (its messages are findable while it lives)."""
    from agentplane import keys

    item = {"entity": "thread", "id": thread_id, "workspace_id": ws["id"], "status": "active", **fields}
    raw_items.put({**keys.thread_key(ws["id"], thread_id), **item})


def new_thread(api, ws: dict, title: str, *messages: str) -> dict:
    threads = f"/api/v1/workspaces/{ws['id']}/threads"
    created = api.post(threads, {"title": title})
    assert created.status == 201, created.body
    for content in messages:
        posted = api.post(f"{threads}/{created.json['data']['id']}/messages", {"content": content})
        assert posted.status == 201, posted.body
    return created.json["data"]


# ---------------------------------------------------------------- finding things


def test_tasks_created_over_http_are_found_after_the_stream_is_indexed(api, user, workspace, indexer):
    api.token = user["token"]
    login = new_task(api, workspace, "Fix login redirect on Safari", description="Users bounce back to /signin")
    new_task(api, workspace, "Write release notes")
    assert find(api, workspace, "login")["total"] == 0  # not indexed until the stream is read
    assert indexer.poll() == 2
    found = find(api, workspace, "login")
    assert ids(found, "tasks") == [login["id"]]
    assert found["results"]["tasks"][0] == {
        "type": "task",
        "id": login["id"],
        "title": "Fix login redirect on Safari",
        "context": {},
    }
    assert found["terms"] == ["login"]
    assert found["total"] == 1
    assert all(found["results"][g] == [] for g in ("messages", "threads", "agents", "projects", "runs"))


def test_prefixes_case_and_description_words_match(api, user, workspace, indexer):
    api.token = user["token"]
    task = new_task(api, workspace, "Authentication timeout", description="Session tokens expire early")
    indexer.poll()
    for query in ("auth", "AUTHENTICATION", "Timeo", "tokens", "expire"):
        assert ids(find(api, workspace, query), "tasks") == [task["id"]], query
    assert ids(find(api, workspace, "au"), "tasks") == []  # two letters match whole words only


def test_every_word_of_the_query_must_match(api, user, workspace, indexer):
    api.token = user["token"]
    both = new_task(api, workspace, "Login crash on Android")
    page = new_task(api, workspace, "Login page copy")
    new_task(api, workspace, "Crash reporter upgrade")
    indexer.poll()
    assert ids(find(api, workspace, "login crash"), "tasks") == [both["id"]]
    assert ids(find(api, workspace, "crash LOGIN"), "tasks") == [both["id"]]
    assert ids(find(api, workspace, "login"), "tasks") == [page["id"], both["id"]]
    assert ids(find(api, workspace, "login nonexistentword"), "tasks") == []


def test_newest_hits_come_first_and_limit_bounds_each_group(api, user, workspace, indexer):
    api.token = user["token"]
    made = [new_task(api, workspace, f"Deploy step {i}")["id"] for i in range(4)]
    indexer.poll()
    assert ids(find(api, workspace, "deploy"), "tasks") == list(reversed(made))
    limited = find(api, workspace, "deploy", limit=2)
    assert ids(limited, "tasks") == list(reversed(made))[:2]


def test_an_id_finds_its_item(api, user, workspace, indexer):
    api.token = user["token"]
    task = new_task(api, workspace, "Anything")
    indexer.poll()
    assert ids(find(api, workspace, task["id"]), "tasks") == [task["id"]]


def test_hits_are_grouped_by_type(api, user, workspace, indexer):
    api.token = user["token"]
    task = new_task(api, workspace, "Billing webhook retries")
    put_item(workspace, "thread_message", "msg_a", content="the billing webhook failed twice", thread_id="thr_1")
    put_item(workspace, "team_message", "msg_b", content="who owns billing?", channel="general")
    put_thread(workspace, "thr_1", title="Billing incident")
    put_item(workspace, "agent", "agt_1", name="billing-bot", description="Watches billing")
    put_item(workspace, "project", "prj_1", name="billing-service")
    put_item(workspace, "run", "run_1", title="Fix billing webhook", project_id="prj_1", agent="billing-bot")
    put_item(workspace, "story", "sty_1", title="Billing epic")  # not a searchable kind
    indexer.poll()
    found = find(api, workspace, "billing")
    assert ids(found, "tasks") == [task["id"]]
    assert sorted(ids(found, "messages")) == ["msg_a", "msg_b"]
    assert ids(found, "threads") == ["thr_1"]
    assert ids(found, "agents") == ["agt_1"]
    assert ids(found, "projects") == ["prj_1"]
    assert ids(found, "runs") == ["run_1"]
    assert found["total"] == 7
    messages = {hit["id"]: hit for hit in found["results"]["messages"]}
    assert messages["msg_a"]["title"] == "the billing webhook failed twice"
    assert messages["msg_a"]["context"] == {"thread_id": "thr_1"}
    assert messages["msg_b"]["context"] == {"channel": "general"}
    assert found["results"]["runs"][0]["context"] == {"project_id": "prj_1", "agent": "billing-bot"}
    only = find(api, workspace, "billing", types="tasks,run")
    assert only["types"] == ["tasks", "runs"]
    assert (ids(only, "tasks"), ids(only, "runs"), only["results"]["messages"]) == ([task["id"]], ["run_1"], [])


# ---------------------------------------------------------------- keeping the index true


def test_a_soft_deleted_task_disappears_from_results(api, user, workspace, indexer):
    api.token = user["token"]
    task = new_task(api, workspace, "Rotate signing keys")
    kept = new_task(api, workspace, "Rotate logs")
    indexer.poll()
    assert sorted(ids(find(api, workspace, "rotate"), "tasks")) == sorted([task["id"], kept["id"]])
    assert api.delete(f"/api/v1/workspaces/{workspace['id']}/tasks/{task['id']}").status == 204
    indexer.poll()
    assert ids(find(api, workspace, "rotate"), "tasks") == [kept["id"]]
    assert ids(find(api, workspace, "signing"), "tasks") == []
    assert ids(find(api, workspace, task["id"]), "tasks") == []


def test_deleting_a_thread_takes_its_messages_out_of_search(api, user, workspace, indexer, monkeypatch):
    from agentplane.logic import search

    monkeypatch.setattr(search, "_PAGE", 2)  # the thread's messages are dropped page by page
    api.token = user["token"]
    doomed = new_thread(api, workspace, "Release plan", "rollback at noon", "rollback the schema", "rollback done")
    kept = new_thread(api, workspace, "Incident review", "rollback worked")
    indexer.poll()
    assert len(ids(find(api, workspace, "rollback"), "messages")) == 4
    assert ids(find(api, workspace, "release"), "threads") == [doomed["id"]]

    assert api.delete(f"/api/v1/workspaces/{workspace['id']}/threads/{doomed['id']}").status == 204
    indexer.poll()
    found = find(api, workspace, "rollback")
    assert [hit["context"]["thread_id"] for hit in found["results"]["messages"]] == [kept["id"]]
    assert all("schema" not in hit["title"] for hit in found["results"]["messages"])
    assert ids(find(api, workspace, "schema"), "messages") == []
    assert ids(find(api, workspace, "release"), "threads") == []


def test_a_message_indexed_after_its_thread_was_deleted_stays_out_of_search(api, user, workspace, indexer):
    """Records of the message and of its thread may reach the indexer in either order."""
    from agentplane import keys
    from agentplane.logic import search

    api.token = user["token"]
    thread = new_thread(api, workspace, "Launch", "launch checklist ready")
    assert api.delete(f"/api/v1/workspaces/{workspace['id']}/threads/{thread['id']}").status == 204
    [message] = raw_items.query(keys.thread_pk(workspace["id"], thread["id"]), sk_prefix="MSG#", limit=5).items
    search.apply_change(None, message)  # the message's record, processed after the thread's deletion
    assert raw_items.query(keys.search_token_pk(workspace["id"], "checklist"), limit=5).items == []
    assert ids(find(api, workspace, "checklist"), "messages") == []


def test_a_renamed_task_is_found_by_its_new_words_only(api, user, workspace, indexer):
    from agentplane import keys

    api.token = user["token"]
    task = new_task(api, workspace, "Migrate database")
    indexer.poll()
    renamed = api.patch(f"/api/v1/workspaces/{workspace['id']}/tasks/{task['id']}", {"title": "Upgrade postgres"})
    assert renamed.status == 200
    indexer.poll()
    assert ids(find(api, workspace, "migrate"), "tasks") == []
    found = find(api, workspace, "postgres")
    assert found["results"]["tasks"][0]["title"] == "Upgrade postgres"
    ws = workspace["id"]
    assert raw_items.get(keys.search_posting_key(ws, "migrate", "task", task["id"])) is None
    assert raw_items.query(keys.search_token_pk(ws, "database"), limit=5).items == []


def test_a_removed_item_takes_its_postings_with_it(api, user, workspace, indexer):
    from agentplane import keys

    put_item(workspace, "project", "prj_gone", name="legacy portal")
    indexer.poll()
    api.token = user["token"]
    assert ids(find(api, workspace, "legacy"), "projects") == ["prj_gone"]
    raw_items.delete(keys.key(keys.ws_pk(workspace["id"]), "T#prj_gone"))
    indexer.poll()
    assert ids(find(api, workspace, "legacy"), "projects") == []


def test_only_searchable_changes_reach_the_indexer_and_its_own_writes_do_not(api, user, workspace, indexer):
    api.token = user["token"]
    new_task(api, workspace, "One task")  # also writes an audit row, which the filter leaves out
    assert indexer.poll() == 1
    assert indexer.poll() == 0  # the postings it wrote are not fed back to it


def test_a_change_that_keeps_the_words_and_title_writes_no_postings():
    from agentplane.logic import search

    before = {"entity": "run", "id": "run_1", "workspace_id": "ws_1", "title": "Nightly build", "status": "queued"}
    after = {**before, "status": "running", "last_heartbeat_at": "2024-01-01T00:00:00.000Z"}
    change = search.index_change(before, after)
    assert (change.put, change.delete) == ([], [])
    replayed = search.index_change(None, before)
    assert replayed == search.index_change(None, before)  # the same image always gives the same postings


def test_an_item_has_at_most_forty_tokens_title_first():
    from agentplane.logic import search

    image = {
        "entity": "task",
        "id": "task_1",
        "workspace_id": "ws_1",
        "title": "Kubernetes autoscaling",
        "description": " ".join(f"word{i}" for i in range(100)),
    }
    tokens = search.item_tokens(image)
    assert len(tokens) == search.MAX_TOKENS
    assert tokens[:3] == ["task_1", "kubernetes", "autoscaling"]
    assert {"kub", "aut", "kubernete"} <= set(tokens)


def test_a_failing_record_is_reported_and_retried_without_losing_the_others(api, user, workspace, indexer, monkeypatch):
    from agentplane.logic import search

    real = search.apply_change
    failures = {"left": 1}

    def flaky(old: Any, new: Any) -> Any:
        if new and new.get("title") == "Flaky one" and failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("throttled")
        return real(old, new)

    monkeypatch.setattr(search, "apply_change", flaky)
    api.token = user["token"]
    steady = new_task(api, workspace, "Steady one")
    flaky_task = new_task(api, workspace, "Flaky one")
    indexer.poll()
    assert failures["left"] == 0
    assert ids(find(api, workspace, "one"), "tasks") == [flaky_task["id"], steady["id"]]


# ---------------------------------------------------------------- tenancy and access


def test_another_workspaces_items_never_appear(api, user, workspace, indexer):
    api.token = user["token"]
    mine = new_task(api, workspace, "Quarterly report")
    other = api.post("/api/v1/workspaces", {"name": "Other"})
    assert other.status == 201, other.body
    theirs = new_task(api, other.json["data"], "Quarterly report")
    indexer.poll()
    assert ids(find(api, workspace, "quarterly report"), "tasks") == [mine["id"]]
    assert ids(find(api, other.json["data"], "quarterly"), "tasks") == [theirs["id"]]
    assert ids(find(api, workspace, theirs["id"]), "tasks") == []


def test_non_member_gets_404(api, user, workspace, indexer):
    api.token = user["token"]
    new_task(api, workspace, "Secret plan")
    indexer.poll()
    stranger = register_and_login(api)
    assert api.get(f"{search_path(workspace)}?q=secret", token=stranger["token"]).status == 404


def test_groups_a_token_cannot_read_are_left_out_and_asking_for_one_is_403(api, user, workspace, indexer):
    api.token = user["token"]
    new_task(api, workspace, "Scoped search")
    indexer.poll()
    pat = api.post("/api/v1/me/personal-access-tokens", {"name": "cli", "scopes": ["tasks:read"]})
    assert pat.status == 201, pat.body
    token = pat.json["data"]["token"]
    found = api.get(f"{search_path(workspace)}?q=scoped", token=token)
    assert found.status == 200, found.body
    assert found.json["data"]["types"] == ["tasks", "messages", "threads"]
    assert len(found.json["data"]["results"]["tasks"]) == 1
    refused = api.get(f"{search_path(workspace)}?q=scoped&types=runs", token=token)
    assert refused.status == 403
    assert refused.json["required_scope"] == "runs:read"


def test_bad_queries_are_problems(api, user, workspace):
    api.token = user["token"]
    assert api.get(search_path(workspace)).status == 422
    assert api.get(f"{search_path(workspace)}?q=").status == 422
    assert api.get(f"{search_path(workspace)}?q={'x' * 101}").status == 422
    unknown = api.get(f"{search_path(workspace)}?q=a&types=tasks,widgets")
    assert unknown.status == 422
    assert unknown.header("content-type") == "application/problem+json"
    assert unknown.json["errors"][0]["field"] == "types"
    assert api.get(f"{search_path(workspace)}?q=x&limit=0").status == 422
    assert api.get(f"{search_path(workspace)}?q=x&limit=51").status == 422
    nothing = find(api, workspace, "a ! ?")
    assert (nothing["terms"], nothing["total"]) == ([], 0)

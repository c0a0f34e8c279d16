"""Realtime: the WebSocket API (connect, subscribe, replay) and the stream fan-out to subscribers.

Clients speak real WebSocket to the local gateway built from template.yaml's WEBSOCKET API, whose
routes invoke the real RealtimeFunction. Run events and notifications are written through the HTTP
API; the table's stream is then pumped into the real RealtimeFanoutFunction exactly as the local
stack's stream consumer does it (filters, batches, item failures).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentplane import keys, raw_items
from agentplane.logic import realtime
from agentplane.raw_items import Update
from devstack import aws, streams, template, websocket
from devstack.lambdas import Lambdas
from tests.conftest import Client
from tests.conftest import register_and_login as _register_and_login

TIMEOUT = 5.0


def wait_for(check: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def gateway(executions: aws.Resources, lambdas: Lambdas) -> Iterator[websocket.WebSocketGateway]:
    """template.yaml's WebSocket API on a free local port, its routes calling the real functions."""
    _reset_realtime()
    [api] = template.websocket_apis()
    served = websocket.WebSocketGateway(api, lambdas, "127.0.0.1", 0)
    served.start()
    websocket.install_management_api()
    try:
        yield served
    finally:
        served.stop()
        websocket.uninstall_management_api()
        _reset_realtime()


def _reset_realtime() -> None:
    """Posts go to this gateway, through a client built for it, to the endpoint of this stack."""
    from agentplane import clients
    from agentplane.settings import get_settings

    clients.reset()
    get_settings.cache_clear()


@pytest.fixture
def fanout(stack: aws.Resources, lambdas: Lambdas) -> streams.Consumer:
    """The RealtimeFanoutFunction's stream subscription from template.yaml, positioned at the end."""
    [subscription] = [s for s in streams.subscriptions(stack) if s.function.logical_id == "RealtimeFanoutFunction"]
    consumer = streams.Consumer(subscription, lambdas, retry_delay=0)
    consumer.start_position()
    return consumer


class Socket:
    """A client connection; remembers its connection id (as the gateway assigned it)."""

    def __init__(self, gateway: websocket.WebSocketGateway, token: str) -> None:
        from websockets.sync.client import connect

        before = set(websocket.registry.ids())
        self.client = connect(f"{gateway.url}/?token={token}", open_timeout=TIMEOUT)
        self.connection_id: str = wait_for(lambda: next(iter(set(websocket.registry.ids()) - before), None))

    def send(self, message: Any) -> None:
        self.client.send(message if isinstance(message, str) else json.dumps(message))

    def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        return json.loads(self.client.recv(timeout=timeout))

    def recv_all(self, count: int) -> list[dict[str, Any]]:
        return [self.recv() for _ in range(count)]

    def silent(self, seconds: float = 0.3) -> bool:
        """Nothing more arrives."""
        try:
            self.client.recv(timeout=seconds)
        except TimeoutError:
            return True
        return False

    def subscribe(self, ws: str, channel: str, **extra: Any) -> dict[str, Any]:
        self.send({"action": "subscribe", "channel": channel, "workspace_id": ws, **extra})
        return self.recv()

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def sockets(gateway: websocket.WebSocketGateway) -> Iterator[Callable[[str], Socket]]:
    opened: list[Socket] = []

    def open_socket(token: str) -> Socket:
        opened.append(Socket(gateway, token))
        return opened[-1]

    yield open_socket
    for socket in opened:
        socket.close()


def register_and_login(api: Client) -> dict[str, Any]:
    # A name of its own: the `user` fixture numbers its accounts with a counter this module cannot see.
    return _register_and_login(api, name=f"rt{secrets.token_hex(6)}")


def runs_path(ws: dict[str, Any]) -> str:
    return f"/api/v1/workspaces/{ws['id']}/runs"


def new_run(api: Client, ws: dict[str, Any], token: str) -> dict[str, Any]:
    created = api.post(runs_path(ws), {"title": "Live run", "prompt": "Stream me", "agent": "builder"}, token=token)
    assert created.status == 201, created.body
    return created.json["data"]


def started_run(api: Client, ws: dict[str, Any], token: str) -> dict[str, Any]:
    """A queued run: event 1 is its status change to queued."""
    run = new_run(api, ws, token)
    assert api.post(f"{runs_path(ws)}/{run['id']}/start", token=token).status == 200
    return run


def append(api: Client, ws: dict[str, Any], run: dict[str, Any], token: str, *messages: str) -> list[int]:
    events = [{"event_type": "log", "data": {"line": message}} for message in messages]
    appended = api.post(f"{runs_path(ws)}/{run['id']}/events", {"events": events}, token=token)
    assert appended.status in (200, 201), appended.body
    return list(appended.json["data"]["ids"])


def add_member(api: Client, ws: dict[str, Any], owner: dict[str, Any], role: str = "member") -> dict[str, Any]:
    person = register_and_login(api)
    added = api.post(
        f"/api/v1/workspaces/{ws['id']}/members", {"user_id": person["user"]["id"], "role": role}, token=owner["token"]
    )
    assert added.status == 201, added.body
    return person


def subscribers(ws: dict[str, Any], channel: str) -> list[str]:
    page = raw_items.query(keys.realtime_channel_pk(ws["id"], channel), consistent=True)
    return [item["connection_id"] for item in page.items]


def connection_records(connection_id: str) -> list[dict[str, Any]]:
    return raw_items.query(keys.realtime_connection_pk(connection_id), consistent=True).items


# ---------------------------------------------------------------- connecting


def test_connect_with_a_valid_token_is_accepted_and_remembered_for_two_hours(user, sockets):
    socket = sockets(user["token"])
    [record] = connection_records(socket.connection_id)
    assert record["user_id"] == user["user"]["id"]
    assert record["kind"] == "session"
    assert 0 < record["ttl"] - time.time() <= realtime.CONNECTION_TTL_SECONDS
    assert user["token"] not in json.dumps(record)  # the secret itself is never stored


@pytest.mark.parametrize("query", ["", "?token=", "?token=ap_not_a_real_token"])
def test_connect_without_a_valid_token_is_refused_with_401(gateway, user, query):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with pytest.raises(InvalidStatus) as refused:
        connect(f"{gateway.url}/{query}", open_timeout=TIMEOUT)
    assert refused.value.response.status_code == 401
    problem = json.loads(refused.value.response.body)
    assert problem["status"] == 401 and problem["type"].endswith("/unauthorized")
    assert websocket.registry.ids() == []


def test_connect_with_a_logged_out_session_is_refused(api, gateway, user):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    assert api.post("/api/v1/auth/logout", {}, token=user["token"]).status in (200, 204)
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{gateway.url}/?token={user['token']}", open_timeout=TIMEOUT)
    assert refused.value.response.status_code == 401


def test_ping_is_answered_with_pong(user, sockets):
    socket = sockets(user["token"])
    socket.send({"action": "ping"})
    assert socket.recv() == {"type": "pong"}


@pytest.mark.parametrize(
    ("message", "status"),
    [
        ("not json", 400),
        ({"action": "dance"}, 422),
        ({"action": "subscribe", "channel": "runs/../../etc", "workspace_id": "ws_x"}, 422),
        ({"action": "subscribe", "channel": "workspace"}, 422),
        ({"action": "ping", "extra": True}, 422),
        ({"action": "subscribe", "channel": "workspace", "workspace_id": "ws_abc", "since": -1}, 422),
    ],
)
def test_a_bad_message_gets_an_error_and_the_connection_stays_usable(user, sockets, message, status):
    socket = sockets(user["token"])
    socket.send(message)
    error = socket.recv()
    assert error["type"] == "error"
    assert error["status"] == status
    if status == 422:
        assert error["errors"]
    socket.send({"action": "ping"})
    assert socket.recv() == {"type": "pong"}


def test_a_binary_message_is_refused(user, sockets):
    socket = sockets(user["token"])
    socket.client.send(b'{"action": "ping"}')
    error = socket.recv()
    assert (error["type"], error["status"]) == ("error", 400)


# ---------------------------------------------------------------- subscribing


def test_member_subscribes_to_a_run_and_is_told_where_live_events_start(api, user, workspace, sockets):
    run = started_run(api, workspace, user["token"])
    socket = sockets(user["token"])
    ack = socket.subscribe(workspace["id"], f"runs/{run['id']}")
    assert ack == {"type": "subscribed", "channel": f"runs/{run['id']}", "workspace_id": workspace["id"], "since": 1}
    assert subscribers(workspace, f"runs/{run['id']}") == [socket.connection_id]
    assert socket.silent()  # no `since`: nothing is replayed


def test_a_run_channel_named_as_the_contract_writes_it_finds_its_workspace(api, user, workspace, sockets):
    other = api.post("/api/v1/workspaces", {"name": "Second"}, token=user["token"]).json["data"]
    run = started_run(api, workspace, user["token"])
    socket = sockets(user["token"])
    socket.send({"action": "subscribe", "channel": f"runs/{run['id']}"})
    ack = socket.recv()
    assert ack["type"] == "subscribed" and ack["workspace_id"] == workspace["id"], ack
    assert subscribers(workspace, f"runs/{run['id']}") == [socket.connection_id]
    # With two workspaces, the workspace channel needs to be told which one.
    socket.send({"action": "subscribe", "channel": "workspace"})
    error = socket.recv()
    assert error["type"] == "error" and error["status"] == 422 and "workspace_id" in error["detail"]
    assert subscribers(other, "workspace") == []
    # A stranger's run id is not found among their own workspaces.
    stranger = sockets(register_and_login(api)["token"])
    stranger.send({"action": "subscribe", "channel": f"runs/{run['id']}"})
    assert stranger.recv()["status"] == 404


def test_non_member_subscription_is_refused_as_not_found_and_nothing_is_stored(api, user, workspace, sockets):
    run = started_run(api, workspace, user["token"])
    stranger = register_and_login(api)
    socket = sockets(stranger["token"])
    for channel in (f"runs/{run['id']}", "workspace", "notifications"):
        error = socket.subscribe(workspace["id"], channel)
        assert error["type"] == "error"
        assert error["status"] == 404
        assert error["channel"] == channel and error["action"] == "subscribe"
        assert subscribers(workspace, channel) == []
    assert subscribers(workspace, f"notifications/{stranger['user']['id']}") == []
    assert [r[keys.SK] for r in connection_records(socket.connection_id)] == ["CONNECTION"]


def test_subscribing_to_a_run_that_does_not_exist_is_404(user, workspace, sockets):
    socket = sockets(user["token"])
    error = socket.subscribe(workspace["id"], "runs/run_0000000000nothere0000000000")
    assert error["status"] == 404
    assert subscribers(workspace, "runs/run_0000000000nothere0000000000") == []


def test_since_is_refused_on_channels_without_event_ids(user, workspace, sockets):
    socket = sockets(user["token"])
    error = socket.subscribe(workspace["id"], "workspace", since=3)
    assert error["status"] == 400
    assert subscribers(workspace, "workspace") == []


def test_a_token_without_runs_read_cannot_follow_runs_but_gets_its_notifications(api, user, workspace, sockets):
    created = api.post(
        "/api/v1/me/personal-access-tokens", {"name": "tasks only", "scopes": ["tasks:read"]}, token=user["token"]
    )
    assert created.status == 201, created.body
    socket = sockets(created.json["data"]["token"])
    error = socket.subscribe(workspace["id"], "workspace")
    assert error["status"] == 403
    assert error["required_scope"] == "runs:read"
    assert socket.subscribe(workspace["id"], "notifications")["type"] == "subscribed"


def test_a_token_revoked_after_connecting_can_no_longer_subscribe(api, user, workspace, sockets):
    socket = sockets(user["token"])
    assert api.post("/api/v1/auth/logout", {}, token=user["token"]).status in (200, 204)
    error = socket.subscribe(workspace["id"], "workspace")
    assert error["status"] == 401
    assert subscribers(workspace, "workspace") == []


def test_a_member_removed_after_connecting_can_no_longer_subscribe(api, user, workspace, sockets):
    member = add_member(api, workspace, user)
    socket = sockets(member["token"])
    assert socket.subscribe(workspace["id"], "workspace")["type"] == "subscribed"
    removed = api.delete(f"/api/v1/workspaces/{workspace['id']}/members/{member['user']['id']}", token=user["token"])
    assert removed.status == 204, removed.body
    assert socket.subscribe(workspace["id"], "notifications")["status"] == 404


def test_subscribing_twice_keeps_one_subscription(api, user, workspace, sockets):
    socket = sockets(user["token"])
    assert socket.subscribe(workspace["id"], "workspace")["type"] == "subscribed"
    assert socket.subscribe(workspace["id"], "workspace")["type"] == "subscribed"
    assert subscribers(workspace, "workspace") == [socket.connection_id]
    [connection] = [r for r in connection_records(socket.connection_id) if r[keys.SK] == "CONNECTION"]
    assert connection["subscription_count"] == 1


def test_a_connection_holds_a_bounded_number_of_subscriptions(api, user, workspace, sockets, monkeypatch):
    monkeypatch.setattr(realtime.connections, "MAX_SUBSCRIPTIONS_PER_CONNECTION", 2)
    runs = [started_run(api, workspace, user["token"]) for _ in range(3)]
    socket = sockets(user["token"])
    assert socket.subscribe(workspace["id"], f"runs/{runs[0]['id']}")["type"] == "subscribed"
    assert socket.subscribe(workspace["id"], f"runs/{runs[1]['id']}")["type"] == "subscribed"
    error = socket.subscribe(workspace["id"], f"runs/{runs[2]['id']}")
    assert error["status"] == 409
    assert subscribers(workspace, f"runs/{runs[2]['id']}") == []
    socket.send({"action": "unsubscribe", "channel": f"runs/{runs[0]['id']}", "workspace_id": workspace["id"]})
    assert socket.recv()["type"] == "unsubscribed"
    assert socket.subscribe(workspace["id"], f"runs/{runs[2]['id']}")["type"] == "subscribed"


# ---------------------------------------------------------------- fan-out of run events


def test_stored_run_events_reach_every_subscriber_of_the_run_in_order(api, user, workspace, sockets, fanout):
    run = started_run(api, workspace, user["token"])
    member = add_member(api, workspace, user)
    owner_tab, owner_phone = sockets(user["token"]), sockets(user["token"])
    member_tab = sockets(member["token"])
    other_run = started_run(api, workspace, user["token"])
    bystander = sockets(member["token"])
    for socket in (owner_tab, owner_phone, member_tab):
        assert socket.subscribe(workspace["id"], f"runs/{run['id']}")["since"] == 1
    bystander.subscribe(workspace["id"], f"runs/{other_run['id']}")
    fanout.poll()  # the other run's start, written before anyone listened to it

    ids = append(api, workspace, run, user["token"], "cloning", "building", "testing")
    assert fanout.poll() == 1  # one stored batch of three events

    for socket in (owner_tab, owner_phone, member_tab):
        pushes = socket.recv_all(3)
        assert [p["id"] for p in pushes] == ids == [2, 3, 4]
        assert [p["data"]["data"]["line"] for p in pushes] == ["cloning", "building", "testing"]
        assert {p["channel"] for p in pushes} == {f"runs/{run['id']}"}
        assert {p["event"] for p in pushes} == {"log"}
        assert set(pushes[0]) == {"channel", "id", "event", "data"}
        assert pushes[0]["data"]["run_id"] == run["id"] and pushes[0]["data"]["event_type"] == "log"
        assert socket.silent()
    assert bystander.silent()


def test_status_changes_of_a_run_are_pushed_as_they_happen(api, user, workspace, sockets, fanout):
    run = started_run(api, workspace, user["token"])
    socket = sockets(user["token"])
    socket.subscribe(workspace["id"], f"runs/{run['id']}")
    assert api.post(f"{runs_path(workspace)}/{run['id']}/claim", {"worker_id": "w1"}, token=user["token"]).status == 200
    assert api.post(f"{runs_path(workspace)}/{run['id']}/pause", token=user["token"]).status == 200
    fanout.poll()
    pushes = socket.recv_all(2)
    assert [(p["id"], p["event"]) for p in pushes] == [(2, "status_changed"), (3, "status_changed")]
    assert [(p["data"]["data"]["from"], p["data"]["data"]["to"]) for p in pushes] == [
        ("queued", "running"),
        ("running", "paused"),
    ]


def test_the_workspace_channel_gets_every_runs_events_once(api, user, workspace, sockets, fanout):
    first, second = started_run(api, workspace, user["token"]), started_run(api, workspace, user["token"])
    fanout.poll()  # their starts, streamed before anyone listened
    everything = sockets(user["token"])
    both = sockets(user["token"])
    everything.subscribe(workspace["id"], "workspace")
    both.subscribe(workspace["id"], "workspace")
    both.subscribe(workspace["id"], f"runs/{first['id']}")
    append(api, workspace, first, user["token"], "one")
    append(api, workspace, second, user["token"], "two")
    fanout.poll()
    got = everything.recv_all(2)
    assert sorted((p["channel"], p["id"]) for p in got) == sorted(
        [(f"runs/{first['id']}", 2), (f"runs/{second['id']}", 2)]
    )
    # Subscribed to a run and to the whole workspace, a connection still gets each event once.
    got = both.recv_all(2)
    assert sorted(p["channel"] for p in got) == sorted([f"runs/{first['id']}", f"runs/{second['id']}"])
    assert everything.silent() and both.silent()


def test_another_workspaces_events_never_arrive(api, user, workspace, sockets, fanout):
    other_owner = register_and_login(api)
    created = api.post("/api/v1/workspaces", {"name": "Elsewhere"}, token=other_owner["token"])
    assert created.status == 201, created.body
    elsewhere = created.json["data"]
    socket = sockets(user["token"])
    socket.subscribe(workspace["id"], "workspace")
    run = started_run(api, elsewhere, other_owner["token"])
    append(api, elsewhere, run, other_owner["token"], "secret plans")
    fanout.poll()
    assert socket.silent()


def test_unsubscribed_channels_stop_pushing(api, user, workspace, sockets, fanout):
    run = started_run(api, workspace, user["token"])
    socket = sockets(user["token"])
    socket.subscribe(workspace["id"], f"runs/{run['id']}")
    socket.send({"action": "unsubscribe", "channel": f"runs/{run['id']}", "workspace_id": workspace["id"]})
    assert socket.recv() == {"type": "unsubscribed", "channel": f"runs/{run['id']}", "workspace_id": workspace["id"]}
    assert subscribers(workspace, f"runs/{run['id']}") == []
    append(api, workspace, run, user["token"], "unheard")
    fanout.poll()
    assert socket.silent()
    socket.send({"action": "unsubscribe", "channel": f"runs/{run['id']}", "workspace_id": workspace["id"]})
    assert socket.recv()["type"] == "unsubscribed"  # unsubscribing again is harmless


def test_a_failed_post_is_retried_without_repeating_what_was_sent(api, user, workspace, sockets, fanout, monkeypatch):
    run = started_run(api, workspace, user["token"])
    flaky, steady = sockets(user["token"]), sockets(user["token"])
    flaky.subscribe(workspace["id"], f"runs/{run['id']}")
    steady.subscribe(workspace["id"], f"runs/{run['id']}")
    original = realtime.Poster.send
    failures = []

    def throttled_once(self: realtime.Poster, connection_id: str, message: Any) -> None:
        if connection_id == flaky.connection_id and message.get("id") == 3 and not failures:
            failures.append(message["id"])
            raise realtime.DeliveryFailed("throttled")
        original(self, connection_id, message)

    monkeypatch.setattr(realtime.Poster, "send", throttled_once)
    append(api, workspace, run, user["token"], "a", "b", "c")
    fanout.poll()  # the record fails once (reported back), then its retry succeeds
    assert failures == [3]
    assert [p["id"] for p in flaky.recv_all(3)] == [2, 3, 4]
    assert [p["id"] for p in steady.recv_all(3)] == [2, 3, 4]
    assert flaky.silent() and steady.silent()


# ---------------------------------------------------------------- since replay


def test_since_replays_stored_events_before_live_ones_and_never_repeats_one(api, user, workspace, sockets, fanout):
    run = started_run(api, workspace, user["token"])
    append(api, workspace, run, user["token"], "a", "b")
    append(api, workspace, run, user["token"], "c")  # events 1..4 stored, their stream not read yet
    socket = sockets(user["token"])
    ack = socket.subscribe(workspace["id"], f"runs/{run['id']}", since=1)
    assert ack["since"] == 1
    assert [p["id"] for p in socket.recv_all(3)] == [2, 3, 4]
    assert socket.recv() == {
        "type": "replayed",
        "channel": f"runs/{run['id']}",
        "workspace_id": workspace["id"],
        "through": 4,
        "complete": True,
    }
    fanout.poll()  # the stream now carries 1..4 again: the subscriber has them already
    assert socket.silent()
    append(api, workspace, run, user["token"], "d")
    fanout.poll()
    assert [p["id"] for p in socket.recv_all(1)] == [5]
    assert socket.silent()


def test_since_zero_replays_everything_and_since_past_the_end_replays_nothing(api, user, workspace, sockets, fanout):
    run = started_run(api, workspace, user["token"])
    append(api, workspace, run, user["token"], "a")
    fanout.poll()
    everything, nothing = sockets(user["token"]), sockets(user["token"])
    everything.subscribe(workspace["id"], f"runs/{run['id']}", since=0)
    assert [(p["id"], p["event"]) for p in everything.recv_all(2)] == [(1, "status_changed"), (2, "log")]
    assert everything.recv()["type"] == "replayed"
    assert nothing.subscribe(workspace["id"], f"runs/{run['id']}", since=99)["since"] == 2
    assert nothing.recv()["through"] == 2
    assert nothing.silent()
    append(api, workspace, run, user["token"], "b")
    fanout.poll()
    assert everything.recv()["id"] == 3 and nothing.recv()["id"] == 3


def test_subscribing_again_with_since_replays_from_there(api, user, workspace, sockets, fanout):
    run = started_run(api, workspace, user["token"])
    append(api, workspace, run, user["token"], "a", "b")
    socket = sockets(user["token"])
    socket.subscribe(workspace["id"], f"runs/{run['id']}")
    assert socket.subscribe(workspace["id"], f"runs/{run['id']}", since=1)["since"] == 1
    assert [p["id"] for p in socket.recv_all(2)] == [2, 3]
    assert socket.recv()["type"] == "replayed"


def test_a_replay_cut_short_says_so_and_continues_on_request(api, user, workspace, sockets, fanout, monkeypatch):
    monkeypatch.setattr(realtime.subscriptions, "MAX_REPLAY_EVENTS", 2)
    run = started_run(api, workspace, user["token"])
    append(api, workspace, run, user["token"], "a", "b", "c")
    fanout.poll()
    socket = sockets(user["token"])
    socket.subscribe(workspace["id"], f"runs/{run['id']}", since=0)
    assert [p["id"] for p in socket.recv_all(2)] == [1, 2]
    assert socket.recv() | {"channel": None, "workspace_id": None} == {
        "type": "replayed",
        "channel": None,
        "workspace_id": None,
        "through": 2,
        "complete": False,
    }
    socket.subscribe(workspace["id"], f"runs/{run['id']}", since=2)
    assert [p["id"] for p in socket.recv_all(2)] == [3, 4]
    socket.recv()  # replayed
    assert socket.silent()


def test_a_replay_cut_short_is_completed_in_order_by_the_next_fan_out(
    api, user, workspace, sockets, fanout, monkeypatch
):
    monkeypatch.setattr(realtime.subscriptions, "MAX_REPLAY_EVENTS", 2)
    run = started_run(api, workspace, user["token"])
    append(api, workspace, run, user["token"], "a", "b", "c")
    fanout.poll()
    socket = sockets(user["token"])
    socket.subscribe(workspace["id"], f"runs/{run['id']}", since=0)
    assert [p["id"] for p in socket.recv_all(2)] == [1, 2]
    assert socket.recv()["complete"] is False
    assert socket.silent()
    append(api, workspace, run, user["token"], "d")
    fanout.poll()
    assert [p["id"] for p in socket.recv_all(3)] == [3, 4, 5]
    assert socket.silent()


class RecordingPoster:
    """Stands in for the management API: writes down what would have been posted."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    def send(self, connection_id: str, message: Any) -> None:
        time.sleep(0.001)  # let concurrent deliverers interleave
        self.sent.append((connection_id, message["id"]))


def test_concurrent_deliverers_send_each_event_to_a_subscriber_exactly_once(api, user, workspace, sockets):
    run = started_run(api, workspace, user["token"])
    append(api, workspace, run, user["token"], *[f"line {n}" for n in range(40)])
    socket = sockets(user["token"])
    socket.subscribe(workspace["id"], f"runs/{run['id']}")
    raw_items.update(
        keys.realtime_subscriber_key(workspace["id"], f"runs/{run['id']}", socket.connection_id),
        Update(set={"delivered_through": 0}),
    )
    poster = RecordingPoster()
    barrier = threading.Barrier(4)

    def deliver() -> None:
        barrier.wait()
        realtime.delivery.catch_up_run(poster, workspace["id"], run["id"], socket.connection_id, 0, max_events=1000)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(event_id for _, event_id in poster.sent) == list(range(1, 42))


# ---------------------------------------------------------------- gone connections and disconnects


def test_a_gone_connection_is_cleaned_up_and_the_others_still_get_their_pushes(api, user, workspace, sockets, fanout):
    run = started_run(api, workspace, user["token"])
    staying, leaving = sockets(user["token"]), sockets(user["token"])
    for socket in (staying, leaving):
        socket.subscribe(workspace["id"], f"runs/{run['id']}")
        socket.subscribe(workspace["id"], "notifications")
    # The gateway drops the connection without a $disconnect (as when that call is lost on AWS).
    websocket.registry.remove(leaving.connection_id)
    append(api, workspace, run, user["token"], "still here?")
    fanout.poll()
    assert staying.recv()["id"] == 2
    assert connection_records(leaving.connection_id) == []
    assert subscribers(workspace, f"runs/{run['id']}") == [staying.connection_id]
    assert subscribers(workspace, f"notifications/{user['user']['id']}") == [staying.connection_id]


def test_disconnecting_removes_the_connection_and_its_subscriptions(api, user, workspace, sockets):
    run = started_run(api, workspace, user["token"])
    socket = sockets(user["token"])
    socket.subscribe(workspace["id"], f"runs/{run['id']}")
    socket.subscribe(workspace["id"], "workspace")
    socket.close()
    wait_for(lambda: connection_records(socket.connection_id) == [])
    assert subscribers(workspace, f"runs/{run['id']}") == []
    assert subscribers(workspace, "workspace") == []


# ---------------------------------------------------------------- access at push time


def messages_until_silent(socket: Socket) -> list[dict[str, Any]]:
    got = []
    while True:
        try:
            got.append(socket.recv(timeout=0.5))
        except TimeoutError:
            return got


def test_a_member_removed_after_subscribing_gets_no_more_pushes(api, user, workspace, sockets, fanout):
    run = started_run(api, workspace, user["token"])
    member = add_member(api, workspace, user)
    removed_socket, owner_socket = sockets(member["token"]), sockets(user["token"])
    for channel in (f"runs/{run['id']}", "workspace", "notifications"):
        assert removed_socket.subscribe(workspace["id"], channel)["type"] == "subscribed"
    owner_socket.subscribe(workspace["id"], f"runs/{run['id']}")
    fanout.poll()
    gone = api.delete(f"/api/v1/workspaces/{workspace['id']}/members/{member['user']['id']}", token=user["token"])
    assert gone.status == 204, gone.body

    append(api, workspace, run, user["token"], "after the removal")
    fanout.poll()
    assert [p["data"]["data"]["line"] for p in owner_socket.recv_all(1)] == ["after the removal"]
    told = messages_until_silent(removed_socket)
    assert told and all(m.get("type") == "unsubscribed" for m in told)  # told, and nothing pushed
    assert {m["channel"] for m in told} <= {f"runs/{run['id']}", "workspace"}
    assert removed_socket.connection_id not in subscribers(workspace, f"runs/{run['id']}")
    assert removed_socket.connection_id not in subscribers(workspace, "workspace")
    assert subscribers(workspace, f"runs/{run['id']}") == [owner_socket.connection_id]


def test_a_token_revoked_after_subscribing_gets_no_more_pushes(api, user, workspace, sockets, fanout):
    run = started_run(api, workspace, user["token"])
    member = add_member(api, workspace, user)
    socket = sockets(member["token"])
    socket.subscribe(workspace["id"], f"runs/{run['id']}")
    socket.subscribe(workspace["id"], "notifications")
    fanout.poll()
    assert api.post("/api/v1/auth/logout", {}, token=member["token"]).status in (200, 204)

    append(api, workspace, run, user["token"], "not for a revoked token")
    api.post(
        f"/api/v1/workspaces/{workspace['id']}/notifications",
        {"title": "Not for a revoked token", "user_id": member["user"]["id"]},
        token=user["token"],
    )
    fanout.poll()
    told = messages_until_silent(socket)
    assert [m.get("type") for m in told] == ["unsubscribed"]  # nothing pushed; the first refusal ends it all
    assert connection_records(socket.connection_id) == []
    assert subscribers(workspace, f"runs/{run['id']}") == []


def test_the_access_check_is_made_once_per_connection_per_batch(api, user, workspace, sockets, fanout, monkeypatch):
    run = started_run(api, workspace, user["token"])
    socket = sockets(user["token"])
    socket.subscribe(workspace["id"], f"runs/{run['id']}")
    fanout.poll()
    checks: list[str] = []
    gate = realtime.gate
    check = gate.push_refusal
    monkeypatch.setattr(gate, "push_refusal", lambda cid, ws, scope: checks.append(cid) or check(cid, ws, scope))
    for line in ("one", "two", "three"):
        append(api, workspace, run, user["token"], line)
    assert fanout.poll() == 3  # three stored batches, one batch of stream records
    assert [p["data"]["data"]["line"] for p in socket.recv_all(3)] == ["one", "two", "three"]
    assert checks == [socket.connection_id]


# ---------------------------------------------------------------- notifications


def test_notifications_reach_only_the_member_they_are_for(api, user, workspace, sockets, fanout):
    member = add_member(api, workspace, user)
    owner_socket, member_socket = sockets(user["token"]), sockets(member["token"])
    owner_socket.subscribe(workspace["id"], "notifications")
    member_socket.subscribe(workspace["id"], "notifications")
    fanout.poll()
    sent = api.post(
        f"/api/v1/workspaces/{workspace['id']}/notifications",
        {"title": "Review needed", "type": "needs_input", "user_id": member["user"]["id"]},
        token=user["token"],
    )
    assert sent.status == 201, sent.body
    fanout.poll()
    push = member_socket.recv()
    assert push["channel"] == "notifications"
    assert push["event"] == "needs_input"
    assert push["id"] == sent.json["data"]["id"]
    assert push["data"]["title"] == "Review needed"
    assert push["data"]["user_id"] == member["user"]["id"]
    assert push["data"]["read"] is False
    assert owner_socket.silent()


def test_a_notification_to_every_member_reaches_each_of_them(api, user, workspace, sockets, fanout):
    member = add_member(api, workspace, user)
    owner_socket, member_socket = sockets(user["token"]), sockets(member["token"])
    owner_socket.subscribe(workspace["id"], "notifications")
    member_socket.subscribe(workspace["id"], "notifications")
    sent = api.post(
        f"/api/v1/workspaces/{workspace['id']}/notifications",
        {"title": "Deploy at noon", "all_members": True},
        token=user["token"],
    )
    assert sent.status == 201, sent.body
    fanout.poll()
    assert owner_socket.recv()["data"]["title"] == "Deploy at noon"
    assert member_socket.recv()["data"]["title"] == "Deploy at noon"


def notify_self(api: Client, ws: dict[str, Any], token: str, title: str) -> str:
    sent = api.post(f"/api/v1/workspaces/{ws['id']}/notifications", {"title": title}, token=token)
    assert sent.status == 201, sent.body
    return str(sent.json["data"]["id"])


def test_notifications_since_replays_the_later_ones_then_live_ones_each_once(api, user, workspace, sockets, fanout):
    first, second, third = (notify_self(api, workspace, user["token"], t) for t in ("one", "two", "three"))
    socket = sockets(user["token"])
    subscribed = socket.subscribe(workspace["id"], "notifications", since=first)
    assert subscribed["since"] == first
    replayed = socket.recv_all(3)
    assert [(m.get("id"), m["data"]["title"]) for m in replayed[:2]] == [(second, "two"), (third, "three")]
    assert replayed[2] == {
        "type": "replayed", "channel": "notifications", "workspace_id": workspace["id"], "through": third,
        "complete": True,
    }  # fmt: skip
    fourth = notify_self(api, workspace, user["token"], "four")
    fanout.poll()  # the stream carries all four: only the one not replayed goes out
    assert [m["id"] for m in socket.recv_all(1)] == [fourth]
    assert socket.silent()


def test_notifications_without_since_start_after_the_newest_one(api, user, workspace, sockets, fanout):
    newest = notify_self(api, workspace, user["token"], "before subscribing")
    socket = sockets(user["token"])
    assert socket.subscribe(workspace["id"], "notifications")["since"] == newest
    later = notify_self(api, workspace, user["token"], "after subscribing")
    fanout.poll()
    assert [m["id"] for m in socket.recv_all(1)] == [later]
    assert socket.silent()


def test_since_must_match_the_channels_ids(api, user, workspace, sockets):
    run = started_run(api, workspace, user["token"])
    socket = sockets(user["token"])
    assert socket.subscribe(workspace["id"], "notifications", since=3)["status"] == 400
    assert socket.subscribe(workspace["id"], f"runs/{run['id']}", since="ntf_" + "0" * 26)["status"] == 400
    assert socket.subscribe(workspace["id"], "notifications", since="ntf_nope")["status"] == 422
    assert subscribers(workspace, "notifications/" + user["user"]["id"]) == []


# ---------------------------------------------------------------- the whole local stack


def _reset_layer_caches() -> None:
    """The layer caches clients and settings per process; a new emulation needs fresh ones."""
    from agentplane import idempotency, ratelimit
    from agentplane.settings import get_settings

    get_settings.cache_clear()
    idempotency.reset()
    ratelimit.reset_local_counters()
    _reset_realtime()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def local_stack(tmp_path: Path) -> Iterator[Any]:
    """The whole local stack in this process (HTTP API, WebSocket API, stream consumers, Step
    Functions), on free ports, with its data under tmp_path."""
    from devstack.stack import LocalStack, Settings

    saved_env = dict(os.environ)
    _reset_layer_caches()
    settings = Settings(
        host="127.0.0.1", http_port=_free_port(), ws_port=_free_port(), data_dir=tmp_path, save_interval=60
    )
    running = LocalStack(settings)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        os.environ.clear()
        os.environ.update(saved_env)
        _reset_layer_caches()


def _call(base: str, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(base + path, method=method)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, data, timeout=15) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@pytest.mark.e2e
def test_local_stack_pushes_a_runs_events_over_a_real_websocket_in_order(local_stack: Any) -> None:
    from websockets.sync.client import connect

    base = local_stack.http_url
    account = {
        "username": "watcher",
        "email": "watcher@example.com",
        "password": "correct horse battery",
        "terms_accepted": True,
        "privacy_accepted": True,
    }
    assert _call(base, "POST", "/api/v1/auth/register", account)[0] == 201
    status, login = _call(
        base, "POST", "/api/v1/auth/login", {"email": account["email"], "password": account["password"]}
    )
    assert status == 200, login
    token = login["data"]["token"]
    status, created = _call(base, "POST", "/api/v1/workspaces", {"name": "Live"}, token)
    assert status == 201, created
    ws = created["data"]["id"]
    runs = f"/api/v1/workspaces/{ws}/runs"
    status, run = _call(base, "POST", runs, {"title": "Watch me", "prompt": "Do it live", "agent": "builder"}, token)
    assert status == 201, run
    run_path = f"{runs}/{run['data']['id']}"
    assert _call(base, "POST", f"{run_path}/start", {}, token)[0] == 200  # event 1: queued

    [gateway] = local_stack.websockets
    with connect(f"{gateway.url}/?token={token}", open_timeout=TIMEOUT) as client:
        channel = f"runs/{run['data']['id']}"
        client.send(json.dumps({"action": "subscribe", "channel": channel, "workspace_id": ws, "since": 0}))
        assert json.loads(client.recv(timeout=TIMEOUT))["type"] == "subscribed"

        # The agent's side, over HTTP: claim, report progress, and a person pauses and resumes.
        status, claimed = _call(base, "POST", f"{run_path}/claim", {"worker_id": "laptop-1"}, token)
        assert status == 200, claimed
        events = [{"event_type": "log", "data": {"line": line}} for line in ("clone", "build", "test")]
        status, appended = _call(base, "POST", f"{run_path}/events", {"events": events}, token)
        assert status in (200, 201), appended
        assert _call(base, "POST", f"{run_path}/pause", {}, token)[0] == 200
        assert _call(base, "POST", f"{run_path}/resume", {}, token)[0] == 200

        received = [json.loads(client.recv(timeout=10)) for _ in range(8)]

    # The replay of event 1 ends with a `replayed` message; everything else is a push.
    assert [(m["type"], m["complete"]) for m in received if "type" in m] == [("replayed", True)]
    pushes = [m for m in received if "type" not in m]

    assert [p["id"] for p in pushes] == [1, 2, 3, 4, 5, 6, 7]
    assert {p["channel"] for p in pushes} == {channel}
    assert [p["event"] for p in pushes] == ["status_changed"] * 2 + ["log"] * 3 + ["status_changed"] * 2
    assert [p["data"]["data"].get("to") for p in pushes if p["event"] == "status_changed"] == [
        "queued",
        "running",
        "paused",
        "running",
    ]
    assert [p["data"]["data"]["line"] for p in pushes if p["event"] == "log"] == ["clone", "build", "test"]


def test_the_fan_out_counts_the_messages_it_pushed(api, user, workspace, sockets, fanout, monkeypatch, capsys):
    from tests.published_metrics import publish_metrics, published

    socket = sockets(user["token"])
    socket.subscribe(workspace["id"], "notifications")
    publish_metrics(monkeypatch)
    notify_self(api, workspace, user["token"], "one")
    notify_self(api, workspace, user["token"], "two")
    fanout.poll()
    assert [socket.recv()["data"]["title"] for _ in range(2)] == ["one", "two"]
    assert published(capsys.readouterr().out)["RealtimePushes"] == 2

"""The local stack's journal: every answered DynamoDB write is on disk before its answer."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from bench import crash
from bench.stackprocess import StackProcess, signed_in
from devstack import aws, persist, template
from devstack.journal import Journal

FIXTURE = Path(__file__).parents[1] / "fixtures" / "devstack" / "template.yaml"
SECRET = "fixture-signing-secret-0123456789"


class Restartable:
    """A fixture template's stack that can be stopped and started again on one data directory,
    as if the process had died: nothing is saved on the way down unless a test saves it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.mock: Any = None
        self.journal: Journal | None = None
        self.persistence: persist.Persistence | None = None

    def start(self) -> dict[str, int]:
        self.mock = aws.start()
        resources = aws.provision(SECRET)
        self.journal = Journal(self.directory)
        self.persistence = persist.Persistence(self.directory, resources, self.journal)
        restored = self.persistence.restore()
        self.journal.open()
        return restored

    def crash(self) -> None:
        assert self.journal is not None
        self.journal.close()
        self.mock.stop()


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[Restartable]:
    saved_env = dict(os.environ)
    template.use(FIXTURE)
    stack = Restartable(tmp_path)
    try:
        yield stack
    finally:
        if stack.journal is not None:
            stack.journal.close()
        if stack.mock is not None:
            stack.mock.stop()
        template.use(None)
        os.environ.clear()
        os.environ.update(saved_env)


def dynamodb() -> Any:
    return boto3.client("dynamodb", region_name=aws.REGION)


def key(pk: str) -> dict[str, Any]:
    return {"PK": {"S": pk}, "SK": {"S": "1"}}


def put(pk: str, **attrs: str) -> None:
    dynamodb().put_item(TableName=os.environ["TABLE_NAME"], Item={**key(pk), **{k: {"S": v} for k, v in attrs.items()}})


def get(pk: str) -> dict[str, Any] | None:
    return dynamodb().get_item(TableName=os.environ["TABLE_NAME"], Key=key(pk)).get("Item")  # type: ignore[no-any-return]


def test_every_kind_of_write_survives_a_crash_with_no_snapshot(restartable: Restartable) -> None:
    restartable.start()
    table = os.environ["TABLE_NAME"]
    put("put", v="1")
    put("updated", v="1")
    dynamodb().update_item(
        TableName=table, Key=key("updated"), UpdateExpression="SET v = :v", ExpressionAttributeValues={":v": {"S": "2"}}
    )
    put("deleted")
    dynamodb().delete_item(TableName=table, Key=key("deleted"))
    dynamodb().batch_write_item(RequestItems={table: [{"PutRequest": {"Item": {**key("batched"), "v": {"S": "b"}}}}]})
    dynamodb().transact_write_items(
        TransactItems=[{"Put": {"TableName": table, "Item": {**key("transacted"), "v": {"S": "t"}}}}]
    )
    with pytest.raises(ClientError):  # refused: it must not come back either
        dynamodb().transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": {**key("refused"), "v": {"S": "x"}}}},
                {
                    "ConditionCheck": {
                        "TableName": table,
                        "Key": key("nobody"),
                        "ConditionExpression": "attribute_exists(PK)",
                    }
                },
            ]
        )
    restartable.crash()

    restored = restartable.start()
    assert restored["items"] == 0 and restored["journaled"] > 0  # no snapshot: all from the journal
    assert get("put")["v"] == {"S": "1"}  # type: ignore[index]
    assert get("updated")["v"] == {"S": "2"}  # type: ignore[index]
    assert get("deleted") is None
    assert get("batched")["v"] == {"S": "b"}  # type: ignore[index]
    assert get("transacted")["v"] == {"S": "t"}  # type: ignore[index]
    assert get("refused") is None


def test_a_torn_last_line_is_dropped_and_what_came_before_is_kept(restartable: Restartable) -> None:
    restartable.start()
    put("first")
    put("second")
    restartable.crash()
    segment = max(restartable.directory.glob("journal/*.log"))
    whole = segment.read_bytes()
    segment.write_bytes(whole[:-7])  # the crash cut the last write short

    restartable.start()
    assert get("first") is not None
    assert get("second") is None  # its request was never answered
    assert segment.read_bytes() == whole[: whole.rindex(b"\n", 0, len(whole) - 1) + 1]


def test_a_snapshot_compacts_the_journal_and_later_writes_replay_over_it(restartable: Restartable) -> None:
    restartable.start()
    put("before", v="1")
    assert restartable.persistence is not None and restartable.journal is not None
    restartable.persistence.save()
    assert len(restartable.journal.segments()) == 1  # the segments the snapshot holds are gone
    assert restartable.journal.size() == 0
    put("before", v="2")
    put("after")
    restartable.crash()

    restored = restartable.start()
    assert restored["items"] == 1
    assert get("before")["v"] == {"S": "2"}  # type: ignore[index]
    assert get("after") is not None


def test_saved_data_is_readable_by_its_owner_only(restartable: Restartable) -> None:
    restartable.start()
    put("secret")
    assert restartable.persistence is not None
    restartable.persistence.save()
    paths = [restartable.directory, *restartable.directory.rglob("*")]
    assert any(p.name.endswith(".json") for p in paths) and any(p.suffix == ".log" for p in paths)
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


def test_tasks_answered_201_survive_a_kill_9() -> None:
    result = crash.run(clients=3, seconds=3.0)
    assert len(result.acknowledged) > 20
    assert result.lost == []


@pytest.mark.e2e
def test_a_run_started_just_before_a_kill_9_keeps_its_timers(tmp_path: Path) -> None:
    """The execution behind a started run is on disk before the start is answered: after a crash
    the run still times out on its own, instead of staying queued with no timer at all."""
    environment = {"AGENTPLANE_SAVE_INTERVAL": "600"}  # nothing saved in the background meanwhile
    stack = StackProcess(tmp_path / "data", **environment).start()
    try:
        client, workspace = signed_in(stack.port, "crashy")
        runs = f"/api/v1/workspaces/{workspace}/runs"
        created = client.request("POST", runs, {"title": "Just started", "prompt": "x", "queue_timeout_seconds": 5})
        run = f"{runs}/{created.json['data']['id']}"
        assert client.request("POST", f"{run}/start").status == 200
        stack.kill()
        stack = StackProcess(tmp_path / "data", **environment).start()
        client.port, client._connection = stack.port, None
        deadline = time.monotonic() + 60
        while (current := client.request("GET", run).json["data"])["status"] == "queued":
            assert time.monotonic() < deadline, current
            time.sleep(0.5)
        assert (current["status"], current["failure_reason"]) == ("failed", "queue_timeout")
    finally:
        stack.stop()

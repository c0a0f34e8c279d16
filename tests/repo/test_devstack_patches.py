"""The local stack's changes to its dependencies (devstack.patches): each is tied to the version it
was checked against, still replaces what it names, and fixes what it says; DynamoDB's answer as
plain moto does, at the cost DynamoDB's would have."""

from __future__ import annotations

import importlib
import json
import random
import re
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.models import dynamodb_backends
from moto.dynamodb.models.dynamo_type import Item

from devstack import aws, patches

TABLE = "fixes"
STREAMS_ENDPOINT = f"https://streams.dynamodb.{aws.REGION}.amazonaws.com"


@pytest.fixture
def dynamo() -> Iterator[Any]:
    mock = aws.start()
    client = boto3.client("dynamodb", region_name=aws.REGION)
    attributes = ("PK", "SK", "GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK")
    client.create_table(
        TableName=TABLE,
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in attributes],
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
        GlobalSecondaryIndexes=[
            {
                "IndexName": name,
                "KeySchema": [
                    {"AttributeName": f"{name}PK", "KeyType": "HASH"},
                    {"AttributeName": f"{name}SK", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
            for name in ("GSI1", "GSI2")
        ],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    try:
        yield client
    finally:
        mock.stop()


def table() -> Any:
    return dynamodb_backends[aws.ACCOUNT][aws.REGION].tables[TABLE]


def item(pk: str, sk: str, **attrs: str) -> dict[str, Any]:
    return {"PK": {"S": pk}, "SK": {"S": sk}, **{k: {"S": v} for k, v in attrs.items()}}


def everything(client: Any) -> list[dict[str, Any]]:
    return sorted(client.scan(TableName=TABLE)["Items"], key=lambda i: (i["PK"]["S"], i["SK"]["S"]))


def stream_length() -> int:
    return len(table().stream_shard.items)


ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = (ROOT / "requirements-dev.txt", ROOT / "layers" / "agentplane" / "python" / "requirements.txt")
ENTRIES = {entry.name: entry for entry in patches.REGISTRY}


def pinned_versions() -> dict[str, str]:
    """Package -> the version the requirements files pin (`name[extras]==version`)."""
    pins = {}
    for path in REQUIREMENTS:
        for line in path.read_text().splitlines():
            found = re.match(r"^([A-Za-z0-9_.-]+)(\[[^]]*\])?==([^\s;#]+)", line.strip())
            if found:
                pins[found.group(1).lower()] = found.group(3)
    return pins


def test_every_patch_was_checked_against_the_version_the_requirements_pin() -> None:
    pins = pinned_versions()
    assert {entry.package for entry in patches.REGISTRY} == {"moto", "aws-lambda-powertools"}
    for entry in patches.REGISTRY:
        assert entry.checked_against == pins[entry.package], entry.name


def test_a_moved_moto_pin_fails_loudly_naming_the_versions_and_the_patches_to_recheck(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    installed = patches.installed_version
    monkeypatch.setattr(patches, "installed_version", lambda p: "5.3.0" if p == "moto" else installed(p))
    with pytest.raises(patches.PinMoved, match=r"5\.2\.5") as moved:
        patches.apply("moto")
    assert (moved.value.package, moved.value.checked_against, moved.value.installed) == ("moto", "5.2.5", "5.3.0")
    assert moved.value.patches == [e.name for e in patches.REGISTRY if e.package == "moto"]
    assert "moto 5.3.0 is installed" in str(moved.value) and "page-sized queries" in str(moved.value)
    with pytest.raises(patches.PinMoved):
        aws.start()  # the local stack does not start on an unchecked moto


def test_a_moved_powertools_pin_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = patches.installed_version
    monkeypatch.setattr(
        patches, "installed_version", lambda p: "3.38.0" if p == "aws-lambda-powertools" else installed(p)
    )
    with pytest.raises(patches.PinMoved, match=r"aws-lambda-powertools 3\.38\.0 is installed") as moved:
        patches.apply("aws-lambda-powertools")
    assert moved.value.patches == ["one event per resolver"]
    with pytest.raises(patches.PinMoved, match="aws-lambda-powertools"):
        aws.start()  # nor on an unchecked Powertools


def _resolve(target: str) -> Any:
    """The object a dotted target names now: its longest importable module, then attributes."""
    parts = target.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            found = getattr(found, name)
        return found
    raise AssertionError(f"nothing importable in {target}")


@pytest.mark.parametrize("name", list(ENTRIES))
def test_each_patch_still_replaces_exactly_what_it_names(name: str) -> None:
    patches.apply()
    entry = ENTRIES[name]
    assert patches.replaced(name) == set(entry.targets)
    for target in entry.targets:
        assert _resolve(target).__module__ == "devstack.patches", f"{target} is not (or no longer) patched"


def test_moto_models_are_not_kept_after_use(dynamo: Any) -> None:
    for n in range(50):
        dynamo.put_item(TableName=TABLE, Item=item("p", f"s{n}", GSI1PK="g", GSI1SK=f"{n}"))
        dynamo.query(TableName=TABLE, KeyConditionExpression="PK = :p", ExpressionAttributeValues={":p": {"S": "p"}})
    assert Item.instances_tracked == []


def test_a_failed_transaction_restores_every_item_and_writes_no_stream_record(dynamo: Any) -> None:
    dynamo.put_item(TableName=TABLE, Item=item("a", "1", GSI1PK="g", GSI1SK="1", v="old"))
    dynamo.put_item(TableName=TABLE, Item=item("a", "2", GSI1PK="g", GSI1SK="2"))
    before, records, live_table = everything(dynamo), stream_length(), table()
    with pytest.raises(ClientError) as refused:
        dynamo.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": item("a", "3", GSI1PK="g", GSI1SK="3")}},
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": item("a", "1"),
                        "UpdateExpression": "SET v = :v, GSI1PK = :g REMOVE GSI1SK",
                        "ExpressionAttributeValues": {":v": {"S": "new"}, ":g": {"S": "moved"}},
                    }
                },
                {"Delete": {"TableName": TABLE, "Key": item("a", "2")}},
                {
                    "ConditionCheck": {
                        "TableName": TABLE,
                        "Key": item("zz", "1"),
                        "ConditionExpression": "attribute_exists(PK)",
                    }
                },
            ]
        )
    assert refused.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert everything(dynamo) == before
    assert stream_length() == records
    assert table() is live_table  # not swapped for a copy: stream readers keep reading the live one
    found = dynamo.query(
        TableName=TABLE,
        IndexName="GSI1",
        KeyConditionExpression="GSI1PK = :g",
        ExpressionAttributeValues={":g": {"S": "g"}},
    )
    assert [i["SK"]["S"] for i in found["Items"]] == ["1", "2"]  # the index is restored too


def test_a_transaction_naming_one_item_twice_changes_nothing(dynamo: Any) -> None:
    dynamo.put_item(TableName=TABLE, Item=item("a", "1", v="old"))
    before, records = everything(dynamo), stream_length()
    with pytest.raises(ClientError):
        dynamo.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": item("b", "1")}},
                {"Put": {"TableName": TABLE, "Item": item("a", "1", v="new")}},
                {"Delete": {"TableName": TABLE, "Key": item("a", "1")}},
            ]
        )
    assert everything(dynamo) == before
    assert stream_length() == records


def test_a_successful_transaction_writes_one_record_per_item(dynamo: Any) -> None:
    dynamo.put_item(TableName=TABLE, Item=item("a", "1"))
    records = stream_length()
    dynamo.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": TABLE, "Item": item("a", "2")}},
            {"Delete": {"TableName": TABLE, "Key": item("a", "1")}},
            {
                "ConditionCheck": {
                    "TableName": TABLE,
                    "Key": item("c", "1"),
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
        ]
    )
    assert [i["SK"]["S"] for i in everything(dynamo)] == ["2"]
    assert stream_length() == records + 2


def _random_writes(client: Any, rng: random.Random, count: int) -> None:
    partitions, groups = ["p0", "p1", "p2"], ["g0", "g1", "g2", "g3"]
    for _ in range(count):
        pk, sk = rng.choice(partitions), f"s{rng.randrange(12):02d}"
        extra = {}
        if rng.random() < 0.8:
            extra.update(GSI1PK=rng.choice(groups), GSI1SK=f"{rng.randrange(30):02d}")
        if rng.random() < 0.5:
            extra.update(GSI2PK=rng.choice(groups), GSI2SK=f"{rng.randrange(30):02d}")
        roll = rng.random()
        if roll < 0.45:
            client.put_item(TableName=TABLE, Item=item(pk, sk, **extra))
        elif roll < 0.7:
            client.update_item(
                TableName=TABLE,
                Key=item(pk, sk),
                UpdateExpression="SET GSI1PK = :g, GSI1SK = :s REMOVE GSI2PK",
                ExpressionAttributeValues={":g": {"S": rng.choice(groups)}, ":s": {"S": f"{rng.randrange(30):02d}"}},
            )
        elif roll < 0.85:
            client.delete_item(TableName=TABLE, Key=item(pk, sk))
        else:
            writes = [{"Put": {"TableName": TABLE, "Item": item(pk, f"t{n}", **extra)}} for n in range(2)]
            writes.append(
                {
                    "ConditionCheck": {
                        "TableName": TABLE,
                        "Key": item(rng.choice(partitions), "s00"),
                        "ConditionExpression": "attribute_exists(PK)",
                    }
                }
            )
            try:
                client.transact_write_items(TransactItems=writes)
            except ClientError as error:
                assert error.response["Error"]["Code"] == "TransactionCanceledException"


def _queries(rng: random.Random) -> Iterator[dict[str, Any]]:
    for _ in range(90):
        index = rng.choice([None, "GSI1", "GSI2"])
        hash_name = f"{index}PK" if index else "PK"
        range_name = f"{index}SK" if index else "SK"
        value = rng.choice(["g0", "g1", "g2", "g3"]) if index else rng.choice(["p0", "p1", "p2", "p9"])
        query: dict[str, Any] = {
            "TableName": TABLE,
            "KeyConditionExpression": "#h = :h",
            "ExpressionAttributeNames": {"#h": hash_name},
            "ExpressionAttributeValues": {":h": {"S": value}},
            "ScanIndexForward": rng.random() < 0.5,
            "Limit": rng.choice([1, 3, 100]),
        }
        if index:
            query["IndexName"] = index
        if rng.random() < 0.6:
            condition = rng.choice(["begins_with(#r, :r)", "#r = :r", "#r < :r", "#r <= :r", "#r > :r", "#r >= :r",
                                    "#r BETWEEN :r AND :q"])  # fmt: skip
            query["KeyConditionExpression"] += f" AND {condition}"
            query["ExpressionAttributeNames"]["#r"] = range_name
            query["ExpressionAttributeValues"][":r"] = {"S": rng.choice(["0", "1", "15", "s0", "s05", "t"])}
            if ":q" in condition:
                query["ExpressionAttributeValues"][":q"] = {"S": rng.choice(["2", "25", "s1", "s08", "u"])}
        yield query


def _all_pages(client: Any, query: dict[str, Any]) -> list[list[dict[str, Any]]]:
    pages, start = [], None
    while True:
        page = client.query(**query, **({"ExclusiveStartKey": start} if start else {}))
        pages.append(page["Items"])
        start = page.get("LastEvaluatedKey")
        if not start:
            return pages


def test_queries_answer_what_plain_moto_answers(dynamo: Any) -> None:
    rng = random.Random(7)
    compared = 0
    for _ in range(4):
        _random_writes(dynamo, rng, 60)
        for query in _queries(rng):
            partitioned = _all_pages(dynamo, query)
            with patches.plain_moto():
                plain = _all_pages(dynamo, query)
            assert partitioned == plain, query
            compared += sum(len(page) for page in plain)
    assert compared > 200  # the comparison saw real results, not only empty pages


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many items each Query looked at."""
    looked_at: list[int] = []
    candidates = patches._candidates

    def counting(*args: Any) -> Any:
        found = candidates(*args)
        looked_at.append(len(found))
        return found

    monkeypatch.setattr(patches, "_candidates", counting)
    return looked_at


def test_a_query_reads_only_the_partition_it_names(dynamo: Any, seen: list[int]) -> None:
    for n in range(200):
        dynamo.put_item(TableName=TABLE, Item=item(f"p{n}", "s", GSI1PK=f"g{n % 50}", GSI1SK=f"{n}"))
    found = dynamo.query(
        TableName=TABLE,
        IndexName="GSI1",
        KeyConditionExpression="GSI1PK = :g",
        ExpressionAttributeValues={":g": {"S": "g7"}},
    )
    dynamo.query(TableName=TABLE, KeyConditionExpression="PK = :p", ExpressionAttributeValues={":p": {"S": "p3"}})
    assert [i["GSI1SK"]["S"] for i in found["Items"]] == ["107", "157", "57", "7"]
    assert seen == [4, 1]  # the items the query looked at, of 200


def test_missing_items_leave_no_empty_partitions(dynamo: Any) -> None:
    for n in range(20):
        dynamo.get_item(TableName=TABLE, Key=item(f"nobody{n}", "x"))
    dynamo.put_item(TableName=TABLE, Item=item("a", "1"))
    dynamo.delete_item(TableName=TABLE, Key=item("a", "1"))
    assert dict(table().items) == {}


def test_every_write_counts(dynamo: Any) -> None:
    start = patches.write_count(table())
    dynamo.put_item(TableName=TABLE, Item=item("a", "1"))
    dynamo.update_item(
        TableName=TABLE, Key=item("a", "1"), UpdateExpression="SET v = :v", ExpressionAttributeValues={":v": {"S": "x"}}
    )
    dynamo.delete_item(TableName=TABLE, Key=item("a", "1"))
    assert patches.write_count(table()) == start + 3


def _streams() -> Any:
    return boto3.client("dynamodbstreams", region_name=aws.REGION, endpoint_url=STREAMS_ENDPOINT)


def _iterator(position: str) -> str:
    streams = _streams()
    arn = table().table_arn + "/stream/" + table().latest_stream_label
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    return streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType=position)["ShardIterator"]  # type: ignore[no-any-return]


def test_stream_records_read_by_every_consumer_are_trimmed_and_numbering_goes_on(dynamo: Any) -> None:
    for n in range(5):
        dynamo.put_item(TableName=TABLE, Item=item("a", str(n)))
    streams = _streams()
    page = streams.get_records(ShardIterator=_iterator("TRIM_HORIZON"))
    numbers = [int(r["dynamodb"]["SequenceNumber"]) for r in page["Records"]]
    assert len(numbers) == 5
    old_iterator = _iterator("TRIM_HORIZON")
    assert patches.trim_stream(table(), aws.stream_iterator_position(page["NextShardIterator"])) == 5
    assert stream_length() == 0
    dynamo.put_item(TableName=TABLE, Item=item("a", "late"))
    after = streams.get_records(ShardIterator=page["NextShardIterator"])["Records"]
    assert [int(r["dynamodb"]["SequenceNumber"]) for r in after] == [numbers[-1] + 1]
    # An iterator from before the trim reads from the oldest record kept.
    assert [r["dynamodb"]["Keys"]["SK"]["S"] for r in streams.get_records(ShardIterator=old_iterator)["Records"]] == [
        "late"
    ]
    assert [
        r["dynamodb"]["Keys"]["SK"]["S"]
        for r in streams.get_records(ShardIterator=_iterator("TRIM_HORIZON"))["Records"]
    ] == ["late"]


def test_stream_records_older_than_a_day_are_dropped(dynamo: Any) -> None:
    for n in range(3):
        dynamo.put_item(TableName=TABLE, Item=item("a", str(n)))
    for record in table().stream_shard.items[:2]:
        record.record["dynamodb"]["ApproximateCreationDateTime"] -= timedelta(hours=25)
    dynamo.put_item(TableName=TABLE, Item=item("a", "now"))
    assert [r.record["dynamodb"]["Keys"]["SK"]["S"] for r in table().stream_shard.items] == ["2", "now"]


def test_shard_iterators_are_not_kept_forever(dynamo: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patches, "ITERATORS_KEPT", 10)
    dynamo.put_item(TableName=TABLE, Item=item("a", "1"))
    iterators = [_iterator("TRIM_HORIZON") for _ in range(30)]
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    assert len(dynamodbstreams_backends[aws.ACCOUNT][aws.REGION].shard_iterators) == 10
    assert _streams().get_records(ShardIterator=iterators[-1])["Records"]


# ---------------------------------------------------------------- waits that outlive the stack


@pytest.fixture
def callbacks() -> Iterator[Any]:
    """A state machine whose one state waits for a task token (sent to a queue), 2 s heartbeat."""
    mock = aws.start()
    sqs = boto3.client("sqs", region_name=aws.REGION)
    queue = sqs.create_queue(QueueName="tokens")["QueueUrl"]
    states = boto3.client("stepfunctions", region_name=aws.REGION)
    definition = {
        "StartAt": "Waiting",
        "States": {
            "Waiting": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": queue, "MessageBody": {"token.$": "$$.Task.Token"}},
                "HeartbeatSeconds": 2,
                "TimeoutSeconds": 3,
                "End": True,
            }
        },
    }
    machine = states.create_state_machine(
        name="waits", definition=json.dumps(definition), roleArn=f"arn:aws:iam::{aws.ACCOUNT}:role/x"
    )["stateMachineArn"]
    try:
        yield states, machine, sqs, queue
    finally:
        mock.stop()


def ended(states: Any, execution: str, within: float = 10.0) -> tuple[str, float]:
    """How the execution ended (its error, or SUCCEEDED) and how long after the call that took."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        described = states.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            return described.get("error", described["status"]), time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError("the execution is still running")


def test_a_restarted_wait_times_out_when_its_saved_heartbeat_runs_out(callbacks: Any) -> None:
    states, machine, _, _ = callbacks
    now = time.time()
    patches.resume_wait(machine, "silent", {"state": "Waiting", "entered_at": now - 1, "last_beat": now - 1.5})
    execution = states.start_execution(stateMachineArn=machine, name="silent")["executionArn"]
    error, after = ended(states, execution)
    assert error == "States.Timeout"  # moto names a heartbeat timeout so too
    assert after < 1.8  # 0.5 s of the 2 s heartbeat were left (not resumed: 2.0 s), with room for a busy machine


def test_a_restarted_wait_times_out_when_its_saved_timeout_runs_out(callbacks: Any) -> None:
    states, machine, _, _ = callbacks
    now = time.time()
    patches.resume_wait(machine, "late", {"state": "Waiting", "entered_at": now - 2.9, "last_beat": now})
    execution = states.start_execution(stateMachineArn=machine, name="late")["executionArn"]
    error, after = ended(states, execution)
    assert error == "States.Timeout"
    assert after < 1.9  # 0.1 s of the 3 s timeout were left (not resumed: the 2 s heartbeat first)


def test_a_wait_reports_its_state_and_last_beat_and_each_beat_restarts_the_interval(callbacks: Any) -> None:
    states, machine, sqs, queue = callbacks
    execution = states.start_execution(stateMachineArn=machine, name="beating")["executionArn"]
    message = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5)["Messages"][0]
    token = json.loads(message["Body"])["token"]
    entered = patches.execution_wait(execution)
    assert entered is not None and entered["state"] == "Waiting"
    time.sleep(1.2)
    states.send_task_heartbeat(taskToken=token)
    beaten = patches.execution_wait(execution)
    assert beaten is not None and beaten["last_beat"] - entered["last_beat"] >= 1.2
    assert beaten["entered_at"] == entered["entered_at"]
    time.sleep(1.2)  # 2.4 s after entry: alive only because the beat moved the deadline
    assert states.describe_execution(executionArn=execution)["status"] == "RUNNING"
    states.send_task_success(taskToken=token, output="{}")
    assert ended(states, execution)[0] == "SUCCEEDED"
    assert patches.execution_wait(execution) is None


def test_kms_symmetric_keys_make_no_key_pair_and_signing_keys_still_sign(dynamo: Any) -> None:
    from moto.kms.models import kms_backends

    kms = boto3.client("kms", region_name=aws.REGION)
    symmetric = kms.create_key()["KeyMetadata"]["KeyId"]
    sealed = kms.encrypt(KeyId=symmetric, Plaintext=b"secret")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=sealed)["Plaintext"] == b"secret"
    assert kms_backends[aws.ACCOUNT][aws.REGION].keys[symmetric].private_key._made is None

    signing = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    signed = kms.sign(KeyId=signing, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256")["Signature"]
    verified = kms.verify(KeyId=signing, Message=b"m", Signature=signed, SigningAlgorithm="RSASSA_PSS_SHA_256")
    assert verified["SignatureValid"]
    assert kms.get_public_key(KeyId=signing)["PublicKey"]


def test_a_limited_query_reads_its_page_not_its_partition(dynamo: Any, seen: list[int]) -> None:
    for n in range(300):
        dynamo.put_item(TableName=TABLE, Item=item("big", f"s{n:03d}", GSI1PK="all", GSI1SK=f"{n % 7}"))
    for query in (
        {"KeyConditionExpression": "PK = :p AND begins_with(SK, :s)",
         "ExpressionAttributeValues": {":p": {"S": "big"}, ":s": {"S": "s1"}}, "ScanIndexForward": False},
        {"IndexName": "GSI1", "KeyConditionExpression": "GSI1PK = :p AND GSI1SK >= :s",
         "ExpressionAttributeValues": {":p": {"S": "all"}, ":s": {"S": "5"}}},
    ):  # fmt: skip
        seen.clear()
        pages = _all_pages(dynamo, {"TableName": TABLE, "Limit": 10, **query})
        with patches.plain_moto():
            assert pages == _all_pages(dynamo, {"TableName": TABLE, "Limit": 10, **query})
        assert sum(len(page) for page in pages) in (100, 85)  # s100..s199; n % 7 in (5, 6)
        assert max(seen) <= 12, seen  # a page and its neighbours, of 300


# ---------------------------------------------------------------- requests, locking, Step Functions, Lambda


def test_each_request_that_changes_items_reports_them_once_before_it_answers(dynamo: Any) -> None:
    reported: list[set[tuple[str, str]]] = []

    def listener(touched: patches.Touched) -> None:
        reported.append({(name, hash_key.value) for name, hash_key, _ in touched})

    patches.on_request_written(listener)
    try:
        dynamo.put_item(TableName=TABLE, Item=item("a", "1"))
        dynamo.get_item(TableName=TABLE, Key=item("a", "1"))
        dynamo.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": item("b", "1")}},
                {"Delete": {"TableName": TABLE, "Key": item("a", "1")}},
            ]
        )
    finally:
        patches.remove_request_listener(listener)
    dynamo.put_item(TableName=TABLE, Item=item("c", "1"))
    assert reported == [{(TABLE, "a")}, {(TABLE, "a"), (TABLE, "b")}]


def test_a_dynamodb_request_waits_for_the_one_in_progress(dynamo: Any) -> None:
    writer = threading.Thread(target=lambda: dynamo.put_item(TableName=TABLE, Item=item("a", "1")))
    with patches.dynamodb_lock:  # as a request in progress holds it
        writer.start()
        writer.join(0.3)
        assert writer.is_alive()
        assert not table().items
    writer.join(5)
    assert [i["PK"]["S"] for i in everything(dynamo)] == ["a"]


@pytest.fixture
def states() -> Iterator[Any]:
    mock = aws.start()
    try:
        yield boto3.client("stepfunctions", region_name=aws.REGION)
    finally:
        mock.stop()


def machine(states: Any, name: str, definition: dict[str, Any]) -> str:
    role = f"arn:aws:iam::{aws.ACCOUNT}:role/x"
    created = states.create_state_machine(name=name, definition=json.dumps(definition), roleArn=role)
    return created["stateMachineArn"]  # type: ignore[no-any-return]


def test_one_definition_is_parsed_once(states: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.stepfunctions.parser import models

    parsed: list[str] = []
    parse = models.AmazonStateLanguageParser.parse
    monkeypatch.setattr(models.AmazonStateLanguageParser, "parse", lambda d: (parsed.append(d), parse(d))[1])
    definition = {
        "Comment": f"parsed once {time.time_ns()}",
        "StartAt": "Done",
        "States": {"Done": {"Type": "Succeed"}},
    }
    machine(states, "first", definition)
    machine(states, "second", definition)
    assert len(parsed) == 1


def test_a_token_call_while_an_execution_is_still_starting_is_an_unknown_token(states: Any) -> None:
    from types import SimpleNamespace

    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    arn = machine(states, "starting", {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    backend = stepfunctions_parser_backends[aws.ACCOUNT][aws.REGION]
    starting = SimpleNamespace(status=ExecutionStatus.RUNNING, exec_worker=None)  # its thread not yet running
    next(m for m in backend.state_machines if m.arn == arn).executions.append(starting)
    with pytest.raises(ClientError) as refused:
        states.send_task_heartbeat(taskToken="nobody-has-this-token")
    assert refused.value.response["Error"]["Code"] == "InvalidToken"  # not a 500


def test_an_answer_stored_before_the_heartbeat_wait_begins_ends_it_at_once(states: Any) -> None:
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint, CallbackOutcomeSuccess

    endpoint = CallbackEndpoint("token")
    endpoint.notify(CallbackOutcomeSuccess("token", "{}"))  # answered while the task's Lambda ran
    started = time.monotonic()
    assert endpoint.setup_heartbeat_endpoint(5).clear_and_wait() is True
    assert time.monotonic() - started < 1  # not the 5 s heartbeat


def test_each_started_execution_is_noted_before_its_start_is_answered(states: Any) -> None:
    arn = machine(states, "noted", {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    noted: list[int] = []

    def note() -> None:
        noted.append(len(states.list_executions(stateMachineArn=arn)["executions"]))

    patches.on_execution_started(note)
    try:
        states.start_execution(stateMachineArn=arn, name="one")
    finally:
        patches.remove_execution_listener(note)
    assert noted == [1]  # called once, with the execution already there


def test_wait_states_last_what_the_rule_says_and_real_time_without_one(states: Any) -> None:
    arn = machine(
        states, "waits", {"StartAt": "Nap", "States": {"Nap": {"Type": "Wait", "Seconds": 3600, "End": True}}}
    )
    with patches.waits_lasting(lambda seconds: seconds / 3600 / 10):
        shortened = states.start_execution(stateMachineArn=arn, name="short")["executionArn"]
        assert ended(states, shortened, within=5)[0] == "SUCCEEDED"
    real = states.start_execution(stateMachineArn=arn, name="real")["executionArn"]
    time.sleep(0.5)
    assert states.describe_execution(executionArn=real)["status"] == "RUNNING"


def test_a_lambda_invoke_runs_what_the_bridge_says_and_moto_answers_without_it(dynamo: Any) -> None:
    iam = boto3.client("iam", region_name=aws.REGION)
    role = iam.create_role(RoleName="runner", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    functions = boto3.client("lambda", region_name=aws.REGION)
    for name in ("bridged", "unknown"):
        functions.create_function(
            FunctionName=name, Runtime="python3.11", Role=role, Handler="app.handler", Code={"ZipFile": b"zip"}
        )
    asked: list[tuple[str, Any]] = []

    def bridge(function_name: str, body: Any, headers: Any, response_headers: Any) -> bytes | None:
        asked.append((function_name, json.loads(body)))
        return b'{"ran": true}' if function_name == "bridged" else None

    patches.run_lambda_invokes(bridge)
    try:
        ran = functions.invoke(FunctionName="bridged", Payload=b'{"n": 1}')["Payload"].read()
        unknown = functions.invoke(FunctionName="unknown", Payload=b'{"n": 2}')["Payload"].read()
    finally:
        patches.run_lambda_invokes(None)
    plain = functions.invoke(FunctionName="bridged", Payload=b'{"n": 3}')["Payload"].read()
    assert (json.loads(ran), json.loads(unknown), json.loads(plain)) == ({"ran": True}, {"n": 2}, {"n": 3})
    assert asked == [("bridged", {"n": 1}), ("unknown", {"n": 2})]


def test_the_management_api_is_answered_by_the_live_connections_while_they_serve(dynamo: Any) -> None:
    posted: list[tuple[bytes, str]] = []

    class Server:
        def post_to_connection(self, data: bytes, connection_id: str) -> None:
            posted.append((data, connection_id))

    client = boto3.client(
        "apigatewaymanagementapi", endpoint_url="https://socketapi.execute-api.us-east-1.amazonaws.com/local"
    )
    patches.serve_connections(Server())
    try:
        client.post_to_connection(ConnectionId="abc=", Data=b"live")
    finally:
        patches.serve_connections(None)
    client.post_to_connection(ConnectionId="abc=", Data=b"to moto")
    assert posted == [(b"live", "abc%3D")]  # as moto hands it over; devstack.websocket unquotes it


def _http_event(path: str) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": f"GET {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {},
        "requestContext": {"http": {"method": "GET", "path": path, "sourceIp": "203.0.113.1"}, "stage": "$default"},
        "isBase64Encoded": False,
    }


def test_a_resolver_answers_from_its_own_event_while_another_resolves_in_the_same_process() -> None:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    from devstack.lambdas import LambdaContext

    patches.apply("aws-lambda-powertools")
    outer, inner = APIGatewayHttpResolver(), APIGatewayHttpResolver()

    @inner.get("/inner")
    def inner_route() -> dict[str, str]:
        return {"path": inner.current_event.path}

    @outer.get("/outer")
    def outer_route() -> dict[str, str]:
        inner.resolve(_http_event("/inner"), LambdaContext("inner", "2"))  # another instance's request, meanwhile
        return {"path": outer.current_event.path, "function": outer.lambda_context.function_name}

    answer = outer.resolve(_http_event("/outer"), LambdaContext("outer", "1"))
    assert json.loads(answer["body"]) == {"path": "/outer", "function": "outer"}

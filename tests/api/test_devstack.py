"""The local stack's own drivers: cron, schedules, stream fan-out, Step Functions, WebSocket API and
persistence, against a small fixture template (tests/fixtures/devstack)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from devstack import aws, persist, queues, stepfunctions, streams, template, websocket
from devstack.lambdas import Lambdas
from devstack.schedules import Cron, Expression, Scheduler
from devstack.ttl import TtlSweeper

FIXTURE = Path(__file__).parents[1] / "fixtures" / "devstack" / "template.yaml"
SECRET = "fixture-signing-secret-0123456789"


class RecordingLambdas(Lambdas):
    """The real functions, with every invocation and its answer written down."""

    def __init__(self) -> None:
        super().__init__(template.functions())
        self.calls: list[tuple[str, Any, Any]] = []
        self.fail_next = 0
        self._lock = threading.Lock()

    def invoke(self, function: Any, event: dict[str, Any]) -> Any:
        name = function if isinstance(function, str) else function.logical_id
        with self._lock:
            failing = self.fail_next > 0
            self.fail_next -= 1 if failing else 0
        if failing:
            self.calls.append((name, event, "raised"))
            raise RuntimeError("consumer failure")
        try:
            result = super().invoke(function, event)
        except Exception:
            self.calls.append((name, event, "raised"))
            raise
        self.calls.append((name, event, result))
        return result

    def of(self, logical_id: str) -> list[tuple[Any, Any]]:
        return [(event, result) for name, event, result in self.calls if name == logical_id]


def wait_for(check: Any, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def fixture_stack() -> Iterator[aws.Resources]:
    saved_env = dict(os.environ)
    template.use(FIXTURE)
    mock = aws.start()
    try:
        yield aws.provision(SECRET, lambda_functions=True)
    finally:
        mock.stop()
        template.use(None)
        os.environ.clear()
        os.environ.update(saved_env)


@pytest.fixture
def lambdas(fixture_stack: aws.Resources) -> RecordingLambdas:
    return RecordingLambdas()


def put(pk: str, sk: str = "1", **attrs: str) -> None:
    item = {"PK": {"S": pk}, "SK": {"S": sk}, **{k: {"S": v} for k, v in attrs.items()}}
    boto3.client("dynamodb").put_item(TableName=os.environ["TABLE_NAME"], Item=item)


# ---------------------------------------------------------------- cron and expressions


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 12 ? * MON-FRI *", "2024-05-31T13:00", "2024-06-03T12:00"),  # Friday afternoon → Monday noon
        ("0/15 * * * ? *", "2024-06-01T10:07", "2024-06-01T10:15"),
        ("5,35 8-9 * * ? *", "2024-06-01T09:40", "2024-06-02T08:05"),
        ("0 0 L * ? *", "2024-02-10T00:00", "2024-02-29T00:00"),  # leap year
        ("0 10 ? * 6#3 *", "2024-06-01T00:00", "2024-06-21T10:00"),  # third Friday
        ("0 10 ? * 6L *", "2024-06-01T00:00", "2024-06-28T10:00"),  # last Friday
        ("0 0 15W * ? *", "2024-06-01T00:00", "2024-06-14T00:00"),  # the 15th is a Saturday
        ("0 0 LW * ? *", "2024-08-01T00:00", "2024-08-30T00:00"),  # Aug 31 2024 is a Saturday
        ("30 6 1 JAN,JUL ? *", "2024-02-01T00:00", "2024-07-01T06:30"),
        ("0 0 ? * SUN *", "2024-06-02T00:00", "2024-06-09T00:00"),  # strictly after
        ("0 8 1 * ? 2025-2026", "2024-06-01T00:00", "2025-01-01T08:00"),
    ],
)
def test_cron_finds_the_next_matching_minute(expression: str, after: str, expected: str) -> None:
    assert Cron.parse(expression).next_after(at(after)) == at(expected)


def test_cron_with_years_all_past_never_fires_again() -> None:
    assert Cron.parse("0 0 1 1 ? 2020").next_after(at("2024-01-01T00:00")) is None


@pytest.mark.parametrize(
    "expression",
    [
        "0 12 * * MON *",  # day-of-month and day-of-week both set
        "0 12 ? * ? *",  # neither
        "0 12 * * ?",  # five fields
        "60 12 * * ? *",  # minute out of range
        "0 12 ? * 9 *",
        "0 12 ? * FOO *",
        "0 12 ? * 6#7 *",
    ],
)
def test_cron_rejects_malformed_expressions(expression: str) -> None:
    with pytest.raises(ValueError):
        Cron.parse(expression)


def test_cron_expression_runs_in_its_time_zone() -> None:
    expression = Expression("cron(0 9 * * ? *)", "America/New_York")
    after = datetime(2024, 6, 1, 0, 0, tzinfo=UTC)
    assert expression.next_after(after, after) == datetime(2024, 6, 1, 13, 0, tzinfo=UTC)  # 09:00 EDT


def test_rate_counts_from_its_anchor() -> None:
    anchor = datetime(2024, 6, 1, 10, 0, tzinfo=UTC)
    expression = Expression("rate(5 minutes)")
    assert expression.next_after(anchor, anchor) == anchor + timedelta(minutes=5)
    assert expression.next_after(anchor + timedelta(minutes=12), anchor) == anchor + timedelta(minutes=15)
    with pytest.raises(ValueError):
        Expression("rate(5 fortnights)")


# ---------------------------------------------------------------- schedules


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 6, 3, 8, 0, 30, tzinfo=UTC)  # a Monday

    def __call__(self) -> datetime:
        return self.now


def test_template_schedule_fires_its_function_with_its_input_on_time(
    fixture_stack: aws.Resources, lambdas: RecordingLambdas
) -> None:
    clock = Clock()
    scheduler = Scheduler(lambdas, fixture_stack, clock=clock, inline=True)
    assert scheduler.tick(clock.now + timedelta(seconds=59)) == []
    assert lambdas.of("ProbeFunction") == []
    fired = scheduler.tick(clock.now + timedelta(seconds=60))
    assert fired == ["template:ProbeFunction:Tick"]
    [(event, result)] = lambdas.of("ProbeFunction")
    assert event == {"job": "tick"}
    assert result == {"received": {"job": "tick"}}
    assert scheduler.tick(clock.now + timedelta(seconds=100)) == []  # next one is at +120 s


def test_template_cron_schedule_without_input_gets_an_eventbridge_event(
    fixture_stack: aws.Resources, lambdas: RecordingLambdas
) -> None:
    clock = Clock()
    scheduler = Scheduler(lambdas, fixture_stack, clock=clock, inline=True)
    fired = scheduler.tick(datetime(2024, 6, 3, 9, 0, 5, tzinfo=UTC))
    assert "template:ProbeFunction:Weekly" in fired
    weekly = [event for event, _ in lambdas.of("ProbeFunction") if "detail-type" in event]
    assert weekly[0]["detail-type"] == "Scheduled Event"
    assert weekly[0]["source"] == "aws.events"
    assert weekly[0]["time"] == "2024-06-03T09:00:00Z"
    assert weekly[0]["resources"][0].startswith("arn:aws:events:us-east-1:123456789012:rule/")


def scheduler_client() -> Any:
    return boto3.client("scheduler", region_name=aws.REGION)


def test_schedule_created_through_the_scheduler_api_invokes_its_lambda_target(
    fixture_stack: aws.Resources, lambdas: RecordingLambdas
) -> None:
    clock = Clock()
    scheduler = Scheduler(lambdas, fixture_stack, clock=clock, inline=True)
    scheduler_client().create_schedule(
        Name="double-it",
        ScheduleExpression="rate(2 minutes)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": fixture_stack.arns["WorkerFunction"],
            "RoleArn": "arn:aws:iam::123456789012:role/x",
            "Input": '{"n": 21}',
        },
    )
    scheduler.tick(clock.now)
    assert lambdas.of("WorkerFunction") == []
    scheduler.tick(clock.now + timedelta(minutes=2))
    assert lambdas.of("WorkerFunction") == [({"n": 21}, {"doubled": 42})]

    scheduler_client().update_schedule(
        Name="double-it",
        ScheduleExpression="rate(2 minutes)",
        FlexibleTimeWindow={"Mode": "OFF"},
        State="DISABLED",
        Target={
            "Arn": fixture_stack.arns["WorkerFunction"],
            "RoleArn": "arn:aws:iam::123456789012:role/x",
            "Input": '{"n": 21}',
        },
    )
    scheduler.tick(clock.now + timedelta(minutes=10))
    assert len(lambdas.of("WorkerFunction")) == 1


def test_one_time_schedule_fires_once_and_deletes_itself(
    fixture_stack: aws.Resources, lambdas: RecordingLambdas
) -> None:
    clock = Clock()
    clock.now = datetime.now(UTC).replace(microsecond=0)
    scheduler = Scheduler(lambdas, fixture_stack, clock=clock, inline=True)
    when = clock.now + timedelta(minutes=30)
    scheduler_client().create_schedule(
        Name="once",
        ScheduleExpression=f"at({when.strftime('%Y-%m-%dT%H:%M:%S')})",
        FlexibleTimeWindow={"Mode": "OFF"},
        ActionAfterCompletion="DELETE",
        Target={
            "Arn": fixture_stack.arns["WorkerFunction"],
            "RoleArn": "arn:aws:iam::123456789012:role/x",
            "Input": '{"n": 1}',
        },
    )
    once = "arn:aws:scheduler:us-east-1:123456789012:schedule/default/once"
    assert once not in scheduler.tick(clock.now)
    assert once in scheduler.tick(when)
    assert once not in scheduler.tick(when + timedelta(days=1))
    assert lambdas.of("WorkerFunction") == [({"n": 1}, {"doubled": 2})]
    assert scheduler_client().list_schedules()["Schedules"] == []


# ---------------------------------------------------------------- stream fan-out


def test_stream_filter_patterns_follow_lambda_rules() -> None:
    record = {"eventName": "INSERT", "dynamodb": {"NewImage": {"entity": {"S": "run_event"}, "n": {"N": "5"}}}}
    assert streams.matches({"eventName": ["INSERT", "MODIFY"]}, record)
    assert not streams.matches({"eventName": ["REMOVE"]}, record)
    assert streams.matches({"dynamodb": {"NewImage": {"entity": {"S": [{"prefix": "run_"}]}}}}, record)
    assert streams.matches({"dynamodb": {"NewImage": {"n": {"N": [{"numeric": [">", 3, "<=", 5]}]}}}}, record)
    assert streams.matches({"dynamodb": {"OldImage": [{"exists": False}]}}, record)
    assert not streams.matches({"dynamodb": {"NewImage": {"entity": {"S": [{"anything-but": ["run_event"]}]}}}}, record)


def test_writes_reach_the_stream_function_as_real_batches_shortly_after(
    fixture_stack: aws.Resources, lambdas: RecordingLambdas
) -> None:
    put("NOTE#before")  # written before the consumers start: not replayed
    fanout = streams.StreamFanout(lambdas, streams.subscriptions(fixture_stack), interval=0.05)
    fanout.start()
    try:
        put("NOTE#1", body="hello")
        put("OTHER#1")  # the event's filter keeps only NOTE# keys
        put("NOTE#1", body="changed")
        batches = wait_for(
            lambda: (
                [e for e, _ in lambdas.of("ProbeFunction")]
                if len([r for e, _ in lambdas.of("ProbeFunction") for r in e["Records"]]) >= 2
                else None
            )
        )
    finally:
        fanout.stop()
    records = [r for batch in batches for r in batch["Records"]]
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY"]
    assert {r["dynamodb"]["Keys"]["PK"]["S"] for r in records} == {"NOTE#1"}
    assert records[0]["dynamodb"]["NewImage"]["body"] == {"S": "hello"}
    assert records[1]["dynamodb"]["OldImage"]["body"] == {"S": "hello"}
    assert records[0]["eventSourceARN"] == fixture_stack.arns["Table.StreamArn"]
    assert records[0]["eventSource"] == "aws:dynamodb"
    assert isinstance(records[0]["dynamodb"]["ApproximateCreationDateTime"], int)
    json.dumps(batches)  # what a function gets is plain JSON, as from Lambda


def test_a_failing_stream_function_is_retried_then_the_stream_moves_on(
    fixture_stack: aws.Resources, lambdas: RecordingLambdas
) -> None:
    [subscription] = streams.subscriptions(fixture_stack)
    consumer = streams.Consumer(subscription, lambdas, retry_delay=0)
    consumer.start_position()
    lambdas.fail_next = subscription.retries + 1  # the first try and every retry fail
    put("NOTE#broken")
    assert consumer.poll() == 1
    assert [result for _, result in lambdas.of("ProbeFunction")] == ["raised"] * (subscription.retries + 1)
    put("NOTE#fine")
    assert consumer.poll() == 1
    last_event, last_result = lambdas.of("ProbeFunction")[-1]
    assert last_result == {"batchItemFailures": []}
    assert last_event["Records"][0]["dynamodb"]["Keys"]["PK"]["S"] == "NOTE#fine"


# ---------------------------------------------------------------- Step Functions


def run_execution(machine_arn: str, payload: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
    client = boto3.client("stepfunctions", region_name=aws.REGION)
    execution = client.start_execution(
        stateMachineArn=machine_arn, name=f"t{time.time_ns()}", input=json.dumps(payload)
    )
    return wait_for(
        lambda: (d := client.describe_execution(executionArn=execution["executionArn"]))["status"] != "RUNNING" and d,
        timeout,
    )


@pytest.fixture
def bridge(lambdas: RecordingLambdas) -> Iterator[RecordingLambdas]:
    stepfunctions.install_lambda_bridge(lambdas)
    try:
        yield lambdas
    finally:
        stepfunctions.uninstall_lambda_bridge()


def test_state_machine_lambda_task_runs_the_real_handler(
    fixture_stack: aws.Resources, bridge: RecordingLambdas
) -> None:
    started = time.monotonic()
    with stepfunctions.wait_override(0):  # the definition waits an hour
        described = run_execution(fixture_stack.names["Flow"], {"n": 21})
    assert described["status"] == "SUCCEEDED", described
    assert time.monotonic() - started < 8
    assert bridge.of("WorkerFunction") == [({"n": 21}, {"doubled": 42})]
    item = boto3.client("dynamodb").get_item(
        TableName=os.environ["TABLE_NAME"], Key={"PK": {"S": "RESULT"}, "SK": {"S": "1"}}
    )["Item"]
    assert item["doubled"] == {"N": "42"}


def test_a_handler_error_reaches_the_state_machines_catch(
    fixture_stack: aws.Resources, bridge: RecordingLambdas
) -> None:
    described = run_execution(fixture_stack.names["Flow"], {"n": 1, "fail": True})
    assert described["status"] == "SUCCEEDED"
    output = json.loads(described["output"])
    assert output["failed"] is True
    assert "the worker was asked to fail" in output["cause"]


def test_definition_substitutions_and_function_environment_resolve(fixture_stack: aws.Resources) -> None:
    [machine] = template.state_machines()
    definition = aws.definition_for(machine, fixture_stack)
    assert fixture_stack.arns["WorkerFunction"] in definition
    assert f"in {os.environ['TABLE_NAME']}." in definition
    assert os.environ["FLOW_ARN"] == fixture_stack.names["Flow"]
    assert os.environ["JOBS_QUEUE_URL"].endswith("/agentplane-jobsqueue")
    assert os.environ["SOCKET_ENDPOINT"] == "https://socketapi.execute-api.us-east-1.amazonaws.com/local"


def test_asynchronous_lambda_invoke_runs_the_function_in_the_background(
    fixture_stack: aws.Resources, bridge: RecordingLambdas
) -> None:
    answer = boto3.client("lambda", region_name=aws.REGION).invoke(
        FunctionName="probe-probefunction", InvocationType="Event", Payload=b'{"ping": 1}'
    )
    assert answer["StatusCode"] == 202
    wait_for(lambda: bridge.of("ProbeFunction"))
    assert bridge.of("ProbeFunction")[0][1] == {"received": {"ping": 1}}


# ---------------------------------------------------------------- WebSocket API


@pytest.fixture
def socket_gateway(lambdas: RecordingLambdas) -> Iterator[websocket.WebSocketGateway]:
    [api] = template.websocket_apis()
    gateway = websocket.WebSocketGateway(api, lambdas, "127.0.0.1", 0)
    gateway.start()
    websocket.install_management_api()
    try:
        yield gateway
    finally:
        gateway.stop()
        websocket.uninstall_management_api()


def management() -> Any:
    return boto3.client(
        "apigatewaymanagementapi", endpoint_url="https://socketapi.execute-api.us-east-1.amazonaws.com/local"
    )


def test_websocket_routes_come_from_the_template() -> None:
    template.use(FIXTURE)
    try:
        [api] = template.websocket_apis()
    finally:
        template.use(None)
    assert sorted(api.routes) == ["$connect", "$default", "$disconnect", "echo", "whoami"]
    assert api.stage == "local"
    assert api.routes["whoami"].two_way and not api.routes["echo"].two_way
    assert {route.function.logical_id for route in api.routes.values()} == {"SocketFunction"}


def test_connect_without_the_right_token_is_refused(socket_gateway: websocket.WebSocketGateway) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with pytest.raises(InvalidStatus) as refused:
        connect(f"{socket_gateway.url}/?token=wrong", open_timeout=5)
    assert refused.value.response.status_code == 401
    assert websocket.registry.ids() == []


def test_messages_route_by_action_and_pushes_reach_the_socket(
    socket_gateway: websocket.WebSocketGateway, lambdas: RecordingLambdas
) -> None:
    from websockets.sync.client import connect

    with connect(f"{socket_gateway.url}/?token=let-me-in", open_timeout=5) as client:
        client.send(json.dumps({"action": "echo", "text": "hi"}))
        assert json.loads(client.recv(timeout=5)) == {"echo": "hi", "endpoint_matches": True}
        client.send(json.dumps({"action": "nothing-like-this"}))
        assert json.loads(client.recv(timeout=5)) == {"default_route": True}
        client.send(json.dumps({"action": "whoami"}))
        connection_id = json.loads(client.recv(timeout=5))["connection_id"]
        client.send(json.dumps({"explode": True}))
        error = json.loads(client.recv(timeout=5))
        assert error["message"] == "Internal server error"
        assert error["connectionId"] == connection_id

        management().post_to_connection(ConnectionId=connection_id, Data=b'{"from": "elsewhere"}')
        assert json.loads(client.recv(timeout=5)) == {"from": "elsewhere"}
        assert management().get_connection(ConnectionId=connection_id)["Identity"]["SourceIp"] == "127.0.0.1"

    connect_event = lambdas.of("SocketFunction")[0][0]
    context = connect_event["requestContext"]
    assert context["eventType"] == "CONNECT"
    assert context["routeKey"] == "$connect"
    assert context["connectionId"] == connection_id
    assert context["domainName"] == "socketapi.execute-api.us-east-1.amazonaws.com"
    assert context["stage"] == "local"
    assert connect_event["queryStringParameters"] == {"token": "let-me-in"}
    routes = [e["requestContext"]["routeKey"] for e, _ in lambdas.of("SocketFunction")]
    assert routes[:5] == ["$connect", "echo", "$default", "whoami", "$default"]


def test_a_post_to_a_connection_the_server_no_longer_holds_is_gone(
    socket_gateway: websocket.WebSocketGateway, lambdas: RecordingLambdas
) -> None:
    from websockets.sync.client import connect

    with connect(f"{socket_gateway.url}/?token=let-me-in", open_timeout=5) as client:
        client.send(json.dumps({"action": "whoami"}))
        connection_id = json.loads(client.recv(timeout=5))["connection_id"]
    disconnects = wait_for(
        lambda: [e for e, _ in lambdas.of("SocketFunction") if e["requestContext"]["eventType"] == "DISCONNECT"]
    )
    assert disconnects[0]["requestContext"]["connectionId"] == connection_id
    assert disconnects[0]["requestContext"]["disconnectStatusCode"] == 1000
    with pytest.raises(ClientError) as gone:
        management().post_to_connection(ConnectionId=connection_id, Data=b"late")
    assert gone.value.response["Error"]["Code"] == "GoneException"
    assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410


def test_deleting_a_connection_through_the_api_closes_the_socket(socket_gateway: websocket.WebSocketGateway) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with connect(f"{socket_gateway.url}/?token=let-me-in", open_timeout=5) as client:
        client.send(json.dumps({"action": "whoami"}))
        connection_id = json.loads(client.recv(timeout=5))["connection_id"]
        management().delete_connection(ConnectionId=connection_id)
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=5)


# ---------------------------------------------------------------- persistence


def test_signing_secret_is_made_once_then_kept(tmp_path: Path) -> None:
    first = persist.signing_secret(tmp_path)
    assert len(first) == 64 and first.isalnum()
    assert persist.signing_secret(tmp_path) == first


def test_items_objects_schedules_and_key_material_survive_a_restart(tmp_path: Path) -> None:
    saved_env = dict(os.environ)
    template.use(FIXTURE)
    try:
        mock = aws.start()
        resources = aws.provision(SECRET)
        keeper = persist.Persistence(tmp_path, resources)
        keeper.restore()
        put("NOTE#kept", body="still here")
        boto3.client("dynamodb").put_item(
            TableName=os.environ["TABLE_NAME"], Item={"PK": {"S": "BIN"}, "SK": {"S": "1"}, "raw": {"B": b"\x00\xff"}}
        )
        boto3.client("s3").put_object(
            Bucket=os.environ["ARTIFACTS_BUCKET"], Key="logs/run 1.txt", Body=b"line", ContentType="text/plain"
        )
        sealed = boto3.client("kms").encrypt(KeyId=os.environ["KMS_KEY_ID"], Plaintext=b"sealed secret")
        scheduler_client().create_schedule(
            Name="nightly",
            ScheduleExpression="cron(0 3 * * ? *)",
            FlexibleTimeWindow={"Mode": "OFF"},
            Target={"Arn": resources.arns["WorkerFunction"], "RoleArn": "arn:aws:iam::123456789012:role/x"},
        )
        assert keeper.save_if_changed() is True
        assert keeper.save_if_changed() is False  # nothing changed since
        key_id = os.environ["KMS_KEY_ID"]
        mock.stop()

        mock = aws.start()
        resources = aws.provision(SECRET)
        assert os.environ["KMS_KEY_ID"] != key_id  # moto made a new key...
        restored = persist.Persistence(tmp_path, resources).restore()
        assert restored == {"keys": 1, "items": 2, "journaled": 0, "objects": 1, "schedules": 1}
        assert os.environ["KMS_KEY_ID"] == key_id  # ...and the saved one is back
        opened = boto3.client("kms").decrypt(CiphertextBlob=sealed["CiphertextBlob"])
        assert opened["Plaintext"] == b"sealed secret"
        table = os.environ["TABLE_NAME"]
        item = boto3.client("dynamodb").get_item(TableName=table, Key={"PK": {"S": "NOTE#kept"}, "SK": {"S": "1"}})
        assert item["Item"]["body"] == {"S": "still here"}
        binary = boto3.client("dynamodb").get_item(TableName=table, Key={"PK": {"S": "BIN"}, "SK": {"S": "1"}})
        assert binary["Item"]["raw"] == {"B": b"\x00\xff"}
        obj = boto3.client("s3").get_object(Bucket=os.environ["ARTIFACTS_BUCKET"], Key="logs/run 1.txt")
        assert obj["Body"].read() == b"line"
        assert obj["ContentType"] == "text/plain"
        assert scheduler_client().get_schedule(Name="nightly")["ScheduleExpression"] == "cron(0 3 * * ? *)"
        mock.stop()
    finally:
        template.use(None)
        os.environ.clear()
        os.environ.update(saved_env)


# ---------------------------------------------------------------- queues and TTL


def test_queue_messages_reach_the_function_and_only_handled_ones_leave_the_queue(
    fixture_stack: aws.Resources, lambdas: RecordingLambdas
) -> None:
    [subscription] = queues.subscriptions(fixture_stack)
    assert subscription.queue_arn == fixture_stack.arns["JobsQueue"]
    sqs = boto3.client("sqs", region_name=aws.REGION)
    url = os.environ["JOBS_QUEUE_URL"]
    sqs.send_message(
        QueueUrl=url, MessageBody="done", MessageAttributes={"kind": {"DataType": "String", "StringValue": "x"}}
    )
    sqs.send_message(QueueUrl=url, MessageBody="retry")
    consumer = queues.QueueConsumer(subscription, lambdas)
    assert consumer.poll() == 1  # "retry" was reported as a failure
    [(event, _)] = lambdas.of("ProbeFunction")
    records = {r["body"]: r for r in event["Records"]}
    assert set(records) == {"done", "retry"}
    assert records["done"]["eventSource"] == "aws:sqs"
    assert records["done"]["messageAttributes"]["kind"]["stringValue"] == "x"
    left = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert left["ApproximateNumberOfMessagesNotVisible"] == "1"


def test_expired_items_are_swept_and_fresh_ones_stay(fixture_stack: aws.Resources) -> None:
    now = int(time.time())
    client = boto3.client("dynamodb")
    table = os.environ["TABLE_NAME"]
    client.put_item(TableName=table, Item={"PK": {"S": "S#old"}, "SK": {"S": "1"}, "ttl": {"N": str(now - 5)}})
    client.put_item(TableName=table, Item={"PK": {"S": "S#new"}, "SK": {"S": "1"}, "ttl": {"N": str(now + 3600)}})
    client.put_item(TableName=table, Item={"PK": {"S": "S#forever"}, "SK": {"S": "1"}})
    assert TtlSweeper(fixture_stack).sweep(now) == 1
    left = {i["PK"]["S"] for i in client.scan(TableName=table)["Items"]}
    assert left == {"S#new", "S#forever"}


def test_http_server_answers_through_the_emulated_gateway(lambdas: RecordingLambdas) -> None:
    import urllib.error
    import urllib.request

    from devstack.gateway import HttpApi
    from devstack.server import LocalHttpServer

    server = LocalHttpServer(HttpApi(lambdas), "127.0.0.1", 0)
    server.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/api/health?x=1", timeout=5) as response:
            assert response.status == 200
            assert response.headers["content-type"] == "application/json"
            assert json.loads(response.read()) == {"ok": True}
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/api/nope", timeout=5)
        assert missing.value.code == 404
    finally:
        server.stop()
    [(event, _)] = lambdas.of("ProbeFunction")
    assert event["rawPath"] == "/api/health"
    assert event["queryStringParameters"] == {"x": "1"}

"""In-process AWS (moto), provisioned from template.yaml's resources (its state machines included),
and read directly where a call through the API would be too slow or would re-enter moto."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto import mock_aws

from devstack import patches, stripe_standin, template

REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK_NAME = "agentplane"
PSEUDO_PARAMETERS = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": STACK_NAME,
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK_NAME}/local",
    "AWS::NoValue": "",
}
log = logging.getLogger("devstack")
MOTO_CONFIG: Any = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
    "core": {"service_whitelist": None},
}


@dataclass
class Resources:
    """Physical names of what was provisioned, by template logical id."""

    names: dict[str, str] = field(default_factory=dict)
    arns: dict[str, str] = field(default_factory=dict)


def set_offline_environment() -> None:
    """Credentials and region that can only ever reach the emulation."""
    os.environ.update(
        {
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_SESSION_TOKEN": "local",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_DEV": "false",
        }
    )
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_ENDPOINT_URL", None)


# The lock every DynamoDB request is served under (see patches); persistence and TTL take it too.
_dynamodb_lock = patches.dynamodb_lock


class _SharedSession(boto3.Session):  # type: ignore[misc]  # boto3 ships no types
    """A boto3 session whose client creation is serialized: creating clients from one session in
    several threads at once is not safe, and the local stack runs handlers in many threads."""

    _lock = threading.Lock()

    def client(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return super().client(*args, **kwargs)

    def resource(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return super().resource(*args, **kwargs)


_session: list[boto3.Session] = []


def _shared_session() -> boto3.Session:
    """moto gives every mock a fresh default boto3 session, which reloads every service model
    (about half a second per service). One session for the process keeps the models loaded."""
    if not _session:
        _session.append(_SharedSession(region_name=REGION))
    return _session[0]


_clients: dict[str, Any] = {}


def client(service: str) -> Any:
    """One client per service for the process: moto answers whichever mock is running, and making
    a client costs ~8 ms, which provisioning a stack for every test would pay a few times over."""
    if service not in _clients:
        _clients[service] = _shared_session().client(service, region_name=REGION)
    return _clients[service]


def start() -> Any:
    set_offline_environment()
    patches.apply()  # every package the emulation patches, so a moved pin stops it here
    mock = mock_aws(config=MOTO_CONFIG)
    mock.start()
    boto3.DEFAULT_SESSION = _shared_session()  # moto's patch puts its own value back on stop
    return mock


def _table(resources: Resources, logical_id: str, props: dict[str, Any]) -> None:
    name = f"agentplane-{logical_id.lower()}"
    dynamodb = client("dynamodb")
    args: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if props.get("GlobalSecondaryIndexes"):
        args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    if props.get("StreamSpecification"):
        args["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    description = dynamodb.create_table(**args)["TableDescription"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl:
        dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    resources.names[logical_id] = name
    resources.arns[logical_id] = description["TableArn"]
    if description.get("LatestStreamArn"):
        resources.arns[f"{logical_id}.StreamArn"] = description["LatestStreamArn"]


def _kms_key(resources: Resources, logical_id: str, props: dict[str, Any]) -> None:
    key = client("kms").create_key(Description=props.get("Description", logical_id))
    resources.names[logical_id] = key["KeyMetadata"]["KeyId"]
    resources.arns[logical_id] = key["KeyMetadata"]["Arn"]


def _bucket(resources: Resources, logical_id: str, props: dict[str, Any]) -> None:
    name = f"agentplane-{logical_id.lower()}"
    client("s3").create_bucket(Bucket=name)
    if (props.get("VersioningConfiguration") or {}).get("Status") == "Enabled":
        client("s3").put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    resources.names[logical_id] = name
    resources.arns[logical_id] = f"arn:aws:s3:::{name}"


def _queue(resources: Resources, logical_id: str, props: dict[str, Any]) -> None:
    url = client("sqs").create_queue(QueueName=f"agentplane-{logical_id.lower()}")["QueueUrl"]
    resources.names[logical_id] = url
    resources.arns[logical_id] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:agentplane-{logical_id.lower()}"


def _function(resources: Resources, logical_id: str, props: dict[str, Any]) -> None:
    name = template.functions()[logical_id].physical_name
    resources.names[logical_id] = name
    resources.arns[logical_id] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def _websocket_api(resources: Resources, logical_id: str, props: dict[str, Any]) -> None:
    if props.get("ProtocolType") != "WEBSOCKET":
        return
    api = next(a for a in template.websocket_apis() if a.logical_id == logical_id)
    resources.names[logical_id] = api.api_id
    resources.arns[f"{logical_id}.ApiId"] = api.api_id
    resources.arns[f"{logical_id}.ApiEndpoint"] = f"wss://{api.domain_name}"
    resources.arns[logical_id] = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api.api_id}"


def _stage(resources: Resources, logical_id: str, props: dict[str, Any]) -> None:
    resources.names[logical_id] = str(props.get("StageName", "$default"))


PROVISIONERS = {
    "AWS::DynamoDB::Table": _table,
    "AWS::KMS::Key": _kms_key,
    "AWS::S3::Bucket": _bucket,
    "AWS::SQS::Queue": _queue,
    "AWS::Serverless::Function": _function,
    "AWS::ApiGatewayV2::Api": _websocket_api,
    "AWS::ApiGatewayV2::Stage": _stage,
}


def provision(signing_secret: str, lambda_functions: bool = False) -> Resources:
    """Create every emulated resource the template declares, then export the functions' env.

    With `lambda_functions`, the functions also exist in moto's Lambda (the local stack wants
    that, so ARNs resolve for any caller; the per-test stack skips it for speed)."""
    resources = Resources()
    for logical_id, resource in template.resources().items():
        provisioner = PROVISIONERS.get(resource["Type"])
        if provisioner:
            provisioner(resources, logical_id, resource.get("Properties") or {})
    resources.names["SigningSecret"] = signing_secret
    stripe = stripe_standin.local_secrets()
    resources.names.update({f"StripeSecret:{name}": value for name, value in stripe.items()})
    if lambda_functions:
        create_lambda_functions(resources)
    create_state_machines(resources)
    os.environ.update(resolve_environment(resources))
    if stripe_standin.is_local_key(stripe["api_key"]):
        # The local key only works with the stand-in (LocalStack starts one and points here at it).
        os.environ["STRIPE_API_BASE"] = stripe_standin.NOWHERE
    return resources


STATES_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/agentplane-local-states"


def definition_for(machine: template.StateMachine, resources: Resources) -> str:
    """The ASL with its DefinitionSubstitutions resolved against the local resources."""
    values = {name: resolve(value, resources) for name, value in machine.substitutions.items()}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return values[name] if name in values else match.group(0)

    return re.sub(r"\$\{([^}]+)\}", replace, machine.definition)


def create_state_machines(resources: Resources) -> None:
    """The template's state machines, in moto's Step Functions (which really executes ASL)."""
    for machine in template.state_machines():
        created = client("stepfunctions").create_state_machine(
            name=machine.name,
            definition=definition_for(machine, resources),
            roleArn=STATES_ROLE_ARN,
            type=machine.type,
        )
        arn = created["stateMachineArn"]
        resources.names[machine.logical_id] = arn  # Ref of a state machine is its ARN
        resources.arns[machine.logical_id] = arn
        resources.arns[f"{machine.logical_id}.Name"] = machine.name


def create_lambda_functions(resources: Resources) -> None:
    iam = client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    role = iam.create_role(RoleName=f"{STACK_NAME}-local-functions", AssumeRolePolicyDocument=json.dumps(trust))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("app.py", "# the code runs in-process; see devstack.lambdas\n")
    functions = client("lambda")
    for logical_id, function in template.functions().items():
        functions.create_function(
            FunctionName=resources.names[logical_id],
            Runtime="python3.11",
            Role=role["Role"]["Arn"],
            Handler=function.handler,
            Code={"ZipFile": archive.getvalue()},
        )


def _sub(text: str, variables: dict[str, Any], resources: Resources) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"  # ${!Literal} stays literal
        if name in variables:
            return resolve(variables[name], resources)
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        if "." in name:
            logical_id, attribute = name.split(".", 1)
            return resolve({"Fn::GetAtt": [logical_id, attribute]}, resources)
        return resolve({"Ref": name}, resources)

    return re.sub(r"\$\{([^}]+)\}", replace, text)


_SECRET_REFERENCE = re.compile(r"\{\{resolve:secretsmanager:\$\{(\w+)\}:SecretString(?::(\w+))?\}\}")


def _local_secret(text: str, resources: Resources) -> str:
    """A Secrets Manager dynamic reference, as the local stack's values (a key of a JSON secret,
    `…:SecretString:api_key`, is looked up as `<secret>:<key>`)."""
    reference = _SECRET_REFERENCE.fullmatch(text)
    if reference is None or reference.group(2) is None:
        return resources.names["SigningSecret"]
    return resources.names[f"{reference.group(1)}:{reference.group(2)}"]


def resolve(value: Any, resources: Resources) -> str:
    """Resolve the intrinsics the template's environment uses, against local resources."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if "Ref" in value:
        ref = value["Ref"]
        if ref in resources.names:
            return resources.names[ref]
        if ref in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[ref]
        parameter = (template.load().get("Parameters") or {}).get(ref)
        return str(parameter.get("Default", "")) if parameter else ref
    if "Fn::GetAtt" in value:
        logical_id, attribute = value["Fn::GetAtt"]
        return resources.arns.get(f"{logical_id}.{attribute}") or resources.arns.get(logical_id, "")
    if "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        text, variables = (sub[0], sub[1]) if isinstance(sub, list) else (sub, {})
        if "{{resolve:secretsmanager:" in text:
            return _local_secret(text, resources)
        return _sub(text, variables, resources)
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(resolve(part, resources) for part in parts)
    raise ValueError(f"unsupported intrinsic in the local stack: {value}")


def resolve_environment(resources: Resources) -> dict[str, str]:
    """Globals plus every function's own variables. All functions share this one process, so a
    function cannot override a global, and a name two functions set differently is reported."""
    environment = {name: resolve(value, resources) for name, value in template.global_environment().items()}
    shared = set(environment)
    owners: dict[str, str] = {}
    for logical_id in template.functions():
        for name, value in template.function_environment(logical_id).items():
            if name in shared:
                continue  # a per-function override of a global cannot be honoured in one process
            resolved = resolve(value, resources)
            if name in owners and environment[name] != resolved:
                log.warning("%s sets %s differently from %s; the local stack keeps one", logical_id, name, owners[name])
                continue
            environment[name] = resolved
            owners.setdefault(name, logical_id)
    return environment


# ---------------------------------------------------------------- moto's data, read directly


def table(name: str) -> Any:
    """moto's table of that name in the stack's account and region, or None."""
    from moto.dynamodb.models import dynamodb_backends

    return dynamodb_backends[ACCOUNT][REGION].tables.get(name)


def item_key(table: Any, hash_key: Any, range_key: Any) -> dict[str, Any]:
    """An item's key as DynamoDB JSON, as the API takes it."""
    key = {table.hash_key_attr: hash_key.to_json()}
    if table.range_key_attr:
        key[table.range_key_attr] = range_key.to_json()
    return key


def read_items(table_name: str, pick: Callable[[Any, Any], Any], chunk: int = 500) -> list[Any]:
    """pick(table, item) for every item of a table, leaving out None, read from moto's items a
    chunk of partitions at a time under the lock: a pass over a large table does not hold up
    requests for its whole length, as a Scan through the API would (and ~20x faster)."""
    found = table(table_name)
    if found is None:
        return []
    with _dynamodb_lock:
        partitions = list(found.items)
    picked = []
    for start in range(0, len(partitions), chunk):
        with _dynamodb_lock:
            for hash_key in partitions[start : start + chunk]:
                partition = found.items.get(hash_key)
                if partition is None:
                    continue
                for item in partition.values() if found.range_key_attr else [partition]:
                    value = pick(found, item)
                    if value is not None:
                        picked.append(value)
    return picked


def stream_iterator_position(iterator_arn: str) -> int | None:
    """The sequence number a shard iterator reads from next, if moto still knows it."""
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    iterator = dynamodbstreams_backends[ACCOUNT][REGION].shard_iterators.get(iterator_arn)
    return int(iterator.sequence_number) if iterator is not None else None

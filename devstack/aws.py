"""In-process AWS (moto), provisioned from template.yaml's resources."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto import mock_aws

from devstack import template

REGION = "us-east-1"
ACCOUNT = "123456789012"
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


def start() -> Any:
    set_offline_environment()
    mock = mock_aws(config=MOTO_CONFIG)
    mock.start()
    return mock


def _table(resources: Resources, logical_id: str, props: dict[str, Any]) -> None:
    name = f"agentplane-{logical_id.lower()}"
    client = boto3.client("dynamodb", region_name=REGION)
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
    description = client.create_table(**args)["TableDescription"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl:
        client.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    resources.names[logical_id] = name
    resources.arns[logical_id] = description["TableArn"]
    if description.get("LatestStreamArn"):
        resources.arns[f"{logical_id}.StreamArn"] = description["LatestStreamArn"]


def _kms_key(resources: Resources, logical_id: str, props: dict[str, Any]) -> None:
    key = boto3.client("kms", region_name=REGION).create_key(Description=props.get("Description", logical_id))
    resources.names[logical_id] = key["KeyMetadata"]["KeyId"]
    resources.arns[logical_id] = key["KeyMetadata"]["Arn"]


def _bucket(resources: Resources, logical_id: str, props: dict[str, Any]) -> None:
    name = f"agentplane-{logical_id.lower()}"
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=name)
    resources.names[logical_id] = name
    resources.arns[logical_id] = f"arn:aws:s3:::{name}"


def _queue(resources: Resources, logical_id: str, props: dict[str, Any]) -> None:
    url = boto3.client("sqs", region_name=REGION).create_queue(QueueName=f"agentplane-{logical_id.lower()}")["QueueUrl"]
    resources.names[logical_id] = url
    resources.arns[logical_id] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:agentplane-{logical_id.lower()}"


PROVISIONERS = {
    "AWS::DynamoDB::Table": _table,
    "AWS::KMS::Key": _kms_key,
    "AWS::S3::Bucket": _bucket,
    "AWS::SQS::Queue": _queue,
}


def provision(signing_secret: str) -> Resources:
    """Create every emulated resource the template declares, then export the functions' env."""
    resources = Resources()
    for logical_id, resource in template.resources().items():
        provisioner = PROVISIONERS.get(resource["Type"])
        if provisioner:
            provisioner(resources, logical_id, resource.get("Properties") or {})
    resources.names["SigningSecret"] = signing_secret
    os.environ.update(resolve_environment(resources))
    return resources


def resolve(value: Any, resources: Resources) -> str:
    """Resolve the intrinsics the template's environment uses, against local resources."""
    if isinstance(value, str | int | float):
        return str(value)
    if "Ref" in value:
        ref = value["Ref"]
        if ref in resources.names:
            return resources.names[ref]
        parameter = template.load()["Parameters"].get(ref)
        return str(parameter.get("Default", "")) if parameter else ref
    if "Fn::GetAtt" in value:
        logical_id, attribute = value["Fn::GetAtt"]
        return resources.arns.get(f"{logical_id}.{attribute}") or resources.arns.get(logical_id, "")
    if "Fn::Sub" in value:
        text = value["Fn::Sub"]
        if "{{resolve:secretsmanager:" in text:
            return resources.names["SigningSecret"]
        return text
    raise ValueError(f"unsupported intrinsic in the local stack: {value}")


def resolve_environment(resources: Resources) -> dict[str, str]:
    return {name: resolve(value, resources) for name, value in template.global_environment().items()}

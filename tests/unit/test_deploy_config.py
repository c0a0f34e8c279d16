"""Deploy control's pure rules: how a binding resolves, and which paths a recipe or a capsule may name."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agentplane.entities.deploy import ConnectionItem, DeployPolicyItem
from agentplane.logic.deploy.capsules import resolve
from agentplane.models.deploy import CapsuleSource, CredentialRecipe, Resolution

AWS = "conn_0000000000000000000000000a"
OTHER_AWS = "conn_0000000000000000000000000b"
DNS = "conn_0000000000000000000000000c"


def connection(connection_id: str, provider: str) -> ConnectionItem:
    return ConnectionItem(workspace_id="ws_1", id=connection_id, name=connection_id, provider=provider)


CONNECTIONS = {AWS: connection(AWS, "aws"), OTHER_AWS: connection(OTHER_AWS, "aws"), DNS: connection(DNS, "cloudflare")}


def binding(provider: str, connection_id: str) -> dict[str, str]:
    return {"provider": provider, "connection_id": connection_id}


def test_without_a_policy_every_existing_connection_of_the_right_provider_resolves():
    shown, usable = resolve([binding("aws", AWS), binding("cloudflare", DNS)], None, CONNECTIONS)

    assert [b.resolution for b in shown] == [Resolution.resolved_provider_connection] * 2
    assert [b.detail for b in shown] == [None, None]
    assert usable == {AWS: CONNECTIONS[AWS], DNS: CONNECTIONS[DNS]}


def test_a_gone_connection_or_one_of_another_provider_is_missing_and_not_handed_out():
    gone = "conn_000000000000000000000000zz"

    shown, usable = resolve([binding("aws", gone), binding("google", DNS)], None, CONNECTIONS)

    assert [b.resolution for b in shown] == [Resolution.blocked_missing_connection] * 2
    assert gone in str(shown[0].detail) and "google" in str(shown[1].detail)
    assert usable == {}


def test_a_policy_blocks_a_provider_it_does_not_list_and_says_so():
    policy = DeployPolicyItem(workspace_id="ws_1", allowed_providers=["cloudflare"])

    shown, usable = resolve([binding("aws", AWS), binding("cloudflare", DNS)], policy, CONNECTIONS)

    assert [b.resolution for b in shown] == [Resolution.blocked_policy, Resolution.resolved_provider_connection]
    assert shown[0].detail == "the workspace's deploy policy does not allow provider aws"
    assert list(usable) == [DNS]


def test_a_policy_listing_a_providers_connections_blocks_its_others_only():
    policy = DeployPolicyItem(workspace_id="ws_1", allowed_connections={"aws": [AWS]})

    shown, usable = resolve(
        [binding("aws", AWS), binding("aws", OTHER_AWS), binding("cloudflare", DNS)], policy, CONNECTIONS
    )

    assert [b.resolution for b in shown] == [
        Resolution.resolved_provider_connection,
        Resolution.blocked_policy,
        Resolution.resolved_provider_connection,
    ]
    assert OTHER_AWS in str(shown[1].detail)
    assert sorted(usable) == [AWS, DNS]


def test_a_missing_connection_is_reported_missing_even_where_the_policy_would_block_it():
    policy = DeployPolicyItem(workspace_id="ws_1", allowed_providers=[])

    shown, _ = resolve([binding("aws", "conn_000000000000000000000000zz")], policy, CONNECTIONS)

    assert shown[0].resolution == Resolution.blocked_missing_connection


@pytest.mark.parametrize("path", [".aws/credentials", "gcp.json", "./creds/key.json", "a..b", "..hidden", "x/.y"])
def test_a_recipe_may_write_files_under_the_runners_directory(path):
    assert CredentialRecipe.model_validate({"files": {path: "KEY"}}).files == {path: "KEY"}


@pytest.mark.parametrize("path", ["/etc/credentials", "..", "../up", "a/../../up", "a/..", "a//b", "dir/", ""])
def test_a_recipe_never_writes_outside_the_runners_directory(path):
    with pytest.raises(ValidationError):
        CredentialRecipe.model_validate({"files": {path: "KEY"}})


@pytest.mark.parametrize("path", [".", "stacks/web", "stacks/web/", "./modules/dns"])
def test_a_capsule_source_path_is_a_directory_of_the_repository(path):
    assert CapsuleSource.model_validate({"repository_url": "https://github.com/acme/infra", "path": path}).path == path


@pytest.mark.parametrize("path", ["/abs", "..", "../up", "stacks/../../up", "with space", "a//b"])
def test_a_capsule_source_path_never_leaves_the_repository(path):
    with pytest.raises(ValidationError):
        CapsuleSource.model_validate({"repository_url": "https://github.com/acme/infra", "path": path})

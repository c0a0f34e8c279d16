"""Deploy control's items: provider connections (their credentials sealed), capsules (with their
bindings, their current state and outputs, and the apply/destroy run holding them), the
workspace's deploy policy, and each capsule's state versions.

Connections, capsules and the policy live in the workspace's partition; GSI1 lists a workspace's
connections and capsules by id. A capsule's state versions live in a partition of their own, one
item per serial, so "the latest versions" is one Query read backwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pynamodb.attributes import BooleanAttribute, UnicodeAttribute, VersionAttribute

from agentplane import keys
from agentplane.entities.base import Entity, Keys, ListDocument, MapDocument, number
from agentplane.entities.patterns import access_pattern
from agentplane.models.deploy import (
    Binding,
    Capsule,
    CapsuleState,
    Connection,
    DeployOutput,
    DeployPolicy,
    StateVersion,
)
from agentplane.store import EntityPage, QuerySpec, get_store

if TYPE_CHECKING:
    pass


class ConnectionItem(Entity[Connection], discriminator="provider_connection"):
    workspace_id = UnicodeAttribute()
    id = UnicodeAttribute()
    name = UnicodeAttribute()
    provider = UnicodeAttribute()
    description = UnicodeAttribute(null=True)
    credential_names = ListDocument()
    recipe = MapDocument()
    # The credentials as one JSON object, sealed (crypto.seal): never part of the API model.
    sealed = MapDocument()
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()

    internal = frozenset({"sealed", "version"})

    def where(self) -> Keys:
        return Keys(
            keys.connection_key(self.workspace_id, self.id), gsi1=(keys.connection_list_gsi(self.workspace_id), self.id)
        )


class CapsuleItem(Entity[Capsule], discriminator="capsule"):
    workspace_id = UnicodeAttribute()
    id = UnicodeAttribute()
    name = UnicodeAttribute()
    description = UnicodeAttribute(null=True)
    project_id = UnicodeAttribute(null=True)
    source = MapDocument()
    tool = UnicodeAttribute()
    tool_version = UnicodeAttribute()
    auto_apply = BooleanAttribute(default=False)
    # [{provider, connection_id}]: resolved when shown, so a deleted connection or a policy
    # change shows at once (models.deploy.Resolution).
    bindings = ListDocument(default=list)
    # The current state (the last state version written); serial 0 = never applied.
    state_serial = number(default=0)
    state_lineage = UnicodeAttribute(null=True)
    state_checksum = UnicodeAttribute(null=True)
    state_run_id = UnicodeAttribute(null=True)
    state_resources = number(null=True)
    state_updated_at = UnicodeAttribute(null=True)
    # {name: {"value": v} | {"sealed": …}, "sensitive": bool}: sensitive values are sealed.
    outputs = MapDocument(null=True)
    # One apply/destroy at a time: the run holding the capsule, and those waiting, oldest first.
    active_run_id = UnicodeAttribute(null=True)
    queued_run_ids = ListDocument(default=list)
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()

    internal = frozenset({"outputs"})

    def where(self) -> Keys:
        return Keys(
            keys.capsule_key(self.workspace_id, self.id), gsi1=(keys.capsule_list_gsi(self.workspace_id), self.id)
        )

    def state(self) -> CapsuleState | None:
        if not self.state_serial:
            return None
        return CapsuleState(
            serial=int(self.state_serial),
            lineage=self.state_lineage,
            checksum=self.state_checksum,
            run_id=self.state_run_id,
            resources=int(self.state_resources) if self.state_resources is not None else None,
            updated_at=self.state_updated_at,
        )

    def to_model(self, bindings: Sequence[Binding] | None = None) -> Capsule:
        """The capsule as the API shows it, with its bindings as resolved now (logic.deploy)."""
        if bindings is None:
            raise TypeError("a capsule's API model needs its bindings' resolutions")
        fields = {
            name: value for name, value in self.fields().items() if not name.startswith("state_") and name != "bindings"
        }
        return Capsule.model_validate({**fields, "bindings": list(bindings), "state": self.state()})

    def shown_outputs(self) -> list[DeployOutput]:
        """The current state's outputs, sensitive values as None."""
        shown = []
        for name, output in sorted((self.outputs or {}).items()):
            sensitive = bool(output.get("sensitive"))
            shown.append(
                DeployOutput(
                    name=name,
                    value=None if sensitive else output.get("value"),
                    sensitive=sensitive,
                    serial=int(self.state_serial or 0),
                    run_id=str(self.state_run_id or ""),
                )
            )
        return shown


class DeployPolicyItem(Entity[DeployPolicy], discriminator="deploy_policy"):
    workspace_id = UnicodeAttribute()
    allowed_providers = ListDocument(null=True)
    allowed_connections = MapDocument(null=True)
    updated_by = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)
    version = VersionAttribute()

    def where(self) -> Keys:
        return Keys(keys.deploy_policy_key(self.workspace_id))

    def blocks(self, provider: str, connection_id: str) -> str | None:
        """Why the policy refuses binding `provider` to `connection_id`, or None when it allows it."""
        if self.allowed_providers is not None and provider not in self.allowed_providers:
            return f"the workspace's deploy policy does not allow provider {provider}"
        allowed = (self.allowed_connections or {}).get(provider)
        if allowed is not None and connection_id not in allowed:
            return f"the workspace's deploy policy does not allow connection {connection_id} for provider {provider}"
        return None


class StateVersionItem(Entity[StateVersion], discriminator="state_version"):
    workspace_id = UnicodeAttribute()
    capsule_id = UnicodeAttribute()
    id = UnicodeAttribute()
    serial = number()
    lineage = UnicodeAttribute()
    checksum = UnicodeAttribute()
    run_id = UnicodeAttribute()
    resources = number(default=0)
    # Where the state body is: the state object's key and its S3 version (the bucket is versioned).
    object_key = UnicodeAttribute()
    object_version = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()

    internal = frozenset({"workspace_id", "object_key", "object_version"})

    def where(self) -> Keys:
        return Keys(keys.state_version_key(self.workspace_id, self.capsule_id, int(self.serial)))


@access_pattern(ConnectionItem, partition=keys.connection_list_gsi, index=keys.GSI1)
def connections_of_workspace(
    ws_id: str, *, provider: str | None, limit: int, start: dict[str, Any] | None
) -> EntityPage[ConnectionItem]:
    """A workspace's provider connections, oldest first; `provider` keeps that provider's."""
    condition = ConnectionItem.provider == provider if provider is not None else None
    spec = QuerySpec(keys.connection_list_gsi(ws_id), index=keys.GSI1, filter=condition)
    return get_store().fill(ConnectionItem, spec, limit=limit, start=start)


@access_pattern(CapsuleItem, partition=keys.capsule_list_gsi, index=keys.GSI1)
def capsules_of_workspace(ws_id: str, *, limit: int, start: dict[str, Any] | None) -> EntityPage[CapsuleItem]:
    """A workspace's capsules, oldest first."""
    spec = QuerySpec(keys.capsule_list_gsi(ws_id), index=keys.GSI1)
    return get_store().select(CapsuleItem, spec, limit=limit, start=start)


@access_pattern(StateVersionItem, partition=keys.capsule_pk, sort="state versions, newest serial first")
def state_versions_of_capsule(
    ws_id: str, capsule_id: str, *, limit: int, start: dict[str, Any] | None
) -> EntityPage[StateVersionItem]:
    """A capsule's state versions, newest serial first."""
    spec = QuerySpec(keys.capsule_pk(ws_id, capsule_id), sk_prefix=keys.STATE_VERSION_PREFIX, newest_first=True)
    return get_store().select(StateVersionItem, spec, limit=limit, start=start)

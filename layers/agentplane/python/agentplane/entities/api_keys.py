"""API keys: one record per key in its workspace's partition (listed through GSI1 until deleted,
and through GSI2 while neither revoked nor deleted), the key's secrets being token records; and
each key's usage log, a partition of its own holding a bucket per minute and the running total
they fold into (which sorts after them, so a newest-first Query reads it first)."""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import UnicodeAttribute, VersionAttribute

from agentplane import keys
from agentplane.entities.base import Entity, EpochTTL, Keys, ListDocument, number
from agentplane.entities.patterns import access_pattern
from agentplane.models.api_keys import ApiKey, ApiKeyStatus
from agentplane.store import EntityPage, QuerySpec, get_store

# Keys read per round when every key of a workspace is wanted.
_ALL_KEYS_ROUND = 100


class ApiKeyItem(Entity[ApiKey], discriminator="api_key"):
    id = UnicodeAttribute()
    workspace_id = UnicodeAttribute()
    name = UnicodeAttribute()
    description = UnicodeAttribute(default="")
    scopes = ListDocument()
    key_prefix = UnicodeAttribute()  # the secret's first characters, to tell keys apart
    status = UnicodeAttribute()  # active, inactive or revoked (expired is worked out when read)
    token_hash = UnicodeAttribute()  # the current secret's record
    grace_tokens = ListDocument(default=list)  # [{hash, until}]: replaced secrets still working
    user_id = UnicodeAttribute(null=True)  # the person who made it
    agent = UnicodeAttribute(null=True)  # agent keys: the agent it acts as
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    expires_at = UnicodeAttribute(null=True)
    expires_epoch = number(null=True)
    rotated_at = UnicodeAttribute(null=True)
    previous_key_expires_at = UnicodeAttribute(null=True)
    revoked_at = UnicodeAttribute(null=True)
    deleted_at = UnicodeAttribute(null=True)  # soft deleted: 404, listed nowhere
    last_used_at = UnicodeAttribute(null=True)  # stamped as its usage is folded
    # Keys made before usage totals were kept beside their minutes folded them here.
    request_total = number(null=True)
    usage_folded_through = UnicodeAttribute(null=True)
    version = VersionAttribute()

    internal = frozenset(
        {
            "token_hash",
            "grace_tokens",
            "user_id",
            "expires_epoch",
            "deleted_at",
            "request_total",
            "usage_folded_through",
        }
    )

    def where(self) -> Keys:
        listed = self.deleted_at is None
        live = listed and self.status != ApiKeyStatus.revoked.value
        return Keys(
            keys.api_key_key(self.workspace_id, self.id),
            gsi1=(keys.api_key_list_gsi(self.workspace_id), self.id) if listed else None,
            gsi2=(keys.api_key_live_gsi(self.workspace_id), self.id) if live else None,
        )

    def status_at(self, now: int) -> ApiKeyStatus:
        """The status as a caller sees it at `now`: past its expiry a key that is not revoked is expired."""
        stored = ApiKeyStatus(self.status)
        if stored is not ApiKeyStatus.revoked and self.expires_epoch and int(self.expires_epoch) <= now:
            return ApiKeyStatus.expired
        return stored

    def to_model_at(self, now: int) -> ApiKey:
        return ApiKey.model_validate({**self.fields(), "status": self.status_at(now)})


class ApiKeyUsageTotalItem(Entity, discriminator="api_key_usage_total"):
    """A key's requests of every minute folded so far, how far they go, and its last use."""

    workspace_id = UnicodeAttribute()
    key_id = UnicodeAttribute()
    request_total = number(default=0)
    usage_folded_through = UnicodeAttribute(null=True)  # the sort key of the last minute folded in
    last_used_at = UnicodeAttribute(null=True)
    deleted_at = UnicodeAttribute(null=True)  # its key is deleted: the log answers 404

    def where(self) -> Keys:
        return Keys(keys.api_key_usage_total_key(self.workspace_id, self.key_id))

    @classmethod
    def of(cls, key: ApiKeyItem) -> ApiKeyUsageTotalItem:
        """A key's total as first written: with the key, or (for a key made before totals were
        kept beside its minutes) from what its record had folded."""
        return cls(
            workspace_id=key.workspace_id,
            key_id=key.id,
            request_total=int(key.request_total or 0),
            usage_folded_through=key.usage_folded_through,
            last_used_at=key.last_used_at,
        )


class ApiKeyUsageItem(Entity, discriminator="api_key_usage"):
    """A key's requests in one UTC minute (written by the request counter as calls are made)."""

    workspace_id = UnicodeAttribute()
    key_id = UnicodeAttribute()
    requests = number(default=0)
    ttl = EpochTTL(attr_name=keys.TTL, null=True)

    @property
    def sort_key(self) -> str:
        """Its place in the key's log: how far the total's `usage_folded_through` reaches is one."""
        return str(self.SK)

    @property
    def minute_label(self) -> str:
        """The minute the bucket counts, as its sort key names it (2025-01-31T09:05Z)."""
        return self.sort_key.removeprefix(keys.API_KEY_USAGE_MINUTE)

    def where(self) -> Keys:
        return Keys(keys.api_key_usage_key(self.workspace_id, self.key_id, self.minute_label))


@access_pattern(ApiKeyItem, partition=keys.api_key_list_gsi, index=keys.GSI1)
def listed_keys(ws_id: str, *, limit: int, start: dict[str, Any] | None) -> EntityPage[ApiKeyItem]:
    """A page of a workspace's API keys that are not deleted (revoked ones included), oldest first."""
    spec = QuerySpec(keys.api_key_list_gsi(ws_id), index=keys.GSI1)
    return get_store().select(ApiKeyItem, spec, limit=limit, start=start)


@access_pattern(ApiKeyItem, partition=keys.api_key_live_gsi, index=keys.GSI2)
def live_keys(ws_id: str, *, limit: int, start: dict[str, Any] | None) -> EntityPage[ApiKeyItem]:
    """A page of a workspace's API keys that are neither revoked nor deleted, oldest first."""
    spec = QuerySpec(keys.api_key_live_gsi(ws_id), index=keys.GSI2)
    return get_store().select(ApiKeyItem, spec, limit=limit, start=start)


@access_pattern(ApiKeyItem, partition=keys.ws_pk, sort="prefix APIKEY#")
def every_key(ws_id: str) -> list[ApiKeyItem]:
    """Every key record of a workspace, deleted ones included, strongly consistent (revoking
    them all as the workspace is deleted, or a leaving member's)."""
    spec = QuerySpec(keys.ws_pk(ws_id), sk_prefix=keys.API_KEY_PREFIX, consistent=True)
    found: list[ApiKeyItem] = []
    start: dict[str, Any] | None = None
    while True:
        page = get_store().select(ApiKeyItem, spec, limit=_ALL_KEYS_ROUND, start=start)
        found += page.items
        if page.last_key is None:
            return found
        start = page.last_key


@access_pattern(ApiKeyUsageTotalItem, partition=keys.api_key_usage_pk, sort="all, newest first")
def latest_usage(ws_id: str, key_id: str, *, limit: int) -> EntityPage[Entity]:
    """A key's usage total followed by its newest minutes, strongly consistent (the first page of
    its log: the total sorts after every minute)."""
    spec = QuerySpec(keys.api_key_usage_pk(ws_id, key_id), newest_first=True, consistent=True)
    return get_store().select(Entity, spec, limit=limit)


@access_pattern(ApiKeyUsageItem, partition=keys.api_key_usage_pk, sort="prefix MIN#, newest first")
def usage_minutes(
    ws_id: str, key_id: str, *, limit: int, start: dict[str, Any] | None = None
) -> EntityPage[ApiKeyUsageItem]:
    """A page of a key's minute buckets, newest first."""
    spec = QuerySpec(keys.api_key_usage_pk(ws_id, key_id), sk_prefix=keys.API_KEY_USAGE_MINUTE, newest_first=True)
    return get_store().select(ApiKeyUsageItem, spec, limit=limit, start=start)


@access_pattern(ApiKeyUsageItem, partition=keys.api_key_usage_pk, sort="range MIN#… after the folded ones")
def minutes_after(
    ws_id: str, key_id: str, folded_through: str | None, *, limit: int, through: str | None = None
) -> list[ApiKeyUsageItem]:
    """A key's minute buckets from the last one folded into its total on (that one included),
    oldest first, strongly consistent; up to the minute `through` (its sort key) when given."""
    lower = folded_through or keys.API_KEY_USAGE_MINUTE
    upper = through or keys.api_key_usage_upper_bound()
    spec = QuerySpec(keys.api_key_usage_pk(ws_id, key_id), sk_between=(lower, upper), consistent=True)
    return get_store().select(ApiKeyUsageItem, spec, limit=limit).items

"""Agents, their progress reports and agent templates.

An agent lives in its workspace's partition under its name. Where else it appears follows from
its fields (`AgentItem.where`):
- the plain list (GSI1, by name), unless it is a finished child agent;
- while it is live (a heartbeat seen, status not resting): the workspace's live index (GSI2,
  by last heartbeat, so the silent ones are one key range) and the global watch (GSI3, one of
  AGENT_WATCH_SHARDS partitions by crc32 of ws#name, by last heartbeat then workspace), which the
  scheduled stall sweep reads across every workspace.
An agent's `version` moves with every change but heartbeats (what If-Match compares); its
`revision` moves with every write and guards it, so no write is lost and the index attributes
always match the fields.

Progress reports expire after a day (`ttl`; reads skip expired ones, as TTL deletes lag); each
agent has one "latest" report item, and the latest reports of a workspace share a partition.
Templates are listed (GSI1) while they are not deleted; a guard item keeps each slug unique.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pynamodb.attributes import BooleanAttribute, UnicodeAttribute, VersionAttribute

from agentplane import keys
from agentplane.entities.base import Entity, EpochTTL, Keys, ListDocument, MapDocument, number, raw_item
from agentplane.entities.patterns import access_pattern
from agentplane.models.agents import (
    FINISHED_STATUSES,
    RESTING_STATUSES,
    Agent,
    AgentTemplate,
    DesiredState,
    Progress,
)
from agentplane.store import EntityPage, Item, QuerySpec, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition

# Agents read per round when every agent of a workspace is wanted (export).
_ALL_AGENTS_ROUND = 100


class AgentItem(Entity[Agent], discriminator="agent"):
    workspace_id = UnicodeAttribute()
    id = UnicodeAttribute()
    name = UnicodeAttribute()
    display_name = UnicodeAttribute(null=True)
    role = UnicodeAttribute()
    description = UnicodeAttribute(default="")
    model = UnicodeAttribute(null=True)
    engine = UnicodeAttribute(null=True)
    execution_mode = UnicodeAttribute(null=True)
    system_prompt = UnicodeAttribute(null=True)
    # The engine API key sealed with the workspace's envelope key; never leaves the layer.
    api_key_sealed = MapDocument(null=True)
    emoji = UnicodeAttribute(null=True)
    color = UnicodeAttribute(null=True)
    status = UnicodeAttribute()
    activity = UnicodeAttribute(null=True)
    current_task = UnicodeAttribute(null=True)
    parent_agent = UnicodeAttribute(null=True)
    interval_sec = number(null=True)
    ws_port = number(null=True)
    last_seen_at = UnicodeAttribute(null=True)
    stalled_at = UnicodeAttribute(null=True)
    desired_state = UnicodeAttribute(default=DesiredState.running.value)
    desired_state_at = UnicodeAttribute(null=True)
    desired_state_by = UnicodeAttribute(null=True)
    desired_state_note = UnicodeAttribute(null=True)
    template_id = UnicodeAttribute(null=True)
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = number()
    revision = VersionAttribute()

    internal = frozenset({"api_key_sealed", "revision", "stalled_at"})

    @property
    def is_live(self) -> bool:
        """Expected to heartbeat: seen once, and not resting (so it can go silent)."""
        return bool(self.last_seen_at) and self.status not in RESTING_STATUSES

    def where(self) -> Keys:
        ws, name = self.workspace_id, self.name
        listed = not (self.status in FINISHED_STATUSES and self.parent_agent)
        seen = str(self.last_seen_at)
        return Keys(
            keys.agent_key(ws, name),
            gsi1=(keys.agent_list_gsi(ws), name) if listed else None,
            gsi2=(keys.agent_live_gsi(ws), keys.agent_live_sk(seen, name)) if self.is_live else None,
            gsi3=(
                (keys.agent_watch_gsi(keys.agent_watch_shard(ws, name)), keys.agent_watch_sk(seen, ws, name))
                if self.is_live
                else None
            ),
        )

    def to_model(self) -> Agent:
        return Agent.model_validate({**self.fields(), "has_api_key": self.api_key_sealed is not None})


class _ProgressReport(Entity[Progress]):
    """What a progress report holds, as a report and as its agent's latest one."""

    workspace_id = UnicodeAttribute()
    id = UnicodeAttribute()  # time-ordered: a later report has a greater id
    agent_name = UnicodeAttribute(null=True)
    # Reports stored before the field took Toban's name kept it as `agent` (gone within a day).
    agent = UnicodeAttribute(null=True)
    message = UnicodeAttribute(null=True)
    percent = number(null=True)
    task_id = UnicodeAttribute(null=True)
    task_name = UnicodeAttribute(null=True)
    step = UnicodeAttribute(null=True)
    file = UnicodeAttribute(null=True)
    detail = UnicodeAttribute(null=True)
    reported_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    expires_at = UnicodeAttribute()
    ttl = EpochTTL(attr_name=keys.TTL, null=True)

    internal = frozenset({"ttl", "agent"})

    def to_model(self) -> Progress:
        return Progress.model_validate({**self.fields(), "agent_name": self.agent_name or self.agent})


class AgentProgressItem(_ProgressReport, discriminator="agent_progress"):
    def where(self) -> Keys:
        return Keys(keys.agent_progress_key(self.workspace_id, str(self.agent_name), self.id))


class LatestProgressItem(_ProgressReport, discriminator="agent_progress_latest"):
    """The latest report of an agent, replaced only by a newer one."""

    def where(self) -> Keys:
        return Keys(keys.agent_latest_progress_key(self.workspace_id, str(self.agent_name)))

    @classmethod
    def of(cls, report: AgentProgressItem) -> LatestProgressItem:
        """`report` as its agent's latest (the same fields and expiry)."""
        return cls(**report.fields(), ttl=report.ttl)


class AgentTemplateItem(Entity[AgentTemplate], discriminator="agent_template"):
    workspace_id = UnicodeAttribute()
    id = UnicodeAttribute()
    name = UnicodeAttribute()
    slug = UnicodeAttribute()
    description = UnicodeAttribute(default="")
    icon = UnicodeAttribute(null=True)
    category = UnicodeAttribute(null=True)
    role = UnicodeAttribute(null=True)
    model = UnicodeAttribute(null=True)
    engine = UnicodeAttribute(null=True)
    execution_mode = UnicodeAttribute(null=True)
    system_prompt = UnicodeAttribute(null=True)
    identity = UnicodeAttribute(null=True)
    interval_sec = number(null=True)
    tools = ListDocument(null=True)
    capabilities = ListDocument(null=True)
    config = MapDocument(null=True)
    is_featured = BooleanAttribute(default=False)
    sort_order = number(default=0)
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    deleted_at = UnicodeAttribute(null=True)  # soft deleted: out of the list, its slug free again
    version = VersionAttribute()

    internal = frozenset({"deleted_at"})

    def where(self) -> Keys:
        listed = (keys.agent_template_list_gsi(self.workspace_id), self.id) if not self.deleted_at else None
        return Keys(keys.agent_template_key(self.workspace_id, self.id), gsi1=listed)


class AgentTemplateSlugItem(Entity, discriminator="agent_template_slug"):
    """Keeps a template slug unique among a workspace's live templates (created with the template)."""

    workspace_id = UnicodeAttribute()
    slug = UnicodeAttribute()
    template_id = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(keys.agent_template_slug_key(self.workspace_id, self.slug))


# --- the registry ----------------------------------------------------------------------------------


@access_pattern(AgentItem, partition=keys.agent_list_gsi, index=keys.GSI1)
def listed_agents(
    ws_id: str, *, statuses: Sequence[str], role: str | None, limit: int, start: dict[str, Any] | None
) -> EntityPage[AgentItem]:
    """The agents a plain list shows (finished child agents left out) by name; `statuses` (any of
    them) and `role` narrow the page."""
    spec = QuerySpec(keys.agent_list_gsi(ws_id), index=keys.GSI1, filter=_narrowed(statuses, role))
    return get_store().fill(AgentItem, spec, limit=limit, start=start)


@access_pattern(AgentItem, partition=keys.ws_pk, sort="prefix AGENT#")
def agents_of_workspace(
    ws_id: str, *, statuses: Sequence[str], role: str | None, limit: int, start: dict[str, Any] | None
) -> EntityPage[AgentItem]:
    """Every agent of a workspace by name, finished child agents too; `statuses` (any of them) and
    `role` narrow the page."""
    spec = QuerySpec(keys.ws_pk(ws_id), sk_prefix=keys.AGENT_PREFIX, filter=_narrowed(statuses, role))
    return get_store().fill(AgentItem, spec, limit=limit, start=start)


def _narrowed(statuses: Sequence[str], role: str | None) -> Condition | None:
    condition: Condition | None = AgentItem.status.is_in(*statuses) if statuses else None
    if role is not None:
        condition = AgentItem.role == role if condition is None else condition & (AgentItem.role == role)
    return condition


@access_pattern(AgentItem, partition=keys.ws_pk, sort="prefix AGENT#")
def every_agent(ws_id: str) -> Iterator[AgentItem]:
    """Every agent of a workspace by name, strongly consistent (export)."""
    spec = QuerySpec(keys.ws_pk(ws_id), sk_prefix=keys.AGENT_PREFIX, consistent=True)
    start: dict[str, Any] | None = None
    while True:
        page = get_store().select(AgentItem, spec, limit=_ALL_AGENTS_ROUND, start=start)
        yield from page.items
        if page.last_key is None:
            return
        start = page.last_key


def agent_from_item(item: Item) -> AgentItem:
    """An agent another family read as a plain dict (import reads them in its own batches)."""
    return AgentItem.from_raw_data(raw_item(item))


# --- stalls ------------------------------------------------------------------------------------------


@access_pattern(AgentItem, partition=keys.agent_live_gsi, index=keys.GSI2, sort="range up to the cutoff")
def silent_agents(ws_id: str, cutoff: str, *, limit: int, start: dict[str, Any] | None) -> EntityPage[AgentItem]:
    """The workspace's live agents whose last heartbeat is at or before `cutoff`, longest silent
    first: exactly the silent ones, never a healthy agent."""
    spec = QuerySpec(keys.agent_live_gsi(ws_id), index=keys.GSI2, sk_between=("0", cutoff))
    return get_store().select(AgentItem, spec, limit=limit, start=start)


@access_pattern(AgentItem, partition=keys.agent_watch_gsi, index=keys.GSI3, sort="range up to the cutoff")
def silent_agents_watched(
    shard: int, cutoff: str, *, limit: int, start: dict[str, Any] | None
) -> EntityPage[AgentItem]:
    """The live agents of every workspace in one shard of the global watch whose last heartbeat
    is at or before `cutoff` (each names its workspace)."""
    spec = QuerySpec(keys.agent_watch_gsi(shard), index=keys.GSI3, sk_between=("0", cutoff))
    return get_store().select(AgentItem, spec, limit=limit, start=start)


# --- progress ----------------------------------------------------------------------------------------


def _unexpired() -> Condition:
    return _ProgressReport.ttl > dt.datetime.now(tz=dt.UTC)


@access_pattern(AgentProgressItem, partition=keys.agent_progress_pk, sort="newest first")
def reports_of_agent(ws_id: str, name: str, *, limit: int) -> list[AgentProgressItem]:
    """An agent's latest unexpired progress reports, newest first (one Query)."""
    spec = QuerySpec(keys.agent_progress_pk(ws_id, name), newest_first=True, filter=_unexpired())
    return get_store().select(AgentProgressItem, spec, limit=limit).items


@access_pattern(LatestProgressItem, partition=keys.agent_latest_progress_pk, sort="by agent name")
def latest_reports(ws_id: str, *, limit: int, start: dict[str, Any] | None) -> EntityPage[LatestProgressItem]:
    """The latest unexpired report of each agent of a workspace, by agent name (one Query)."""
    spec = QuerySpec(keys.agent_latest_progress_pk(ws_id), filter=_unexpired())
    return get_store().select(LatestProgressItem, spec, limit=limit, start=start)


# --- templates ---------------------------------------------------------------------------------------


@access_pattern(AgentTemplateItem, partition=keys.agent_template_list_gsi, index=keys.GSI1)
def templates_of_workspace(
    ws_id: str, *, category: str | None, featured: bool | None, limit: int, start: dict[str, Any] | None
) -> EntityPage[AgentTemplateItem]:
    """A workspace's live templates in creation order; `category` and `featured` narrow the page."""
    condition = AgentTemplateItem.category == category if category is not None else None
    if featured is not None:
        is_featured = AgentTemplateItem.is_featured == featured
        condition = is_featured if condition is None else condition & is_featured
    spec = QuerySpec(keys.agent_template_list_gsi(ws_id), index=keys.GSI1, filter=condition)
    return get_store().fill(AgentTemplateItem, spec, limit=limit, start=start)

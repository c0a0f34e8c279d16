"""Schedules and their firing marks. A schedule lives in its workspace's partition and is listed
(GSI1) in creation order; a firing mark records one delivered firing (EventBridge Scheduler
delivers at least once, and a retry carries the same scheduled time) and expires after a week."""

from __future__ import annotations

import json
from typing import Any

from pynamodb.attributes import BooleanAttribute, UnicodeAttribute, VersionAttribute

from agentplane import keys
from agentplane.entities.base import Entity, EpochTTL, Keys, MapDocument, number
from agentplane.entities.patterns import access_pattern
from agentplane.models.schedules import Schedule
from agentplane.store import EntityPage, QuerySpec, get_store


class ScheduleItem(Entity[Schedule], discriminator="schedule"):
    workspace_id = UnicodeAttribute()
    id = UnicodeAttribute()
    name = UnicodeAttribute()
    description = UnicodeAttribute(default="")
    expression = UnicodeAttribute()
    timezone = UnicodeAttribute()
    enabled = BooleanAttribute()
    target_json = UnicodeAttribute()  # the target as JSON text (its fields vary with its type)
    fire_count = number(default=0)
    last_fired_at = UnicodeAttribute(null=True)
    last_result = MapDocument(null=True)
    last_error = UnicodeAttribute(null=True)
    last_error_at = UnicodeAttribute(null=True)
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()

    internal = frozenset({"target_json", "last_error_at"})

    def where(self) -> Keys:
        return Keys(
            keys.schedule_key(self.workspace_id, self.id),
            gsi1=(keys.schedule_list_gsi(self.workspace_id), self.id),
        )

    @property
    def target(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.target_json)
        return loaded

    def to_model(self) -> Schedule:
        return Schedule.model_validate({**self.fields(), "target": self.target})


class ScheduleFiringItem(Entity, discriminator="schedule_firing"):
    """One firing handled: what it made. Put only if new, so a repeated delivery makes nothing twice."""

    workspace_id = UnicodeAttribute()
    schedule_id = UnicodeAttribute()
    scheduled_time = UnicodeAttribute()
    made_type = UnicodeAttribute(attr_name="type")  # what the firing made: "queue_job" or "run"
    made_id = UnicodeAttribute()
    ttl = EpochTTL(attr_name=keys.TTL, null=True)

    def where(self) -> Keys:
        return Keys(keys.schedule_firing_key(self.workspace_id, self.schedule_id, self.scheduled_time))


@access_pattern(ScheduleItem, partition=keys.schedule_list_gsi, index=keys.GSI1)
def schedules_of_workspace(
    ws_id: str, *, enabled: bool | None, limit: int, start: dict[str, Any] | None
) -> EntityPage[ScheduleItem]:
    """A workspace's schedules in creation order (one Query); `enabled` narrows the page, so a short
    page may have a cursor."""
    condition = ScheduleItem.enabled == enabled if enabled is not None else None
    spec = QuerySpec(keys.schedule_list_gsi(ws_id), index=keys.GSI1, filter=condition)
    return get_store().select(ScheduleItem, spec, limit=limit, start=start)

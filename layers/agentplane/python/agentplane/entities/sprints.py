"""Sprints, the per-workspace sprint counter, and retrospective comments. Sprints sort by their
zero-padded number under the workspace, so the newest are one Query read backwards; the counter
holds the last number handed out and the number of the one active sprint."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pynamodb.attributes import UnicodeAttribute, VersionAttribute

from agentplane import keys
from agentplane.entities.base import Entity, Keys, ListDocument, number
from agentplane.entities.patterns import access_pattern
from agentplane.models.sprints import RetroComment, Sprint, SprintStatus
from agentplane.store import EntityPage, QuerySpec, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition

# Sprint items read per round, and at most per search, while looking for the newest sprints.
_SPRINT_ROUND = 100
_SPRINT_READ_BUDGET = 1000


class SprintItem(Entity[Sprint], discriminator="sprint"):
    workspace_id = UnicodeAttribute()
    number = number()
    name = UnicodeAttribute(null=True)
    goal = UnicodeAttribute(null=True)
    status = UnicodeAttribute()
    deadline = UnicodeAttribute(null=True)  # YYYY-MM-DD
    started_at = UnicodeAttribute(null=True)
    completed_at = UnicodeAttribute(null=True)
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()

    def where(self) -> Keys:
        return Keys(keys.sprint_key(self.workspace_id, int(self.number)))

    def to_model(self) -> Sprint:
        return Sprint.model_validate({**self.fields(), "id": self.number})


class SprintCounterItem(Entity, discriminator="sprint_counter"):
    workspace_id = UnicodeAttribute()
    last_number = number()
    active_number = number(null=True)

    def where(self) -> Keys:
        return Keys(keys.sprint_counter_key(self.workspace_id))


class SprintRetroItem(Entity[RetroComment], discriminator="sprint_retro"):
    workspace_id = UnicodeAttribute()
    sprint = number()
    id = UnicodeAttribute()
    author = UnicodeAttribute()
    agent_name = UnicodeAttribute(null=True)
    actor_id = UnicodeAttribute()
    went_well = UnicodeAttribute(null=True)
    to_improve = UnicodeAttribute(null=True)
    action_item = UnicodeAttribute(null=True)
    suggested_tasks = ListDocument(null=True)
    created_at = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(keys.sprint_retro_key(self.workspace_id, int(self.sprint), self.id))


@access_pattern(SprintItem, partition=keys.ws_pk, sort="prefix SPRINT#")
def sprints_of_workspace(
    ws_id: str, *, status: str | None, limit: int, start: dict[str, Any] | None
) -> EntityPage[SprintItem]:
    """A page of a workspace's sprints in number order, in one status when given."""
    condition = SprintItem.status == status if status is not None else None
    spec = QuerySpec(keys.ws_pk(ws_id), sk_prefix=keys.SPRINT_PREFIX, filter=condition)
    return get_store().fill(SprintItem, spec, limit=limit, start=start)


@access_pattern(SprintItem, partition=keys.ws_pk, sort="prefix SPRINT#, backwards")
def sprints_newest_first(
    ws_id: str, *, open_only: bool = False, round_size: int = _SPRINT_ROUND
) -> Iterator[SprintItem]:
    """A workspace's sprints, highest number first (`open_only`: those not completed), read
    `round_size` at a time and at most a bounded number in all."""
    condition: Condition
    if open_only:
        condition = SprintItem.status != SprintStatus.completed.value
    else:
        condition = SprintItem.status.is_in(*(status.value for status in SprintStatus))
    spec = QuerySpec(keys.ws_pk(ws_id), sk_prefix=keys.SPRINT_PREFIX, filter=condition, newest_first=True)
    start: dict[str, Any] | None = None
    read = 0
    while read < _SPRINT_READ_BUDGET:
        page = get_store().select(SprintItem, spec, limit=round_size, start=start)
        read += round_size
        yield from page.items
        start = page.last_key
        if start is None:
            return


@access_pattern(SprintRetroItem, partition=keys.sprint_retro_pk)
def retro_comments(
    ws_id: str, sprint: int, *, limit: int, start: dict[str, Any] | None = None
) -> EntityPage[SprintRetroItem]:
    """A page of one sprint's retrospective comments, in the order they were written."""
    spec = QuerySpec(keys.sprint_retro_pk(ws_id, sprint))
    return get_store().select(SprintRetroItem, spec, limit=limit, start=start)

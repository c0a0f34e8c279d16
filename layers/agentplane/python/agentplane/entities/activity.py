"""The activity timeline agents and people write: one partition per workspace whose sort keys are
time-ordered activity ids, so a time window is a key range."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pynamodb.attributes import UnicodeAttribute

from agentplane import keys
from agentplane.entities.base import Entity, Keys, MapDocument
from agentplane.entities.patterns import access_pattern
from agentplane.models.audit import Activity
from agentplane.store import EntityPage, QuerySpec, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition


class ActivityItem(Entity[Activity], discriminator="activity"):
    workspace_id = UnicodeAttribute()
    id = UnicodeAttribute()
    type = UnicodeAttribute()
    message = UnicodeAttribute()
    search_text = UnicodeAttribute()  # the message in lower case, what a text filter matches
    agent = UnicodeAttribute(null=True)
    task_id = UnicodeAttribute(null=True)
    level = UnicodeAttribute()
    metadata = MapDocument(default=dict)
    actor_id = UnicodeAttribute()
    actor_type = UnicodeAttribute()
    created_at = UnicodeAttribute()

    # `builtins.type`: the class body's own `type` is the entry's attribute.
    internal = frozenset({"search_text"})
    derived = ("search_text",)

    def where(self) -> Keys:
        return Keys(keys.activity_key(self.workspace_id, self.id))

    def derive(self) -> None:
        self.search_text = self.message.lower()


def _all_of(conditions: Sequence[Condition]) -> Condition | None:
    combined: Condition | None = None
    for condition in conditions:
        combined = condition if combined is None else combined & condition
    return combined


def _timeline(window: tuple[str, str] | None, ws_id: str, condition: Condition | None) -> QuerySpec:
    return QuerySpec(keys.activity_pk(ws_id), sk_between=window, newest_first=True, filter=condition)


@access_pattern(ActivityItem, partition=keys.activity_pk, sort="range of ids in a time window, newest first")
def activity_timeline(
    ws_id: str,
    *,
    window: tuple[str, str] | None,
    equal: dict[str, str | None],
    limit: int,
    start: dict[str, Any] | None,
) -> EntityPage[ActivityItem]:
    """A page of a workspace's activity in a time window (`window`: a sort-key range, None for
    all), newest first, keeping the entries whose fields hold the values in `equal` (None: any)."""
    attributes = ActivityItem.get_attributes()
    conditions = [attributes[name] == value for name, value in equal.items() if value is not None]
    return get_store().fill(ActivityItem, _timeline(window, ws_id, _all_of(conditions)), limit=limit, start=start)


@access_pattern(ActivityItem, partition=keys.activity_pk, sort="range of ids from a time on, newest first")
def activity_log_lines(
    ws_id: str,
    *,
    window: tuple[str, str] | None,
    agent: str | None,
    levels: list[str] | None,
    text: str | None,
    limit: int,
    start: dict[str, Any] | None,
) -> EntityPage[ActivityItem]:
    """A page of a workspace's activity as log lines, newest first: `agent`'s, at one of
    `levels`, whose message contains `text` in any case."""
    conditions: list[Condition] = []
    if agent is not None:
        conditions.append(ActivityItem.agent == agent)
    if levels is not None:
        conditions.append(ActivityItem.level.is_in(*levels))
    if text:
        conditions.append(ActivityItem.search_text.contains(text.lower()))
    return get_store().fill(ActivityItem, _timeline(window, ws_id, _all_of(conditions)), limit=limit, start=start)


@access_pattern(ActivityItem, partition=keys.activity_pk, sort="range of ids in a time window")
def activity_in_window(
    ws_id: str, window: tuple[str, str], *, at_most: int, round_size: int
) -> tuple[list[ActivityItem], bool]:
    """The activity of a time window, oldest first, in Queries of `round_size`, at most `at_most`
    entries; and whether more were left unread."""
    spec = QuerySpec(keys.activity_pk(ws_id), sk_between=window)
    found: list[ActivityItem] = []
    start: dict[str, Any] | None = None
    while True:
        page = get_store().select(ActivityItem, spec, limit=min(round_size, at_most - len(found)), start=start)
        found += page.items
        start = page.last_key
        if start is None:
            return found, False
        if len(found) >= at_most:
            return found, True

"""ADRs and their number counter, rules and failure records: each lives in its workspace's
partition and is listed on GSI1 (ADRs by zero-padded number, rules and failures by id)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pynamodb.attributes import BooleanAttribute, UnicodeAttribute, VersionAttribute

from agentplane import keys
from agentplane.entities.base import Entity, Keys, number
from agentplane.entities.patterns import access_pattern
from agentplane.models.knowledge import UNIVERSAL_SCOPE, Adr, FailureRecord, Rule
from agentplane.store import EntityPage, QuerySpec, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition
    from pynamodb.expressions.update import Action

# ADRs the prompt's Query reads per round.
_PROMPT_ROUND = 200


class AdrItem(Entity[Adr], discriminator="adr"):
    workspace_id = UnicodeAttribute()
    id = UnicodeAttribute()
    number = number()
    title = UnicodeAttribute()
    status = UnicodeAttribute()
    context = UnicodeAttribute()
    decision = UnicodeAttribute()
    rationale = UnicodeAttribute()
    consequences = UnicodeAttribute(default="")
    author = UnicodeAttribute()
    supersedes = UnicodeAttribute(null=True)
    superseded_by = UnicodeAttribute(null=True)
    # What a superseded ADR's status was, so undoing the supersession can put it back.
    status_before_superseded = UnicodeAttribute(null=True)
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()

    internal = frozenset({"status_before_superseded"})

    def where(self) -> Keys:
        return Keys(
            keys.adr_key(self.workspace_id, self.id),
            gsi1=(keys.adr_list_gsi(self.workspace_id), f"{int(self.number):010d}"),
        )

    def relinked(self, **changes: Any) -> list[Action]:
        """The actions that change this ADR's supersession links by key, on behalf of another
        ADR: its version moves on, but the write is guarded by the link it changes, not by the
        version read."""
        return [*self.assign(**changes), AdrItem.version.add(1)]


class AdrCounterItem(Entity, discriminator="counter"):
    """The last ADR number a workspace issued."""

    workspace_id = UnicodeAttribute(null=True)  # counters written before it was recorded lack it
    last_number = number()

    def where(self) -> Keys:
        assert self.workspace_id is not None, "a new counter names its workspace"
        return Keys(keys.adr_counter_key(self.workspace_id))


class RuleItem(Entity[Rule], discriminator="rule"):
    workspace_id = UnicodeAttribute()
    id = UnicodeAttribute()
    content = UnicodeAttribute()
    scope = UnicodeAttribute()
    category = UnicodeAttribute()
    permanent = BooleanAttribute(default=False)
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = VersionAttribute()

    def where(self) -> Keys:
        return Keys(keys.rule_key(self.workspace_id, self.id), gsi1=(keys.rule_list_gsi(self.workspace_id), self.id))


class FailureItem(Entity[FailureRecord], discriminator="failure"):
    workspace_id = UnicodeAttribute()
    id = UnicodeAttribute()
    title = UnicodeAttribute()
    cause = UnicodeAttribute(default="")
    lesson = UnicodeAttribute(default="")
    task_id = UnicodeAttribute(null=True)
    agent = UnicodeAttribute(null=True)
    run_id = UnicodeAttribute(null=True)
    source = UnicodeAttribute()
    created_by = UnicodeAttribute()
    created_at = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(
            keys.failure_key(self.workspace_id, self.id), gsi1=(keys.failure_list_gsi(self.workspace_id), self.id)
        )


def _all_of(conditions: Iterable[Condition]) -> Condition | None:
    combined: Condition | None = None
    for condition in conditions:
        combined = condition if combined is None else combined & condition
    return combined


@access_pattern(AdrItem, partition=keys.adr_list_gsi, index=keys.GSI1, sort="highest number first")
def adrs_of_workspace(
    ws_id: str, *, status: str | None, limit: int, start: dict[str, Any] | None
) -> EntityPage[AdrItem]:
    """A workspace's ADRs, highest number first; `status` keeps those in that status."""
    condition = AdrItem.status == status if status is not None else None
    spec = QuerySpec(keys.adr_list_gsi(ws_id), index=keys.GSI1, newest_first=True, filter=condition)
    return get_store().select(AdrItem, spec, limit=limit, start=start)


@access_pattern(AdrItem, partition=keys.adr_list_gsi, index=keys.GSI1, sort="number order, every page")
def adrs_in_number_order(ws_id: str, *, statuses: list[str], at_most: int) -> list[AdrItem]:
    """A workspace's ADRs in one of `statuses`, lowest number first, from at most `at_most` read
    (an agent's prompt)."""
    spec = QuerySpec(keys.adr_list_gsi(ws_id), index=keys.GSI1, filter=AdrItem.status.is_in(*statuses))
    found: list[AdrItem] = []
    start: dict[str, Any] | None = None
    read = 0
    while read < at_most:
        page = get_store().select(AdrItem, spec, limit=_PROMPT_ROUND, start=start)
        found += page.items
        read += _PROMPT_ROUND
        start = page.last_key
        if not start:
            break
    return found


@access_pattern(RuleItem, partition=keys.rule_list_gsi, index=keys.GSI1)
def rules_of_workspace(
    ws_id: str,
    *,
    scope: str | None,
    followed_by: str | None,
    category: str | None,
    permanent: bool | None,
    limit: int,
    start: dict[str, Any] | None,
) -> EntityPage[RuleItem]:
    """A workspace's rules, oldest first; `followed_by` keeps an agent's own rules and the
    universal ones, the other filters their field."""
    conditions: list[Condition] = []
    if scope is not None:
        conditions.append(RuleItem.scope == scope)
    if followed_by is not None:
        conditions.append(RuleItem.scope.is_in(followed_by, UNIVERSAL_SCOPE))
    if category is not None:
        conditions.append(RuleItem.category == category)
    if permanent is not None:
        conditions.append(RuleItem.permanent == permanent)
    spec = QuerySpec(keys.rule_list_gsi(ws_id), index=keys.GSI1, filter=_all_of(conditions))
    return get_store().select(RuleItem, spec, limit=limit, start=start)


@access_pattern(FailureItem, partition=keys.failure_list_gsi, index=keys.GSI1, sort="newest first")
def failures_of_workspace(
    ws_id: str, *, agent: str | None, task_id: str | None, limit: int, start: dict[str, Any] | None
) -> EntityPage[FailureItem]:
    """A workspace's failure records, newest first; `agent` and `task_id` keep those naming them."""
    conditions: list[Condition] = []
    if agent is not None:
        conditions.append(FailureItem.agent == agent)
    if task_id is not None:
        conditions.append(FailureItem.task_id == task_id)
    spec = QuerySpec(keys.failure_list_gsi(ws_id), index=keys.GSI1, newest_first=True, filter=_all_of(conditions))
    return get_store().select(FailureItem, spec, limit=limit, start=start)

"""Plan limits: how many members, live projects and active runs a workspace's tier lets it hold,
enforced where each is added.

Each limit is kept beside the counter it limits, and every addition moves its counter in the
transaction of the addition itself, conditioned on there being room: members and projects on the
workspace's plan usage item, active runs on its active-run counter (beside the site-wide cap,
MAX_ACTIVE_RUNS, which stays a 429). So concurrent additions at the boundary cannot all pass, and
a refused one writes nothing: it is a 402 problem naming the limit, with `limit`, `allowed`,
`current` and `tier`. `set_tier` writes a tier's limits there, in the transaction that changes the
workspace's subscription; a limit never written is the default tier's, as the catalog says it now.

A workspace made before members and projects were counted has no counts: the first write that
needs them fails on that, counts what the workspace holds (a Query with Select=COUNT each), stores
the counts unless someone did meanwhile, and commits again (`commit_counted`). Its active runs were
always counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from agentplane import keys
from agentplane.entities.base import Entity
from agentplane.entities.billing import SubscriptionItem
from agentplane.entities.plan_usage import (
    NO_LIMIT,
    PlanUsageItem,
    count_live_projects,
    count_members,
    stored_limit,
)
from agentplane.errors import Conflict, PaymentRequired
from agentplane.lazy import lazy_module
from agentplane.logic.billing import catalog
from agentplane.models.billing import LimitName, LimitViolation, Tier
from agentplane.store import ConditionFailed, Transaction, TransactionFailed, get_store, retrying

if TYPE_CHECKING:
    from pynamodb.attributes import Attribute
    from pynamodb.expressions.condition import Condition
    from pynamodb.expressions.update import Action

    from agentplane.entities import runs as run_entities
    from agentplane.entities.runs import RunCounterItem
else:
    # The active-run counter's module (and the runs' models it brings) is loaded by the paths that
    # need it: adding a member or a project does not.
    run_entities = lazy_module("agentplane.entities.runs")

# Subscription statuses that keep their tier; any other (canceled, incomplete_expired, unpaid…)
# leaves the workspace on the default tier.
_KEEPS_TIER = frozenset({"active", "trialing", "past_due"})
# The names of the operations that move a workspace's member and project counts.
MEMBERS, PROJECTS = "plan_members", "plan_projects"
_COUNTED_BY = {MEMBERS: LimitName.members, PROJECTS: LimitName.projects}
_NOUNS = {LimitName.members: "members", LimitName.projects: "projects", LimitName.active_runs: "active runs"}
_REMEDIES = {
    LimitName.members: "remove a member or move to a larger plan",
    LimitName.projects: "delete a project or move to a larger plan",
    LimitName.active_runs: "wait for a run to finish, cancel one, or move to a larger plan",
}


class _Uncounted(Conflict):
    """The workspace's counts were reckoned just now: the write is tried again."""


# --- the tier --------------------------------------------------------------------------------


def tier_of(ws: str) -> Tier:
    """The workspace's effective tier (`effective_tier` of its subscription as stored)."""
    subscription = get_store().read(SubscriptionItem, keys.subscription_key(ws))
    return (
        effective_tier(subscription.tier, subscription.status) if subscription is not None else catalog.default_tier()
    )


def effective_tier(tier_id: str | None, status: str | None) -> Tier:
    """The tier whose limits apply to a subscription of `tier_id` in `status`: that tier while the
    subscription is active, trialing or past due, otherwise the default tier (also for a tier since
    dropped from the catalog)."""
    if status not in _KEEPS_TIER:
        return catalog.default_tier()
    return catalog.find_tier(tier_id) or catalog.default_tier()


def _default_limit(name: LimitName) -> int | None:
    allowed: int | None = getattr(catalog.default_tier().limits, name.value)
    return allowed


def set_tier(tx: Transaction, ws: str, tier: Tier) -> None:
    """Add to `tx` what makes the workspace's limits those of `tier`. The default tier's are
    removed rather than copied, so they follow the catalog."""
    on_default = tier.id == catalog.default_tier().id
    limits = tier.limits

    def limit_of(attribute: Attribute[float], allowed: int | None) -> Action:
        return attribute.remove() if on_default else attribute.set(stored_limit(allowed))

    tx.upsert(
        PlanUsageItem,
        keys.plan_usage_key(ws),
        [
            PlanUsageItem.workspace_id.set(ws),
            limit_of(PlanUsageItem.member_limit, limits.members),
            limit_of(PlanUsageItem.project_limit, limits.projects),
        ],
    )
    counter = run_entities.RunCounterItem
    tx.upsert(counter, keys.run_counter_key(ws), [limit_of(counter.limit, limits.active_runs)])


# --- what the workspace holds ----------------------------------------------------------------


def usage(ws: str) -> dict[str, int]:
    """How many members, live projects and active runs the workspace has now: its counters (one
    batch read), or for counts never reckoned, DynamoDB's count of the items."""
    counts, counter = get_store().read_each(
        [(PlanUsageItem, keys.plan_usage_key(ws)), (run_entities.RunCounterItem, keys.run_counter_key(ws))]
    )
    if isinstance(counts, PlanUsageItem) and counts.members is not None:
        members, projects = int(counts.members), int(counts.projects or 0)
    else:
        members, projects = count_members(ws), count_live_projects(ws)
    active = int(counter.active or 0) if isinstance(counter, run_entities.RunCounterItem) else 0
    return {LimitName.members: members, LimitName.projects: projects, LimitName.active_runs: max(0, active)}


def violations(ws: str, tier: Tier) -> list[LimitViolation]:
    """Each of `tier`'s limits the workspace holds more than now (what a move to it would break)."""
    now = usage(ws)
    found = []
    for name in LimitName:
        allowed: int | None = getattr(tier.limits, name.value)
        current = now[name.value]
        if allowed is not None and current > allowed:
            detail = f"{current} {_NOUNS[name]}; the {tier.name} tier allows {allowed}"
            found.append(LimitViolation(limit=name, allowed=allowed, current=current, detail=detail))
    return found


def refusal(ws: str, name: LimitName, allowed: int, current: int) -> PaymentRequired:
    """The 402 problem for an addition past the workspace's `name` limit."""
    tier = tier_of(ws)
    noun = _NOUNS[name]
    return PaymentRequired(
        f"the workspace has {current} {noun} and its {tier.name} tier allows {allowed}: {_REMEDIES[name]}",
        limit=name.value,
        allowed=allowed,
        current=current,
        tier=tier.id,
    )


def _allowed(stored: float | None, name: LimitName) -> int | None:
    if stored is None:
        return _default_limit(name)
    return None if int(stored) == NO_LIMIT else int(stored)


# --- members and projects --------------------------------------------------------------------


def new_workspace_counts(ws: str) -> PlanUsageItem:
    """The counts of a workspace being created with its owner as its one member."""
    return PlanUsageItem(workspace_id=ws, members=1, projects=0)


def take_seat(tx: Transaction, ws: str) -> None:
    """Count one more member (operation MEMBERS): refused at the tier's member limit."""
    room = PlanUsageItem.room_for_member(_default_limit(LimitName.members))
    tx.adjust(PlanUsageItem, keys.plan_usage_key(ws), [PlanUsageItem.members.add(1)], room, name=MEMBERS)


def free_seat(tx: Transaction, ws: str) -> None:
    """Count one member less (operation MEMBERS)."""
    decrement = [PlanUsageItem.members.add(-1)]
    tx.adjust(PlanUsageItem, keys.plan_usage_key(ws), decrement, PlanUsageItem.counted(), name=MEMBERS)


def free_seat_as_read(tx: Transaction, ws: str, counts: Entity | None) -> None:
    """Count one member less, in a transaction that may leave several workspaces and does not
    reckon counts: `counts` is the workspace's plan usage as read. Never reckoned, nothing is
    counted, and the write only holds while that is still so (a reckoning would have counted the
    member leaving)."""
    usage_key = keys.plan_usage_key(ws)
    if isinstance(counts, PlanUsageItem) and counts.members is not None:
        tx.adjust(PlanUsageItem, usage_key, [PlanUsageItem.members.add(-1)], PlanUsageItem.counted())
    else:
        tx.require(PlanUsageItem, usage_key, ~PlanUsageItem.counted())


def take_project(tx: Transaction, ws: str) -> None:
    """Count one more live project (operation PROJECTS): refused at the tier's project limit."""
    room = PlanUsageItem.room_for_project(_default_limit(LimitName.projects))
    tx.adjust(PlanUsageItem, keys.plan_usage_key(ws), [PlanUsageItem.projects.add(1)], room, name=PROJECTS)


def free_project(tx: Transaction, ws: str) -> None:
    """Count one live project less (operation PROJECTS)."""
    decrement = [PlanUsageItem.projects.add(-1)]
    tx.adjust(PlanUsageItem, keys.plan_usage_key(ws), decrement, PlanUsageItem.counted(), name=PROJECTS)


def reckon(ws: str) -> None:
    """Count the workspace's members and live projects from scratch and store the counts, unless
    they were stored meanwhile."""
    members, projects = count_members(ws), count_live_projects(ws)
    counts = [
        PlanUsageItem.workspace_id.set(ws),
        PlanUsageItem.members.set(members),
        PlanUsageItem.projects.set(projects),
    ]
    try:
        get_store().upsert(PlanUsageItem, keys.plan_usage_key(ws), counts, ~PlanUsageItem.counted())
    except ConditionFailed:
        return  # a concurrent write reckoned them first


def commit_counted(tx: Transaction, ws: str, commit: Callable[[Transaction], None] | None = None) -> None:
    """Commit `tx`, which moves the workspace's member or project count (`commit`: how, by default
    `tx.commit`). Refused at a limit: the 402 problem. Refused because the counts were never
    reckoned: they are, and `tx` is committed again (its writes do not depend on the counts).
    Any other failure is the caller's to tell."""
    send = commit if commit is not None else Transaction.commit

    def attempt() -> None:
        try:
            send(tx)
        except TransactionFailed as failure:
            name = failure.failed
            if name not in _COUNTED_BY or failure.reason(name) != "ConditionalCheckFailed":
                raise
            found = failure.current(name, PlanUsageItem)
            if found is None or found.members is None:
                reckon(ws)
                raise _Uncounted("the workspace's usage was being counted; retry") from failure
            limit = _COUNTED_BY[name]
            current = int((found.members if limit == LimitName.members else found.projects) or 0)
            stored = found.member_limit if limit == LimitName.members else found.project_limit
            allowed = _allowed(stored, limit)
            if allowed is None or current < allowed:
                raise  # not the limit: a removal's count, for instance, or the caller's own condition
            raise refusal(ws, limit, allowed, current) from failure

    retrying(attempt, retry_if=lambda failure: isinstance(failure, _Uncounted), attempts=3)


# --- active runs -----------------------------------------------------------------------------


def room_for_a_run() -> Condition:
    """The condition, on the workspace's active-run counter, that one more run fits its tier."""
    room: Condition = run_entities.RunCounterItem.room_under_tier(_default_limit(LimitName.active_runs))
    return room


def active_run_refusal(ws: str, counter: RunCounterItem | None, site_cap: int) -> PaymentRequired | None:
    """Why taking an active-run slot was refused when it was the tier's limit, not the site-wide
    cap (`site_cap`) nor a lost race: the 402 problem; otherwise None."""
    current = int(counter.active or 0) if counter is not None else 0
    if current >= site_cap:
        return None
    allowed = _allowed(counter.limit if counter is not None else None, LimitName.active_runs)
    if allowed is None or current < allowed:
        return None
    return refusal(ws, LimitName.active_runs, allowed, current)

"""A workspace's subscription: what it shows, buying a tier or tokens through Stripe Checkout, the
customer portal, changing plans against the target tier's limits, and usage.

The subscription item holds what Stripe last told (through the webhook, logic.billing.webhook) or
what a plan change just did; a workspace without one is on the catalog's default tier, `active`.
Every write of the item carries the `created` of the event (or the moment of the change) that
made it, and an older event never overwrites a newer state (`state_writes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agentplane import keys
from agentplane.access import Access
from agentplane.auth.scopes import Role
from agentplane.entities.billing import StripeCustomerItem, SubscriptionItem
from agentplane.errors import Conflict, Forbidden, Unprocessable
from agentplane.ids import epoch, iso
from agentplane.logic.billing import catalog, limits, stripe_api, tokens
from agentplane.models.billing import Tier
from agentplane.models.subscriptions import (
    BillingUsage,
    CheckoutKind,
    CheckoutRequest,
    CheckoutSession,
    DowngradeCheck,
    PlanChange,
    PlanChangeAction,
    PlanRequest,
    PortalRequest,
    PortalSession,
    Subscription,
    problem_violations,
)
from agentplane.settings import get_settings
from agentplane.store import Transaction, TransactionFailed, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition
    from pynamodb.expressions.update import Action

# The name of the subscription's write in a transaction: its condition is "no newer event won".
SUBSCRIPTION = "subscription"
BUYER_ROLES = (Role.owner, Role.admin)
# Stripe statuses of a subscription that still bills (one that ended cannot be modified).
_ENDED = frozenset({"canceled", "incomplete_expired"})


def read_subscription(ws: str) -> SubscriptionItem | None:
    return get_store().read(SubscriptionItem, keys.subscription_key(ws))


def view(ws: str, item: SubscriptionItem | None) -> Subscription:
    """The subscription as the API shows it (the default tier, active, when there is none)."""
    if item is None:
        return Subscription(workspace_id=ws, tier=catalog.default_tier().id, status="active")
    return Subscription(
        workspace_id=ws,
        tier=item.tier,
        status=item.status,
        current_period_end=item.current_period_end,
        cancel_at_period_end=bool(item.cancel_at_period_end),
        stripe_customer_id=item.stripe_customer_id,
        stripe_subscription_id=item.stripe_subscription_id,
        updated_at=item.updated_at,
    )


def tier_of(item: SubscriptionItem | None) -> Tier:
    """The tier the subscription names, whatever its status (a tier since dropped from the catalog
    reads as the default); the tier whose limits apply is `limits.effective_tier`."""
    return (catalog.find_tier(item.tier) if item is not None else None) or catalog.default_tier()


def billing_subscription(item: SubscriptionItem | None) -> str | None:
    """The Stripe subscription that still bills the workspace, if any."""
    if item is None or not item.stripe_subscription_id or item.status in _ENDED:
        return None
    return item.stripe_subscription_id


# --------------------------------------------------------------------------- writing the state


@dataclass(frozen=True)
class StateChange:
    """What an event or a plan change says the subscription now is (None: unchanged)."""

    tier: Tier | None = None
    status: str | None = None
    customer_id: str | None = None
    subscription_id: str | None = None
    current_period_end: str | None = None
    cancel_at_period_end: bool | None = None
    clear_period_end: bool = False


def newer_than_stored(created: int) -> Condition:
    """No event later than `created` changed the subscription (events of the same second apply
    in the order they arrive: Stripe's `created` has second precision)."""
    condition: Condition = SubscriptionItem.event_created.does_not_exist() | (SubscriptionItem.event_created <= created)
    return condition


def is_stale(item: SubscriptionItem | None, created: int) -> bool:
    return item is not None and item.event_created is not None and created < int(item.event_created)


def state_writes(tx: Transaction, ws: str, current: SubscriptionItem | None, change: StateChange, created: int) -> None:
    """Add to `tx` the subscription's change to `change`, as of `created` (epoch seconds), and,
    when the tier changes, whatever makes the workspace's limits those of the new tier."""
    at = iso()
    actions: list[Action] = [
        SubscriptionItem.workspace_id.set(ws),
        SubscriptionItem.created_at.set(SubscriptionItem.created_at | at),
        SubscriptionItem.updated_at.set(at),
        SubscriptionItem.event_created.set(created),
    ]
    default = catalog.default_tier().id
    if change.tier is not None:
        actions.append(SubscriptionItem.tier.set(change.tier.id))
    else:
        actions.append(SubscriptionItem.tier.set(SubscriptionItem.tier | default))
    actions.append(SubscriptionItem.status.set(change.status or (SubscriptionItem.status | "active")))
    if change.customer_id:
        actions.append(SubscriptionItem.stripe_customer_id.set(change.customer_id))
    if change.subscription_id:
        actions.append(SubscriptionItem.stripe_subscription_id.set(change.subscription_id))
    if change.current_period_end:
        actions.append(SubscriptionItem.current_period_end.set(change.current_period_end))
    elif change.clear_period_end:
        actions.append(SubscriptionItem.current_period_end.remove())
    if change.cancel_at_period_end is not None:
        actions.append(SubscriptionItem.cancel_at_period_end.set(change.cancel_at_period_end))
    tx.upsert(SubscriptionItem, keys.subscription_key(ws), actions, newer_than_stored(created), name=SUBSCRIPTION)
    # The limits follow the effective tier, which a change of status moves as a change of tier does.
    before = limits.effective_tier(current.tier, current.status) if current is not None else catalog.default_tier()
    after = limits.effective_tier(
        change.tier.id if change.tier is not None else (current.tier if current is not None else default),
        change.status or (current.status if current is not None else "active"),
    )
    if after.id != before.id:
        limits.set_tier(tx, ws, after)


# --------------------------------------------------------------------------- reading


def subscription_of(access: Access) -> Subscription:
    access.require("billing:read")
    return view(access.workspace_id, read_subscription(access.workspace_id))


def usage_of(access: Access) -> BillingUsage:
    """The tier, its limits, what the workspace holds, its balance and this month's use. The
    month's use is counted on the balance item by every posting that takes tokens, so it is read
    with the balance, never summed from the ledger."""
    access.require("billing:read")
    ws = access.workspace_id
    tier = limits.tier_of(ws)  # the tier whose limits apply
    balance = tokens.read_balance(ws)
    month = iso()[:7]
    return BillingUsage(
        tier=tier.id,
        limits=tier.limits,
        usage=limits.usage(ws),
        token_balance=int(balance.balance or 0),
        tokens_used_this_month=balance.spent_in(month),
        month=month,
    )


def validate_downgrade(access: Access, body: PlanRequest) -> DowngradeCheck:
    access.require("billing:read")
    target = catalog.tier(body.tier)
    violations = limits.violations(access.workspace_id, target)
    return DowngradeCheck(tier=target.id, allowed=not violations, violations=problem_violations(violations))


# --------------------------------------------------------------------------- buying


def require_buyer(access: Access) -> None:
    """Buying and changing plans: `billing:write`, and the workspace's owner or an admin."""
    access.require("billing:write")
    if access.role not in BUYER_ROLES:
        raise Forbidden(f"only the workspace's owner or an admin may buy or change plans, not a {access.role.value}")


def _return_url(given: str | None) -> str:
    return given or get_settings().billing_return_url


def ensure_customer(access: Access, current: SubscriptionItem | None) -> str:
    """The workspace's Stripe customer, created on its first purchase and kept on the
    subscription item (with the lookup an invoice's webhook finds the workspace by)."""
    if current is not None and current.stripe_customer_id:
        return current.stripe_customer_id
    ws = access.workspace_id
    customer_id = str(stripe_api.create_customer(ws, name=ws)["id"])
    at = iso()
    tx = access.transaction()
    tx.upsert(
        SubscriptionItem,
        keys.subscription_key(ws),
        [
            SubscriptionItem.workspace_id.set(ws),
            SubscriptionItem.tier.set(SubscriptionItem.tier | catalog.default_tier().id),
            SubscriptionItem.status.set(SubscriptionItem.status | "active"),
            SubscriptionItem.created_at.set(SubscriptionItem.created_at | at),
            SubscriptionItem.updated_at.set(at),
            SubscriptionItem.stripe_customer_id.set(customer_id),
        ],
        SubscriptionItem.stripe_customer_id.does_not_exist() | (SubscriptionItem.stripe_customer_id == customer_id),
        name=SUBSCRIPTION,
    )
    tx.save(StripeCustomerItem(customer_id=customer_id, workspace_id=ws, created_at=at))
    access.audit(tx, "billing.customer_created", "subscription", ws, {"stripe_customer_id": customer_id})
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed != SUBSCRIPTION:
            raise
        stored = failure.current(SUBSCRIPTION, SubscriptionItem)
        if stored is None or not stored.stripe_customer_id:
            raise
        return stored.stripe_customer_id
    return customer_id


def checkout(access: Access, body: CheckoutRequest) -> CheckoutSession:
    """A Stripe Checkout session for a tier's subscription or a token package; the purchase is
    applied when its webhook arrives (`checkout.session.completed`)."""
    require_buyer(access)
    current = read_subscription(access.workspace_id)
    if body.kind is CheckoutKind.tokens:
        if body.package_id is None:
            raise Unprocessable("a token checkout names its `package_id`", field="package_id")
        params = _token_checkout(access.workspace_id, body.package_id)
    else:
        if body.tier is None:
            raise Unprocessable("a subscription checkout names its `tier`", field="tier")
        target = catalog.tier(body.tier)
        _check_subscribable(target, current)
        params = _subscription_checkout(access.workspace_id, target)
    return _open_checkout(access, current, params, body.success_url, body.cancel_url)


def _check_subscribable(target: Tier, current: SubscriptionItem | None) -> None:
    if not target.stripe_price or target.price_monthly == 0:
        raise Unprocessable(f"the {target.name} tier is free: it needs no checkout", field="tier")
    if billing_subscription(current) is not None:
        if tier_of(current).id == target.id:
            raise Conflict(f"the workspace is on the {target.name} tier already")
        raise Conflict("the workspace has a subscription: change its tier with change-plan")


def _subscription_checkout(ws: str, tier: Tier) -> dict[str, Any]:
    return {
        "mode": "subscription",
        "line_items": [{"price": tier.stripe_price, "quantity": 1}],
        "client_reference_id": ws,
        "metadata": {"workspace_id": ws, "kind": CheckoutKind.subscription.value, "tier": tier.id},
        "subscription_data": {"metadata": {"workspace_id": ws, "tier": tier.id}},
    }


def _token_checkout(ws: str, package_id: str) -> dict[str, Any]:
    package = catalog.package(package_id)
    return {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": package.currency,
                    "unit_amount": package.price,
                    "product_data": {"name": package.name},
                },
                "quantity": 1,
            }
        ],
        "client_reference_id": ws,
        "metadata": {
            "workspace_id": ws,
            "kind": CheckoutKind.tokens.value,
            "tokens": str(package.tokens),
            "package_id": package.id,
        },
    }


def _open_checkout(
    access: Access,
    current: SubscriptionItem | None,
    params: dict[str, Any],
    success_url: str | None,
    cancel_url: str | None,
) -> CheckoutSession:
    customer_id = ensure_customer(access, current)
    session = stripe_api.create_checkout_session(
        {
            **params,
            "customer": customer_id,
            "success_url": _return_url(success_url),
            "cancel_url": _return_url(cancel_url),
        }
    )
    metadata = params["metadata"]
    tx = access.transaction()
    access.audit(
        tx,
        "billing.checkout_started",
        "subscription",
        access.workspace_id,
        {"session_id": session["id"], **{k: metadata[k] for k in ("kind", "tier", "package_id") if k in metadata}},
    )
    access.commit(tx)
    return CheckoutSession(url=str(session["url"]), session_id=str(session["id"]))


def portal(access: Access, body: PortalRequest) -> PortalSession:
    require_buyer(access)
    current = read_subscription(access.workspace_id)
    if current is None or not current.stripe_customer_id:
        raise Conflict("the workspace has no billing account yet: buy a plan or tokens first")
    session = stripe_api.create_portal_session(current.stripe_customer_id, _return_url(body.return_url))
    return PortalSession(url=str(session["url"]))


# --------------------------------------------------------------------------- changing plans


def change_plan(access: Access, body: PlanRequest) -> PlanChange:
    """Move the workspace to `tier`. To the default tier: the Stripe subscription is cancelled at
    the end of the paid period (the tier changes when Stripe says it ended). To a paid tier: the
    subscription is moved to that tier's price at once (prorated), or, without one, the answer is
    a checkout. Refused (422 with `violations`) while the workspace holds more than the tier allows."""
    require_buyer(access)
    ws = access.workspace_id
    target = catalog.tier(body.tier)
    current = read_subscription(ws)
    subscription_id = billing_subscription(current)
    on = tier_of(current)
    if target.id == on.id and not (current is not None and current.cancel_at_period_end):
        raise Conflict(f"the workspace is on the {target.name} tier already")
    violations = limits.violations(ws, target)
    if violations:
        raise Unprocessable(
            f"the workspace holds more than the {target.name} tier allows",
            violations=problem_violations(violations),
        )
    if target.id == catalog.default_tier().id:
        return _cancel_at_period_end(access, current, subscription_id)
    if subscription_id is None:
        session = _open_checkout(access, current, _subscription_checkout(ws, target), None, None)
        return PlanChange(
            action=PlanChangeAction.checkout,
            subscription=view(ws, current),
            url=session.url,
            session_id=session.session_id,
        )
    return _move_to(access, current, subscription_id, target)


def _cancel_at_period_end(access: Access, current: SubscriptionItem | None, subscription_id: str | None) -> PlanChange:
    if subscription_id is None:
        raise Conflict("the workspace has no paid subscription to end")
    stripe = stripe_api.modify_subscription(subscription_id, {"cancel_at_period_end": True})
    change = StateChange(cancel_at_period_end=True, current_period_end=period_end(stripe))
    return _record_change(access, current, change, "billing.plan_cancel_scheduled", PlanChangeAction.cancel_scheduled)


def _move_to(access: Access, current: SubscriptionItem | None, subscription_id: str, target: Tier) -> PlanChange:
    items = (stripe_api.retrieve_subscription(subscription_id).get("items") or {}).get("data") or []
    if not items:
        raise Conflict("the Stripe subscription has no item to move to another price")
    stripe = stripe_api.modify_subscription(
        subscription_id,
        {
            "items": [{"id": items[0]["id"], "price": target.stripe_price}],
            "metadata": {"workspace_id": access.workspace_id, "tier": target.id},
            "cancel_at_period_end": False,
            "proration_behavior": "create_prorations",
        },
    )
    change = StateChange(
        tier=target, status=str(stripe.get("status") or "active"), cancel_at_period_end=False,
        current_period_end=period_end(stripe),
    )  # fmt: skip
    return _record_change(access, current, change, "billing.plan_changed", PlanChangeAction.changed)


def _record_change(
    access: Access, current: SubscriptionItem | None, change: StateChange, action: str, outcome: PlanChangeAction
) -> PlanChange:
    """Store what Stripe just did, as of now (or of the last event stored, if Stripe's clock runs
    ahead of ours): the events it sends about this change come later and carry the same state,
    and anything Stripe said before it is older."""
    ws = access.workspace_id
    tx = access.transaction()
    as_of = max(epoch(), int(current.event_created or 0) if current is not None else 0)
    state_writes(tx, ws, current, change, as_of)
    details = {"tier": change.tier.id if change.tier else tier_of(current).id, "from_tier": tier_of(current).id}
    access.audit(tx, action, "subscription", ws, details)
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed != SUBSCRIPTION:
            raise
        # An event a moment newer (by Stripe's clock) landed first: it tells the same change.
    return PlanChange(action=outcome, subscription=view(ws, read_subscription(ws)))


def period_end(subscription: dict[str, Any]) -> str | None:
    """When the paid period ends: on the subscription (older API versions) or its first item."""
    end = subscription.get("current_period_end")
    if end is None:
        items = (subscription.get("items") or {}).get("data") or []
        end = items[0].get("current_period_end") if items else None
    return None if end is None else iso(datetime.fromtimestamp(int(end), tz=UTC))

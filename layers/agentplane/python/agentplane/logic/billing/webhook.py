"""Stripe's webhook: verify the signature, find the workspace, apply each event once.

An event's effects (the subscription's new state, a ledger grant, notifications, the audit row)
and its marker (`BillingEventItem`, keyed by the workspace and the event id) are one transaction:
either all land or none, so a failure answers 5xx for Stripe to retry and leaves nothing
half-applied, and a redelivery finds the marker and changes nothing. An event older than the
state it would change (`created` before the subscription's `event_created`) is acknowledged and
ignored, and so is an event agentplane cannot tie to a live workspace.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentplane import audit, keys
from agentplane.entities.billing import AutoTopUpItem, BillingEventItem, StripeCustomerItem, SubscriptionItem
from agentplane.entities.workspaces import WorkspaceItem, every_member
from agentplane.errors import BadRequest, ServiceUnavailable
from agentplane.ids import epoch, is_path_id, iso
from agentplane.logic import notifications, runs
from agentplane.logic.billing import catalog, stripe_api, subscriptions, tokens
from agentplane.logic.billing.subscriptions import SUBSCRIPTION, StateChange
from agentplane.models.billing import Tier
from agentplane.models.subscriptions import CheckoutKind, WebhookOutcome, WebhookReceipt
from agentplane.observability import logger
from agentplane.store import Transaction, TransactionFailed, get_store, retrying

MARKER, WORKSPACE = "billing_event", "workspace_live"
# Stripe retries an event for up to three days; the marker outlives that.
MARKER_TTL_SECONDS = 30 * 24 * 3600
ACTOR = "stripe"
# Invoices that pay for a period of the plan (not a proration of a change within one).
_PERIOD_INVOICES = frozenset({"subscription_create", "subscription_cycle", None})
AUTO_TOPUP = "auto_topup"


@dataclass(frozen=True)
class Event:
    """One verified event and what was read about its workspace."""

    id: str
    type: str
    created: int
    object: dict[str, Any]
    workspace_id: str
    subscription: SubscriptionItem | None
    request_id: str

    def metadata(self) -> dict[str, str]:
        return dict(self.object.get("metadata") or {})

    def marker_writes(self, tx: Transaction) -> None:
        """The marker and the guard that the workspace still exists, first in the transaction."""
        marker = BillingEventItem(
            workspace_id=self.workspace_id,
            event_id=self.id,
            type=self.type,
            created_at=iso(),
            ttl=epoch() + MARKER_TTL_SECONDS,
        )
        tx.create(marker, name=MARKER)
        tx.require(WorkspaceItem, keys.workspace_key(self.workspace_id), WorkspaceItem.live(), name=WORKSPACE)

    def audit(self, tx: Transaction, action: str, details: dict[str, Any]) -> None:
        audit.record(
            tx, self.workspace_id, ACTOR, action, "subscription", self.workspace_id, self.request_id,
            {"event_id": self.id, "event_type": self.type, **details},
        )  # fmt: skip

    def receipt(self, outcome: WebhookOutcome) -> WebhookReceipt:
        return WebhookReceipt(event_id=self.id, type=self.type, outcome=outcome)


def receive(payload: str, signature: str | None, request_id: str = "") -> WebhookReceipt:
    """Verify and apply one delivery of an event (see the module docstring for the answers)."""
    stripe_api.verified_event(payload, signature)
    try:
        document = json.loads(payload)
        event_id, event_type = str(document["id"]), str(document["type"])
        created = int(document["created"])
        obj = dict(document["data"]["object"])
    except (ValueError, KeyError, TypeError) as unreadable:
        raise BadRequest("the webhook body is not a Stripe event") from unreadable
    apply = HANDLERS.get(event_type)
    if apply is None:
        return WebhookReceipt(event_id=event_id, type=event_type, outcome="ignored")
    ws = _workspace_of(obj)
    unknown = WebhookReceipt(event_id=event_id, type=event_type, outcome="unknown_workspace")
    if ws is None:
        logger.warning("Stripe event for no known workspace", extra={"event_id": event_id, "type": event_type})
        return unknown
    workspace, subscription, marker = get_store().read_each(
        [
            (WorkspaceItem, keys.workspace_key(ws)),
            (SubscriptionItem, keys.subscription_key(ws)),
            (BillingEventItem, keys.billing_event_key(ws, event_id)),
        ]
    )
    if not isinstance(workspace, WorkspaceItem) or workspace.deleted_at:
        logger.warning("Stripe event for a missing workspace", extra={"event_id": event_id, "workspace_id": ws})
        return unknown
    event = Event(event_id, event_type, created, obj, ws, SubscriptionItem.found(subscription), request_id)
    if marker is not None:
        return _redelivered(event)
    try:
        return apply(event)
    except TransactionFailed as failure:
        if failure.failed == MARKER:  # a concurrent delivery of the same event applied it
            return _redelivered(event)
        if failure.failed == WORKSPACE:
            return event.receipt("unknown_workspace")
        logger.warning("Stripe event not applied", extra={"event_id": event_id, "reasons": failure.reasons})
        raise ServiceUnavailable("the event could not be applied now; Stripe delivers it again") from failure


def _redelivered(event: Event) -> WebhookReceipt:
    """A delivery of an event applied before: nothing changes. Runs paused for budget are
    resumed again if it was a grant, in case the first delivery failed after its commit."""
    if event.type in GRANTS:
        runs.resume_budget_paused(event.workspace_id)
    return event.receipt("duplicate")


def _workspace_of(obj: dict[str, Any]) -> str | None:
    """The workspace an event's object belongs to: agentplane's metadata on it (or on the
    invoice's subscription), else the workspace its Stripe customer pays for."""
    for metadata in (obj.get("metadata"), _subscription_details(obj).get("metadata")):
        ws = (metadata or {}).get("workspace_id")
        if isinstance(ws, str) and is_path_id(ws):
            return ws
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    if isinstance(customer, str) and customer:
        found = get_store().read(StripeCustomerItem, keys.stripe_customer_key(customer))
        return found.workspace_id if found is not None else None
    return None


def _owners(ws: str) -> list[str]:
    owners = [member.user_id for member in every_member(ws) if member.role == "owner"]
    return owners[: notifications.MAX_RECIPIENTS_IN_CALLER_TX]


def _applied_once(event: Event, writes: Callable[[Transaction], None]) -> WebhookReceipt:
    """Commit the marker and `writes` in one transaction; a delivery into an inbox that raced
    this one is written again (a failure of the marker, the workspace or the subscription's
    order is the caller's to tell)."""

    def attempt() -> None:
        tx = get_store().transaction()
        event.marker_writes(tx)
        writes(tx)
        tx.commit()

    def raced(failure: Exception) -> bool:
        return isinstance(failure, TransactionFailed) and failure.failed not in (MARKER, WORKSPACE, SUBSCRIPTION)

    try:
        retrying(attempt, retry_if=raced, attempts=3)
    except TransactionFailed as failure:
        if failure.failed == SUBSCRIPTION:
            return event.receipt("stale")  # a newer event changed the subscription meanwhile
        raise
    return event.receipt("applied")


def _granted_once(
    event: Event, amount: int, reason: str, reference_id: str, writes: Callable[[Transaction], None] | None = None
) -> WebhookReceipt:
    """Grant `amount` tokens with the marker (and `writes`) in the same transaction, then resume
    runs the grant can pay for."""

    def with_writes(tx: Transaction) -> None:
        event.marker_writes(tx)
        if writes is not None:
            writes(tx)
        event.audit(tx, "billing.tokens_granted", {"amount": amount, "reason": reason})

    metadata = {"stripe_event": event.id, "source": event.type}
    tokens.grant(
        event.workspace_id, amount, reason=reason, reference_id=reference_id, actor_id=ACTOR,
        metadata=metadata, with_writes=with_writes,
    )  # fmt: skip
    runs.resume_budget_paused(event.workspace_id)
    return event.receipt("applied")


def _positive(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


# --------------------------------------------------------------------------- the events


def checkout_completed(event: Event) -> WebhookReceipt:
    """A paid checkout: the tokens it bought, or the subscription it started."""
    session, metadata = event.object, event.metadata()
    if session.get("payment_status") not in ("paid", "no_payment_required"):
        return event.receipt("ignored")  # paid later: Stripe sends async_payment_succeeded then
    if metadata.get("kind") == CheckoutKind.tokens.value:
        amount = _positive(metadata.get("tokens"))
        if amount is None:
            logger.warning("token checkout without tokens", extra={"event_id": event.id})
            return event.receipt("ignored")
        reason = f"purchase of {metadata.get('package_id') or 'tokens'} (checkout {session.get('id')})"
        return _granted_once(event, amount, reason, str(session.get("id")))
    if subscriptions.is_stale(event.subscription, event.created):
        return event.receipt("stale")
    tier = catalog.find_tier(metadata.get("tier"))
    change = StateChange(
        tier=tier, status="active", customer_id=_id_of(session.get("customer")),
        subscription_id=_id_of(session.get("subscription")), cancel_at_period_end=False,
    )  # fmt: skip

    def writes(tx: Transaction) -> None:
        subscriptions.state_writes(tx, event.workspace_id, event.subscription, change, event.created)
        event.audit(tx, "billing.subscription_started", {"tier": tier.id if tier else None})

    return _applied_once(event, writes)


def subscription_changed(event: Event) -> WebhookReceipt:
    """`customer.subscription.created|updated`: tier (from agentplane's metadata, else the
    price), status, period and whether it ends with the period."""
    if subscriptions.is_stale(event.subscription, event.created):
        return event.receipt("stale")
    stripe = event.object
    tier = _tier_of_subscription(stripe)
    change = StateChange(
        tier=tier, status=str(stripe.get("status") or "active"), customer_id=_id_of(stripe.get("customer")),
        subscription_id=str(stripe.get("id")), current_period_end=subscriptions.period_end(stripe),
        cancel_at_period_end=bool(stripe.get("cancel_at_period_end")),
    )  # fmt: skip

    def writes(tx: Transaction) -> None:
        subscriptions.state_writes(tx, event.workspace_id, event.subscription, change, event.created)
        event.audit(tx, "billing.subscription_updated", {"tier": tier.id if tier else None, "status": change.status})

    return _applied_once(event, writes)


def subscription_deleted(event: Event) -> WebhookReceipt:
    """The subscription ended: the workspace is back on the default tier."""
    if subscriptions.is_stale(event.subscription, event.created):
        return event.receipt("stale")
    change = StateChange(
        tier=catalog.default_tier(), status="canceled", cancel_at_period_end=False, clear_period_end=True,
        subscription_id=str(event.object.get("id")),
    )  # fmt: skip

    def writes(tx: Transaction) -> None:
        subscriptions.state_writes(tx, event.workspace_id, event.subscription, change, event.created)
        event.audit(tx, "billing.subscription_canceled", {"tier": catalog.default_tier().id})

    return _applied_once(event, writes)


def invoice_paid(event: Event) -> WebhookReceipt:
    """A paid period: the tier's monthly tokens, and the subscription is active again. An invoice
    older than the subscription's state still grants what it paid for; only the status stays."""
    invoice = event.object
    tier = _tier_of_invoice(invoice) or subscriptions.tier_of(event.subscription)
    stale = subscriptions.is_stale(event.subscription, event.created)

    def writes(tx: Transaction) -> None:
        if not stale:
            change = StateChange(status="active", customer_id=_id_of(invoice.get("customer")))
            subscriptions.state_writes(tx, event.workspace_id, event.subscription, change, event.created)

    if tier.monthly_tokens <= 0 or invoice.get("billing_reason") not in _PERIOD_INVOICES:
        return _applied_once(event, writes) if not stale else event.receipt("stale")
    reason = f"monthly tokens of the {tier.name} plan (invoice {invoice.get('id')})"
    return _granted_once(event, tier.monthly_tokens, reason, str(invoice.get("id")), writes)


def invoice_payment_failed(event: Event) -> WebhookReceipt:
    """The card was declined: the subscription is past due and the owners are told."""
    if subscriptions.is_stale(event.subscription, event.created):
        return event.receipt("stale")
    invoice = event.object
    ws = event.workspace_id
    owners = _owners(ws)
    tier = subscriptions.tier_of(event.subscription)

    def writes(tx: Transaction) -> None:
        subscriptions.state_writes(tx, ws, event.subscription, StateChange(status="past_due"), event.created)
        event.audit(tx, "billing.payment_failed", {"invoice_id": invoice.get("id")})
        if owners:
            notifications.notify(
                tx, ws, owners, "billing", f"Payment for the {tier.name} plan failed",
                "Stripe could not charge the card on file. Update it in the billing portal to keep the plan.",
                {"invoice_id": invoice.get("id"), "status": "past_due"}, source="billing",
            )  # fmt: skip

    return _applied_once(event, writes)


def payment_intent_succeeded(event: Event) -> WebhookReceipt:
    """An auto top-up was charged: its tokens, and the top-up is no longer in flight."""
    intent, metadata = event.object, event.metadata()
    amount = _positive(metadata.get("tokens"))
    if metadata.get("kind") != CheckoutKind.tokens.value or metadata.get("source") != AUTO_TOPUP or amount is None:
        return event.receipt("ignored")  # a checkout's own payment: its session's event grants it
    reason = f"auto top-up {metadata.get('package_id') or ''} (payment {intent.get('id')})".replace("  ", " ")

    def writes(tx: Transaction) -> None:
        _topup_settled(tx, event.workspace_id)

    return _granted_once(event, amount, reason, str(intent.get("id")), writes)


def payment_intent_failed(event: Event) -> WebhookReceipt:
    """An auto top-up was declined: it is no longer in flight (the next one may try again)."""
    intent, metadata = event.object, event.metadata()
    if metadata.get("source") != AUTO_TOPUP:
        return event.receipt("ignored")
    owners = _owners(event.workspace_id)

    def writes(tx: Transaction) -> None:
        _topup_settled(tx, event.workspace_id)
        event.audit(tx, "billing.auto_topup_failed", {"payment_intent_id": intent.get("id")})
        if owners:
            notifications.notify(
                tx, event.workspace_id, owners, "billing", "An automatic token top-up failed",
                "Stripe could not charge the saved card for the top-up.",
                {"payment_intent_id": intent.get("id")}, source="billing",
            )  # fmt: skip

    return _applied_once(event, writes)


def _topup_settled(tx: Transaction, ws: str) -> None:
    """The workspace's top-up in flight is over (whether it was charged or declined)."""
    config = get_store().read(AutoTopUpItem, keys.auto_topup_key(ws))
    if config is not None and config.pending_key:
        actions = [AutoTopUpItem.pending_key.remove(), AutoTopUpItem.pending_payment_intent_id.remove()]
        tx.adjust(AutoTopUpItem, keys.auto_topup_key(ws), actions)


def _subscription_details(obj: dict[str, Any]) -> dict[str, Any]:
    """An invoice's subscription details (with the subscription's metadata): at the top in older
    API versions, under `parent` in newer ones."""
    return dict(obj.get("subscription_details") or (obj.get("parent") or {}).get("subscription_details") or {})


def _id_of(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value else None


def _tier_by_price(price: Any) -> Tier | None:
    price_id = _id_of(price)
    return next((tier for tier in catalog.tiers() if price_id and tier.stripe_price == price_id), None)


def _tier_of_subscription(stripe: dict[str, Any]) -> Tier | None:
    tier = catalog.find_tier((stripe.get("metadata") or {}).get("tier"))
    if tier is None:
        items = (stripe.get("items") or {}).get("data") or []
        tier = _tier_by_price(items[0].get("price")) if items else None
    return tier


def _tier_of_invoice(invoice: dict[str, Any]) -> Tier | None:
    tier = catalog.find_tier((_subscription_details(invoice).get("metadata") or {}).get("tier"))
    if tier is None:
        lines = (invoice.get("lines") or {}).get("data") or []
        for line in lines:
            pricing = line.get("pricing") or {}
            tier = _tier_by_price(line.get("price") or (pricing.get("price_details") or {}).get("price"))
            if tier is not None:
                break
    return tier


HANDLERS: dict[str, Callable[[Event], WebhookReceipt]] = {
    "checkout.session.completed": checkout_completed,
    "checkout.session.async_payment_succeeded": checkout_completed,
    "customer.subscription.created": subscription_changed,
    "customer.subscription.updated": subscription_changed,
    "customer.subscription.deleted": subscription_deleted,
    "invoice.paid": invoice_paid,
    "invoice.payment_failed": invoice_payment_failed,
    "payment_intent.succeeded": payment_intent_succeeded,
    "payment_intent.payment_failed": payment_intent_failed,
}
# Events whose effect is a grant: a redelivery resumes runs the grant pays for.
GRANTS = frozenset({"checkout.session.completed", "invoice.paid", "payment_intent.succeeded"})

__all__ = ["HANDLERS", "receive"]

"""A workspace's side of billing: its subscription (tier and Stripe status), checkout and portal
sessions, plan changes checked against the target tier's limits, usage, auto top-up, and the
receipt the Stripe webhook answers."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, StringConstraints

from agentplane.models.billing import TierId, TierLimits, TokenPackage
from agentplane.models.common import Input, Output

PackageId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
ReturnUrl = Annotated[str, StringConstraints(pattern=r"^https?://[^\s]{1,2000}$")]
PaymentMethodId = Annotated[str, StringConstraints(pattern=r"^pm_[A-Za-z0-9_]{1,100}$")]
# A top-up threshold or a grant larger than this is refused as a typo.
MAX_THRESHOLD = 10**12


class Subscription(Output):
    """The workspace's plan. A workspace that never subscribed is on the default tier, `active`."""

    workspace_id: str
    tier: str
    status: str = Field(description="Stripe's status: active, trialing, past_due, canceled, incomplete, unpaid")
    current_period_end: str | None = Field(default=None, description="When the paid period ends (ISO 8601)")
    cancel_at_period_end: bool = Field(default=False, description="The plan ends (back to the default tier) then")
    stripe_customer_id: str | None = None
    stripe_subscription_id: str | None = None
    updated_at: str | None = None


class CheckoutKind(StrEnum):
    subscription = "subscription"
    tokens = "tokens"


class CheckoutRequest(Input):
    """A subscription to `tier`, or (`kind: tokens`) a one-time purchase of the package `package_id`."""

    kind: CheckoutKind = CheckoutKind.subscription
    tier: TierId | None = Field(default=None, description="The tier to subscribe to (kind subscription)")
    package_id: PackageId | None = Field(default=None, description="The token package to buy (kind tokens)")
    success_url: ReturnUrl | None = Field(default=None, description="Where Stripe sends the buyer after paying")
    cancel_url: ReturnUrl | None = Field(default=None, description="Where Stripe sends a buyer who gives up")


class CheckoutSession(Output):
    url: str = Field(description="Stripe's hosted checkout page: send the buyer there")
    session_id: str


class PortalRequest(Input):
    return_url: ReturnUrl | None = Field(default=None, description="Where the portal sends the customer back")


class PortalSession(Output):
    url: str = Field(description="Stripe's customer portal for this workspace")


class PlanRequest(Input):
    tier: TierId


class LimitExcess(Output):
    """One limit of the target tier the workspace exceeds now."""

    limit: str
    allowed: int
    current: int
    detail: str | None = Field(default=None, description='Said for people, e.g. "7 members; the Free tier allows 5"')


class DowngradeCheck(Output):
    tier: str
    allowed: bool
    violations: list[LimitExcess]


class PlanChangeAction(StrEnum):
    changed = "changed"  # the Stripe subscription now bills the new tier's price
    cancel_scheduled = "cancel_scheduled"  # back to the default tier when the paid period ends
    checkout = "checkout"  # no subscription yet: pay at `url` first


class PlanChange(Output):
    action: PlanChangeAction
    subscription: Subscription
    url: str | None = Field(default=None, description="The checkout page, when `action` is checkout")
    session_id: str | None = None


class BillingUsage(Output):
    tier: str
    limits: TierLimits
    usage: dict[str, int] = Field(description="What the workspace holds now, by limit (members, projects, active_runs)")
    token_balance: int
    tokens_used_this_month: int = Field(description="Tokens consumed and charged for run usage this UTC month")
    month: str = Field(description="The UTC month `tokens_used_this_month` counts (YYYY-MM)")


class AutoTopUp(Output):
    workspace_id: str
    enabled: bool
    threshold_tokens: int
    package_id: str
    max_monthly_topups: int
    stripe_payment_method_id: str | None = None
    topups_this_month: int = 0
    pending_payment_intent_id: str | None = Field(default=None, description="A top-up charged, not yet granted")
    created_at: str
    updated_at: str


class AutoTopUpView(Output):
    config: AutoTopUp | None = Field(description="Null until auto top-up is configured")
    packages: list[TokenPackage]


class AutoTopUpCreate(Input):
    enabled: bool = True
    threshold_tokens: int = Field(ge=0, le=MAX_THRESHOLD, description="Top up when the balance falls below this")
    package_id: PackageId
    max_monthly_topups: int = Field(default=3, ge=1, le=100)
    stripe_payment_method_id: PaymentMethodId | None = Field(
        default=None, description="The saved card charged off-session (needed to enable it)"
    )


class AutoTopUpUpdate(Input):
    enabled: bool | None = None
    threshold_tokens: int | None = Field(default=None, ge=0, le=MAX_THRESHOLD)
    package_id: PackageId | None = Field(
        default=None,
        validation_alias=AliasChoices("package_id", "package_slug"),
        description="Orkosi's `package_slug` too",
    )
    max_monthly_topups: int | None = Field(default=None, ge=1, le=100)
    stripe_payment_method_id: PaymentMethodId | None = None


WebhookOutcome = Literal["applied", "duplicate", "stale", "unknown_workspace", "ignored"]


class WebhookReceipt(Output):
    received: bool = True
    event_id: str
    type: str
    outcome: WebhookOutcome = Field(
        description="applied; duplicate (applied before); stale (older than the state it would change); "
        "unknown_workspace; ignored (a type agentplane does not act on)"
    )


def problem_violations(violations: list[Any]) -> list[dict[str, Any]]:
    """The violations as a problem's `violations` extension carries them."""
    return [LimitExcess.model_validate(v, from_attributes=True).model_dump(exclude_none=True) for v in violations]


__all__ = [
    "AutoTopUp",
    "AutoTopUpCreate",
    "AutoTopUpUpdate",
    "AutoTopUpView",
    "BillingUsage",
    "CheckoutKind",
    "CheckoutRequest",
    "CheckoutSession",
    "DowngradeCheck",
    "LimitExcess",
    "PlanChange",
    "PlanChangeAction",
    "PlanRequest",
    "PortalRequest",
    "PortalSession",
    "Subscription",
    "WebhookOutcome",
    "WebhookReceipt",
    "problem_violations",
]

"""Billing: the tier catalog and token packages (Orkosi's pricing), a workspace's subscription and
its token balance with the ledger that explains it."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from agentplane.models.common import Input, ListQuery, Output

TierId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
ActionName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
# A single grant, consume or report larger than this is refused as a typo, not a purchase.
MAX_TOKENS = 10**12


class TierLimits(Output):
    """What a workspace on the tier may hold at once; null means no limit."""

    members: int | None = Field(default=None, ge=1, description="People in the workspace")
    projects: int | None = Field(default=None, ge=1, description="Live projects")
    active_runs: int | None = Field(default=None, ge=1, description="Runs queued, running, paused or awaiting approval")


class Tier(Output):
    id: str
    name: str
    price_monthly: int = Field(ge=0, description="In the smallest unit of `currency` (cents)")
    currency: str = "usd"
    monthly_tokens: int = Field(ge=0, description="Granted each paid month (on `invoice.paid`)")
    limits: TierLimits
    stripe_price: str | None = Field(default=None, description="The Stripe price a checkout subscribes to")


class LimitName(StrEnum):
    members = "members"
    projects = "projects"
    active_runs = "active_runs"


class LimitViolation(Output):
    """One of a tier's limits that a workspace is over (a downgrade it would not fit)."""

    limit: LimitName
    allowed: int = Field(description="What the tier allows")
    current: int = Field(description="What the workspace has now")
    detail: str = Field(description='Said for people, e.g. "7 members; the Free tier allows 5"')


class TokenPackage(Output):
    id: str
    name: str
    tokens: int = Field(ge=1)
    price: int = Field(ge=0, description="In the smallest unit of `currency` (cents)")
    currency: str = "usd"


class Pricing(Output):
    tiers: list[Tier]
    token_packages: list[TokenPackage]
    default_tier: str = Field(description="The tier of a workspace without a subscription")


class TransactionType(StrEnum):
    grant = "grant"
    consume = "consume"
    run_usage = "run_usage"
    refund = "refund"


class TokenBalance(Output):
    workspace_id: str
    balance: int
    updated_at: str | None = None


class TokenTransaction(Output):
    id: str
    workspace_id: str
    type: TransactionType
    amount: int = Field(description="Signed: a grant or refund adds, a consume or run usage takes away")
    balance_after: int
    reason: str | None = None
    action: str | None = None
    reference_id: str | None = None
    run_id: str | None = None
    actor_id: str | None = None
    metadata: dict[str, Any] | None = None
    created_at: str


class TokenConsume(Input):
    amount: int = Field(gt=0, le=MAX_TOKENS)
    action: ActionName
    reference_id: Annotated[str, StringConstraints(max_length=200)] | None = None
    metadata: dict[str, Any] | None = Field(default=None, description="Kept with the ledger row (at most 4 KB)")


class TokenConsumed(Output):
    transaction: TokenTransaction
    balance: int


class TransactionQuery(ListQuery):
    type: TransactionType | None = Field(default=None, description="Only transactions of this type")


__all__ = [
    "MAX_TOKENS",
    "LimitName",
    "LimitViolation",
    "Pricing",
    "Tier",
    "TierId",
    "TierLimits",
    "TokenBalance",
    "TokenConsume",
    "TokenConsumed",
    "TokenPackage",
    "TokenTransaction",
    "TransactionQuery",
    "TransactionType",
]

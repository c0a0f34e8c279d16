"""Billing's items: a workspace's subscription, and its token balance with the ledger of every
change to it.

The balance item holds the balance and the sequence number of the latest ledger row; a change
writes the balance, conditioned on the sequence it read, and the next ledger row (which must not
exist yet) in one transaction. So the balance never goes negative, two changes never both land on
the same reading, and the ledger sums to the balance. The ledger lives in a partition of its own,
so "the latest transactions" is one Query read backwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pynamodb.attributes import BooleanAttribute, UnicodeAttribute, UnicodeSetAttribute

from agentplane import keys
from agentplane.entities.base import Entity, EpochTTL, Keys, MapDocument, number
from agentplane.entities.patterns import access_pattern
from agentplane.ids import iso
from agentplane.models.billing import TokenBalance, TokenTransaction
from agentplane.models.subscriptions import AutoTopUp
from agentplane.store import EntityPage, QuerySpec, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition
    from pynamodb.expressions.update import Action


class SubscriptionItem(Entity, discriminator="subscription"):
    workspace_id = UnicodeAttribute()
    tier = UnicodeAttribute()
    # Stripe's subscription statuses: active, trialing, past_due, canceled, incomplete, unpaid…
    status = UnicodeAttribute()
    stripe_customer_id = UnicodeAttribute(null=True)
    stripe_subscription_id = UnicodeAttribute(null=True)
    current_period_end = UnicodeAttribute(null=True)
    cancel_at_period_end = BooleanAttribute(default=False)
    # Stripe's `created` (epoch seconds) of the event that last changed this: an older one is ignored.
    event_created = number(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(keys.subscription_key(self.workspace_id))


class BillingEventItem(Entity, discriminator="billing_event"):
    """A Stripe event applied to a workspace, written in the transaction of its effects: a
    redelivery finds it and changes nothing. Stripe retries for three days; the marker outlives that."""

    workspace_id = UnicodeAttribute()
    event_id = UnicodeAttribute()
    type = UnicodeAttribute()
    created_at = UnicodeAttribute()
    ttl = EpochTTL(attr_name=keys.TTL, null=True)

    def where(self) -> Keys:
        return Keys(keys.billing_event_key(self.workspace_id, self.event_id))


class StripeCustomerItem(Entity, discriminator="stripe_customer"):
    """The workspace a Stripe customer pays for (an invoice names only its customer)."""

    customer_id = UnicodeAttribute()
    workspace_id = UnicodeAttribute()
    created_at = UnicodeAttribute()

    def where(self) -> Keys:
        return Keys(keys.stripe_customer_key(self.customer_id))


class AutoTopUpItem(Entity[AutoTopUp], discriminator="auto_topup"):
    workspace_id = UnicodeAttribute()
    enabled = BooleanAttribute(default=False)
    threshold_tokens = number()
    package_id = UnicodeAttribute()
    max_monthly_topups = number()
    stripe_payment_method_id = UnicodeAttribute(null=True)
    # The UTC month (YYYY-MM) `topups_this_month` counts, and the top-up claimed and not yet
    # granted: its idempotency key (so a retried charge is the same charge) and payment intent.
    topups_month = UnicodeAttribute(null=True)
    topups_this_month = number(default=0)
    pending_key = UnicodeAttribute(null=True)
    pending_payment_intent_id = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()

    internal = frozenset({"topups_month", "pending_key"})

    def where(self) -> Keys:
        return Keys(keys.auto_topup_key(self.workspace_id))

    def used_in(self, month: str) -> int:
        """Top-ups charged in `month` so far."""
        return int(self.topups_this_month or 0) if self.topups_month == month else 0

    def to_model(self) -> AutoTopUp:
        model = super().to_model()
        return model.model_copy(update={"topups_this_month": self.used_in(iso()[:7])})


class TokenBalanceItem(Entity[TokenBalance], discriminator="token_balance"):
    workspace_id = UnicodeAttribute()
    balance = number(default=0)
    sequence = number(default=0)  # of the latest ledger row
    # Runs paused because the balance could not cover what they reported (resumed by a grant).
    budget_paused = UnicodeSetAttribute(null=True)
    # Tokens consumed and charged for run usage in the UTC month `spent_month` (YYYY-MM): kept by
    # each posting that takes tokens (`spending`), so the month's use is read with the balance.
    spent_month = UnicodeAttribute(null=True)
    spent_tokens = number(null=True)
    # The auto top-up threshold while auto top-up is on (kept here by logic.billing.topup), so a
    # posting that takes tokens knows from its own read whether to top up.
    topup_below = number(null=True)
    updated_at = UnicodeAttribute(null=True)

    internal = frozenset({"sequence", "budget_paused", "spent_month", "spent_tokens", "topup_below"})

    def where(self) -> Keys:
        return Keys(keys.token_balance_key(self.workspace_id))

    @classmethod
    def empty(cls, ws: str) -> TokenBalanceItem:
        """The balance of a workspace that never had tokens (nothing stored yet)."""
        return cls(workspace_id=ws, balance=0, sequence=0)

    def spent_in(self, month: str) -> int:
        """Tokens taken from the balance in `month` (YYYY-MM)."""
        return int(self.spent_tokens or 0) if self.spent_month == month else 0

    def spending(self, tokens: int, month: str) -> list[Action]:
        """The updates that count `tokens` more taken in `month`, for a write conditioned on this
        reading (`unchanged`): a new month starts from zero."""
        return [
            TokenBalanceItem.spent_month.set(month),
            TokenBalanceItem.spent_tokens.set(self.spent_in(month) + tokens),
        ]

    def unchanged(self) -> Condition:
        """Nothing changed the balance since it was read."""
        unchanged: Condition
        if not self.sequence:
            unchanged = TokenBalanceItem.sequence.does_not_exist() | (TokenBalanceItem.sequence == 0)
        else:
            unchanged = TokenBalanceItem.sequence == int(self.sequence)
        return unchanged


class TokenTransactionItem(Entity[TokenTransaction], discriminator="token_transaction"):
    workspace_id = UnicodeAttribute()
    sequence = number()
    id = UnicodeAttribute()
    type = UnicodeAttribute()
    amount = number()
    balance_after = number()
    reason = UnicodeAttribute(null=True)
    action = UnicodeAttribute(null=True)
    reference_id = UnicodeAttribute(null=True)
    run_id = UnicodeAttribute(null=True)
    actor_id = UnicodeAttribute(null=True)
    metadata = MapDocument(null=True)
    created_at = UnicodeAttribute()

    internal = frozenset({"sequence"})

    def where(self) -> Keys:
        return Keys(keys.token_ledger_key(self.workspace_id, int(self.sequence)))


@access_pattern(TokenTransactionItem, partition=keys.token_ledger_pk, sort="sequence, newest first")
def token_ledger(
    ws: str, *, limit: int, start: dict[str, str] | None, of_type: str | None
) -> EntityPage[TokenTransactionItem]:
    """A workspace's ledger, newest first, optionally of one type (filtered within the read budget)."""
    spec = QuerySpec(
        keys.token_ledger_pk(ws),
        newest_first=True,
        filter=(TokenTransactionItem.type == of_type) if of_type else None,
    )
    return get_store().fill(TokenTransactionItem, spec, limit=limit, start=start)

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
from agentplane.entities.base import Entity, Keys, MapDocument, number
from agentplane.entities.patterns import access_pattern
from agentplane.models.billing import TokenBalance, TokenTransaction
from agentplane.store import EntityPage, QuerySpec, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.condition import Condition


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


class TokenBalanceItem(Entity[TokenBalance], discriminator="token_balance"):
    workspace_id = UnicodeAttribute()
    balance = number(default=0)
    sequence = number(default=0)  # of the latest ledger row
    # Runs paused because the balance could not cover what they reported (resumed by a grant).
    budget_paused = UnicodeSetAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)

    internal = frozenset({"sequence", "budget_paused"})

    def where(self) -> Keys:
        return Keys(keys.token_balance_key(self.workspace_id))

    @classmethod
    def empty(cls, ws: str) -> TokenBalanceItem:
        """The balance of a workspace that never had tokens (nothing stored yet)."""
        return cls(workspace_id=ws, balance=0, sequence=0)

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

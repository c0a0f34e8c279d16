"""The token ledger: a workspace's balance and every change to it.

Each change reads the balance item, then writes the new balance (conditioned on the sequence it
read) and the next ledger row (which must not exist yet) in one transaction; a change that lost to
a concurrent one reads again and retries. So the balance never goes negative, the ledger always sums
to the balance, and `balance_after` of each row is exact. Callers that change other things with a
grant (a Stripe event's marker, a subscription) put them in the same transaction (`with_writes`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentplane import keys
from agentplane.access import Access
from agentplane.cursor import decode_cursor, encode_cursor
from agentplane.entities.billing import TokenBalanceItem, TokenTransactionItem, token_ledger
from agentplane.errors import PaymentRequired, Unprocessable
from agentplane.ids import iso, new_id
from agentplane.models.billing import (
    TokenBalance,
    TokenConsume,
    TokenConsumed,
    TokenTransaction,
    TransactionType,
)
from agentplane.store import Transaction, TransactionFailed, get_store, retrying

if TYPE_CHECKING:
    from pynamodb.expressions.update import Action

BALANCE, LEDGER_ROW = "token_balance", "token_ledger_row"
# A change that loses to concurrent ones reads again; twenty writers at once settle well within this.
_ATTEMPTS = 40
_MAX_METADATA_BYTES = 4096


@dataclass(frozen=True)
class Posting:
    """One change to the balance: `amount` is signed (a grant adds, a consume takes away)."""

    type: TransactionType
    amount: int
    reason: str | None = None
    action: str | None = None
    reference_id: str | None = None
    run_id: str | None = None
    actor_id: str | None = None
    metadata: Mapping[str, Any] | None = None


def read_balance(ws: str) -> TokenBalanceItem:
    """The workspace's balance as stored now (zero if it never had tokens)."""
    found = get_store().read(TokenBalanceItem, keys.token_balance_key(ws))
    return found if found is not None else TokenBalanceItem.empty(ws)


def post_in(
    tx: Transaction, current: TokenBalanceItem, posting: Posting, *, also: Sequence[Action] = ()
) -> TokenTransactionItem:
    """Add to `tx` the balance change `posting` makes to `current` (as read) and its ledger row;
    the transaction fails at `BALANCE` if anything changed the balance since it was read. `also`
    are further changes of the balance item (a transaction writes an item once)."""
    balance = int(current.balance or 0) + posting.amount
    if balance < 0:
        raise ValueError("a posting may not take the balance below zero")
    at = iso()
    if posting.amount < 0:
        also = [*also, *current.spending(-posting.amount, at[:7])]
    ws = str(current.workspace_id)
    sequence = int(current.sequence or 0) + 1
    changes = [
        TokenBalanceItem.workspace_id.set(ws),
        TokenBalanceItem.balance.set(balance),
        TokenBalanceItem.sequence.set(sequence),
        TokenBalanceItem.updated_at.set(at),
        *also,
    ]
    tx.upsert(TokenBalanceItem, keys.token_balance_key(ws), changes, current.unchanged(), name=BALANCE)
    row = TokenTransactionItem(
        workspace_id=ws,
        sequence=sequence,
        id=new_id("ttx"),
        type=posting.type.value,
        amount=posting.amount,
        balance_after=balance,
        reason=posting.reason,
        action=posting.action,
        reference_id=posting.reference_id,
        run_id=posting.run_id,
        actor_id=posting.actor_id,
        metadata=dict(posting.metadata) if posting.metadata else None,
        created_at=at,
    )
    tx.create(row, name=LEDGER_ROW)
    return row


def lost_to_another_change(failure: Exception) -> bool:
    """The transaction lost only because the balance moved under it: read again and retry."""
    if not isinstance(failure, TransactionFailed):
        return False
    return failure.only_conflicts() or failure.failed in (BALANCE, LEDGER_ROW)


def grant(
    ws: str,
    amount: int,
    *,
    reason: str,
    type: TransactionType = TransactionType.grant,
    reference_id: str | None = None,
    actor_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    with_writes: Callable[[Transaction], None] | None = None,
) -> TokenTransactionItem:
    """Add `amount` tokens (a grant or a refund), with the caller's other writes in the same
    transaction (`with_writes`, called again on each retry). Runs paused for budget are the
    caller's to resume (`logic.runs.resume_budget_paused`): this module knows nothing of runs."""
    if amount <= 0:
        raise Unprocessable("a grant adds a positive number of tokens", field="amount")
    posting = Posting(type, amount, reason=reason, reference_id=reference_id, actor_id=actor_id, metadata=metadata)

    def attempt() -> TokenTransactionItem:
        tx = get_store().transaction()
        if with_writes is not None:
            with_writes(tx)
        row = post_in(tx, read_balance(ws), posting)
        tx.commit()
        return row

    return retrying(attempt, retry_if=lost_to_another_change, attempts=_ATTEMPTS)


def short_of(balance: int, required: int) -> PaymentRequired:
    return PaymentRequired(
        f"the workspace has {balance} tokens; this needs {required}", balance=balance, required=required
    )


def consume(access: Access, body: TokenConsume) -> TokenConsumed:
    """Take `amount` tokens for `action`, or refuse with a 402 naming the balance: never below zero."""
    access.require("billing:write")
    ws = access.workspace_id
    if body.metadata is not None and len(json.dumps(body.metadata, default=str)) > _MAX_METADATA_BYTES:
        raise Unprocessable(f"metadata may hold at most {_MAX_METADATA_BYTES} bytes of JSON", field="metadata")
    posting = Posting(
        TransactionType.consume,
        -body.amount,
        reason=body.action,
        action=body.action,
        reference_id=body.reference_id,
        actor_id=access.actor_id,
        metadata=body.metadata,
    )

    def attempt() -> tuple[TokenTransactionItem, TokenBalanceItem]:
        current = read_balance(ws)
        if int(current.balance or 0) < body.amount:
            raise short_of(int(current.balance or 0), body.amount)
        tx = access.transaction()
        row = post_in(tx, current, posting)
        access.audit(tx, "tokens.consumed", "tokens", row.id, {"amount": body.amount, "action": body.action})
        access.commit(tx)
        return row, current

    row, read = retrying(attempt, retry_if=lost_to_another_change, attempts=_ATTEMPTS)
    after_spending(read, int(row.balance_after))
    return TokenConsumed(transaction=row.to_model(), balance=int(row.balance_after))


def after_spending(read: TokenBalanceItem, balance: int) -> None:
    """A posting that took tokens committed, leaving `balance`: below the auto top-up threshold
    kept on the balance item (`read`, as the posting read it), a top-up is due. Nothing is read
    when auto top-up is off."""
    if read.topup_below is None or balance >= int(read.topup_below):
        return
    # Top-ups charge through Stripe (billing's own module, above this one): imported only then.
    from agentplane.logic.billing import topup

    topup.maybe_top_up(str(read.workspace_id), balance)


def balance_of(access: Access) -> TokenBalance:
    access.require("billing:read")
    item = read_balance(access.workspace_id)
    return TokenBalance(workspace_id=access.workspace_id, balance=int(item.balance or 0), updated_at=item.updated_at)


def list_transactions(
    access: Access, *, of_type: TransactionType | None, limit: int, cursor: str | None
) -> tuple[list[TokenTransaction], str | None]:
    access.require("billing:read")
    ws = access.workspace_id
    query = {"type": of_type.value if of_type else None}
    scope = f"token_transactions:{ws}"
    page = token_ledger(ws, limit=limit, start=decode_cursor(cursor, scope, query), of_type=query["type"])
    next_cursor = encode_cursor(page.last_key, scope, query)
    return [row.to_model() for row in page.items], next_cursor

"""Budget caps: what an agent reports spending on a run (`usage.tokens` on heartbeat and complete)
is charged to its workspace's token balance, in the same transaction as the report.

A report the balance covers is charged whole. One it cannot cover takes what is left (the balance
ends at zero, never below), keeps the rest on the run as `unbilled_tokens`, and pauses a running
run (`status_detail: budget_exhausted`); the run is remembered on the balance item, so a grant
that makes the balance positive resumes it (logic.runs.resume_budget_paused). The pause is
conditioned on the balance as read: a grant landing in between makes the report retry, covered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentplane import keys
from agentplane.entities.billing import TokenBalanceItem
from agentplane.entities.runs import RunItem
from agentplane.logic.billing import tokens
from agentplane.models.billing import TransactionType
from agentplane.store import Transaction, get_store

if TYPE_CHECKING:
    from pynamodb.expressions.update import Action

BUDGET_EXHAUSTED = "budget_exhausted"


@dataclass(frozen=True)
class Charge:
    """One usage report against the balance as read."""

    run: RunItem
    balance: TokenBalanceItem
    reported: int

    @property
    def covered(self) -> int:
        return min(self.reported, int(self.balance.balance or 0))

    @property
    def short(self) -> int:
        return self.reported - self.covered

    def run_actions(self, run: RunItem) -> list[Action]:
        """The run's own bookkeeping: every reported token, and those left unbilled (added, so
        concurrent reports all count; `run` shows the sums as they will be)."""
        run.usage_tokens = int(run.usage_tokens or 0) + self.reported
        actions: list[Action] = [RunItem.usage_tokens.add(self.reported)]
        if self.short:
            run.unbilled_tokens = int(run.unbilled_tokens or 0) + self.short
            actions.append(RunItem.unbilled_tokens.add(self.short))
        return actions

    def writes(self, tx: Transaction, *, pause: bool) -> None:
        """The balance's side: the ledger row for what is covered, and, when the run pauses for
        budget, the run remembered for the grant that resumes it (conditioned on the balance read)."""
        also: list[Any] = [TokenBalanceItem.budget_paused.add({str(self.run.id)})] if pause else []
        if self.covered:
            posting = tokens.Posting(
                TransactionType.run_usage,
                -self.covered,
                reason=f"run {self.run.id}",
                run_id=str(self.run.id),
                metadata={"agent": self.run.agent} if self.run.agent else None,
            )
            tokens.post_in(tx, self.balance, posting, also=also)
        elif also:
            key = keys.token_balance_key(str(self.run.workspace_id))
            kind = [TokenBalanceItem.workspace_id.set(str(self.run.workspace_id))]
            tx.upsert(TokenBalanceItem, key, [*kind, *also], self.balance.unchanged(), name=tokens.BALANCE)


def read_with_balance(run_key: keys.Key, ws: str, *extra: tuple[type[Any], keys.Key]) -> list[Any]:
    """The run, the balance and `extra` items in one BatchGetItem (a report costs no round trip)."""
    return get_store().read_each([(RunItem, run_key), (TokenBalanceItem, keys.token_balance_key(ws)), *extra])


def balance_in(found: TokenBalanceItem | None, ws: str) -> TokenBalanceItem:
    return found if found is not None else TokenBalanceItem.empty(ws)

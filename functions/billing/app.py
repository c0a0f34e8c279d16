"""Billing family: the workspace's token balance, its ledger and consuming tokens, under
/api/v1/workspaces/{ws}/tokens.

Reading needs `billing:read`; consuming tokens `billing:write`.
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query

from agentplane.access import Access
from agentplane.http import PROBLEM_RESPONSES, create_app, lambda_entry, ok, page, workspace_scope
from agentplane.logic.billing import tokens
from agentplane.models.billing import TokenBalance, TokenConsume, TokenConsumed, TokenTransaction, TransactionQuery
from agentplane.models.envelope import Data, DataList

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)
WS = "/api/v1/workspaces/<ws>"
ReadBilling = Annotated[Access, workspace_scope("billing:read")]
WriteBilling = Annotated[Access, workspace_scope("billing:write")]


# ------------------------------------------------------------------------------------- tokens


@app.get(f"{WS}/tokens/balance", responses=PROBLEM_RESPONSES)
def token_balance(ws: str, access: ReadBilling) -> Data[TokenBalance]:
    return ok(tokens.balance_of(access))


@app.get(f"{WS}/tokens/transactions", responses=PROBLEM_RESPONSES)
def token_transactions(
    ws: str, access: ReadBilling, query: Annotated[TransactionQuery, Query()]
) -> DataList[TokenTransaction]:
    items, next_cursor = tokens.list_transactions(access, of_type=query.type, limit=query.limit, cursor=query.cursor)
    return page(items, next_cursor, query.limit)


@app.post(f"{WS}/tokens/consume", responses=PROBLEM_RESPONSES)
def consume_tokens(ws: str, access: WriteBilling, body: TokenConsume) -> Data[TokenConsumed]:
    return ok(tokens.consume(access, body))


lambda_handler = lambda_entry(app)

"""Billing family: the public tier catalog and pricing, Stripe's webhook, a workspace's
subscription, checkout and portal sessions, plan changes, usage and auto top-up (under
/api/v1/billing and /api/v1/workspaces/{ws}/billing), and its token balance, ledger and consuming
tokens (under /api/v1/workspaces/{ws}/tokens).

Reading needs `billing:read`; consuming tokens `billing:write`; buying and changing plans
`billing:write` and the workspace's owner or an admin. The catalog and the webhook need no token
(the webhook is signed by Stripe).
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Header, Query

from agentplane.access import Access
from agentplane.http import (
    CREATED,
    PROBLEM_RESPONSES,
    PUBLIC,
    create_app,
    created,
    lambda_entry,
    ok,
    page,
    request_id,
    workspace_scope,
)
from agentplane.logic.billing import catalog, subscriptions, tokens, topup, webhook
from agentplane.models.billing import (
    Pricing,
    Tier,
    TokenBalance,
    TokenConsume,
    TokenConsumed,
    TokenTransaction,
    TransactionQuery,
)
from agentplane.models.envelope import Data, DataList
from agentplane.models.subscriptions import (
    AutoTopUp,
    AutoTopUpCreate,
    AutoTopUpUpdate,
    AutoTopUpView,
    BillingUsage,
    CheckoutRequest,
    CheckoutSession,
    DowngradeCheck,
    PlanChange,
    PlanRequest,
    PortalRequest,
    PortalSession,
    Subscription,
    WebhookReceipt,
)

# Stripe's secret key for checkout, the portal and plan changes; the signing secret for the webhook.
REQUIRED_SETTINGS = ("stripe_api_key", "stripe_webhook_secret")
app = create_app(requires=REQUIRED_SETTINGS)
BILLING = "/api/v1/billing"
WS = "/api/v1/workspaces/<ws>"
WS_BILLING = f"{WS}/billing"
ReadBilling = Annotated[Access, workspace_scope("billing:read")]
WriteBilling = Annotated[Access, workspace_scope("billing:write")]
StripeSignature = Annotated[
    str | None, Header(alias="stripe-signature", description="Stripe's signature of the raw body")
]


# --- public: the catalog and Stripe's webhook ----------------------------------------------------


@app.get(f"{BILLING}/tiers", security=PUBLIC)
def list_tiers() -> DataList[Tier]:
    tiers = catalog.tiers()
    return page(tiers, None, len(tiers))


@app.get(f"{BILLING}/pricing", security=PUBLIC)
def get_pricing() -> Data[Pricing]:
    return ok(catalog.pricing())


@app.post(f"{BILLING}/webhook", security=PUBLIC, responses=PROBLEM_RESPONSES)
def stripe_webhook(stripe_signature: StripeSignature = None) -> Data[WebhookReceipt]:
    return ok(webhook.receive(app.current_event.body or "", stripe_signature, request_id(app)))


# --- a workspace's subscription ------------------------------------------------------------------


@app.get(f"{WS_BILLING}/subscription", responses=PROBLEM_RESPONSES)
def get_subscription(ws: str, access: ReadBilling) -> Data[Subscription]:
    return ok(subscriptions.subscription_of(access))


@app.post(f"{WS_BILLING}/checkout", responses=PROBLEM_RESPONSES)
def create_checkout(ws: str, access: WriteBilling, body: CheckoutRequest) -> Data[CheckoutSession]:
    return ok(subscriptions.checkout(access, body))


@app.post(f"{WS_BILLING}/portal", responses=PROBLEM_RESPONSES)
def create_portal(ws: str, access: WriteBilling, body: PortalRequest | None = None) -> Data[PortalSession]:
    return ok(subscriptions.portal(access, body or PortalRequest()))


@app.get(f"{WS_BILLING}/usage", responses=PROBLEM_RESPONSES)
def get_usage(ws: str, access: ReadBilling) -> Data[BillingUsage]:
    return ok(subscriptions.usage_of(access))


@app.post(f"{WS_BILLING}/change-plan", responses=PROBLEM_RESPONSES)
def change_plan(ws: str, access: WriteBilling, body: PlanRequest) -> Data[PlanChange]:
    return ok(subscriptions.change_plan(access, body))


@app.post(f"{WS_BILLING}/validate-downgrade", responses=PROBLEM_RESPONSES)
def validate_downgrade(ws: str, access: ReadBilling, body: PlanRequest) -> Data[DowngradeCheck]:
    return ok(subscriptions.validate_downgrade(access, body))


# --- auto top-up ---------------------------------------------------------------------------------


@app.get(f"{WS_BILLING}/auto-topup", responses=PROBLEM_RESPONSES)
def get_auto_topup(ws: str, access: ReadBilling) -> Data[AutoTopUpView]:
    return ok(topup.config_of(access))


@app.post(f"{WS_BILLING}/auto-topup", responses=CREATED)
def create_auto_topup(ws: str, access: WriteBilling, body: AutoTopUpCreate) -> Response[Data[AutoTopUp]]:
    return created(topup.configure(access, body))


@app.put(f"{WS_BILLING}/auto-topup", responses=PROBLEM_RESPONSES)
def update_auto_topup(ws: str, access: WriteBilling, body: AutoTopUpUpdate) -> Data[AutoTopUp]:
    return ok(topup.reconfigure(access, body))


# --- tokens --------------------------------------------------------------------------------------


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

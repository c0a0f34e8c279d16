"""Billing through the API: the public catalog, checkout and plans against the local Stripe
stand-in (the SDK's requests go to it on loopback), and the webhook fed events signed here the
way Stripe signs them (an HMAC of "{t}.{body}", computed independently of the code under test)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agentplane import raw_items
from devstack.stripe_standin import StripeStandIn
from tests.conftest import register_and_login

WEBHOOK = "/api/v1/billing/webhook"
# What the local stack's StripeSecret resolves to (devstack), as `make dev` prints it.
WEBHOOK_SECRET = "whsec_local_dev"
# Events of a test are a second apart, in the order it sends them, and older than any change the
# API makes itself (Stripe's events about a change come after it).
_clock = itertools.count(int(time.time()) - 3600)


# --- helpers --------------------------------------------------------------------------------------


@pytest.fixture
def stripe(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[StripeStandIn]:
    """The Stripe stand-in on loopback, with the SDK pointed at it (deliveries left to the test)."""
    from agentplane.settings import get_settings

    standin = StripeStandIn().start()
    monkeypatch.setenv("STRIPE_API_BASE", standin.url)
    get_settings.cache_clear()
    try:
        yield standin
    finally:
        standin.stop()
        get_settings.cache_clear()


def billing(ws: dict, tail: str = "") -> str:
    return f"/api/v1/workspaces/{ws['id']}/billing{tail}"


def stripe_signature(payload: str, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    timestamp = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def stripe_event(
    event_type: str, obj: dict[str, Any], *, created: int | None = None, event_id: str | None = None
) -> dict:
    return {
        "id": event_id or f"evt_{secrets.token_hex(8)}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": created if created is not None else next(_clock),
        "type": event_type,
        "livemode": False,
        "data": {"object": obj},
    }


def send(api, event: dict, *, signature: str | None = "sign", raw: str | None = None) -> Any:
    payload = raw if raw is not None else json.dumps(event)
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if signature == "sign":
        headers["Stripe-Signature"] = stripe_signature(payload)
    elif signature is not None:
        headers["Stripe-Signature"] = signature
    return api.request("POST", WEBHOOK, raw=payload, headers=headers, token="")


def subscription_of(api, ws: dict) -> dict:
    response = api.get(billing(ws, "/subscription"))
    assert response.status == 200, response.body
    return response.json["data"]


def balance_of(ws: dict) -> int:
    from agentplane.logic.billing import tokens

    return int(tokens.read_balance(ws["id"]).balance or 0)


def add_member(ws: dict, person: dict, role: str) -> None:
    from agentplane.auth.scopes import Role
    from agentplane.ids import iso
    from agentplane.logic.workspaces import member_item

    raw_items.put(member_item(ws["id"], ws["name"], person["user"]["id"], Role(role), iso()))


def audit_actions(ws: dict) -> list[str]:
    from agentplane import keys

    return [row["action"] for row in raw_items.query(keys.audit_pk(ws["id"]), limit=200).items]


def subscription_object(ws: dict, *, tier: str = "team", status: str = "active", **extra: Any) -> dict:
    return {
        "id": "sub_test_1",
        "object": "subscription",
        "customer": "cus_test_1",
        "status": status,
        "cancel_at_period_end": False,
        "metadata": {"workspace_id": ws["id"], "tier": tier},
        "items": {
            "object": "list",
            "data": [
                {
                    "id": "si_1",
                    "object": "subscription_item",
                    "price": {"id": f"price_agentplane_{tier}_monthly"},
                    "current_period_end": 1_900_000_000,
                }
            ],
        },
        **extra,
    }


def invoice_object(
    ws: dict, *, tier: str = "team", invoice_id: str = "in_test_1", reason: str = "subscription_cycle"
) -> dict:
    return {
        "id": invoice_id,
        "object": "invoice",
        "customer": "cus_test_1",
        "billing_reason": reason,
        "parent": {
            "subscription_details": {"subscription": "sub_test_1", "metadata": {"workspace_id": ws["id"], "tier": tier}}
        },
    }


def on_team_plan(api, ws: dict) -> None:
    assert send(api, stripe_event("customer.subscription.created", subscription_object(ws))).status == 200


# --- the public catalog ---------------------------------------------------------------------------


def test_tiers_and_pricing_are_public_and_come_from_the_catalog(api):
    from agentplane.logic.billing import catalog

    tiers = api.get("/api/v1/billing/tiers", token="")
    assert tiers.status == 200
    assert [t["id"] for t in tiers.json["data"]] == [t.id for t in catalog.tiers()]
    assert {"id", "name", "price_monthly", "monthly_tokens", "limits"} <= tiers.json["data"][0].keys()
    pricing = api.get("/api/v1/billing/pricing", token="")
    assert pricing.status == 200
    assert pricing.json["data"]["default_tier"] == "free"
    assert [p["id"] for p in pricing.json["data"]["token_packages"]] == [p.id for p in catalog.pricing().token_packages]


def test_a_workspace_without_a_subscription_is_on_the_free_tier(api, user, workspace):
    api.token = user["token"]
    assert {"tier": "free", "status": "active", "cancel_at_period_end": False}.items() <= subscription_of(
        api, workspace
    ).items()


# --- a whole journey ------------------------------------------------------------------------------


def test_a_workspace_goes_from_free_to_paid_and_back_through_signed_events(api, user, workspace, stripe):
    api.token = user["token"]
    ws = workspace["id"]

    checkout = api.post(billing(workspace, "/checkout"), {"tier": "team"})
    assert checkout.status == 200, checkout.body
    session_id = checkout.json["data"]["session_id"]
    assert checkout.json["data"]["url"].startswith(stripe.url)
    created = next(c for c in stripe.state.calls if c.path == "/v1/checkout/sessions")
    assert created.params["mode"] == "subscription"
    assert created.params["metadata"] == {"workspace_id": ws, "kind": "subscription", "tier": "team"}
    assert created.params["subscription_data"]["metadata"] == {"workspace_id": ws, "tier": "team"}
    assert created.params["line_items"] == [{"price": "price_agentplane_team_monthly", "quantity": "1"}]
    customer_id = subscription_of(api, workspace)["stripe_customer_id"]
    assert created.params["customer"] == customer_id
    assert subscription_of(api, workspace)["tier"] == "free"  # nothing changes before Stripe says so

    # The buyer pays on the stand-in's page; Stripe sends its events, signed here.
    completed, started, paid = stripe.complete_checkout(session_id)
    assert send(api, completed).json["data"]["outcome"] == "applied"
    after_checkout = subscription_of(api, workspace)
    assert after_checkout["tier"] == "team"
    assert after_checkout["status"] == "active"
    assert after_checkout["stripe_subscription_id"] == started["data"]["object"]["id"]

    assert send(api, started).status == 200
    assert subscription_of(api, workspace)["current_period_end"] is not None

    assert send(api, paid).status == 200
    assert balance_of(workspace) == 2_000_000  # the Team tier's monthly tokens
    assert api.get(billing(workspace, "/usage")).json["data"]["token_balance"] == 2_000_000

    later = paid["created"] + 1
    failed = stripe_event(
        "invoice.payment_failed", {"id": "in_failed", "object": "invoice", "customer": customer_id}, created=later
    )
    assert send(api, failed).status == 200
    assert subscription_of(api, workspace)["status"] == "past_due"
    inbox = api.get(f"/api/v1/workspaces/{ws}/notifications").json["data"]
    assert [n["type"] for n in inbox] == ["billing"]
    assert "failed" in inbox[0]["title"]

    ended = stripe_event(
        "customer.subscription.deleted", {**started["data"]["object"], "status": "canceled"}, created=later + 1
    )
    assert send(api, ended).status == 200
    back = subscription_of(api, workspace)
    assert (back["tier"], back["status"]) == ("free", "canceled")
    actions = audit_actions(workspace)
    for action in ("billing.checkout_started", "billing.subscription_started", "billing.tokens_granted",
                   "billing.payment_failed", "billing.subscription_canceled"):  # fmt: skip
        assert action in actions


def test_a_token_checkout_grants_its_package_once_paid(api, user, workspace, stripe):
    api.token = user["token"]
    checkout = api.post(billing(workspace, "/checkout"), {"kind": "tokens", "package_id": "tokens_500k"})
    assert checkout.status == 200, checkout.body
    created = next(c for c in stripe.state.calls if c.path == "/v1/checkout/sessions")
    assert {"kind": "tokens", "tokens": "500000", "package_id": "tokens_500k"}.items() <= created.params[
        "metadata"
    ].items()
    (completed,) = stripe.complete_checkout(checkout.json["data"]["session_id"])
    assert send(api, completed).status == 200
    assert balance_of(workspace) == 500_000
    assert subscription_of(api, workspace)["tier"] == "free"


def test_the_customer_is_created_once_per_workspace(api, user, workspace, stripe):
    api.token = user["token"]
    assert api.post(billing(workspace, "/checkout"), {"tier": "team"}).status == 200
    assert api.post(billing(workspace, "/checkout"), {"kind": "tokens", "package_id": "tokens_2m"}).status == 200
    assert [c.path for c in stripe.state.calls].count("/v1/customers") == 1
    portal = api.post(billing(workspace, "/portal"), {})
    assert portal.status == 200 and portal.json["data"]["url"].startswith(stripe.url)


def test_checkout_of_the_free_tier_or_the_current_one_is_refused(api, user, workspace, stripe):
    api.token = user["token"]
    assert api.post(billing(workspace, "/checkout"), {"tier": "free"}).status == 422
    assert api.post(billing(workspace, "/checkout"), {}).status == 422
    assert api.post(billing(workspace, "/checkout"), {"kind": "tokens"}).status == 422
    assert api.post(billing(workspace, "/checkout"), {"tier": "platinum"}).status == 422
    on_team_plan(api, workspace)
    again = api.post(billing(workspace, "/checkout"), {"tier": "team"})
    assert again.status == 409
    assert stripe.state.calls == []


# --- the webhook's guarantees ---------------------------------------------------------------------


def test_a_redelivered_event_is_applied_once(api, workspace):
    on_team_plan(api, workspace)
    paid = stripe_event("invoice.paid", invoice_object(workspace))
    first, second = send(api, paid), send(api, paid)
    assert (first.status, second.status) == (200, 200)
    assert (first.json["data"]["outcome"], second.json["data"]["outcome"]) == ("applied", "duplicate")
    assert balance_of(workspace) == 2_000_000


def test_an_event_older_than_the_subscription_state_is_acknowledged_and_ignored(api, user, workspace):
    now = next(_clock)
    business = stripe_event(
        "customer.subscription.updated", subscription_object(workspace, tier="business"), created=now
    )
    older = stripe_event("customer.subscription.updated", subscription_object(workspace, tier="team"), created=now - 60)
    assert send(api, business).json["data"]["outcome"] == "applied"
    stale = send(api, older)
    assert stale.status == 200 and stale.json["data"]["outcome"] == "stale"
    api.token = user["token"]
    assert subscription_of(api, workspace)["tier"] == "business"
    failed_before = stripe_event("invoice.payment_failed", invoice_object(workspace), created=now - 30)
    assert send(api, failed_before).json["data"]["outcome"] == "stale"
    assert subscription_of(api, workspace)["status"] == "active"


@pytest.mark.parametrize(
    "signature",
    [None, "t=1,v1=deadbeef", "garbage", "stale", "wrong-secret"],
    ids=["missing", "bad", "unparseable", "stale", "other-secret"],
)
def test_a_bad_missing_or_stale_signature_is_a_400_and_applies_nothing(api, workspace, signature):
    event = stripe_event("customer.subscription.created", subscription_object(workspace))
    payload = json.dumps(event)
    if signature == "stale":
        signature = stripe_signature(payload, at=int(time.time()) - 301)
    elif signature == "wrong-secret":
        signature = stripe_signature(payload, secret="whsec_someone_else")
    refused = send(api, event, signature=signature, raw=payload)
    assert refused.status == 400
    assert (refused.header("content-type") or "").startswith("application/problem+json")
    assert balance_of(workspace) == 0
    from agentplane.logic.billing import subscriptions

    assert subscriptions.read_subscription(workspace["id"]) is None


def test_a_body_changed_after_signing_is_refused(api, workspace):
    event = stripe_event("invoice.paid", invoice_object(workspace))
    signature = stripe_signature(json.dumps(event))
    tampered = json.dumps({**event, "data": {"object": invoice_object(workspace, tier="business")}})
    assert send(api, event, signature=signature, raw=tampered).status == 400
    assert balance_of(workspace) == 0


def test_an_event_that_fails_while_applying_answers_5xx_and_leaves_nothing_behind(api, workspace, monkeypatch):
    from agentplane.logic.billing import webhook

    on_team_plan(api, workspace)
    paid = stripe_event("invoice.paid", invoice_object(workspace))

    def audit_that_fails(tx, *args: Any, **kwargs: Any) -> None:
        # A write that cannot land: a condition on an item that does not exist.
        from agentplane.entities.billing import SubscriptionItem

        tx.require(SubscriptionItem, {"PK": "NOWHERE", "SK": "NOTHING"}, SubscriptionItem.present(), name="doomed")

    monkeypatch.setattr(webhook.Event, "audit", audit_that_fails)
    failed = send(api, paid)
    assert failed.status >= 500
    assert balance_of(workspace) == 0
    from agentplane import keys
    from agentplane.entities.billing import BillingEventItem
    from agentplane.store import get_store

    assert get_store().read(BillingEventItem, keys.billing_event_key(workspace["id"], paid["id"])) is None
    monkeypatch.undo()
    retried = send(api, paid)  # Stripe delivers it again
    assert retried.status == 200 and retried.json["data"]["outcome"] == "applied"
    assert balance_of(workspace) == 2_000_000


def test_an_event_of_no_known_workspace_is_acknowledged_and_ignored(api, workspace):
    nobody = stripe_event("invoice.paid", {"id": "in_x", "object": "invoice", "customer": "cus_unknown"})
    assert send(api, nobody).json["data"]["outcome"] == "unknown_workspace"
    gone = stripe_event(
        "customer.subscription.created", {**subscription_object(workspace), "metadata": {"workspace_id": "ws_gone"}}
    )
    answer = send(api, gone)
    assert answer.status == 200 and answer.json["data"]["outcome"] == "unknown_workspace"
    other = stripe_event("charge.refunded", {"id": "ch_1", "object": "charge"})
    assert send(api, other).json["data"]["outcome"] == "ignored"


def test_invoice_paid_of_an_invoice_found_by_its_customer_grants_the_tier(api, user, workspace, stripe):
    api.token = user["token"]
    assert api.post(billing(workspace, "/checkout"), {"tier": "team"}).status == 200
    customer_id = subscription_of(api, workspace)["stripe_customer_id"]
    on_team_plan(api, workspace)
    paid = stripe_event("invoice.paid", {"id": "in_bare", "object": "invoice", "customer": customer_id,
                                         "billing_reason": "subscription_cycle"})  # fmt: skip
    assert send(api, paid).json["data"]["outcome"] == "applied"
    assert balance_of(workspace) == 2_000_000


# --- who may read and buy -------------------------------------------------------------------------


def test_reading_needs_billing_read_and_buying_an_owner_or_admin(api, user, workspace, stripe):
    member, viewer = register_and_login(api), register_and_login(api)
    add_member(workspace, member, "member")
    add_member(workspace, viewer, "viewer")
    for person in (member, viewer):
        api.token = person["token"]
        refused = api.get(billing(workspace, "/subscription"))
        assert refused.status == 403 and refused.json["required_scope"] == "billing:read"
        assert api.post(billing(workspace, "/checkout"), {"tier": "team"}).status == 403
        assert api.post(billing(workspace, "/change-plan"), {"tier": "team"}).status == 403
    assert stripe.state.calls == []
    api.token = user["token"]
    assert api.get(billing(workspace, "/subscription")).status == 200


def test_a_key_without_billing_write_cannot_buy(api, user, workspace, stripe):
    api.token = user["token"]
    key = api.post(f"/api/v1/workspaces/{workspace['id']}/api-keys", {"name": "ro", "scopes": ["billing:read"]})
    assert key.status == 201, key.body
    api.token = key.json["data"]["key"]
    assert api.get(billing(workspace, "/subscription")).status == 200
    refused = api.post(billing(workspace, "/checkout"), {"tier": "team"})
    assert refused.status == 403 and refused.json["required_scope"] == "billing:write"


def test_another_workspace_s_billing_is_not_found(api, workspace, stripe):
    stranger = register_and_login(api)
    api.token = stranger["token"]
    for method, tail in (("GET", "/subscription"), ("POST", "/checkout"), ("GET", "/usage"), ("GET", "/auto-topup")):
        body = {"tier": "team"} if method == "POST" else None
        assert api.request(method, billing(workspace, tail), body).status == 404


# --- plans against the tier's limits --------------------------------------------------------------


@pytest.fixture
def crowded(monkeypatch):
    """The workspace holds more members than the free tier allows (as the plan-limit counters say)."""
    from agentplane.logic.billing import limits

    def crowd(ws: dict, members: int) -> None:
        real = limits.usage

        def usage(workspace_id: str) -> dict[str, int]:
            counted = dict(real(workspace_id))
            return {**counted, "members": members} if workspace_id == ws["id"] else counted

        monkeypatch.setattr(limits, "usage", usage)

    return crowd


def test_validate_downgrade_names_the_limits_the_workspace_exceeds(api, user, workspace, crowded):
    api.token = user["token"]
    on_team_plan(api, workspace)
    assert api.post(billing(workspace, "/validate-downgrade"), {"tier": "free"}).json["data"]["allowed"] is True
    crowded(workspace, members=8)
    check = api.post(billing(workspace, "/validate-downgrade"), {"tier": "free"}).json["data"]
    assert check["allowed"] is False and check["tier"] == "free"
    assert [(v["limit"], v["allowed"], v["current"]) for v in check["violations"]] == [("members", 5, 8)]


def test_change_plan_to_a_tier_the_workspace_exceeds_is_a_422_with_violations(api, user, workspace, stripe, crowded):
    api.token = user["token"]
    on_team_plan(api, workspace)
    crowded(workspace, members=8)
    refused = api.post(billing(workspace, "/change-plan"), {"tier": "free"})
    assert refused.status == 422
    assert [(v["limit"], v["allowed"], v["current"]) for v in refused.json["violations"]] == [("members", 5, 8)]
    assert stripe.state.calls == []
    assert subscription_of(api, workspace)["cancel_at_period_end"] is False


def test_change_plan_moves_the_stripe_subscription_or_cancels_it_at_period_end(api, user, workspace, stripe):
    api.token = user["token"]
    assert api.post(billing(workspace, "/checkout"), {"tier": "team"}).status == 200
    completed, started, _paid = stripe.complete_checkout(_last_session(stripe))
    assert send(api, completed).status == send(api, started).status == 200

    upgrade = api.post(billing(workspace, "/change-plan"), {"tier": "business"})
    assert upgrade.status == 200, upgrade.body
    assert upgrade.json["data"]["action"] == "changed"
    assert subscription_of(api, workspace)["tier"] == "business"
    subscription_id = started["data"]["object"]["id"]
    modified = stripe.state.objects[subscription_id]
    assert modified["items"]["data"][0]["price"]["id"] == "price_agentplane_business_monthly"

    # Stripe's event about the change came after it and says the same.
    assert (
        send(api, stripe_event("customer.subscription.updated", modified, created=int(time.time()) + 1)).status == 200
    )
    assert subscription_of(api, workspace)["tier"] == "business"

    downgrade = api.post(billing(workspace, "/change-plan"), {"tier": "free"})
    assert downgrade.status == 200 and downgrade.json["data"]["action"] == "cancel_scheduled"
    now = subscription_of(api, workspace)
    assert (now["tier"], now["cancel_at_period_end"]) == ("business", True)
    assert stripe.state.objects[subscription_id]["cancel_at_period_end"] is True
    assert "billing.plan_changed" in audit_actions(workspace)


def test_change_plan_without_a_subscription_answers_a_checkout(api, user, workspace, stripe):
    api.token = user["token"]
    answer = api.post(billing(workspace, "/change-plan"), {"tier": "team"})
    assert answer.status == 200
    assert answer.json["data"]["action"] == "checkout"
    assert answer.json["data"]["url"].startswith(stripe.url)
    assert api.post(billing(workspace, "/change-plan"), {"tier": "free"}).status == 409


def _last_session(stripe: StripeStandIn) -> str:
    return next(o["id"] for o in reversed(stripe.state.objects.values()) if o["object"] == "checkout.session")


# --- usage ----------------------------------------------------------------------------------------


def test_usage_shows_the_tier_its_limits_and_this_month_s_tokens(api, user, workspace):
    from agentplane.ids import iso

    api.token = user["token"]
    usage = api.get(billing(workspace, "/usage"))
    assert usage.status == 200
    data = usage.json["data"]
    assert data["tier"] == "free"
    assert data["limits"] == {"members": 5, "projects": 5, "active_runs": 3}
    assert data["usage"]["members"] >= 1
    assert (data["token_balance"], data["tokens_used_this_month"], data["month"]) == (0, 0, iso()[:7])


# --- auto top-up ----------------------------------------------------------------------------------


def topup_config(**overrides: Any) -> dict[str, Any]:
    return {"threshold_tokens": 1000, "package_id": "tokens_500k", "max_monthly_topups": 2,
            "stripe_payment_method_id": "pm_card_visa", **overrides}  # fmt: skip


def test_auto_topup_is_configured_once_then_changed(api, user, workspace):
    api.token = user["token"]
    empty = api.get(billing(workspace, "/auto-topup")).json["data"]
    assert empty["config"] is None and next(p["id"] for p in empty["packages"]) == "tokens_500k"
    created = api.post(billing(workspace, "/auto-topup"), topup_config())
    assert created.status == 201, created.body
    assert created.json["data"]["enabled"] is True
    assert api.post(billing(workspace, "/auto-topup"), topup_config()).status == 409
    changed = api.put(billing(workspace, "/auto-topup"), {"threshold_tokens": 5000, "package_slug": "tokens_2m"})
    assert changed.status == 200, changed.body
    assert (changed.json["data"]["threshold_tokens"], changed.json["data"]["package_id"]) == (5000, "tokens_2m")
    assert api.put(billing(workspace, "/auto-topup"), {"package_id": "tokens_1t"}).status == 422
    assert "billing.auto_topup_configured" in audit_actions(workspace)


def test_enabling_auto_topup_needs_a_saved_card(api, user, workspace):
    api.token = user["token"]
    refused = api.post(billing(workspace, "/auto-topup"), topup_config(stripe_payment_method_id=None))
    assert refused.status == 422


def test_auto_topup_charges_once_below_the_threshold_and_grants_on_success(api, user, workspace, stripe):
    from agentplane.logic.billing import topup

    api.token = user["token"]
    assert api.post(billing(workspace, "/checkout"), {"kind": "tokens", "package_id": "tokens_500k"}).status == 200
    assert api.post(billing(workspace, "/auto-topup"), topup_config()).status == 201
    ws = workspace["id"]

    topup.maybe_top_up(ws, 5000)  # above the threshold: nothing
    assert [c for c in stripe.state.calls if c.path == "/v1/payment_intents"] == []
    topup.maybe_top_up(ws, 10)
    topup.maybe_top_up(ws, 5)  # still below, the first top-up in flight: no second charge
    intents = [c for c in stripe.state.calls if c.path == "/v1/payment_intents"]
    assert len(intents) == 1
    sent = intents[0].params
    assert sent["off_session"] == "true" and sent["confirm"] == "true"
    assert sent["payment_method"] == "pm_card_visa"
    wanted = {"workspace_id": ws, "kind": "tokens", "tokens": "500000", "package_id": "tokens_500k"}
    assert wanted.items() <= sent["metadata"].items()
    assert intents[0].idempotency_key

    succeeded = next(e for e in stripe.state.events if e["type"] == "payment_intent.succeeded")
    assert send(api, succeeded).json["data"]["outcome"] == "applied"
    assert send(api, succeeded).json["data"]["outcome"] == "duplicate"
    assert balance_of(workspace) == 500_000
    config = api.get(billing(workspace, "/auto-topup")).json["data"]["config"]
    assert (config["topups_this_month"], config["pending_payment_intent_id"]) == (1, None)


def test_auto_topup_stops_at_the_monthly_cap(api, user, workspace, stripe):
    from agentplane.logic.billing import topup

    api.token = user["token"]
    assert api.post(billing(workspace, "/checkout"), {"kind": "tokens", "package_id": "tokens_500k"}).status == 200
    assert api.post(billing(workspace, "/auto-topup"), topup_config(max_monthly_topups=2)).status == 201
    for _ in range(4):
        topup.maybe_top_up(workspace["id"], 0)
        for event in [e for e in stripe.state.events if e["type"] == "payment_intent.succeeded"]:
            send(api, event)
    keys_sent = [c.idempotency_key for c in stripe.state.calls if c.path == "/v1/payment_intents"]
    assert len(keys_sent) == 2 and len(set(keys_sent)) == 2
    assert balance_of(workspace) == 1_000_000


def test_a_declined_top_up_charges_nothing_and_frees_the_next(api, user, workspace, stripe):
    from agentplane.logic.billing import topup

    api.token = user["token"]
    assert api.post(billing(workspace, "/checkout"), {"kind": "tokens", "package_id": "tokens_500k"}).status == 200
    assert (
        api.post(billing(workspace, "/auto-topup"), topup_config(stripe_payment_method_id="pm_card_declined")).status
        == 201
    )
    topup.maybe_top_up(workspace["id"], 0)  # never raises into its caller
    config = api.get(billing(workspace, "/auto-topup")).json["data"]["config"]
    assert (config["topups_this_month"], config["pending_payment_intent_id"]) == (1, None)
    assert balance_of(workspace) == 0


def test_spending_below_the_threshold_tops_up_by_itself_and_counts_as_this_months_use(
    api, user, workspace, stripe, executions
):
    from agentplane.logic.billing import tokens
    from tests.api.test_runs import act, running_run

    api.token = user["token"]
    assert api.post(billing(workspace, "/checkout"), {"kind": "tokens", "package_id": "tokens_500k"}).status == 200
    assert api.post(billing(workspace, "/auto-topup"), topup_config(threshold_tokens=1000)).status == 201
    tokens.grant(workspace["id"], 1500, reason="welcome")

    def intents() -> int:
        return len([c for c in stripe.state.calls if c.path == "/v1/payment_intents"])

    consume = f"/api/v1/workspaces/{workspace['id']}/tokens/consume"
    assert api.post(consume, {"amount": 400, "action": "chat"}).status == 200  # 1100 left: above
    assert intents() == 0
    run = running_run(api, workspace)
    beat = act(api, workspace, run, "heartbeat", {"worker_id": "w1", "usage": {"tokens": 300}})
    assert beat.status == 200, beat.body  # 800 left: below the threshold
    assert intents() == 1
    used = api.get(billing(workspace, "/usage")).json["data"]
    assert (used["token_balance"], used["tokens_used_this_month"]) == (800, 700)

    # Turning auto top-up off stops it at once: spending reads the threshold with the balance.
    assert api.put(billing(workspace, "/auto-topup"), {"enabled": False}).status == 200
    for event in [e for e in stripe.state.events if e["type"] == "payment_intent.succeeded"]:
        send(api, event)
    assert api.post(consume, {"amount": 500_700, "action": "batch"}).status == 200
    assert intents() == 1


def test_a_run_paused_for_budget_resumes_when_a_token_purchase_is_paid(api, user, workspace, stripe, executions):
    from tests.api.test_runs import act, running_run, status_of

    api.token = user["token"]
    run = running_run(api, workspace)
    beat = act(api, workspace, run, "heartbeat", {"worker_id": "w1", "usage": {"tokens": 50}})
    assert beat.json["data"]["desired_state"] == "pause"
    assert status_of(api, workspace, run)["status_detail"] == "budget_exhausted"

    checkout = api.post(billing(workspace, "/checkout"), {"kind": "tokens", "package_id": "tokens_500k"})
    (completed,) = stripe.complete_checkout(checkout.json["data"]["session_id"])
    assert send(api, completed).status == 200
    shown = status_of(api, workspace, run)
    assert (shown["status"], shown["status_detail"]) == ("running", None)
    again = act(api, workspace, run, "heartbeat", {"worker_id": "w1", "usage": {"tokens": 10}})
    assert again.json["data"]["desired_state"] == "run"
    assert balance_of(workspace) == 500_000 - 10


def test_a_subscription_left_unpaid_holds_the_workspace_to_the_default_tiers_limits(api, user, workspace):
    api.token = user["token"]
    on_team_plan(api, workspace)
    people = [register_and_login(api) for _ in range(5)]
    members = f"/api/v1/workspaces/{workspace['id']}/members"
    for person in people[:4]:
        assert api.post(members, {"user_id": person["user"]["id"], "role": "member"}).status == 201
    # 5 members: Free's limit. Still on Team, a sixth fits; once the subscription is unpaid it does not.
    unpaid = stripe_event("customer.subscription.updated", subscription_object(workspace, status="unpaid"))
    assert send(api, unpaid).status == 200
    refused = api.post(members, {"user_id": people[4]["user"]["id"], "role": "member"})
    assert refused.status == 402, refused.body
    assert (refused.json["limit"], refused.json["allowed"]) == ("members", 5)
    assert api.get(billing(workspace, "/usage")).json["data"]["tier"] == "free"
    active = stripe_event("customer.subscription.updated", subscription_object(workspace, status="active"))
    assert send(api, active).status == 200
    assert api.post(members, {"user_id": people[4]["user"]["id"], "role": "member"}).status == 201

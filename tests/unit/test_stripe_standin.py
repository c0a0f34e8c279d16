"""The local Stripe stand-in answers the official SDK with the shapes it reads, keeps Stripe's
idempotency, and signs the events it delivers as Stripe does (the SDK's own check accepts them)."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator

import pytest
import stripe

from devstack.stripe_standin import LOCAL_API_KEY, LOCAL_WEBHOOK_SECRET, StripeStandIn, form_params


@pytest.fixture
def standin() -> Iterator[StripeStandIn]:
    server = StripeStandIn().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(standin: StripeStandIn) -> stripe.StripeClient:
    return stripe.StripeClient(LOCAL_API_KEY, base_addresses={"api": standin.url}, max_network_retries=0)


def test_the_form_encoding_of_the_sdk_reads_back_as_nested_json() -> None:
    body = "metadata[tier]=team&line_items[0][price]=p_1&line_items[0][quantity]=1&line_items[1][price]=p_2&mode=x"
    assert form_params(body) == {
        "metadata": {"tier": "team"},
        "line_items": [{"price": "p_1", "quantity": "1"}, {"price": "p_2"}],
        "mode": "x",
    }


def test_the_sdk_creates_and_reads_back_what_agentplane_uses(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({"name": "ws_1", "metadata": {"workspace_id": "ws_1"}})
    assert (customer.object, customer.metadata["workspace_id"]) == ("customer", "ws_1")
    assert client.v1.customers.retrieve(customer.id).id == customer.id
    session = client.v1.checkout.sessions.create(
        {
            "mode": "subscription",
            "customer": customer.id,
            "line_items": [{"price": "price_agentplane_team_monthly", "quantity": 1}],
            "success_url": "https://example.com/ok",
            "metadata": {"workspace_id": "ws_1", "kind": "subscription", "tier": "team"},
            "subscription_data": {"metadata": {"workspace_id": "ws_1", "tier": "team"}},
        }
    )
    assert session.object == "checkout.session" and session.url
    portal = client.v1.billing_portal.sessions.create({"customer": customer.id, "return_url": "https://example.com"})
    assert portal.object == "billing_portal.session" and portal.url


def test_a_paid_checkout_makes_a_subscription_the_sdk_can_move_and_cancel(
    standin: StripeStandIn, client: stripe.StripeClient
) -> None:
    customer = client.v1.customers.create({"name": "ws_1"})
    session = client.v1.checkout.sessions.create(
        {"mode": "subscription", "customer": customer.id, "line_items": [{"price": "price_a", "quantity": 1}]}
    )
    events = standin.complete_checkout(session.id)
    assert [e["type"] for e in events] == [
        "checkout.session.completed",
        "customer.subscription.created",
        "invoice.paid",
    ]
    subscription_id = events[0]["data"]["object"]["subscription"]
    subscription = client.v1.subscriptions.retrieve(subscription_id)
    item = subscription["items"]["data"][0]
    moved = client.v1.subscriptions.update(subscription_id, {"items": [{"id": item["id"], "price": "price_b"}]})
    assert moved["items"]["data"][0]["price"]["id"] == "price_b"
    assert client.v1.subscriptions.update(subscription_id, {"cancel_at_period_end": True}).cancel_at_period_end is True
    assert client.v1.subscriptions.cancel(subscription_id).status == "canceled"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.retrieve("sub_missing")


def test_the_same_idempotency_key_is_the_same_payment_intent(
    standin: StripeStandIn, client: stripe.StripeClient
) -> None:
    params: dict = {"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    first = client.v1.payment_intents.create(params, {"idempotency_key": "topup-1"})
    again = client.v1.payment_intents.create(params, {"idempotency_key": "topup-1"})
    other = client.v1.payment_intents.create(params, {"idempotency_key": "topup-2"})
    assert first.id == again.id != other.id
    assert first.status == "succeeded"
    assert [e["type"] for e in standin.state.events].count("payment_intent.succeeded") == 2
    with pytest.raises(stripe.CardError):
        client.v1.payment_intents.create({**params, "payment_method": "pm_card_declined"})


def test_a_wrong_key_is_refused_like_stripe_refuses_it(standin: StripeStandIn) -> None:
    wrong = stripe.StripeClient("sk_test_other", base_addresses={"api": standin.url}, max_network_retries=0)
    with pytest.raises(stripe.AuthenticationError):
        wrong.v1.customers.create({"name": "x"})


def test_paying_on_the_checkout_page_delivers_events_signed_as_stripe_signs_them(
    standin: StripeStandIn, client: stripe.StripeClient
) -> None:
    delivered: list[stripe.Event] = []
    arrived = threading.Event()

    def receive(payload: str, signature: str) -> None:
        delivered.append(stripe.Webhook.construct_event(payload, signature, LOCAL_WEBHOOK_SECRET))
        if len(delivered) == 3:
            arrived.set()

    standin.deliver = receive
    customer = client.v1.customers.create({"name": "ws_1"})
    session = client.v1.checkout.sessions.create(
        {"mode": "subscription", "customer": customer.id, "line_items": [{"price": "price_a", "quantity": 1}]}
    )
    page = urllib.request.urlopen(session.url).read().decode()
    assert "Pay" in page
    paid = urllib.request.Request(f"{session.url}/pay", data=b"", method="POST")
    assert urllib.request.urlopen(paid).status == 200
    assert arrived.wait(5)
    assert sorted(e.type for e in delivered) == [
        "checkout.session.completed",
        "customer.subscription.created",
        "invoice.paid",
    ]

"""Every call agentplane makes to Stripe, through its official SDK (`stripe.StripeClient`).

The key is STRIPE_API_KEY; STRIPE_API_BASE, when set, is where the SDK sends its requests (`make
dev` and the tests point it at the local stand-in, devstack/stripe.py). The SDK is imported on
the first call, so a function that never reaches Stripe never pays its import. Answers are plain
dicts of the fields agentplane reads, so nothing above this module knows the SDK's classes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from agentplane.errors import AppError, BadRequest, ServiceUnavailable
from agentplane.observability import logger
from agentplane.settings import get_settings

if TYPE_CHECKING:
    from stripe import StripeClient

# A webhook signed longer ago than this is refused (Stripe's own default).
SIGNATURE_TOLERANCE_SECONDS = 300


class PaymentProviderError(AppError):
    """Stripe refused the call (a bad price id, a declined card): nothing was charged."""

    status, title, type_slug = 502, "Bad Gateway", "payment-provider"


@lru_cache(maxsize=4)
def _client(api_key: str, api_base: str) -> StripeClient:
    import stripe

    base = {"api": api_base} if api_base else None
    return stripe.StripeClient(api_key, base_addresses=base, max_network_retries=2)  # type: ignore[arg-type]


def client() -> StripeClient:
    settings = get_settings()
    if not settings.stripe_api_key:
        raise ServiceUnavailable("billing is not configured here: STRIPE_API_KEY is not set")
    return _client(settings.stripe_api_key, settings.stripe_api_base.rstrip("/"))


def _call(what: str, call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """`call(*args, **kwargs)` as a plain dict; Stripe's refusals become problems that say so."""
    import stripe

    try:
        answer = call(*args, **kwargs)
    except (stripe.APIConnectionError, stripe.RateLimitError) as unavailable:
        logger.warning("Stripe unavailable", extra={"call": what, "error": str(unavailable)})
        raise ServiceUnavailable("Stripe could not be reached; try again shortly") from unavailable
    except stripe.StripeError as refused:
        logger.warning("Stripe refused a call", extra={"call": what, "error": str(refused), "code": refused.code})
        raise PaymentProviderError(f"Stripe refused to {what}: {refused.user_message or refused.code}") from refused
    return dict(answer.to_dict())


def create_customer(ws: str, name: str) -> dict[str, Any]:
    """The workspace's Stripe customer. The idempotency key makes two concurrent first checkouts
    create one customer."""
    params: Any = {"name": name, "metadata": {"workspace_id": ws}}
    return _call(
        "create a customer",
        client().v1.customers.create,
        params,
        {"idempotency_key": f"agentplane-customer-{ws}"},
    )


def create_checkout_session(params: dict[str, Any]) -> dict[str, Any]:
    return _call("create a checkout session", client().v1.checkout.sessions.create, params)


def create_portal_session(customer_id: str, return_url: str) -> dict[str, Any]:
    params: Any = {"customer": customer_id, "return_url": return_url}
    return _call("open the billing portal", client().v1.billing_portal.sessions.create, params)


def retrieve_subscription(subscription_id: str) -> dict[str, Any]:
    return _call("read the subscription", client().v1.subscriptions.retrieve, subscription_id)


def modify_subscription(subscription_id: str, params: dict[str, Any]) -> dict[str, Any]:
    return _call("change the subscription", client().v1.subscriptions.update, subscription_id, params)


def cancel_subscription(subscription_id: str) -> dict[str, Any]:
    return _call("cancel the subscription", client().v1.subscriptions.cancel, subscription_id)


def create_payment_intent(params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
    """A charge of a saved card; the same `idempotency_key` is the same charge, however often sent."""
    return _call(
        "charge the saved card",
        client().v1.payment_intents.create,
        params,
        {"idempotency_key": idempotency_key},
    )


def verified_event(payload: str, signature: str | None) -> None:
    """Check the `Stripe-Signature` of a webhook's raw body against STRIPE_WEBHOOK_SECRET, with
    Stripe's own check (`stripe.Webhook.construct_event`): a bad, missing or stale signature is a
    400 and nothing is applied."""
    import stripe

    secret = get_settings().stripe_webhook_secret
    if not secret:
        raise ServiceUnavailable("the webhook is not configured here: STRIPE_WEBHOOK_SECRET is not set")
    if not signature:
        raise BadRequest("the Stripe-Signature header is missing")
    try:
        stripe.Webhook.construct_event(payload, signature, secret, tolerance=SIGNATURE_TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError as refused:
        raise BadRequest(f"the Stripe signature does not verify: {refused.user_message or refused}") from refused
    except ValueError as unreadable:
        raise BadRequest("the webhook body is not a Stripe event") from unreadable

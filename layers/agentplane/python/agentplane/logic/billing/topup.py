"""Auto top-up: when the balance falls below the workspace's threshold, its saved card is charged
for a token package (a Stripe PaymentIntent, off-session), at most `max_monthly_topups` times a
UTC month; the tokens are granted when Stripe confirms the charge (`payment_intent.succeeded`).

Each top-up is claimed first, with a conditional write on the configuration that counts it
against the month and records its idempotency key, so concurrent consumers crossing the
threshold claim one top-up between them; the charge is sent with that key, so sending it again
(after a failure, or from two places) is the same charge, never a second one. While a top-up is
in flight no other is claimed.
"""

from __future__ import annotations

from agentplane import keys
from agentplane.access import Access
from agentplane.entities.billing import AutoTopUpItem, TokenBalanceItem
from agentplane.errors import AppError, Conflict, NotFound, ServiceUnavailable, Unprocessable
from agentplane.ids import iso
from agentplane.logic.billing import catalog, stripe_api, subscriptions
from agentplane.models.subscriptions import AutoTopUp, AutoTopUpCreate, AutoTopUpUpdate, AutoTopUpView
from agentplane.observability import logger
from agentplane.store import ConditionFailed, Transaction, TransactionFailed, get_store

SOURCE = "auto_topup"
CONFIG = "auto_topup"


def read_config(ws: str) -> AutoTopUpItem | None:
    return get_store().read(AutoTopUpItem, keys.auto_topup_key(ws))


# --------------------------------------------------------------------------- configuration


def config_of(access: Access) -> AutoTopUpView:
    access.require("billing:read")
    config = read_config(access.workspace_id)
    return AutoTopUpView(config=config.to_model() if config else None, packages=catalog.pricing().token_packages)


def _check(enabled: bool, package_id: str, payment_method: str | None) -> None:
    catalog.package(package_id)
    if enabled and not payment_method:
        raise Unprocessable(
            "auto top-up charges a saved card: give stripe_payment_method_id", field="stripe_payment_method_id"
        )


def configure(access: Access, body: AutoTopUpCreate) -> AutoTopUp:
    """Set up auto top-up (once: a workspace that has it changes it with PUT)."""
    subscriptions.require_buyer(access)
    _check(body.enabled, body.package_id, body.stripe_payment_method_id)
    at = iso()
    config = AutoTopUpItem(
        workspace_id=access.workspace_id,
        enabled=body.enabled,
        threshold_tokens=body.threshold_tokens,
        package_id=body.package_id,
        max_monthly_topups=body.max_monthly_topups,
        stripe_payment_method_id=body.stripe_payment_method_id,
        topups_this_month=0,
        created_at=at,
        updated_at=at,
    )
    tx = access.transaction()
    tx.create(config, name=CONFIG)
    _keep_threshold(tx, config)
    access.audit(tx, "billing.auto_topup_configured", "auto_topup", access.workspace_id, _details(config))
    try:
        access.commit(tx)
    except TransactionFailed as failure:
        if failure.failed != CONFIG:
            raise
        raise Conflict("auto top-up is configured already: change it with PUT") from failure
    return config.to_model()


def reconfigure(access: Access, body: AutoTopUpUpdate) -> AutoTopUp:
    subscriptions.require_buyer(access)
    ws = access.workspace_id
    config = read_config(ws)
    if config is None:
        raise NotFound("auto top-up is not configured: set it up with POST")
    given = body.model_dump(exclude_unset=True)
    merged = {**config.fields(), **given}
    _check(bool(merged["enabled"]), str(merged["package_id"]), merged.get("stripe_payment_method_id"))
    actions = config.assign(**given, updated_at=iso())
    tx = access.transaction()
    tx.change(config, actions, name=CONFIG)
    _keep_threshold(tx, config)
    access.audit(tx, "billing.auto_topup_updated", "auto_topup", ws, _details(config))
    access.commit(tx)
    return config.to_model()


def _keep_threshold(tx: Transaction, config: AutoTopUpItem) -> None:
    """The threshold, beside the balance, while auto top-up can charge (or its absence): what a
    spender reads with the balance to know whether a top-up is due."""
    ws = str(config.workspace_id)
    armed = config.enabled and config.stripe_payment_method_id
    threshold = TokenBalanceItem.topup_below
    change = threshold.set(int(config.threshold_tokens)) if armed else threshold.remove()
    tx.upsert(TokenBalanceItem, keys.token_balance_key(ws), [TokenBalanceItem.workspace_id.set(ws), change])


def _details(config: AutoTopUpItem) -> dict[str, object]:
    """What the audit row keeps: never the payment method, only whether there is one."""
    return {
        "enabled": bool(config.enabled),
        "threshold_tokens": int(config.threshold_tokens),
        "package_id": config.package_id,
        "max_monthly_topups": int(config.max_monthly_topups),
        "has_payment_method": bool(config.stripe_payment_method_id),
    }


# --------------------------------------------------------------------------- topping up


def maybe_top_up(ws: str, balance: int) -> None:
    """Charge the saved card for the workspace's package when `balance` is below its threshold
    and the month's top-ups allow one. Called after a write that lowered the balance committed:
    one GetItem when auto top-up is off or not needed; it never raises into its caller."""
    try:
        _top_up(ws, balance)
    except Exception:
        logger.exception("auto top-up failed", extra={"workspace_id": ws})


def _top_up(ws: str, balance: int) -> None:
    config = read_config(ws)
    if config is None or not config.enabled or not config.stripe_payment_method_id:
        return
    if balance >= int(config.threshold_tokens) or config.pending_payment_intent_id:
        return
    idempotency_key = config.pending_key or _claim(ws, config)
    if idempotency_key is None:
        return
    package = catalog.package(config.package_id)
    subscription = subscriptions.read_subscription(ws)
    customer_id = subscription.stripe_customer_id if subscription else None
    params = {
        "amount": package.price,
        "currency": package.currency,
        "customer": customer_id,
        "payment_method": config.stripe_payment_method_id,
        "off_session": True,
        "confirm": True,
        "description": f"agentplane auto top-up: {package.name}",
        "metadata": {
            "workspace_id": ws,
            "kind": "tokens",
            "source": SOURCE,
            "tokens": str(package.tokens),
            "package_id": package.id,
        },
    }
    try:
        intent = stripe_api.create_payment_intent(params, idempotency_key)
    except ServiceUnavailable:
        raise  # the claim stays: the next crossing sends the same charge again
    except AppError:
        # Declined: this top-up is over (it still counts against the month's cap).
        get_store().adjust(AutoTopUpItem, keys.auto_topup_key(ws), [AutoTopUpItem.pending_key.remove()])
        raise
    get_store().adjust(
        AutoTopUpItem,
        keys.auto_topup_key(ws),
        [AutoTopUpItem.pending_payment_intent_id.set(str(intent["id"]))],
        AutoTopUpItem.pending_key == idempotency_key,
    )
    logger.info("auto top-up charged", extra={"workspace_id": ws, "payment_intent_id": intent["id"]})


def _claim(ws: str, config: AutoTopUpItem) -> str | None:
    """Count one more top-up this month and mark it in flight, unless another writer did first
    or the month's cap is reached; answers the top-up's idempotency key."""
    month = iso()[:7]
    used = config.used_in(month)
    if used >= int(config.max_monthly_topups):
        logger.info("auto top-up cap reached", extra={"workspace_id": ws, "month": month})
        return None
    idempotency_key = f"agentplane-topup-{ws}-{month}-{used + 1}"
    unchanged = (
        AutoTopUpItem.pending_key.does_not_exist()
        & AutoTopUpItem.pending_payment_intent_id.does_not_exist()
        & (AutoTopUpItem.enabled == True)  # noqa: E712 - a pynamodb condition, not a comparison
    )
    if config.topups_month == month:
        unchanged = unchanged & (AutoTopUpItem.topups_this_month == used)
    else:
        unchanged = unchanged & (AutoTopUpItem.topups_month.does_not_exist() | (AutoTopUpItem.topups_month != month))
    actions = [
        AutoTopUpItem.topups_month.set(month),
        AutoTopUpItem.topups_this_month.set(used + 1),
        AutoTopUpItem.pending_key.set(idempotency_key),
    ]
    try:
        get_store().adjust(AutoTopUpItem, keys.auto_topup_key(ws), actions, unchanged)
    except ConditionFailed:
        return None  # another consumer claimed this top-up
    return idempotency_key

"""A small Stripe on loopback: exactly the calls agentplane makes through the Stripe SDK
(customers, checkout and billing portal sessions, subscriptions, payment intents), answering the
JSON shapes the SDK reads, and the webhook events Stripe would send after them, signed as Stripe
signs them.

`make dev` starts it when STRIPE_API_KEY is not a real key and points the SDK at it
(STRIPE_API_BASE). A checkout's `url` is a page of the stand-in: its Pay button completes the
checkout and delivers `checkout.session.completed` (then, for a subscription,
`customer.subscription.created` and `invoice.paid`) to the local API, so a whole purchase can be
tried without leaving the machine. Tests start it too (`StripeStandIn()`, deliveries optional).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import itertools
import json
import logging
import os
import secrets
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger("devstack.stripe")

LOCAL_API_KEY = "sk_test_local"
LOCAL_WEBHOOK_SECRET = "whsec_local_dev"
# Where the SDK is pointed when the key is the local one and no stand-in serves: nothing listens
# there, so a call that should have met the stand-in fails on this machine instead of reaching Stripe.
NOWHERE = "http://127.0.0.1:9"
API_VERSION = "2026-10-28.endive"
PERIOD_SECONDS = 30 * 24 * 3600

Deliver = Callable[[str, str], None]  # (raw body, Stripe-Signature header)


def local_secrets() -> dict[str, str]:
    """The values of the template's StripeSecret here: the environment's, else the local ones."""
    return {
        "api_key": os.environ.get("STRIPE_API_KEY") or LOCAL_API_KEY,
        "webhook_secret": os.environ.get("STRIPE_WEBHOOK_SECRET") or LOCAL_WEBHOOK_SECRET,
    }


def is_local_key(api_key: str) -> bool:
    """A key only the stand-in accepts (a real one starts sk_test_ or sk_live_ and is long)."""
    return api_key == LOCAL_API_KEY


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header Stripe sends with `payload`."""
    at = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{at}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def form_params(body: str) -> dict[str, Any]:
    """The SDK's form encoding (`metadata[tier]=team`, `line_items[0][price]=…`) as nested JSON."""
    root: dict[str, Any] = {}
    for name, value in parse_qsl(body, keep_blank_values=True):
        parts = name.replace("]", "").split("[")
        node: Any = root
        for part, following in itertools.zip_longest(parts, parts[1:]):
            if following is None:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    converted: dict[str, Any] = _lists(root)
    return converted


def _lists(node: Any) -> Any:
    """Objects keyed 0, 1, … (how the form encodes a list) as lists."""
    if not isinstance(node, dict):
        return node
    converted = {name: _lists(value) for name, value in node.items()}
    if converted and all(name.isdigit() for name in converted):
        return [converted[name] for name in sorted(converted, key=int)]
    return converted


class StripeError(Exception):
    def __init__(self, status: int, kind: str, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.code = status, kind, code

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.kind, "message": str(self)}
        if self.code:
            error["code"] = self.code
        return {"error": error}


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None


@dataclass
class StripeState:
    """What the stand-in holds: every object by id, the calls it was sent, and the answers it
    gave per idempotency key (the same key answers the same object, as Stripe does)."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    idempotent: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class StripeStandIn:
    """The server, its state and the deliveries it makes (to `deliver`, when given)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        webhook_secret: str = LOCAL_WEBHOOK_SECRET,
        deliver: Deliver | None = None,
    ) -> None:
        self.state = StripeState()
        self.webhook_secret = webhook_secret
        self.deliver = deliver
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> StripeStandIn:
        self._thread = threading.Thread(target=self._server.serve_forever, name="stripe-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def deliver_to(self, webhook_url: str) -> None:
        """Send the events to agentplane's webhook at `webhook_url`, as Stripe would."""

        def post(payload: str, signature: str) -> None:
            request = urllib.request.Request(  # noqa: S310 - the local API's own http URL
                webhook_url,
                data=payload.encode(),
                method="POST",
                headers={"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": signature},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback only
                    log.info("delivered %s: %s", json.loads(payload)["type"], answer.status)
            except OSError as failed:
                log.warning("delivering %s failed: %s", json.loads(payload)["type"], failed)

        self.deliver = post

    # ------------------------------------------------------------------ the API the SDK calls

    def handle(self, method: str, path: str, params: dict[str, Any], idempotency_key: str | None) -> tuple[int, Any]:
        with self._lock:
            self.state.calls.append(Call(method, path, params, idempotency_key))
            remembered = self.state.idempotent.get(f"{method} {path} {idempotency_key}") if idempotency_key else None
            if remembered is not None:
                return remembered
            try:
                answer = (200, self._route(method, path, params))
            except StripeError as refused:
                answer = (refused.status, refused.body())
            if idempotency_key:
                self.state.idempotent[f"{method} {path} {idempotency_key}"] = answer
            return answer

    def _route(self, method: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        parts = [part for part in path.split("/") if part]
        if parts[:1] != ["v1"]:
            raise StripeError(404, "invalid_request_error", f"Unrecognized request URL ({method}: {path})")
        resource = parts[1:]
        if method == "POST" and resource == ["customers"]:
            return self._create_customer(params)
        if method == "GET" and len(resource) == 2 and resource[0] == "customers":
            return self._get(resource[1], "customer")
        if method == "POST" and resource == ["checkout", "sessions"]:
            return self._create_checkout(params)
        if method == "POST" and resource == ["billing_portal", "sessions"]:
            return self._create_portal(params)
        if len(resource) == 2 and resource[0] == "subscriptions":
            if method == "GET":
                return self._get(resource[1], "subscription")
            if method == "POST":
                return self._modify_subscription(resource[1], params)
            if method == "DELETE":
                return self._cancel_subscription(resource[1])
        if method == "POST" and resource == ["payment_intents"]:
            return self._create_payment_intent(params)
        raise StripeError(404, "invalid_request_error", f"Unrecognized request URL ({method}: {path})")

    def _get(self, object_id: str, kind: str) -> dict[str, Any]:
        found = self.state.objects.get(object_id)
        if found is None or found["object"] != kind:
            raise StripeError(404, "invalid_request_error", f"No such {kind}: '{object_id}'", code="resource_missing")
        return found

    def _store(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.state.objects[obj["id"]] = obj
        return obj

    def _create_customer(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._store(
            {
                "id": _new_id("cus"),
                "object": "customer",
                "created": int(time.time()),
                "name": params.get("name"),
                "email": params.get("email"),
                "metadata": params.get("metadata") or {},
                "livemode": False,
            }
        )

    def _create_checkout(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("mode") not in ("subscription", "payment"):
            raise StripeError(
                400, "invalid_request_error", "mode must be subscription or payment", code="parameter_invalid"
            )
        if params.get("customer"):
            self._get(str(params["customer"]), "customer")
        session_id = _new_id("cs_test")
        return self._store(
            {
                "id": session_id,
                "object": "checkout.session",
                "created": int(time.time()),
                "mode": params["mode"],
                "customer": params.get("customer"),
                "client_reference_id": params.get("client_reference_id"),
                "metadata": params.get("metadata") or {},
                "line_items_requested": params.get("line_items") or [],
                "subscription_data": params.get("subscription_data") or {},
                "success_url": params.get("success_url"),
                "cancel_url": params.get("cancel_url"),
                "status": "open",
                "payment_status": "unpaid",
                "subscription": None,
                "payment_intent": None,
                "url": f"{self.url}/checkout/{session_id}",
                "livemode": False,
            }
        )

    def _create_portal(self, params: dict[str, Any]) -> dict[str, Any]:
        customer = self._get(str(params.get("customer")), "customer")
        portal_id = _new_id("bps")
        return self._store(
            {
                "id": portal_id,
                "object": "billing_portal.session",
                "created": int(time.time()),
                "customer": customer["id"],
                "return_url": params.get("return_url"),
                "url": f"{self.url}/portal/{portal_id}",
                "livemode": False,
            }
        )

    def _modify_subscription(self, subscription_id: str, params: dict[str, Any]) -> dict[str, Any]:
        subscription = self._get(subscription_id, "subscription")
        for item in params.get("items") or []:
            existing = next((i for i in subscription["items"]["data"] if i["id"] == item.get("id")), None)
            if existing is None:
                raise StripeError(400, "invalid_request_error", f"No such subscription item: '{item.get('id')}'")
            if item.get("price"):
                existing["price"] = {"id": item["price"], "object": "price"}
        if "cancel_at_period_end" in params:
            subscription["cancel_at_period_end"] = str(params["cancel_at_period_end"]).lower() == "true"
        if params.get("metadata"):
            subscription["metadata"] = {**subscription["metadata"], **params["metadata"]}
        self._send("customer.subscription.updated", subscription)
        return subscription

    def _cancel_subscription(self, subscription_id: str) -> dict[str, Any]:
        subscription = self._get(subscription_id, "subscription")
        subscription["status"] = "canceled"
        subscription["canceled_at"] = int(time.time())
        self._send("customer.subscription.deleted", subscription)
        return subscription

    def _create_payment_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        method = str(params.get("payment_method") or "")
        intent = {
            "id": _new_id("pi"),
            "object": "payment_intent",
            "created": int(time.time()),
            "amount": int(params.get("amount") or 0),
            "currency": params.get("currency", "usd"),
            "customer": params.get("customer"),
            "payment_method": method or None,
            "metadata": params.get("metadata") or {},
            "off_session": params.get("off_session"),
            "status": "requires_payment_method",
            "livemode": False,
        }
        if intent["amount"] <= 0:
            raise StripeError(400, "invalid_request_error", "amount must be positive", code="parameter_invalid")
        if "declined" in method:  # like Stripe's pm_card_chargeDeclined test card
            self._store(intent)
            self._send("payment_intent.payment_failed", intent)
            raise StripeError(402, "card_error", "Your card was declined.", code="card_declined")
        if str(params.get("confirm")).lower() == "true":
            intent["status"] = "succeeded"
            self._send("payment_intent.succeeded", intent)
        return self._store(intent)

    # ------------------------------------------------------------------ paying a checkout

    def complete_checkout(self, session_id: str) -> list[dict[str, Any]]:
        """What a buyer's payment on the checkout page does: the session completes and, for a
        subscription, the subscription and its first invoice exist. Answers the events sent."""
        with self._lock:
            session = self._get(session_id, "checkout.session")
            if session["status"] != "open":
                raise StripeError(400, "invalid_request_error", "this checkout session is no longer open")
            now = int(time.time())
            session.update(status="complete", payment_status="paid")
            sent = []
            if session["mode"] == "payment":
                intent = self._store(
                    {"id": _new_id("pi"), "object": "payment_intent", "created": now, "status": "succeeded",
                     "customer": session["customer"], "metadata": {}, "livemode": False}
                )  # fmt: skip
                session["payment_intent"] = intent["id"]
                sent.append(self._send("checkout.session.completed", session))
                return sent
            subscription = self._subscribe(session, now)
            session["subscription"] = subscription["id"]
            sent.append(self._send("checkout.session.completed", session))
            sent.append(self._send("customer.subscription.created", subscription))
            sent.append(self._send("invoice.paid", self._invoice(subscription, "subscription_create", now)))
            return sent

    def _subscribe(self, session: dict[str, Any], now: int) -> dict[str, Any]:
        price = ((session["line_items_requested"] or [{}])[0]).get("price")
        subscription_id = _new_id("sub")
        return self._store(
            {
                "id": subscription_id,
                "object": "subscription",
                "created": now,
                "customer": session["customer"],
                "status": "active",
                "cancel_at_period_end": False,
                "current_period_end": now + PERIOD_SECONDS,
                "metadata": (session["subscription_data"] or {}).get("metadata") or {},
                "items": {
                    "object": "list",
                    "data": [
                        {
                            "id": _new_id("si"),
                            "object": "subscription_item",
                            "price": {"id": price, "object": "price"},
                            "quantity": 1,
                            "current_period_end": now + PERIOD_SECONDS,
                        }
                    ],
                },
                "livemode": False,
            }
        )

    def _invoice(self, subscription: dict[str, Any], reason: str, now: int) -> dict[str, Any]:
        details = {"subscription": subscription["id"], "metadata": subscription["metadata"]}
        return self._store(
            {
                "id": _new_id("in"),
                "object": "invoice",
                "created": now,
                "customer": subscription["customer"],
                "billing_reason": reason,
                "status": "paid",
                "amount_paid": 0,
                "parent": {"type": "subscription_details", "subscription_details": details},
                "livemode": False,
            }
        )

    def _send(self, event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
        event = {
            "id": _new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "type": event_type,
            "data": {"object": json.loads(json.dumps(obj))},
            "livemode": False,
            "pending_webhooks": 1,
        }
        self.state.events.append(event)
        if self.deliver is not None:
            payload = json.dumps(event)
            deliver = self.deliver
            # After the answer, as Stripe does: the call that caused the event is not held up.
            threading.Timer(0.05, deliver, (payload, sign(payload, self.webhook_secret))).start()
        return event

    # ------------------------------------------------------------------ the pages a person sees

    def page(self, path: str) -> tuple[int, str]:
        parts = [part for part in path.split("/") if part]
        found = self.state.objects.get(parts[1]) if len(parts) >= 2 else None
        if parts[:1] == ["checkout"] and found and found["object"] == "checkout.session":
            what = found["metadata"].get("tier") or found["metadata"].get("package_id") or found["mode"]
            return 200, _page(
                f"Checkout: {what}",
                f"<p>Workspace {html.escape(str(found['metadata'].get('workspace_id')))}, status "
                f"{html.escape(found['status'])}.</p>"
                f"<form method='post' action='/checkout/{html.escape(found['id'])}/pay'>"
                "<button>Pay (local stand-in: no card is charged)</button></form>",
            )
        if parts[:1] == ["portal"] and found:
            back = html.escape(str(found.get("return_url") or "/"))
            return 200, _page(
                "Billing portal", f"<p>Customer {html.escape(found['customer'])}.</p><a href='{back}'>Back</a>"
            )
        return 404, _page("Not found", "<p>The local Stripe has no such page.</p>")

    def pay(self, path: str) -> tuple[int, str]:
        session_id = [part for part in path.split("/") if part][1]
        try:
            events = self.complete_checkout(session_id)
        except StripeError as refused:
            return refused.status, _page("Not paid", f"<p>{html.escape(str(refused))}</p>")
        session = self.state.objects[session_id]
        back = html.escape(str(session.get("success_url") or "/"))
        sent = "".join(f"<li>{html.escape(e['type'])}</li>" for e in events)
        return 200, _page("Paid", f"<p>Sent to agentplane:</p><ul>{sent}</ul><a href='{back}'>Continue</a>")


def _page(title: str, body: str) -> str:
    return f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>{body}"


def _handler_for(standin: StripeStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

        def _answer(self, status: int, body: str, content_type: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", _new_id("req"))
            self.end_headers()
            self.wfile.write(data)

        def _serve(self, method: str) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            if not split.path.startswith("/v1/"):
                if method == "POST" and split.path.endswith("/pay"):
                    status, page = standin.pay(split.path)
                else:
                    status, page = standin.page(split.path)
                self._answer(status, page, "text/html; charset=utf-8")
                return
            if self.headers.get("Authorization", "") != f"Bearer {LOCAL_API_KEY}":
                error = StripeError(401, "invalid_request_error", "Invalid API Key provided")
                self._answer(401, json.dumps(error.body()), "application/json")
                return
            params = form_params(body if method != "GET" else split.query)
            status, answer = standin.handle(method, split.path, params, self.headers.get("Idempotency-Key"))
            self._answer(status, json.dumps(answer), "application/json")

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

    return Handler

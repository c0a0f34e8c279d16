"""The whole local stack in one object: in-process AWS, the HTTP and WebSocket APIs, stream
consumers, schedules, Step Functions and the data kept in `.local/`."""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack import aws, persist, queues, stepfunctions, streams, template, websocket
from devstack.gateway import HttpApi
from devstack.journal import Journal
from devstack.lambdas import Lambdas
from devstack.schedules import Scheduler
from devstack.server import LocalHttpServer
from devstack.stripe_standin import StripeStandIn, is_local_key
from devstack.ttl import TtlSweeper

log = logging.getLogger("devstack")


@dataclass
class Settings:
    host: str = "127.0.0.1"
    http_port: int = 3000
    ws_port: int = 3001
    stripe_port: int = 0  # the local Stripe stand-in; 0 picks a free port
    data_dir: Path = field(default_factory=persist.data_dir)
    save_interval: float = 3.0

    @classmethod
    def from_environment(cls) -> Settings:
        return cls(
            host=os.environ.get("AGENTPLANE_HOST", "127.0.0.1"),
            http_port=int(os.environ.get("AGENTPLANE_HTTP_PORT", "3000")),
            ws_port=int(os.environ.get("AGENTPLANE_WS_PORT", "3001")),
            stripe_port=int(os.environ.get("AGENTPLANE_STRIPE_PORT", "0")),
            data_dir=persist.data_dir(),
            save_interval=float(os.environ.get("AGENTPLANE_SAVE_INTERVAL", "3")),
        )


class PortTaken(OSError):
    """A port the stack needs is in use; the message names it and the variable that moves it."""


def _listening(variable: str, host: str, port: int, listen: Any) -> Any:
    try:
        return listen()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise PortTaken(
            f"port {port} on {host} is in use (another `make dev`?): stop it, or pick another port "
            f"with {variable}=<port> make dev"
        ) from exc


class LocalStack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.restored: dict[str, int] = {}
        self._mock: Any = None
        self._stoppers: list[tuple[str, Any]] = []

    def start(self) -> LocalStack:
        settings = self.settings
        self._mock = aws.start()
        self._stoppers.append(("moto", self._mock.stop))
        self.resources = aws.provision(persist.signing_secret(settings.data_dir), lambda_functions=True)
        self.stripe: StripeStandIn | None = None
        if is_local_key(os.environ.get("STRIPE_API_KEY", "")):
            # Before any function reads its settings: the SDK's requests go to the stand-in.
            self.stripe = _listening(
                "AGENTPLANE_STRIPE_PORT", settings.host, settings.stripe_port,
                lambda: StripeStandIn(
                    host=settings.host, port=settings.stripe_port, webhook_secret=os.environ["STRIPE_WEBHOOK_SECRET"]
                ),
            ).start()  # fmt: skip
            os.environ["STRIPE_API_BASE"] = self.stripe.url
            self._stoppers.append(("Stripe stand-in", self.stripe.stop))
        self.journal = Journal(settings.data_dir)
        self.persistence = persist.Persistence(settings.data_dir, self.resources, self.journal)
        self.restored = self.persistence.restore()
        self.journal.open()
        self._stoppers.append(("journal", self.journal.close))

        self.lambdas = Lambdas(template.functions())
        stepfunctions.install_lambda_bridge(self.lambdas)
        self._stoppers.append(("lambda bridge", stepfunctions.uninstall_lambda_bridge))
        self.restored["executions"] = self.persistence.restart_executions()

        self.http = _listening(
            "AGENTPLANE_HTTP_PORT",
            settings.host,
            settings.http_port,
            lambda: LocalHttpServer(HttpApi(self.lambdas), settings.host, settings.http_port),
        )
        self.http.start()
        self._stoppers.append(("HTTP API", self.http.stop))
        if self.stripe is not None:
            self.stripe.deliver_to(f"{self.http_url}/api/v1/billing/webhook")

        self.websockets = _listening(
            "AGENTPLANE_WS_PORT", settings.host, settings.ws_port,
            lambda: websocket.start_gateways(self.lambdas, settings.host, settings.ws_port),
        )  # fmt: skip
        for gateway in self.websockets:
            self._stoppers.append((f"WebSocket API {gateway.api.logical_id}", gateway.stop))
        self._stoppers.append(("management API", websocket.uninstall_management_api))

        self.fanout = streams.StreamFanout(self.lambdas, streams.subscriptions(self.resources))
        self.fanout.start()
        self._stoppers.append(("stream consumers", self.fanout.stop))

        self.queues = queues.QueueFanout(self.lambdas, queues.subscriptions(self.resources))
        self.queues.start()
        self._stoppers.append(("queue consumers", self.queues.stop))

        self.ttl = TtlSweeper(self.resources)
        self.ttl.start()
        self._stoppers.append(("TTL sweeper", self.ttl.stop))

        self.scheduler = Scheduler(self.lambdas, self.resources)
        self.scheduler.start()
        self._stoppers.append(("scheduler", self.scheduler.stop))

        self.persistence.start(settings.save_interval)
        self._stoppers.append(("saving .local", self.persistence.stop))
        return self

    def stop(self) -> None:
        """Stop in reverse order of starting; the last save happens before moto goes away."""
        while self._stoppers:
            name, stop = self._stoppers.pop()
            try:
                stop()
            except Exception:
                log.exception("stopping %s failed", name)

    @property
    def http_url(self) -> str:
        return f"http://{self.settings.host}:{self.http.port}"

    def banner(self) -> str:
        api = self.http_url
        lines = [
            f"agentplane local stack: {template.path().name} against in-process AWS (moto)",
            f"  API         {api}/api/v1",
            f"  Docs        {api}/api/docs",
            f"  Health      {api}/api/health",
        ]
        for gateway in self.websockets:
            lines.append(f"  WebSocket   {gateway.url}   ({gateway.api.logical_id}, {len(gateway.api.routes)} routes)")
        if not self.websockets:
            lines.append("  WebSocket   none (the template has no WEBSOCKET API yet)")
        if self.stripe is not None:
            lines.append(
                f"  Stripe      local stand-in {self.stripe.url} (STRIPE_API_KEY {os.environ['STRIPE_API_KEY']}); "
                f"webhook secret {os.environ['STRIPE_WEBHOOK_SECRET']}"
            )
        else:
            lines.append("  Stripe      Stripe itself (STRIPE_API_KEY and STRIPE_WEBHOOK_SECRET from the environment)")
        machines = len(template.state_machines())
        lines += [
            f"  Background  {len(self.fanout.subscriptions)} stream consumers, {len(self.queues.subscriptions)} queue "
            f"consumers, {len(self.scheduler.timers)} schedules, {machines} state machines",
            f"  Data        {self.settings.data_dir} (restored {self.restored.get('items', 0)} items, "
            f"{self.restored.get('objects', 0)} objects, {self.restored.get('executions', 0)} running executions); "
            "`make dev-reset` wipes it",
            "",
            "First run? Register, then log in (the login answer holds your token):",
            f"  curl -s -X POST {api}/api/v1/auth/register -H 'Content-Type: application/json' \\",
            """    -d '{"username":"dev","email":"dev@example.com","password":"correct horse battery",""",
            """         "terms_accepted":true,"privacy_accepted":true}'""",
            f"  curl -s -X POST {api}/api/v1/auth/login -H 'Content-Type: application/json' \\",
            """    -d '{"email":"dev@example.com","password":"correct horse battery"}'""",
            f"  curl -s {api}/api/v1/me -H 'Authorization: Bearer <token>'",
            "",
            "Ctrl-C stops the stack and saves the data.",
        ]
        return "\n".join(lines)

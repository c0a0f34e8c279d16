"""Logger, metrics and tracer shared by every function, the decorator every entry point wears, and
the business metrics the logic emits (one named helper per event).

The tracer is built on the first invocation, not at import: building it imports the X-Ray SDK,
a measurable share of a cold import. Tests and the local stack set POWERTOOLS_TRACE_DISABLED and
POWERTOOLS_METRICS_DISABLED, as Powertools documents."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "agentplane")
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "agentplane"), service=SERVICE)

Result = TypeVar("Result")
Handler = Callable[[Any, Any], Result]


@lru_cache(maxsize=1)
def tracer() -> Tracer:
    """The process's tracer. Only boto calls are patched: they are all the I/O our code does."""
    return Tracer(service=SERVICE, patch_modules=("botocore",))


def entry_point(correlation_id_path: str | None = None) -> Callable[[Handler[Result]], Handler[Result]]:
    """What every Lambda handler wears: an X-Ray subsegment per invocation (annotated ColdStart and
    Service; the response is not recorded, it may carry a secret shown once), the logger's Lambda
    context (cleared between invocations), and the invocation's metrics flushed with a ColdStart
    metric."""

    def decorate(handler: Handler[Result]) -> Handler[Result]:
        logged = logger.inject_lambda_context(handler, correlation_id_path=correlation_id_path, clear_state=True)
        measured = metrics.log_metrics(_metrics_cleared(logged), capture_cold_start_metric=True)
        traced: Handler[Result] | None = None

        @functools.wraps(handler)
        def invoke(event: Any, context: Any) -> Result:
            nonlocal traced
            if traced is None:
                traced = tracer().capture_lambda_handler(measured, capture_response=False)
            return traced(event, context)

        return invoke

    return decorate


def _metrics_cleared(handler: Handler[Result]) -> Handler[Result]:
    """A disabled Metrics never flushes, so its set would grow across invocations (and Powertools
    prints it anyway at 100 values); each invocation here starts from an empty set."""

    @functools.wraps(handler)
    def invoke(event: Any, context: Any) -> Result:
        try:
            return handler(event, context)
        finally:
            if is_metrics_disabled():
                metrics.clear_metrics()

    return invoke


# ------------------------------------------------------------------------------ business metrics


def _count(name: str, value: float = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def run_started() -> None:
    """A run's execution started (a run started, retried or started by a project's maintenance)."""
    _count("RunsStarted")


def run_finished(status: str) -> None:
    """A run was finalized: RunsCompleted, RunsFailed or RunsCancelled."""
    _count(f"Runs{status.capitalize()}")


def run_heartbeat() -> None:
    _count("RunHeartbeats")


def notifications_delivered(recipients: int) -> None:
    """One per inbox a notification was written to (or added to the caller's transaction: one
    the caller retries after losing a race counts again)."""
    _count("NotificationsDelivered", recipients)


def realtime_pushed(messages: int) -> None:
    """Messages the fan-out pushed to WebSocket subscribers for one stored item."""
    _count("RealtimePushes", messages)

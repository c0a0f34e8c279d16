"""Logger and metrics shared by every function. The tracer is built only when tracing is on,
because constructing it imports the X-Ray SDK (a measurable share of a cold start)."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "agentplane"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "agentplane"))

# Log records never carry these, whatever a caller sends.
REDACTED_HEADERS = frozenset({"authorization", "cookie", "x-api-key", "stripe-signature"})


@lru_cache(maxsize=1)
def tracer() -> Any:
    from aws_lambda_powertools import Tracer

    return Tracer()


def tracing_enabled() -> bool:
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").lower() not in ("true", "1")

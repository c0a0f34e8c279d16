"""The CloudWatch metrics the functions publish, read back from the EMF documents they print."""

from __future__ import annotations

import json
from collections import Counter

import pytest


def publish_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn on the EMF output the suite keeps off (POWERTOOLS_METRICS_DISABLED), from an empty set."""
    from agentplane.observability import metrics

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    metrics.clear_metrics()


def published(output: str) -> Counter[str]:
    """Each metric's total over the EMF documents in `output` (log lines and other output skipped)."""
    totals: Counter[str] = Counter()
    for line in output.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if not isinstance(document, dict) or "_aws" not in document:
            continue
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                totals[metric["Name"]] += sum(value) if isinstance(value, list) else value
    return totals

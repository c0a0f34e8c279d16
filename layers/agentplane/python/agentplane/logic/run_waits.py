"""Resolving a wait of a run's execution (a task token it recorded on the run), for the lifecycle
and for input requests alike: after the caller's own write committed, so a wait resolved twice,
or already over, is harmless."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from agentplane import clients
from agentplane.observability import logger


def resolve(run_id: str, token: str, *, success: dict[str, Any] | None = None, error: str = "") -> None:
    """Send the wait of `token` its outcome (`success`), or fail it with `error`."""
    try:
        if success is not None:
            clients.stepfunctions().send_task_success(taskToken=token, output=json.dumps(success))
        else:
            clients.stepfunctions().send_task_failure(taskToken=token, error=error, cause=f"run {run_id}")
    except ClientError as exc:
        logger.info("run wait already resolved", extra={"run_id": run_id, "error": str(exc)})

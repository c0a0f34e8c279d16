"""The run state machine's tasks: record a wait's task token, expire a wait, finalize a run.

Invoked by Step Functions only (statemachine/run.asl.json), never through the HTTP API.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from agentplane.logic import runs
from agentplane.observability import entry_point, logger
from agentplane.settings import require_settings

REQUIRED_SETTINGS: tuple[str, ...] = ()
require_settings(*REQUIRED_SETTINGS)

Phase = Literal["claim", "work", "input", "approval"]


class LifecycleTask(BaseModel):
    action: Literal["record_wait", "expire_wait", "finalize"]
    workspace_id: str
    run_id: str
    phase: Phase | None = None
    token: str | None = None


@entry_point()
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    task = LifecycleTask.model_validate(event)
    logger.append_keys(run_id=task.run_id, workspace_id=task.workspace_id, action=task.action, phase=task.phase)
    if task.action == "record_wait":
        assert task.phase is not None and task.token is not None
        return runs.record_wait(task.workspace_id, task.run_id, task.phase, task.token)
    if task.action == "expire_wait":
        assert task.phase is not None
        return runs.expire_wait(task.workspace_id, task.run_id, task.phase)
    return runs.finalize_run(task.workspace_id, task.run_id)

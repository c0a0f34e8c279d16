"""EventBridge Scheduler's target: one invocation per firing of a workspace schedule, with the Input
`{"workspace_id", "schedule_id", "scheduled_time"}` that agentplane.logic.schedules gives every
schedule it creates. Submits the schedule's queue job or creates its run draft.

Invoked by EventBridge Scheduler only (and by `make dev`'s local scheduler), never through the
HTTP API. An error makes Scheduler retry; a repeated delivery of one firing makes nothing twice. A
schedule of a deleted workspace, or whose creator lost the right to do what it does, is disabled
and removed from Scheduler instead of firing. Sample event: events/scheduled/schedule-fired.json.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from agentplane.logic import schedules
from agentplane.models.schedules import ScheduleFiredEvent
from agentplane.observability import entry_point, logger
from agentplane.settings import require_settings

REQUIRED_SETTINGS: tuple[str, ...] = ()
require_settings(*REQUIRED_SETTINGS)


@entry_point()
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        firing = ScheduleFiredEvent.model_validate(event)
    except ValidationError:
        # Not ours to retry: a malformed Input never becomes valid.
        logger.error("not a schedule firing", extra={"keys": sorted(event) if isinstance(event, dict) else None})
        return {"fired": False, "error": "not a schedule firing"}
    logger.append_keys(workspace_id=firing.workspace_id, schedule_id=firing.schedule_id)
    result = schedules.fire_scheduled(firing)
    logger.info("schedule fired", extra={"fired": result.fired, "duplicate": result.duplicate, "error": result.error})
    return result.model_dump(mode="json")

"""Probes: cheap, and honest about the one dependency that matters (the table)."""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from agentplane import keys
from agentplane.auth.scopes import ALL_SCOPES, Role
from agentplane.errors import ServiceUnavailable
from agentplane.models.health import Constants, Health, Ready, SiteStatus, Version
from agentplane.models.tasks import TaskPriority, TaskStatus
from agentplane.settings import get_settings
from agentplane.store import get_store

_STARTED = time.time()
RUN_STATUSES = [
    "draft",
    "queued",
    "running",
    "paused",
    "awaiting_approval",
    "completed",
    "failed",
    "cancelled",
    "planned",
]


def _site_settings() -> dict[str, Any] | None:
    """The site settings item as the table holds it: any GetItem shows the table answers."""
    return get_store().get_raw([keys.site_settings_key()], consistent=False)[0]


def health() -> Health:
    try:
        _site_settings()
        db = "ok"
    except (BotoCoreError, ClientError):
        db = "unavailable"
    return Health(
        status="ok" if db == "ok" else "degraded",
        version=get_settings().service_version,
        uptime_seconds=int(time.time() - _STARTED),
        db=db,
    )


def ready() -> Ready:
    try:
        _site_settings()
    except (BotoCoreError, ClientError) as exc:
        raise ServiceUnavailable("the table is not reachable") from exc
    return Ready(ready=True)


def version() -> Version:
    settings = get_settings()
    return Version(version=settings.service_version, stage=settings.stage)


def site_status() -> SiteStatus:
    site = _site_settings() or {}
    return SiteStatus(maintenance=bool(site.get("maintenance")), banner=site.get("banner"))


def constants() -> Constants:
    return Constants(
        roles=[r.value for r in Role],
        scopes=list(ALL_SCOPES),
        task_statuses=[s.value for s in TaskStatus],
        task_priorities=[p.value for p in TaskPriority],
        run_statuses=RUN_STATUSES,
        page_size_default=50,
        page_size_max=200,
    )

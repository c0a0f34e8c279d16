from __future__ import annotations

from agentplane.models.common import Output


class Health(Output):
    status: str
    version: str
    uptime_seconds: int
    db: str


class Ready(Output):
    ready: bool


class Version(Output):
    version: str
    stage: str


class SiteStatus(Output):
    maintenance: bool
    banner: str | None = None


class Constants(Output):
    roles: list[str]
    scopes: list[str]
    task_statuses: list[str]
    task_priorities: list[str]
    run_statuses: list[str]
    page_size_default: int
    page_size_max: int

"""Health probes, version, site status and public configuration constants.

The probes answer under the base path (/api/v1/health, /ready, /version) and also at /api/...,
where load balancers and uptime checks look for them."""

from __future__ import annotations

from agentplane.http import PUBLIC, create_app, lambda_entry
from agentplane.logic import health
from agentplane.models.envelope import Data
from agentplane.models.health import Constants, Health, Ready, SiteStatus, Version

REQUIRED_SETTINGS: tuple[str, ...] = ()
app = create_app(requires=REQUIRED_SETTINGS)


@app.get("/api/health", security=PUBLIC)
def get_health() -> Data[Health]:
    return Data(data=health.health())


@app.get("/api/v1/health", security=PUBLIC)
def get_health_v1() -> Data[Health]:
    return Data(data=health.health())


@app.get("/api/ready", security=PUBLIC)
def get_ready() -> Data[Ready]:
    return Data(data=health.ready())


@app.get("/api/v1/ready", security=PUBLIC)
def get_ready_v1() -> Data[Ready]:
    return Data(data=health.ready())


@app.get("/api/version", security=PUBLIC)
def get_version() -> Data[Version]:
    return Data(data=health.version())


@app.get("/api/v1/version", security=PUBLIC)
def get_version_v1() -> Data[Version]:
    return Data(data=health.version())


@app.get("/api/site/status", security=PUBLIC)
def get_site_status() -> Data[SiteStatus]:
    return Data(data=health.site_status())


@app.get("/api/v1/config/constants", security=PUBLIC)
def get_constants() -> Data[Constants]:
    return Data(data=health.constants())


lambda_handler = lambda_entry(app)

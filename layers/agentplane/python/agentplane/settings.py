"""Runtime settings, read from the environment once and validated at import.

Every function's module names the settings it cannot work without in `REQUIRED_SETTINGS` and
checks them when it is imported (`agentplane.http.create_app(requires=...)`, or `require_settings`
for a function without HTTP routes), so a missing or malformed setting fails the cold start loudly,
naming the setting, instead of surfacing later as a 500. tests/test_settings.py holds each list
against the function's environment in template.yaml.
"""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    table_name: str = Field(alias="TABLE_NAME", min_length=3)
    stage: str = Field(default="dev", alias="STAGE")
    signing_secret: str = Field(alias="SIGNING_SECRET", min_length=16)
    kms_key_id: str = Field(default="", alias="KMS_KEY_ID")
    artifacts_bucket: str = Field(default="", alias="ARTIFACTS_BUCKET")
    service_version: str = Field(default="0.1.0", alias="SERVICE_VERSION")
    # Session tokens slide: each use pushes expiry to now + this many seconds.
    session_ttl_seconds: int = Field(default=7 * 24 * 3600, alias="SESSION_TTL_SECONDS", ge=60)
    refresh_ttl_seconds: int = Field(default=30 * 24 * 3600, alias="REFRESH_TTL_SECONDS", ge=60)
    rate_limit_per_minute: int = Field(default=600, alias="RATE_LIMIT_PER_MINUTE", ge=1)
    auth_rate_limit_per_minute: int = Field(default=60, alias="AUTH_RATE_LIMIT_PER_MINUTE", ge=1)
    idempotency_ttl_seconds: int = Field(default=24 * 3600, alias="IDEMPOTENCY_TTL_SECONDS", ge=60)
    site_owner_email: str = Field(default="", alias="SITE_OWNER_EMAIL")
    # argon2id cost; the defaults are argon2-cffi's. Tests lower them to keep the suite fast.
    password_time_cost: int = Field(default=3, alias="PASSWORD_TIME_COST", ge=1)
    password_memory_kib: int = Field(default=65536, alias="PASSWORD_MEMORY_KIB", ge=1024)
    # Runs: the state machine that owns each run's timers, and the per-workspace cap on active runs.
    run_state_machine_arn: str = Field(default="", alias="RUN_STATE_MACHINE_ARN")
    max_active_runs: int = Field(default=20, alias="MAX_ACTIVE_RUNS", ge=1)
    approval_timeout_seconds: int = Field(default=7 * 24 * 3600, alias="APPROVAL_TIMEOUT_SECONDS", ge=60)
    # Deploy runs: how long after a cancel request a run whose runner did not stop may be force-cancelled.
    deploy_force_cancel_after_seconds: int = Field(default=60, alias="DEPLOY_FORCE_CANCEL_AFTER_SECONDS", ge=0)
    # Agents: silent this long (no heartbeat) and an agent is marked stalled.
    agent_stall_timeout_seconds: int = Field(default=600, alias="AGENT_STALL_TIMEOUT_SECONDS", ge=5)
    # Schedules: EventBridge Scheduler invokes this function, assuming this role, for each firing.
    schedule_fired_function_arn: str = Field(default="", alias="SCHEDULE_FIRED_FUNCTION_ARN")
    scheduler_role_arn: str = Field(default="", alias="SCHEDULER_ROLE_ARN")
    # Billing: the tier catalog as JSON (empty: the catalog shipped with the code, logic/billing/pricing.json).
    billing_catalog: str = Field(default="", alias="BILLING_CATALOG")
    # Stripe: the secret API key, the SDK's API base (empty: Stripe's own; `make dev` points it at
    # the local stand-in), the webhook signing secret, and where checkout and the portal send the
    # buyer back when the request names no URL.
    stripe_api_key: str = Field(default="", alias="STRIPE_API_KEY")
    stripe_api_base: str = Field(default="", alias="STRIPE_API_BASE")
    stripe_webhook_secret: str = Field(default="", alias="STRIPE_WEBHOOK_SECRET")
    billing_return_url: str = Field(default="https://agentplane.dev/billing", alias="BILLING_RETURN_URL")
    # Realtime fan-out: the WebSocket API stage's management endpoint, where pushes are posted.
    websocket_endpoint: str = Field(default="", alias="WEBSOCKET_ENDPOINT")


class SettingsError(RuntimeError):
    """Raised at import when the environment does not describe a valid deployment."""


def require_settings(*names: str) -> Settings:
    """The settings, validated; fails the cold start when one this function cannot work without
    is empty (a function that starts runs needs RUN_STATE_MACHINE_ARN: without it, runs would have
    no timers)."""
    settings = get_settings()
    missing = [setting_name(name) for name in names if not getattr(settings, name)]
    if missing:
        raise SettingsError(f"invalid agentplane settings: {', '.join(missing)} must be set for this function")
    return settings


def setting_name(field: str) -> str:
    """The environment variable a setting is read from (`run_state_machine_arn` → RUN_STATE_MACHINE_ARN)."""
    return Settings.model_fields[field].alias or field


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings.model_validate(dict(os.environ))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"invalid agentplane settings: {problems}") from exc

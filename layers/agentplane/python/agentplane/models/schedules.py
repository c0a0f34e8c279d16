"""Schedules (Orkosi's discovery engines and automations): a cron or rate expression that, each time
it fires, submits a queue job or creates a run draft."""

from __future__ import annotations

import re
import zoneinfo
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StringConstraints, field_validator, model_validator

from agentplane.models.common import Input, ListQuery, Output
from agentplane.models.queue import (
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    MAX_ATTEMPTS_LIMIT,
    Document,
    Priority,
    QueueJob,
    QueueName,
    TaskType,
)
from agentplane.models.queue import priority_number as _priority_number
from agentplane.models.runs import DEPLOY_KINDS, Run, RunCreate

# --- expressions, as EventBridge Scheduler accepts them ---------------------------------------------

_RATE = re.compile(r"^rate\((\d{1,6}) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
_WEEKDAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], 1)}


def _number(token: str, low: int, high: int, names: dict[str, int] | None = None) -> int:
    upper = token.upper()
    if names and upper in names:
        return names[upper]
    if not token.isdigit():
        raise ValueError(f"{token!r} is not a number")
    value = int(token)
    if not low <= value <= high:
        raise ValueError(f"{value} is outside {low}-{high}")
    return value


def _check_list(text: str, low: int, high: int, names: dict[str, int] | None = None) -> None:
    """Comma-separated values, ranges (a-b) and steps (*/n, a/n, a-b/n)."""
    for part in text.split(","):
        base, _, step = part.partition("/")
        if step and (not step.isdigit() or int(step) < 1):
            raise ValueError(f"bad step in {part!r}")
        if base == "*":
            continue
        first, dash, last = base.partition("-")
        start = _number(first, low, high, names)
        if dash and _number(last, low, high, names) < start:
            raise ValueError(f"empty range {base!r}")


def _check_day_of_month(text: str) -> None:
    if text in ("?", "L", "LW"):
        return
    if text.endswith("W"):
        _number(text[:-1], 1, 31)
        return
    _check_list(text, 1, 31)


def _check_day_of_week(text: str) -> None:
    if text in ("?", "L"):
        return
    if "#" in text:
        day, _, nth = text.partition("#")
        _number(day, 1, 7, _WEEKDAYS)
        _number(nth, 1, 5)
        return
    if text.endswith("L"):
        _number(text[:-1], 1, 7, _WEEKDAYS)
        return
    _check_list(text, 1, 7, _WEEKDAYS)


def check_expression(text: str) -> str:
    """`rate(5 minutes)` (a singular unit for 1) or `cron(minutes hours day-of-month month
    day-of-week year)` with exactly one of the two day fields `?`."""
    rate = _RATE.match(text)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1:
            raise ValueError("a rate must be at least 1")
        if (value == 1) != (not unit.endswith("s")):
            raise ValueError("use a singular unit for 1 (rate(1 hour)) and a plural one otherwise (rate(5 hours))")
        return text
    cron = _CRON.match(text)
    if not cron:
        raise ValueError("must be rate(<value> <unit>) or cron(<6 fields>)")
    fields = cron.group(1).split()
    if len(fields) != 6:
        raise ValueError(f"cron needs 6 fields (minutes hours day-of-month month day-of-week year), got {len(fields)}")
    minutes, hours, day_of_month, month, day_of_week, year = fields
    if (day_of_month == "?") == (day_of_week == "?"):
        raise ValueError("exactly one of day-of-month and day-of-week must be '?'")
    try:
        _check_list(minutes, 0, 59)
        _check_list(hours, 0, 23)
        _check_day_of_month(day_of_month.upper())
        _check_list(month, 1, 12, _MONTHS)
        _check_day_of_week(day_of_week.upper())
        _check_list(year, 1970, 2199)
    except ValueError as exc:
        raise ValueError(f"invalid cron expression: {exc}") from exc
    return text


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_timezone(name: str) -> str:
    zones = _known_zones()
    known = name in zones if zones else re.fullmatch(r"[A-Za-z_]+(/[A-Za-z0-9_+-]+){0,2}", name) is not None
    if not (known or name == "UTC"):
        raise ValueError(f"{name!r} is not an IANA time zone (for example Europe/Paris or UTC)")
    return name


Expression = Annotated[str, StringConstraints(strip_whitespace=True, max_length=256), AfterValidator(check_expression)]
Timezone = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(check_timezone)]
ScheduleName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Description = Annotated[str, StringConstraints(max_length=2000)]


# --- targets --------------------------------------------------------------------------------------


class QueueJobTarget(Input):
    """Each firing submits this job to the workspace's queue."""

    type: Literal["queue_job"]
    task_type: TaskType
    queue_name: QueueName = DEFAULT_QUEUE
    payload: Document = Field(default_factory=dict)
    priority: Priority = DEFAULT_PRIORITY
    max_attempts: int = Field(default=3, ge=1, le=MAX_ATTEMPTS_LIMIT)
    timeout_seconds: int = Field(default=300, ge=5, le=86_400)

    @field_validator("priority", mode="after")
    @classmethod
    def _as_number(cls, value: int | str) -> int:
        return _priority_number(value)


class RunTarget(RunCreate):
    """Each firing creates a run draft with these fields (a run's create body): an agent or
    maintenance run (a deploy run is planned, reviewed and applied by people)."""

    type: Literal["run"]

    @model_validator(mode="after")
    def _not_a_deploy_run(self) -> RunTarget:
        if self.kind in DEPLOY_KINDS:
            raise ValueError("a schedule fires agent and maintenance runs, not plan, apply or destroy runs")
        return self


ScheduleTarget = Annotated[QueueJobTarget | RunTarget, Field(discriminator="type")]


# --- requests and answers -------------------------------------------------------------------------


class ScheduleCreate(Input):
    name: ScheduleName
    description: Description = ""
    expression: Expression = Field(description="rate(5 minutes), or cron(0 9 ? * MON-FRI *) (six fields)")
    timezone: Timezone = Field(default="UTC", description="IANA time zone the cron expression is read in")
    enabled: bool = True
    target: ScheduleTarget


class ScheduleUpdate(Input):
    """Fields left out are unchanged; a new target replaces the old one whole."""

    name: ScheduleName | None = None
    description: Description | None = None
    expression: Expression | None = None
    timezone: Timezone | None = None
    enabled: bool | None = None
    target: ScheduleTarget | None = None
    version: int | None = Field(default=None, ge=1, description="Expected current version (or send If-Match)")


class ScheduleQuery(ListQuery):
    enabled: bool | None = None


class FiringRef(Output):
    type: Literal["queue_job", "run"]
    id: str
    at: str
    manual: bool = False


class Schedule(Output):
    id: str
    workspace_id: str
    name: str
    description: str = ""
    expression: str
    timezone: str
    enabled: bool
    target: ScheduleTarget
    last_fired_at: str | None = None
    fire_count: int = 0
    last_result: FiringRef | None = None
    last_error: str | None = None
    created_by: str
    created_at: str
    updated_at: str
    version: int


class ScheduleFiring(Output):
    """What one firing did: the job or run it made, or why it made none."""

    schedule_id: str
    fired: bool
    duplicate: bool = Field(default=False, description="This firing had already been handled")
    job: QueueJob | None = None
    run: Run | None = None
    error: str | None = None


class ScheduleFiredEvent(Output):
    """The Input EventBridge Scheduler sends the fired function (see logic.schedules)."""

    workspace_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    schedule_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    scheduled_time: str | None = None


def target_fields(target: QueueJobTarget | RunTarget) -> dict[str, Any]:
    return target.model_dump(mode="json", exclude_none=True)

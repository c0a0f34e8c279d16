"""Schedules that fire locally: the template's `Schedule`/`ScheduleV2` events, and the schedules
created at runtime through the EventBridge Scheduler API (moto stores those but never fires them).

Expressions: `rate(5 minutes)`, `cron(0 12 ? * MON-FRI *)` (AWS's six fields) and `at(2030-01-01T09:00:00)`,
evaluated in the schedule's time zone.
"""

from __future__ import annotations

import calendar
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from devstack import aws, template
from devstack.lambdas import Lambdas

log = logging.getLogger("devstack.schedules")

# ---------------------------------------------------------------- cron, AWS flavour

_MONTHS = {name: i for i, name in enumerate(calendar.month_abbr) if name}
_MONTHS = {k.upper(): v for k, v in _MONTHS.items()}
_WEEKDAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}


def _aws_weekday(day: date) -> int:
    """AWS numbers days 1 (Sunday) to 7 (Saturday)."""
    return (day.weekday() + 1) % 7 + 1


def _parse_field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    values: set[int] = set()

    def number(token: str) -> int:
        token = token.upper()
        value = names[token] if names and token in names else int(token)
        if not low <= value <= high:
            raise ValueError(f"{token} is outside {low}-{high}")
        return value

    for part in text.split(","):
        step = 1
        stepped = "/" in part
        if stepped:
            part, step_text = part.split("/", 1)
            step = int(step_text)
            if step < 1:
                raise ValueError("a cron step must be positive")
        if part == "*":
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-", 1)
            start, end = number(first), number(last)
        else:
            start = number(part)
            end = high if stepped else start  # 5/15 means from 5 on, every 15
        if end < start:
            raise ValueError(f"empty range {part}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    years: frozenset[int]
    day_of_month: str  # kept as text: L, LW and 15W depend on the month
    day_of_week: str  # 6#3 and 5L too

    @classmethod
    def parse(cls, expression: str) -> Cron:
        """Six fields: minutes hours day-of-month month day-of-week year."""
        fields = expression.split()
        if len(fields) != 6:
            raise ValueError(f"cron needs 6 fields, got {len(fields)}: {expression!r}")
        minutes, hours, dom, month, dow, year = fields
        if (dom == "?") == (dow == "?"):
            raise ValueError("exactly one of day-of-month and day-of-week must be '?'")
        cron = cls(
            _parse_field(minutes, 0, 59),
            _parse_field(hours, 0, 23),
            _parse_field(month, 1, 12, _MONTHS),
            _parse_field(year, 1970, 2199),
            dom.upper(),
            dow.upper(),
        )
        cron._day_matches(date(2024, 1, 1))  # validates the day fields early
        return cron

    def _day_matches(self, day: date) -> bool:
        last = calendar.monthrange(day.year, day.month)[1]
        if self.day_of_week == "?":
            return self._dom_matches(self.day_of_month, day, last)
        return self._dow_matches(self.day_of_week, day, last)

    @staticmethod
    def _dom_matches(spec: str, day: date, last: int) -> bool:
        if spec == "L":
            return day.day == last
        if spec == "LW":
            target = last
            while date(day.year, day.month, target).weekday() >= 5:
                target -= 1
            return day.day == target
        if spec.endswith("W"):
            wanted = int(spec[:-1])
            if not 1 <= wanted <= 31:
                raise ValueError(f"bad day-of-month {spec}")
            wanted = min(wanted, last)
            nearest = date(day.year, day.month, wanted)
            # The nearest weekday within the same month.
            if nearest.weekday() == 5:
                nearest = nearest - timedelta(days=1) if wanted > 1 else nearest + timedelta(days=2)
            elif nearest.weekday() == 6:
                nearest = nearest + timedelta(days=1) if wanted < last else nearest - timedelta(days=2)
            return day == nearest
        return day.day in _parse_field(spec, 1, 31)

    @staticmethod
    def _dow_matches(spec: str, day: date, last: int) -> bool:
        weekday = _aws_weekday(day)
        if "#" in spec:
            wanted, nth = spec.split("#", 1)
            wanted_day = _WEEKDAYS.get(wanted) or int(wanted)
            if not 1 <= int(nth) <= 5:
                raise ValueError(f"bad nth weekday {spec}")
            return weekday == wanted_day and (day.day - 1) // 7 + 1 == int(nth)
        if spec == "L":
            return weekday == 7
        if spec.endswith("L"):
            wanted_day = _WEEKDAYS.get(spec[:-1]) or int(spec[:-1])
            return weekday == wanted_day and day.day + 7 > last
        return weekday in _parse_field(spec, 1, 7, _WEEKDAYS)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first matching minute strictly after `moment` (naive local time), or None."""
        start = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        day = start.date()
        last_year = max(self.years)
        while day.year <= last_year:
            if day.year not in self.years:
                day = date(day.year + 1, 1, 1)
                continue
            if day.month not in self.months:
                day = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
                continue
            if self._day_matches(day):
                for hour in hours:
                    for minute in minutes:
                        candidate = datetime(day.year, day.month, day.day, hour, minute)
                        if candidate >= start:
                            return candidate
            day += timedelta(days=1)
        return None


# ---------------------------------------------------------------- expressions

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class Expression:
    text: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        self.next_after(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC))  # validates

    def next_after(self, moment: datetime, anchor: datetime) -> datetime | None:
        """The next firing strictly after `moment` (aware, UTC); rates count from `anchor`."""
        rate = _RATE.match(self.text.strip())
        if rate:
            every = timedelta(seconds=int(rate.group(1)) * _UNITS[rate.group(2).rstrip("s")])
            if every <= timedelta(0):
                raise ValueError("a rate must be positive")
            elapsed = max(timedelta(0), moment - anchor)
            return anchor + every * (elapsed // every + 1)
        zone = ZoneInfo(self.timezone or "UTC")
        text = self.text.strip()
        if text.startswith("cron(") and text.endswith(")"):
            local = moment.astimezone(zone).replace(tzinfo=None)
            found = Cron.parse(text[5:-1]).next_after(local)
            return found.replace(tzinfo=zone).astimezone(UTC) if found else None
        if text.startswith("at(") and text.endswith(")"):
            when = datetime.fromisoformat(text[3:-1]).replace(tzinfo=zone).astimezone(UTC)
            return when if when > moment else None
        raise ValueError(f"unsupported schedule expression {self.text!r}")

    @property
    def one_time(self) -> bool:
        return self.text.strip().startswith("at(")


# ---------------------------------------------------------------- the scheduler


def scheduled_event(source: str, resource_arn: str, now: datetime) -> dict[str, Any]:
    """What EventBridge hands a function for a schedule without its own Input."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": source,
        "account": aws.ACCOUNT,
        "time": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": aws.REGION,
        "resources": [resource_arn],
        "detail": {},
    }


def _context_attributes(text: Any, schedule: Any, now: datetime) -> Any:
    """EventBridge Scheduler fills these placeholders in a target's Input at each firing."""
    if not isinstance(text, str):
        return text
    values = {
        "<aws.scheduler.scheduled-time>": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "<aws.scheduler.schedule-arn>": str(getattr(schedule, "arn", "")),
        "<aws.scheduler.execution-id>": str(uuid.uuid4()),
        "<aws.scheduler.attempt-number>": "1",
    }
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def _input(text: Any) -> Any:
    if text is None:
        return None
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _moment(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except ValueError:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class Timer:
    key: str
    expression: Expression
    anchor: datetime
    fire: Callable[[datetime], None]
    next_at: datetime | None = None
    signature: Any = None
    start: datetime | None = None
    end: datetime | None = None
    after_fire: Callable[[], None] | None = None

    def schedule_from(self, moment: datetime) -> None:
        after = max(moment, self.start - timedelta(microseconds=1)) if self.start else moment
        self.next_at = self.expression.next_after(after, self.start or self.anchor)
        if self.next_at and self.end and self.next_at > self.end:
            self.next_at = None


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Scheduler:
    lambdas: Lambdas
    resources: aws.Resources
    clock: Callable[[], datetime] = _now
    interval: float = 0.5
    inline: bool = False  # fire on the ticking thread (tests); otherwise on a pool
    timers: dict[str, Timer] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(8, thread_name_prefix="schedule"))

    def __post_init__(self) -> None:
        now = self.clock()
        for function, props, name, source in self._template_events():
            state = props.get("State") or ("DISABLED" if props.get("Enabled") is False else "ENABLED")
            if state != "ENABLED":
                continue
            text = props.get("ScheduleExpression") or props.get("Schedule")
            expression = Expression(str(text), str(props.get("ScheduleExpressionTimezone") or "UTC"))
            arn = f"arn:aws:{'scheduler' if source == 'aws.scheduler' else 'events'}:{aws.REGION}:{aws.ACCOUNT}:"
            arn += f"{'schedule/default' if source == 'aws.scheduler' else 'rule'}/{function.logical_id}-{name}"
            payload = _input(props.get("Input"))
            timer = Timer(
                f"template:{function.logical_id}:{name}",
                expression,
                now,
                self._template_fire(function, payload, source, arn),
                start=_moment(props.get("StartDate")),
                end=_moment(props.get("EndDate")),
            )
            timer.schedule_from(now)
            self.timers[timer.key] = timer

    @staticmethod
    def _template_events() -> list[tuple[template.Function, dict[str, Any], str, str]]:
        found = []
        for logical_id, function in template.functions().items():
            events = (template.resources()[logical_id].get("Properties") or {}).get("Events") or {}
            for name, event in events.items():
                if event["Type"] in ("Schedule", "ScheduleV2"):
                    source = "aws.scheduler" if event["Type"] == "ScheduleV2" else "aws.events"
                    found.append((function, event.get("Properties") or {}, name, source))
        return found

    def _template_fire(
        self, function: template.Function, payload: Any, source: str, arn: str
    ) -> Callable[[datetime], None]:
        def fire(now: datetime) -> None:
            event = payload if payload is not None else scheduled_event(source, arn, now)
            self.lambdas.invoke(function, event)

        return fire

    # --- schedules created through the Scheduler API

    @staticmethod
    def _runtime_schedules() -> list[Any]:
        from moto.scheduler.models import scheduler_backends

        backend = scheduler_backends[aws.ACCOUNT][aws.REGION]
        return [s for group in list(backend.schedule_groups.values()) for s in list(group.schedules.values())]

    def _sync_runtime(self, now: datetime) -> None:
        seen = set()
        for schedule in self._runtime_schedules():
            seen.add(schedule.arn)
            signature = (
                schedule.schedule_expression,
                schedule.schedule_expression_timezone,
                schedule.last_modified_date,
                schedule.state,
            )
            timer = self.timers.get(schedule.arn)
            if timer and timer.signature == signature:
                continue
            if schedule.state != "ENABLED":
                self.timers.pop(schedule.arn, None)
                continue
            try:
                expression = Expression(schedule.schedule_expression, schedule.schedule_expression_timezone or "UTC")
            except ValueError as exc:
                log.warning("schedule %s cannot fire locally: %s", schedule.name, exc)
                self.timers.pop(schedule.arn, None)
                continue
            timer = Timer(
                schedule.arn,
                expression,
                now,
                self._runtime_fire(schedule),
                signature=signature,
                start=_moment(schedule.start_date),
                end=_moment(schedule.end_date),
            )
            if expression.one_time and schedule.action_after_completion == "DELETE":
                timer.after_fire = self._deleter(schedule.group_name, schedule.name)
            timer.schedule_from(now)
            self.timers[schedule.arn] = timer
        for key in [k for k in self.timers if k.startswith("arn:") and k not in seen]:
            del self.timers[key]

    def _runtime_fire(self, schedule: Any) -> Callable[[datetime], None]:
        def fire(now: datetime) -> None:
            target = schedule.target
            arn = str(target.get("Arn", ""))
            payload = _input(_context_attributes(target.get("Input"), schedule, now))
            if ":lambda:" in arn:
                function = self.lambdas.find(arn)
                if function is None:
                    log.warning("schedule %s targets an unknown function %s", schedule.name, arn)
                    return
                event = payload if payload is not None else scheduled_event("aws.scheduler", schedule.arn, now)
                self.lambdas.invoke(function, event)
            elif ":states:" in arn:
                import boto3

                boto3.client("stepfunctions", region_name=aws.REGION).start_execution(
                    stateMachineArn=arn, name=str(uuid.uuid4()), input=target.get("Input") or "{}"
                )
            elif ":sqs:" in arn:
                import boto3

                queue = arn.rsplit(":", 1)[-1]
                sqs = boto3.client("sqs", region_name=aws.REGION)
                sqs.send_message(
                    QueueUrl=sqs.get_queue_url(QueueName=queue)["QueueUrl"], MessageBody=target.get("Input") or "{}"
                )
            else:
                log.warning("schedule %s targets %s, which the local stack cannot invoke", schedule.name, arn)

        return fire

    @staticmethod
    def _deleter(group: str, name: str) -> Callable[[], None]:
        def delete() -> None:
            import boto3

            boto3.client("scheduler", region_name=aws.REGION).delete_schedule(GroupName=group, Name=name)

        return delete

    # --- ticking

    def tick(self, now: datetime | None = None) -> list[str]:
        """Fire everything due at `now`; returns the keys fired."""
        now = now or self.clock()
        self._sync_runtime(now)
        fired = []
        for timer in list(self.timers.values()):
            if timer.next_at is None or timer.next_at > now:
                continue
            due = timer.next_at
            # A stack that was asleep fires once, then carries on from now.
            timer.schedule_from(max(now, due))
            fired.append(timer.key)
            if self.inline:
                self._run(timer, due)
            else:
                self._pool.submit(self._run, timer, due)
        return fired

    @staticmethod
    def _run(timer: Timer, due: datetime) -> None:
        try:
            timer.fire(due)
            if timer.after_fire:
                timer.after_fire()
        except Exception:
            log.exception("schedule %s failed", timer.key)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("the scheduler tick failed")
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

"""Cron expressions, time zones, output patterns and the firing rule of scheduled batch prediction.

Pure functions (no store, no clock of their own), so the rules are tested with a fixed clock.

Expressions are what a Kubernetes CronJob takes, so a schedule means the same on every backend:
five fields (minute hour day-of-month month day-of-week) with numbers, ``*``, ``?``, ranges,
lists, steps and month/day names, or one of ``@yearly @annually @monthly @weekly @daily
@midnight @hourly``. Extensions the CronJob controller does not know (seconds, years, ``L``,
``W``, ``#``, ``H``) and ``TZ=`` prefixes (use the schedule's ``timezone``) are refused.

The firing rule (both backends): at most one firing per due time; when several were missed
(server down, schedule suspended), only the most recent one starts, and only if it is less than
``starting_deadline_seconds`` late; as Kubernetes does with ``startingDeadlineSeconds``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from ..errors import InvalidInput

MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_MACRO_EXPR = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_NAMES = {
    3: {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"},
    4: {"sun", "mon", "tue", "wed", "thu", "fri", "sat"},
}
_TOKEN = re.compile(r"^(\*|\?|[0-9]+|[A-Za-z]{3})$")
EXPECTED = ("expected 5 fields 'minute hour day-of-month month day-of-week' (e.g. '0 * * * *' or "
            f"'30 2 * * MON-FRI') or one of {', '.join(MACROS)}")

PLACEHOLDERS = ("{run_id}", "{date}")
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def _bad(expr: str, why: str) -> InvalidInput:
    return InvalidInput(f"schedule: {expr!r} is not a valid cron expression: {why}; {EXPECTED}",
                        field="schedule")


def validate_cron(expr: object) -> str:
    """The expression, normalized (whitespace collapsed); InvalidInput naming 'schedule' if bad."""
    if not isinstance(expr, str) or not expr.strip():
        raise InvalidInput(f"schedule: a cron expression is required; {EXPECTED}", field="schedule")
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise _bad(text, f"unknown macro {text!r}")
        return text.lower()
    if "=" in text:
        raise _bad(text, "TZ=/CRON_TZ= prefixes are not supported: give 'timezone' instead")
    fields = text.split(" ")
    if len(fields) != 5:
        raise _bad(text, f"it has {len(fields)} field{'s' if len(fields) != 1 else ''}")
    for index, field in enumerate(fields):
        for part in re.split(r"[,/-]", field):
            if not _TOKEN.match(part) or (part.isalpha() and part.lower() not in _NAMES.get(index, set())):
                raise _bad(text, f"the {_FIELDS[index]} field {field!r} has {part!r}, which is not a number, "
                                 "'*', '?' or a month/day name (L, W, # and H are not supported)")
    try:
        ok = croniter.is_valid(text)
    except Exception:  # croniter raises on some malformed input instead of answering False
        ok = False
    if not ok:
        raise _bad(text, "a value is out of range or a range/step is malformed")
    try:
        next_fire(text, dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))
    except Exception:
        raise _bad(text, "it never matches a date") from None
    return text


def validate_timezone(name: object) -> str | None:
    """An IANA time zone name (None: UTC); InvalidInput naming 'timezone' if unknown."""
    if name is None or name == "":
        return None
    if not isinstance(name, str):
        raise InvalidInput(f"timezone: expected an IANA time zone name such as 'Europe/Paris', got {name!r}",
                           field="timezone")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
        shown = repr(name) if len(name) <= 100 else repr(name[:100] + "...")
        raise InvalidInput(f"timezone: unknown time zone {shown} (expected an IANA name such as "
                           "'Europe/Paris' or 'UTC')", field="timezone") from None
    return name


def _zone(timezone: str | None) -> dt.tzinfo:
    return ZoneInfo(timezone) if timezone else dt.timezone.utc


def next_fire(expr: str, after: dt.datetime, timezone: str | None = None) -> dt.datetime:
    """The first time strictly after ``after`` the expression matches (in ``timezone``), in UTC."""
    expr = _MACRO_EXPR.get(expr, expr)
    start = after.astimezone(_zone(timezone))
    return _utc(croniter(expr, start).get_next(dt.datetime))


def latest_fire(expr: str, at_or_before: dt.datetime, timezone: str | None = None) -> dt.datetime:
    """The last time at or before ``at_or_before`` the expression matches, in UTC."""
    expr = _MACRO_EXPR.get(expr, expr)
    start = at_or_before.astimezone(_zone(timezone))
    if croniter.match(expr, start) and start.second == start.microsecond == 0:
        return _utc(start)
    return _utc(croniter(expr, start).get_prev(dt.datetime))


def _utc(when: dt.datetime) -> dt.datetime:
    return when.astimezone(dt.timezone.utc).replace(fold=0)


@dataclass(frozen=True)
class Plan:
    """What the scheduler does now: fire for ``fire_at`` (None: nothing, or too late), and
    the next due time to persist; ``missed`` counts due times that were skipped."""

    fire_at: dt.datetime | None
    next_fire_at: dt.datetime
    missed: int = 0


def plan(expr: str, timezone: str | None, next_fire_at: dt.datetime, now: dt.datetime,
         starting_deadline_seconds: int) -> Plan | None:
    """The firing rule (module docstring). None: nothing is due yet (``next_fire_at`` > now)."""
    if next_fire_at > now:
        return None
    latest = latest_fire(expr, now, timezone)
    # Every due time from next_fire_at to latest was missed but the latest (counted, not run).
    missed, probe = 0, next_fire_at
    while probe < latest and missed < 1000:
        missed += 1
        probe = next_fire(expr, probe, timezone)
    following = next_fire(expr, now, timezone)
    late = (now - latest).total_seconds()
    if late > starting_deadline_seconds:
        return Plan(None, following, missed + 1)
    return Plan(latest, following, missed)


# -- outputs ---------------------------------------------------------------------------------


def check_outputs_pattern(pattern: object, allow_date: bool = True) -> str:
    """An outputs pattern: must contain ``{run_id}`` (so no firing overwrites another's
    predictions); ``{date}`` is optional; any other ``{...}`` is refused."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise InvalidInput("outputs: a path pattern is required, e.g. '/data/predictions/{date}/{run_id}.jsonl'",
                           field="outputs")
    unknown = sorted({p for p in _PLACEHOLDER.findall(pattern) if p not in PLACEHOLDERS})
    if unknown:
        raise InvalidInput(f"outputs: unknown placeholder(s) {', '.join(unknown)} in {pattern!r}; "
                           f"expected {' and '.join(PLACEHOLDERS)}", field="outputs")
    if "{run_id}" not in pattern:
        raise InvalidInput(f"outputs: {pattern!r} has no {{run_id}}: every firing would overwrite the previous "
                           "one's predictions; put {run_id} in the path, e.g. '/data/predictions/{run_id}.jsonl'",
                           field="outputs")
    if not allow_date and "{date}" in pattern:
        raise InvalidInput(f"outputs: {{date}} is not available on the kubernetes backend (a pod cannot learn "
                           f"the date of its firing); use {{run_id}} alone, got {pattern!r}", field="outputs")
    return pattern


def expand_outputs(pattern: str, run_id: str, when: dt.datetime, timezone: str | None = None) -> str:
    """The outputs path of one firing: ``{run_id}`` → the run's id, ``{date}`` → the firing's
    date (YYYY-MM-DD) in the schedule's time zone."""
    date = when.astimezone(_zone(timezone)).date().isoformat()
    return pattern.replace("{run_id}", run_id).replace("{date}", date)

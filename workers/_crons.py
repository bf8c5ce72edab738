"""Sentry Crons for beat schedules: beat names the schedule entry on each task it sends, the worker checks in.

Beat's scheduler is wrapped (on the instance, only when ``OBSKIT_CELERY_CRONS`` is on) so that the
publish hook knows which schedule entry a message is for; the worker sends ``in_progress`` when the
task starts and ``ok`` or ``error`` when it ends, with the same check-in id across retries.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

__all__ = ["MONITOR_HEADER", "current_entry", "monitor_config", "monitor_header", "monitor_slug", "wrap_scheduler"]

MONITOR_HEADER = "obskit-monitor"

_entry: ContextVar[tuple[Any, str] | None] = ContextVar("obskit_beat_entry", default=None)
_SLUG_INVALID = re.compile(r"[^a-z0-9_-]+")
# Sentry Crons interval units, largest first.
_UNITS = (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60))


def current_entry() -> tuple[Any, str] | None:
    """The beat schedule entry being sent on this thread, with the scheduler's timezone, if any."""
    return _entry.get()


def monitor_slug(name: str) -> str:
    """A Sentry monitor slug from a schedule entry's name: lowercase letters, digits, - and _, at most 50."""
    slug = _SLUG_INVALID.sub("-", name.lower()).strip("-")
    return slug[:50] or "celery-beat"


def monitor_config(schedule: Any, timezone: str) -> dict[str, Any] | None:
    """Sentry's monitor config for a crontab or an interval of whole minutes; None for anything else
    (Sentry Crons has no sub-minute intervals: such entries check in without a config)."""
    from celery.schedules import crontab
    from celery.schedules import schedule as interval

    if isinstance(schedule, crontab):
        value = (
            f"{schedule._orig_minute} {schedule._orig_hour} {schedule._orig_day_of_month} "
            f"{schedule._orig_month_of_year} {schedule._orig_day_of_week}"
        )
        tz = str(getattr(schedule, "tz", None) or timezone)
        return {"schedule": {"type": "crontab", "value": value}, "timezone": tz}
    if isinstance(schedule, interval):
        seconds = int(schedule.seconds)
        if seconds != schedule.seconds or seconds < 60 or seconds % 60:
            return None
        for unit, size in _UNITS:
            if seconds % size == 0:
                return {"schedule": {"type": "interval", "value": seconds // size, "unit": unit}, "timezone": timezone}
    return None


def monitor_header(entry: Any, timezone: str) -> dict[str, Any]:
    """What a scheduled task carries to the worker: the monitor, the check-in id and when beat sent it."""
    header: dict[str, Any] = {
        "slug": monitor_slug(str(entry.name)),
        "check_in_id": uuid.uuid4().hex,
        "started": time.time(),
    }
    config = monitor_config(entry.schedule, timezone)
    if config is not None:
        header["config"] = config
    return header


def wrap_scheduler(scheduler: Any) -> None:
    """Make ``scheduler.apply_async`` name the entry it sends (idempotent; this instance only)."""
    original: Callable[..., Any] = scheduler.apply_async
    if getattr(original, "_obskit_wrapped", False):
        return
    app = getattr(scheduler, "app", None)
    timezone = str(getattr(app, "timezone", None) or "UTC")

    def apply_async(entry: Any, *args: Any, **kwargs: Any) -> Any:
        token = _entry.set((entry, timezone))
        try:
            return original(entry, *args, **kwargs)
        finally:
            _entry.reset(token)

    apply_async._obskit_wrapped = True  # type: ignore[attr-defined]
    scheduler.apply_async = apply_async

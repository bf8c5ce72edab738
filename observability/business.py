"""Business-rule failures: not outages, but people need to see them.

Each is a Sentry *message* (not an exception) tagged ``rule``, grouped into one issue per rule by
its fingerprint, counted per rule, and rate limited per rule so a flood of declined payments cannot
burn the Sentry quota; what the limit holds back is counted too.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

import sentry_sdk

from observability.errors import ObskitError
from observability.sentry import runtime
from observability.tags import tag_value

__all__ = ["BusinessRuleError", "report_business_failure"]

Level = Literal["debug", "info", "warning", "error", "fatal"]

_WINDOW_S = 60.0


class BusinessRuleError(ObskitError):
    """Raise from a task or message handler when a business rule fails: the kit reports it as a
    business failure (a Sentry message, outcome ``business_failure``), not as an error."""

    def __init__(self, rule: str, message: str, *, level: Level = "warning", **context: Any) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.level: Level = level
        self.context = context

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments: rebuild through a helper so Celery can pickle the exception.
        return (_rebuild, (self.rule, self.message, self.level, self.context))


def _rebuild(rule: str, message: str, level: Level, context: dict[str, Any]) -> BusinessRuleError:
    return BusinessRuleError(rule, message, level=level, **context)


class _RuleLimiter:
    """At most ``limit`` messages per rule per minute (a fixed window per rule)."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def allow(self, rule: str, limit: int, now: float) -> bool:
        with self._lock:
            start, count = self._windows.get(rule, (now, 0))
            if now - start >= _WINDOW_S:
                start, count = now, 0
            if count >= limit:
                self._windows[rule] = (start, count)
                return False
            self._windows[rule] = (start, count + 1)
            return True

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()


_limiter = _RuleLimiter()


def report_business_failure(rule: str, message: str, *, level: Level = "warning", **context: Any) -> str | None:
    """Report that business rule ``rule`` failed. Returns the Sentry event id, or None when Sentry is
    off or the per-rule limit (``OBSKIT_BUSINESS_EVENTS_PER_MINUTE``) held the message back."""
    rt = runtime()
    service = rt.settings.service
    rule = tag_value(rule)
    rt.metrics.business_failures.labels(service, rule).inc()
    if not rt.sentry_enabled:
        return None
    if not _limiter.allow(rule, rt.settings.business_events_per_minute, time.monotonic()):
        rt.metrics.business_failures_suppressed.labels(service, rule).inc()
        return None
    return sentry_sdk.capture_message(
        message,
        level=level,
        tags={"rule": rule, "outcome": "business_failure"},
        fingerprint=["business-rule", rule],
        contexts={"business_rule": {"rule": rule, **context}},
    )


def report(error: BusinessRuleError) -> str | None:
    """Report a raised :class:`BusinessRuleError`."""
    return report_business_failure(error.rule, error.message, level=error.level, **error.context)

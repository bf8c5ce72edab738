"""Storm control: one bad deploy or a flood of bad messages cannot burn the Sentry quota.

Per fingerprint (the exception type and its innermost in-app frame, the business rule, or the log
message's template), at most ``OBSKIT_STORM_LIMIT`` events go out per ``OBSKIT_STORM_WINDOW_S``.
While the storm goes on, each later window sends just one, so the issue stays visible and its
``last seen`` current; everything held back is counted in ``obskit_sentry_events_held_back_total``
with reason ``storm``. A window without excess restores the full limit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["StormControl", "fingerprint"]

logger = logging.getLogger(__name__)

Event = dict[str, Any]
Hint = dict[str, Any]

# Fingerprints remembered at once; past it, those whose windows ended are forgotten first.
_MAX_FINGERPRINTS = 10_000


def fingerprint(event: Event) -> tuple[str, ...]:
    """What makes events "the same" for storm control: an explicit fingerprint (business rules set one),
    else the exception type and innermost in-app frame, else the logger and message template."""
    explicit = event.get("fingerprint")
    if isinstance(explicit, list) and explicit and explicit != ["{{ default }}"]:
        return ("fingerprint", *map(str, explicit))
    exception = event.get("exception")
    values = exception.get("values") if isinstance(exception, dict) else None
    if isinstance(values, list) and values and isinstance(values[-1], dict):
        top = values[-1]
        return ("exception", str(top.get("module")), str(top.get("type")), *_location(top))
    logentry = event.get("logentry")
    template = logentry.get("message") if isinstance(logentry, dict) else None
    return ("message", str(event.get("logger")), str(template if template is not None else event.get("message")))


def _location(exception: dict[str, Any]) -> tuple[str, ...]:
    stacktrace = exception.get("stacktrace")
    frames = stacktrace.get("frames") if isinstance(stacktrace, dict) else None
    if not isinstance(frames, list) or not frames:
        return ()
    frame = next((f for f in reversed(frames) if isinstance(f, dict) and f.get("in_app")), frames[-1])
    if not isinstance(frame, dict):
        return ()
    return (str(frame.get("module") or frame.get("filename")), str(frame.get("function")), str(frame.get("lineno")))


class _Window:
    __slots__ = ("held", "sent", "start", "storming")

    def __init__(self, start: float, storming: bool) -> None:
        self.start = start
        self.sent = 0
        self.held = 0
        self.storming = storming


class StormControl:
    """The event processor that samples a storm down; thread-safe (events are sent from any thread)."""

    def __init__(
        self,
        *,
        limit: int,
        window_s: float,
        count: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._window = window_s
        self._count = count or (lambda: None)
        self._clock = clock
        self._windows: dict[tuple[str, ...], _Window] = {}
        self._lock = threading.Lock()

    def __call__(self, event: Event, hint: Hint) -> Event | None:
        if self._limit <= 0 or event.get("type") == "transaction":
            return event
        key = fingerprint(event)
        if self.allow(key):
            return event
        self._count()
        return None

    def allow(self, key: tuple[str, ...]) -> bool:
        """Whether one more event of this fingerprint goes out now."""
        now = self._clock()
        with self._lock:
            window = self._windows.get(key)
            if window is None or now - window.start >= self._window:
                # Still storming when the previous window held events back and has just ended.
                storming = window is not None and window.held > 0 and now - window.start < 2 * self._window
                if window is None and len(self._windows) >= _MAX_FINGERPRINTS:
                    self._forget(now)
                window = self._windows[key] = _Window(now, storming)
            allowance = 1 if window.storming else self._limit
            if window.sent < allowance:
                window.sent += 1
                return True
            window.held += 1
            first = window.held == 1 and not window.storming
        if first:
            logger.warning(
                "Sentry event storm: more than %d events of %s in %gs; holding back the rest (counted)",
                self._limit,
                "/".join(key[:3]),
                self._window,
            )
        return False

    def _forget(self, now: float) -> None:
        """Make room: drop fingerprints whose windows have ended, else the oldest half."""
        ended = [k for k, w in self._windows.items() if now - w.start >= 2 * self._window]
        if not ended:
            ended = list(self._windows)[: len(self._windows) // 2]
        for key in ended:
            del self._windows[key]

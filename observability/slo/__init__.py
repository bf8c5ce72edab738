"""Error-rate SLOs: outcomes counted per unit of work, flushed to Redis, served by the exporter.

``record(outcome)`` is what workers and consumers call once per unit; ``init()`` sets the recorder
up when ``OBSKIT_SLO_REDIS_URL`` (or ``REDIS_URL``) is set, else recording is a no-op.
"""

from __future__ import annotations

from observability.slo.outcomes import COMPLETED, DEFAULT_BAD, Outcome
from observability.slo.recorder import Recorder
from observability.slo.spec import SLO, Spec, SpecError, load_spec

__all__ = [
    "COMPLETED",
    "DEFAULT_BAD",
    "SLO",
    "Outcome",
    "Recorder",
    "Spec",
    "SpecError",
    "load_spec",
    "record",
    "recorder",
    "set_recorder",
]

_recorder: Recorder | None = None


def set_recorder(new: Recorder | None) -> Recorder | None:
    """Install the process's recorder (init() does this); returns the previous one."""
    global _recorder
    previous, _recorder = _recorder, new
    return previous


def recorder() -> Recorder | None:
    return _recorder


def record(outcome: Outcome | str, n: int = 1) -> None:
    """Count a unit of work's final outcome (a no-op when no SLO Redis is configured)."""
    current = _recorder
    if current is not None:
        current.record(outcome, n)

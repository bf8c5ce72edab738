"""From raw counts to SLO numbers: ratios, burn rates, budget, freshness. No I/O here.

A window with no traffic has ratio 0 and burn rate 0, never NaN; freshness shows the silence. Every
ratio is bad / total over the window (the 30-day ratio too), never an average of ratios.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from observability.slo.outcomes import COMPLETED, Outcome
from observability.slo.spec import SLO, Spec
from observability.slo.store import Reading

__all__ = ["ServiceReport", "WindowStats", "build_reports", "window_stats"]


@dataclass(frozen=True)
class WindowStats:
    window_s: int
    total: int
    bad: int
    outcomes: Mapping[Outcome, int]
    error_ratio: float
    burn_rate: float
    # Enough traffic for the ratio to page (the spec's min_events).
    sufficient: bool


@dataclass(frozen=True)
class ServiceReport:
    service: str
    env: str
    slo: SLO
    windows: Mapping[int, WindowStats]
    budget_remaining: float
    freshness_s: float | None
    pages: bool


def window_stats(window_s: int, counts: Mapping[Outcome, int], slo: SLO) -> WindowStats:
    total = sum(counts.get(o, 0) for o in COMPLETED)
    bad = sum(counts.get(o, 0) for o in slo.bad_outcomes)
    ratio = bad / total if total else 0.0
    return WindowStats(
        window_s=window_s,
        total=total,
        bad=bad,
        outcomes=dict(counts),
        error_ratio=ratio,
        burn_rate=ratio / slo.budget,
        sufficient=total >= slo.min_events,
    )


def build_reports(readings: Sequence[Reading], spec: Spec) -> list[ServiceReport]:
    """One report per reading; the budget is measured over the SLO's period window (which must be read)."""
    reports = []
    for reading in readings:
        slo = spec.for_service(reading.service, reading.env)
        stats = {w: window_stats(w, counts, slo) for w, counts in reading.windows.items()}
        period = stats.get(slo.period_s)
        budget_remaining = 1.0 if period is None or period.total == 0 else 1.0 - period.burn_rate
        reports.append(
            ServiceReport(
                service=reading.service,
                env=reading.env,
                slo=slo,
                windows=stats,
                budget_remaining=budget_remaining,
                freshness_s=reading.freshness_s,
                pages=slo.pages(reading.env),
            )
        )
    return reports


def windows_needed(spec: Spec, base: Sequence[int]) -> list[int]:
    """The standard windows plus every period and threshold window the spec uses."""
    extra = {spec.defaults.period_s, *(t.window_s for t in spec.defaults.thresholds)}
    for slo in spec.slos:
        extra.add(slo.period_s)
        extra.update(t.window_s for t in slo.thresholds)
    return sorted(set(base) | extra)

"""Durations, the exported windows, and the snapshot tiers that answer each window cheaply.

Every flush keeps cumulative totals per outcome; at each tier's step boundary the first flush also
stores a snapshot of the totals as they were. A window's count is then ``totals - snapshot`` where
the snapshot is the first one at or after ``now - window``: one read per window, whatever its length.
Each tier keeps about 360 to 2,200 snapshots, so a 30-day window costs the same as a 5-minute one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["TIERS", "WINDOWS", "Tier", "format_duration", "parse_duration", "tier_for"]

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> int:
    """``"10m"`` -> 600. Whole numbers with one unit of s, m, h, d or w; ValueError otherwise."""
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        message = f"{text!r} is not a duration: expected a positive whole number and a unit, e.g. 30s, 10m, 6h, 30d"
        raise ValueError(message)
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: int) -> str:
    """600 -> ``"10m"``: the largest unit that divides it."""
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Tier:
    step_s: int
    # The longest window this tier answers; snapshots older than that (plus two steps) are trimmed.
    max_window_s: int

    @property
    def retention_s(self) -> int:
        return self.max_window_s + 2 * self.step_s


TIERS = (
    Tier(step_s=10, max_window_s=3600),
    Tier(step_s=60, max_window_s=8 * 3600),  # up to 6h windows, plus the status page's burn-rate history
    Tier(step_s=300, max_window_s=86400),
    Tier(step_s=3600, max_window_s=90 * 86400),
)

# The windows the exporter serves for every service (the SRE workbook's burn-rate set and the teams' 10m).
WINDOWS = tuple(parse_duration(w) for w in ("5m", "10m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"))


def tier_for(window_s: int) -> Tier:
    """The finest tier that still holds ``window_s`` of history."""
    for tier in TIERS:
        if window_s <= tier.max_window_s:
            return tier
    longest = format_duration(TIERS[-1].max_window_s)
    message = f"window {format_duration(window_s)} is longer than the longest kept ({longest})"
    raise ValueError(message)

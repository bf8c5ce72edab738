"""The SLO counts in Redis: cumulative totals plus per-tier snapshots (see ``windows``).

One script call per service and env; all flushes of a process go in one pipelined round trip. For a
single-node (or Sentinel-managed) Redis: the ``{service}`` hash tag keeps one service's counts in one
slot, but the index key lives elsewhere and the client is a plain ``redis.Redis``, so Redis Cluster is
not supported.

- ``obskit:slo:{<service>}:<env>:totals``: hash, outcome -> count since the first flush, ``ts`` -> last flush
- ``obskit:slo:{<service>}:<env>:snap:<step>``: sorted set, score = boundary, member =
  ``<boundary>:<count per outcome, comma-separated>`` (the totals as they were at that boundary)
- ``obskit:slo:index``: set of ``<service>|<env>``, added to by every flush (in the same script as the
  totals) and pruned of pairs whose totals expired (no flush, not even an idle heartbeat, for the
  longest tier's retention)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from observability.slo.outcomes import Outcome
from observability.slo.windows import TIERS, tier_for

__all__ = ["INDEX_KEY", "OUTCOMES", "Reading", "Store", "snap_key", "totals_key"]

INDEX_KEY = "obskit:slo:index"
OUTCOMES: tuple[Outcome, ...] = tuple(Outcome)

# Snapshot the totals at each tier's boundary (first flush after it, before adding this flush's counts),
# trim snapshots past the tier's retention, then add the counts and stamp the flush time.
_FLUSH_LUA = """
local now = tonumber(ARGV[1])
local ntiers = tonumber(ARGV[2])
local i = 3
local steps, keep = {}, {}
for t = 1, ntiers do steps[t] = tonumber(ARGV[i]); keep[t] = tonumber(ARGV[i + 1]); i = i + 2 end
local n = tonumber(ARGV[i]); i = i + 1
local names = {}
for o = 1, n do names[o] = ARGV[i]; i = i + 1 end
local current = redis.call('HMGET', KEYS[1], unpack(names))
local parts = {}
for o = 1, n do parts[o] = current[o] or '0' end
local encoded = table.concat(parts, ',')
local longest = 0
for t = 1, ntiers do
  local boundary = math.floor(now / steps[t]) * steps[t]
  if redis.call('ZCOUNT', KEYS[t + 1], boundary, boundary) == 0 then
    redis.call('ZADD', KEYS[t + 1], boundary, string.format('%d', boundary) .. ':' .. encoded)
    redis.call('ZREMRANGEBYSCORE', KEYS[t + 1], '-inf', '(' .. string.format('%d', now - keep[t]))
    redis.call('EXPIRE', KEYS[t + 1], keep[t])
  end
  if keep[t] > longest then longest = keep[t] end
end
for o = 1, n do
  local count = tonumber(ARGV[i]); i = i + 1
  if count > 0 then redis.call('HINCRBY', KEYS[1], names[o], count) end
end
redis.call('HSET', KEYS[1], 'ts', ARGV[1])
redis.call('EXPIRE', KEYS[1], longest)
redis.call('SADD', KEYS[ntiers + 2], ARGV[i])
return 1
"""

# An index entry goes only when its totals are gone: checked and removed in one step, so a flush (which
# writes the totals and the entry in one script) is never undone by a prune that read before it.
_PRUNE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.call('SREM', KEYS[2], ARGV[1]) end
return 0
"""


def _member(service: str, env: str) -> str:
    return f"{service}|{env}"


def _keys(service: str, env: str) -> list[str]:
    """A service's count keys in one env: its totals, then its snapshots tier by tier."""
    return [totals_key(service, env), *(snap_key(service, env, t.step_s) for t in TIERS)]


def totals_key(service: str, env: str) -> str:
    return f"obskit:slo:{{{service}}}:{env}:totals"


def snap_key(service: str, env: str, step_s: int) -> str:
    return f"obskit:slo:{{{service}}}:{env}:snap:{step_s}"


@dataclass(frozen=True)
class Reading:
    """One service/env as read at ``now``: counts per outcome per window, and the last flush time."""

    service: str
    env: str
    now: float
    last_flush: float | None
    windows: Mapping[int, Mapping[Outcome, int]]

    @property
    def freshness_s(self) -> float | None:
        return None if self.last_flush is None else max(0.0, self.now - self.last_flush)


def _decode(member: bytes | str) -> tuple[int, ...]:
    text = member.decode() if isinstance(member, bytes) else member
    counts = text.split(":", 1)[1].split(",")
    return tuple(int(c) for c in counts)


def _increase(upper: Sequence[int], lower: Sequence[int]) -> dict[Outcome, int]:
    """The counts between two readings of the totals, ``lower`` the earlier.

    A total below its earlier reading means the totals were lost (eviction, failover, a flushed db) and
    counted up again from zero: as Prometheus's ``increase()`` does, the later reading is then the count
    since the reset. Clamping each outcome alone would mix old and new totals (3000 bad of 3000).
    """
    if any(u < lo for u, lo in zip(upper, lower, strict=True)):
        return dict(zip(OUTCOMES, upper, strict=True))
    return {o: u - lo for o, u, lo in zip(OUTCOMES, upper, lower, strict=True)}


class Store:
    """Reads and writes the SLO keys through one redis-py client."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._flush_script = client.register_script(_FLUSH_LUA)
        self._prune_script = client.register_script(_PRUNE_LUA)
        self._tier_args = [str(v) for tier in TIERS for v in (tier.step_s, tier.retention_s)]

    def flush(self, batches: Iterable[tuple[str, str, Mapping[Outcome, int]]], now: float) -> None:
        """Add each (service, env, counts) at time ``now`` and index the pair, all in one pipelined round trip."""
        pipe = self.client.pipeline(transaction=False)
        for service, env, counts in batches:
            keys = [*_keys(service, env), INDEX_KEY]
            args = [
                repr(now),
                str(len(TIERS)),
                *self._tier_args,
                str(len(OUTCOMES)),
                *(o.value for o in OUTCOMES),
                *(str(counts.get(o, 0)) for o in OUTCOMES),
                _member(service, env),
            ]
            self._flush_script(keys=keys, args=args, client=pipe)
        pipe.execute()

    def prune(self, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Drop from the index each pair whose totals expired; returns those dropped. A pair flushed
        meanwhile has its totals again and stays."""
        pairs = list(pairs)
        if not pairs:
            return []
        pipe = self.client.pipeline(transaction=False)
        for service, env in pairs:
            self._prune_script(keys=[totals_key(service, env), INDEX_KEY], args=[_member(service, env)], client=pipe)
        return [pair for pair, removed in zip(pairs, pipe.execute(), strict=True) if removed]

    def forget(self, service: str, env: str) -> bool:
        """Delete a retired service's counts and index entry; False when there was nothing. A process of
        it still running indexes it again at its next flush (a second with outcomes to send, a minute idle)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(*_keys(service, env))
        pipe.srem(INDEX_KEY, _member(service, env))
        deleted, removed = pipe.execute()
        return bool(deleted or removed)

    def services(self) -> list[tuple[str, str]]:
        """Every (service, env) that has flushed, sorted."""
        members = self.client.smembers(INDEX_KEY)
        pairs = []
        for member in members:
            text = member.decode() if isinstance(member, bytes) else member
            service, _, env = text.partition("|")
            pairs.append((service, env))
        return sorted(pairs)

    def read(self, pairs: Sequence[tuple[str, str]], windows: Sequence[int], now: float) -> list[Reading]:
        """Counts per outcome for every window of every (service, env), in one pipelined round trip."""
        names = [o.value for o in OUTCOMES]
        pipe = self.client.pipeline(transaction=False)
        for service, env in pairs:
            pipe.hmget(totals_key(service, env), [*names, "ts"])
            for window in windows:
                key = snap_key(service, env, tier_for(window).step_s)
                pipe.zrangebyscore(key, now - window, "+inf", start=0, num=1)
        replies = pipe.execute()
        readings = []
        step = 1 + len(windows)
        for n, (service, env) in enumerate(pairs):
            chunk = replies[n * step : (n + 1) * step]
            raw_totals = chunk[0]
            totals = tuple(int(v or 0) for v in raw_totals[:-1])
            last_flush = float(raw_totals[-1]) if raw_totals[-1] is not None else None
            per_window: dict[int, dict[Outcome, int]] = {}
            for window, found in zip(windows, chunk[1:], strict=True):
                # No snapshot since now - window means no flush since then: nothing in the window.
                base = _decode(found[0]) if found else totals
                per_window[window] = _increase(totals, base)
            readings.append(Reading(service, env, now, last_flush, per_window))
        return readings

    def history(
        self, service: str, env: str, *, window_s: int, history_s: int, points: int, now: float
    ) -> list[tuple[float, Mapping[Outcome, int]]]:
        """Counts over ``window_s`` ending at ``points`` evenly spaced times over the last ``history_s`` (charts)."""
        tier = tier_for(window_s + history_s)
        snaps = self.client.zrangebyscore(snap_key(service, env, tier.step_s), "-inf", "+inf", withscores=True)
        totals_raw = self.client.hmget(totals_key(service, env), [o.value for o in OUTCOMES])
        totals = tuple(int(v or 0) for v in totals_raw)
        series = [(score, _decode(member)) for member, score in snaps]

        def at(t: float) -> tuple[int, ...]:
            # The totals as of time t: the first snapshot at or after t, else the current totals.
            for score, counts in series:
                if score >= t:
                    return counts
            return totals

        result: list[tuple[float, Mapping[Outcome, int]]] = []
        for k in range(points):
            end = now - history_s + history_s * k / max(points - 1, 1)
            upper, lower = at(end), at(end - window_s)
            result.append((end, _increase(upper, lower)))
        return result

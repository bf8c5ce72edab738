"""Window counts from the totals and the snapshots, read through a stand-in for the Redis client."""

from __future__ import annotations

from typing import Any

from observability.slo import Outcome
from observability.slo.store import OUTCOMES, Store, snap_key, totals_key
from observability.slo.windows import parse_duration, tier_for

NOW = 1_900_000_000.0
HOUR = parse_duration("1h")
FIVE_MINUTES = parse_duration("5m")


class FakeRedis:
    """Answers the reads Store makes (hmget, zrangebyscore) from plain dicts."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, int | float]] = {}
        self.zsets: dict[str, list[tuple[float, str]]] = {}

    def register_script(self, _lua: str) -> Any:
        return None

    def pipeline(self, *, transaction: bool) -> FakePipeline:
        return FakePipeline(self)

    def hmget(self, key: str, names: list[str]) -> list[bytes | None]:
        found = self.hashes.get(key, {})
        return [str(found[n]).encode() if n in found else None for n in names]

    def zrangebyscore(
        self, key: str, low: float | str, high: str, *, start: int = 0, num: int | None = None, withscores: bool = False
    ) -> list[Any]:
        found = [(m.encode(), score) for score, m in sorted(self.zsets.get(key, [])) if score >= float(low)]
        members = [pair if withscores else pair[0] for pair in found]
        return members[start : None if num is None else start + num]


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.replies: list[Any] = []

    def hmget(self, *args: Any) -> None:
        self.replies.append(self.redis.hmget(*args))

    def zrangebyscore(self, *args: Any, **kwargs: Any) -> None:
        self.replies.append(self.redis.zrangebyscore(*args, **kwargs))

    def execute(self) -> list[Any]:
        return self.replies


def snapshot(redis: FakeRedis, window_s: int, at: float, **counts: int) -> None:
    encoded = ",".join(str(counts.get(o.value, 0)) for o in OUTCOMES)
    key = snap_key("pay", "prod", tier_for(window_s).step_s)
    redis.zsets.setdefault(key, []).append((at, f"{int(at)}:{encoded}"))


def read(redis: FakeRedis, *windows: int) -> dict[int, dict[Outcome, int]]:
    (reading,) = Store(redis).read([("pay", "prod")], windows, NOW)
    return {w: {o: n for o, n in counts.items() if n} for w, counts in reading.windows.items()}


def test_a_window_counts_the_totals_minus_its_first_snapshot() -> None:
    redis = FakeRedis()
    snapshot(redis, HOUR, NOW - 3000, ok=72_000, error=600)
    redis.hashes[totals_key("pay", "prod")] = {"ok": 78_000, "error": 900, "ts": NOW}
    assert read(redis, HOUR) == {HOUR: {Outcome.OK: 6000, Outcome.ERROR: 300}}


def test_totals_below_their_snapshot_are_a_reset_and_count_from_zero() -> None:
    # The totals key was lost (eviction, failover) and counted up again; the snapshots were kept.
    redis = FakeRedis()
    snapshot(redis, HOUR, NOW - 3000, ok=72_000, error=600)
    redis.hashes[totals_key("pay", "prod")] = {"ok": 6000, "error": 3000, "ts": NOW}
    assert read(redis, HOUR) == {HOUR: {Outcome.OK: 6000, Outcome.ERROR: 3000}}


def test_a_reset_seen_by_one_window_leaves_a_window_after_it_alone() -> None:
    redis = FakeRedis()
    snapshot(redis, HOUR, NOW - 3000, ok=72_000, error=600)
    snapshot(redis, FIVE_MINUTES, NOW - 290, ok=5000, error=2500)  # after the reset: already small
    redis.hashes[totals_key("pay", "prod")] = {"ok": 6000, "error": 3000, "ts": NOW}
    assert read(redis, HOUR, FIVE_MINUTES) == {
        HOUR: {Outcome.OK: 6000, Outcome.ERROR: 3000},
        FIVE_MINUTES: {Outcome.OK: 1000, Outcome.ERROR: 500},
    }


def test_the_status_pages_history_treats_a_reset_the_same_way() -> None:
    redis = FakeRedis()
    window = parse_duration("10m")
    snapshot(redis, 2 * window, NOW - 500, ok=72_000, error=600)
    redis.hashes[totals_key("pay", "prod")] = {"ok": 6000, "error": 3000, "ts": NOW}
    points = Store(redis).history("pay", "prod", window_s=window, history_s=window, points=2, now=NOW)
    assert points[-1] == (NOW, {**dict.fromkeys(OUTCOMES, 0), Outcome.OK: 6000, Outcome.ERROR: 3000})

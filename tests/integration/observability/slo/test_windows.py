"""Window sums read back from real Redis, with back-dated flushes standing in for hours of traffic."""

from typing import Any

import pytest

from observability.slo import Outcome, Recorder
from observability.slo.store import Store, totals_key
from observability.slo.windows import WINDOWS, parse_duration


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record_at(recorder: Recorder, clock: Clock, at: float, **counts: int) -> None:
    clock.now = at
    for outcome, n in counts.items():
        recorder.record(Outcome(outcome), n)
    assert recorder.flush()


def windows(store: Store, service: str, now: float) -> dict[str, dict[Outcome, int]]:
    (reading,) = store.read([(service, "prod")], WINDOWS, now)
    names = ("5m", "10m", "30m", "1h", "2h", "6h", "1d", "3d", "30d")
    return {name: dict(reading.windows[parse_duration(name)]) for name in names}


def test_each_window_counts_only_what_was_flushed_inside_it(redis_client: Any, store: Store, service: str) -> None:
    now = 1_900_000_000.0
    clock = Clock(now)
    recorder = Recorder(service=service, env="prod", client=redis_client, clock=clock)
    try:
        record_at(recorder, clock, now - 10 * 86400, ok=1000, error=5)  # 10 days ago
        record_at(recorder, clock, now - 2 * 86400, ok=100, error=1)  # 2 days ago
        record_at(recorder, clock, now - 3 * 3600, ok=50)  # 3 hours ago
        record_at(recorder, clock, now - 20 * 60, ok=20, business_failure=2)  # 20 minutes ago
        record_at(recorder, clock, now - 120, ok=7, error=3, retried=4)  # 2 minutes ago
    finally:
        recorder.close()
    got = windows(store, service, now)
    assert got["5m"][Outcome.OK] == 7
    assert got["5m"][Outcome.ERROR] == 3
    assert got["5m"][Outcome.RETRIED] == 4
    assert got["10m"][Outcome.OK] == 7
    assert got["30m"][Outcome.OK] == 27
    assert got["30m"][Outcome.BUSINESS_FAILURE] == 2
    assert got["1h"][Outcome.OK] == 27
    assert got["6h"][Outcome.OK] == 77
    assert got["1d"][Outcome.OK] == 77
    assert got["3d"][Outcome.OK] == 177
    assert got["3d"][Outcome.ERROR] == 4
    assert got["30d"][Outcome.OK] == 1177
    assert got["30d"][Outcome.ERROR] == 9


def test_silence_reads_as_zero_traffic_and_shows_in_freshness(redis_client: Any, store: Store, service: str) -> None:
    now = 1_900_000_000.0
    clock = Clock(now)
    recorder = Recorder(service=service, env="prod", client=redis_client, clock=clock)
    record_at(recorder, clock, now - 2 * 3600, ok=10, error=10)
    recorder.close()
    (reading,) = store.read([(service, "prod")], WINDOWS, now)
    assert sum(reading.windows[parse_duration("1h")].values()) == 0
    assert reading.windows[parse_duration("6h")][Outcome.ERROR] == 10
    assert reading.freshness_s == pytest.approx(7200)


def test_window_edge_is_accurate_to_the_tiers_step(redis_client: Any, store: Store, service: str) -> None:
    now = 1_900_000_000.0
    clock = Clock(now)
    recorder = Recorder(service=service, env="prod", client=redis_client, clock=clock)
    record_at(recorder, clock, now - 330, ok=1)  # just outside 5m (10 s tier)
    record_at(recorder, clock, now - 290, ok=10)  # just inside
    recorder.close()
    got = windows(store, service, now)
    assert got["5m"][Outcome.OK] == 10
    assert got["10m"][Outcome.OK] == 11


def test_lost_totals_count_again_from_zero_like_a_counter_reset(redis_client: Any, store: Store, service: str) -> None:
    now = 1_900_000_000.0
    clock = Clock(now)
    recorder = Recorder(service=service, env="prod", client=redis_client, clock=clock)
    record_at(recorder, clock, now - 2 * 3600, ok=72_000, error=600)
    record_at(recorder, clock, now - 3500, ok=1)  # snapshots the large totals inside the hour
    redis_client.delete(totals_key(service, "prod"))  # evicted, or lost in a failover; snapshots stay
    record_at(recorder, clock, now - 100, ok=6000, error=3000)
    recorder.close()
    got = windows(store, service, now)
    assert (got["1h"][Outcome.OK], got["1h"][Outcome.ERROR]) == (6000, 3000)  # not 0 ok and 2400 errors
    assert (got["5m"][Outcome.OK], got["5m"][Outcome.ERROR]) == (6000, 3000)


def test_counts_from_several_recorders_add_up(redis_client: Any, store: Store, service: str) -> None:
    recorders = [Recorder(service=service, env="prod", client=redis_client) for _ in range(3)]
    for n, recorder in enumerate(recorders):
        recorder.record(Outcome.OK, 100 * (n + 1))
        recorder.record(Outcome.ERROR, n)
    for recorder in recorders:
        recorder.close()
    import time

    (reading,) = store.read([(service, "prod")], WINDOWS, time.time())
    assert reading.windows[parse_duration("5m")][Outcome.OK] == 600
    assert reading.windows[parse_duration("5m")][Outcome.ERROR] == 3
    assert (service, "prod") in store.services()

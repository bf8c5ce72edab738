"""``obskit bench slo``: what recording an outcome costs, and what one scrape of many services costs."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from observability.slo.outcomes import Outcome
from observability.slo.store import INDEX_KEY, Store, snap_key, totals_key
from observability.slo.windows import TIERS


@contextmanager
def _redis(redis_url: str | None) -> Iterator[Any]:
    """The given Redis, else a devstack Redis started for the bench in a temporary directory."""
    import redis

    if redis_url:
        yield redis.Redis.from_url(redis_url)
        return
    from observability.devstack import Devstack

    with tempfile.TemporaryDirectory(prefix="obskit-bench-") as tmp:
        stack = Devstack(Path(tmp))
        try:
            stack.up(["redis"])
            yield redis.Redis.from_url(stack.env(["redis"])["REDIS_URL"])
        finally:
            stack.down()


def _record_cost(client: Any, records: int) -> dict[str, Any]:
    from observability.slo.recorder import Recorder

    flushes = 0
    recorder = Recorder(service="bench-record", env="bench", client=client)
    store = recorder._get_store()
    original = store.flush

    def counting_flush(*args: Any, **kwargs: Any) -> None:
        nonlocal flushes
        flushes += 1
        original(*args, **kwargs)

    store.flush = counting_flush  # type: ignore[method-assign]
    record = recorder.record
    ok, error = Outcome.OK, Outcome.ERROR
    started = time.perf_counter()
    for n in range(records):
        record(error if n % 1000 == 0 else ok)
    elapsed = time.perf_counter() - started
    recorder.close()
    stored = client.hget(totals_key("bench-record", "bench"), "ok")
    return {
        "record: ns per outcome (amortised)": round(elapsed / records * 1e9, 1),
        "record: outcomes": records,
        "record: Redis round trips": flushes,
        "record: round trips per outcome": flushes / records,
        "record: ok count in Redis": int(stored or 0),
    }


def _populate(client: Any, services: int, now: float) -> list[tuple[str, str]]:
    """Fill every tier of every service with a full history of snapshots, as after months of traffic."""
    pairs = [(f"bench-svc-{n:03d}", "prod") for n in range(services)]
    for service, env in pairs:
        pipe = client.pipeline(transaction=False)
        total = 0
        for tier in TIERS:
            steps = tier.retention_s // tier.step_s
            members = {}
            for k in range(steps, 0, -1):
                boundary = int(now // tier.step_s * tier.step_s - k * tier.step_s)
                count = (steps - k) * 100
                members[f"{boundary}:{count},{count // 1000},0,0,0,0"] = boundary
                total = max(total, count)
            pipe.zadd(snap_key(service, env, tier.step_s), members)
        pipe.hset(totals_key(service, env), mapping={"ok": total, "error": total // 1000, "ts": now})
        pipe.sadd(INDEX_KEY, f"{service}|{env}")
        pipe.execute()
    return pairs


def _cleanup(client: Any, pairs: list[tuple[str, str]]) -> None:
    pipe = client.pipeline(transaction=False)
    for service, env in pairs:
        pipe.delete(totals_key(service, env), *(snap_key(service, env, t.step_s) for t in TIERS))
        pipe.srem(INDEX_KEY, f"{service}|{env}")
    pipe.execute()


def _scrape_cost(client: Any, services: int, rounds: int = 5) -> dict[str, Any]:
    from observability.exporter import SLOCollector, SLOSource, render_text
    from observability.slo.spec import Spec

    now = time.time()
    pairs = _populate(client, services, now)
    try:
        source = SLOSource(Store(client), Spec())
        collector = SLOCollector(source)
        timings = []
        size = 0
        for _ in range(rounds):
            started = time.perf_counter()
            size = len(render_text(collector.collect()))
            timings.append(time.perf_counter() - started)
        members = sum(client.zcard(snap_key(pairs[0][0], pairs[0][1], t.step_s)) for t in TIERS)
    finally:
        _cleanup(client, pairs)
    return {
        "scrape: services x windows": f"{services} x {len(source.windows)}",
        "scrape: snapshots per service": members,
        "scrape: ms (median of 5)": round(sorted(timings)[len(timings) // 2] * 1000, 1),
        "scrape: ms (worst of 5)": round(max(timings) * 1000, 1),
        "scrape: /metrics bytes": size,
    }


def run(*, redis_url: str | None, services: int, records: int) -> dict[str, Any]:
    with _redis(redis_url) as client:
        result = _record_cost(client, records)
        result.update(_scrape_cost(client, services))
        client.delete(
            totals_key("bench-record", "bench"), *(snap_key("bench-record", "bench", t.step_s) for t in TIERS)
        )
        client.srem(INDEX_KEY, "bench-record|bench")
    return result

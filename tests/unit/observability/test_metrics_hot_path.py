"""``incrementer`` and ``observer``: the Celery hot path's metric updates export what the public methods do."""

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from observability.metrics import incrementer, observer

BUCKETS = (0.005, 0.01, 0.5, 1.0, 300.0)
# Every bound exactly (``le`` is inclusive), either side of each, the ends, and what a clock can give.
AMOUNTS = [
    *BUCKETS,
    *(math.nextafter(b, 0.0) for b in BUCKETS),
    *(math.nextafter(b, math.inf) for b in BUCKETS),
    0.0,
    -0.0,
    -1.5,
    1e-12,
    0.2,
    299.9,
    3600.0,
    1e300,
    math.inf,
    math.nan,
]


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in registry.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def same(a: dict[Any, float], b: dict[Any, float]) -> bool:
    return a.keys() == b.keys() and all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


def histograms() -> tuple[CollectorRegistry, Any, CollectorRegistry, Any]:
    public, fast = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("h", "h", ["queue"], buckets=BUCKETS, registry=public).labels("q")
    h2 = Histogram("h", "h", ["queue"], buckets=BUCKETS, registry=fast).labels("q")
    return public, h1, fast, h2


@pytest.mark.parametrize("amount", AMOUNTS)
def test_one_observation_lands_where_the_public_method_puts_it(amount: float) -> None:
    public, h1, fast, h2 = histograms()
    h1.observe(amount)
    observer(h2)(amount)
    assert same(samples(fast), samples(public)), amount


def test_many_observations_add_up_the_same() -> None:
    public, h1, fast, h2 = histograms()
    observe = observer(h2)
    for amount in [a for a in AMOUNTS if not math.isnan(a)] * 3:
        h1.observe(amount)
        observe(amount)
    assert same(samples(fast), samples(public))
    assert samples(fast)[("h_count", (("queue", "q"),))] == 3 * (len(AMOUNTS) - 1)


def test_counter_increments_are_the_counters() -> None:
    public, fast = CollectorRegistry(), CollectorRegistry()
    c1 = Counter("c", "c", ["outcome"], registry=public).labels("ok")
    c2 = Counter("c", "c", ["outcome"], registry=fast).labels("ok")
    inc = incrementer(c2)
    for amount in (1, 1, 2.5):
        c1.inc(amount)
        inc(amount)
    assert samples(fast) == samples(public) == {("c_total", (("outcome", "ok"),)): 4.5}


class _Stand:
    """A child from a prometheus_client that keeps its values under other names."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, float]] = []

    def inc(self, amount: float = 1) -> None:
        self.seen.append(("inc", amount))

    def observe(self, amount: float) -> None:
        self.seen.append(("observe", amount))


def test_a_child_without_the_expected_internals_gets_its_public_methods() -> None:
    child = _Stand()
    incrementer(child)(1)
    observer(child)(0.3)
    assert child.seen == [("inc", 1), ("observe", 0.3)]


def test_a_histogram_without_an_infinite_last_bucket_gets_the_public_method() -> None:
    child = _Stand()
    child._upper_bounds = [0.1, 1.0]  # type: ignore[attr-defined]
    child._buckets = [Counter("x", "x", registry=None), Counter("y", "y", registry=None)]  # type: ignore[attr-defined]
    child._sum = Counter("s", "s", registry=None)  # type: ignore[attr-defined]
    observer(child)(5.0)
    assert child.seen == [("observe", 5.0)]


def test_multiprocess_files_hold_the_same_values(tmp_path: Path) -> None:
    """Under PROMETHEUS_MULTIPROC_DIR (prefork) the values are files: what /metrics sums must agree."""
    script = textwrap.dedent(
        f"""
        import json, sys
        from prometheus_client import CollectorRegistry, Counter, Histogram
        from prometheus_client.multiprocess import MultiProcessCollector
        from observability.metrics import incrementer, observer

        amounts = [float(a) for a in sys.argv[1:]]
        h = Histogram("h", "h", ["way"], buckets={BUCKETS!r})
        c = Counter("c", "c", ["way"])
        for a in amounts:
            h.labels("public").observe(a)
            c.labels("public").inc()
        fast_observe, fast_inc = observer(h.labels("fast")), incrementer(c.labels("fast"))
        for a in amounts:
            fast_observe(a)
            fast_inc(1)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        out = {{}}
        for metric in registry.collect():
            for s in metric.samples:
                labels = dict(s.labels)
                way = labels.pop("way")
                out.setdefault(way, {{}})[s.name + repr(sorted(labels.items()))] = s.value
        print(json.dumps(out))
        """
    )
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", script, *(repr(a) for a in AMOUNTS if not math.isnan(a))],
        env=env,
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["fast"] == out["public"]
    assert out["fast"]["h_count[]"] == len(AMOUNTS) - 1
    assert any(path.name.startswith("histogram_") for path in tmp_path.iterdir())

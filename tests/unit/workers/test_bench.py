"""The Celery bench's bookkeeping: round order, per-round ratios, and refusing a round that measured the
wrong instrumentation."""

from __future__ import annotations

import re
from typing import Any

import click
import pytest

from workers import _bench


def round_of(number: int, mode: str, tasks_per_s: float, **sent: int) -> dict[str, Any]:
    return {
        "round": number,
        "mode": mode,
        "tasks_per_s": tasks_per_s,
        "cpu_us_per_task": 1e6 / tasks_per_s,
        "transactions_sent": sent.get("transactions", 0),
        "spans_sent": sent.get("spans", 0),
    }


def test_each_variant_takes_every_position_across_rounds() -> None:
    modes = ["bare", "kit", "sentry", "otel"]
    orders = [_bench._order(modes, n) for n in range(4)]
    assert all(sorted(order) == sorted(modes) for order in orders)
    for mode in modes:
        assert sorted(order.index(mode) for order in orders) == [0, 1, 2, 3]


def test_ratio_is_the_median_of_ratios_to_the_bare_round_of_the_same_round() -> None:
    results = [
        round_of(0, "bare", 1000),
        round_of(0, "otel", 900, spans=10),
        round_of(1, "otel", 400, spans=30),  # a loaded machine slowed both rounds of round 1
        round_of(1, "bare", 500),
        round_of(2, "bare", 1000),
        round_of(2, "otel", 700, spans=20),
    ]
    row = _bench._variant("otel", results)
    assert row["ratio"] == 0.8  # median of 0.9, 0.8, 0.7; the medians of the columns would give 0.7
    assert row["tasks_per_s_best"] == 900
    assert row["tasks_per_s_median"] == 700
    assert (row["traces_sent_per_round"], row["traces_sent_as"]) == (20, "spans")


def test_kit_keys_stay_for_the_readers_of_earlier_reports() -> None:
    results = [round_of(0, "bare", 1000), round_of(0, "kit", 900, transactions=5)]
    summary = _bench._kit_summary(results)
    assert summary["ratio kit/bare (median of pairs)"] == 0.9
    assert summary["kit tasks/s (best)"] == 900


@pytest.mark.parametrize(
    ("mode", "marks"),
    [
        ("bare", ["sdk", "sdk"]),  # a Sentry client in the bare round
        ("otel", ["-", "-"]),  # the instrumentor never ran
        ("otel", ["sdk,otel", "sdk,otel"]),  # Sentry initialised in the OpenTelemetry round
        ("sentry", ["sdk", "sdk,sentry"]),  # a marker ran outside the integration's transaction
        ("kit", ["sdk,otel", "sdk"]),
    ],
)
def test_round_that_ran_other_instrumentation_fails(mode: str, marks: list[str]) -> None:
    with pytest.raises(click.ClickException, match=re.escape(f"would not measure {_bench.MODES[mode]}")):
        _bench._check_tracing(mode, marks)


@pytest.mark.parametrize(
    ("mode", "mark"), [("bare", "-"), ("kit", "sdk"), ("kit", "sdk,sentry"), ("sentry", "sdk,sentry"), ("otel", "otel")]
)
def test_round_with_its_own_instrumentation_passes(mode: str, mark: str) -> None:
    _bench._check_tracing(mode, [mark, mark])


def test_instructions_are_read_from_valgrinds_summary(tmp_path: Any) -> None:
    log = tmp_path / "kit.log"
    log.write_text(
        "==12== Cachegrind, a cache and branch-prediction profiler\n==12== \n==12== I   refs:      3,189,920,517\n"
    )
    assert _bench._instructions_in(log) == 3_189_920_517


def test_a_worker_that_left_no_count_is_an_error_that_shows_its_log(tmp_path: Any) -> None:
    log = tmp_path / "kit.log"
    log.write_text("==12== valgrind: fatal error: cannot execute\n")
    with pytest.raises(click.ClickException, match=r"no instruction count.*cannot execute"):
        _bench._instructions_in(log)


def test_counting_instructions_without_valgrind_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_bench.shutil, "which", lambda name: None)
    with pytest.raises(click.ClickException, match="apt-get install valgrind"):
        _bench.count_instructions(tasks=10, variants=("kit",))

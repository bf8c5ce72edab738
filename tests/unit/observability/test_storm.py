"""Storm control: per fingerprint, the limit per window, then one per window while the storm lasts."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

import observability as obs
from observability import storm
from observability.storm import StormControl, fingerprint
from observability.testing import TEST_DSN, CapturedEvents, capture_transport


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def exception_event(kind: str = "ValueError", line: int = 10, function: str = "charge") -> dict[str, Any]:
    frames = [
        {"module": "app.lib", "function": "call", "lineno": 3, "in_app": False},
        {"module": "app.pay", "function": function, "lineno": line, "in_app": True},
        {"module": "requests", "function": "send", "lineno": 99, "in_app": False},
    ]
    return {"exception": {"values": [{"type": kind, "module": None, "stacktrace": {"frames": frames}}]}}


def run(control: StormControl, event: dict[str, Any], times: int) -> int:
    return sum(control(dict(event), {}) is not None for _ in range(times))


def make(limit: int = 3, window_s: float = 60.0) -> tuple[StormControl, Clock, list[int]]:
    clock, counted = Clock(), []
    control = StormControl(limit=limit, window_s=window_s, count=lambda: counted.append(1), clock=clock)
    return control, clock, counted


def test_after_the_limit_the_rest_of_the_window_is_held_back_and_counted() -> None:
    control, _, counted = make(limit=3)
    assert run(control, exception_event(), 10) == 3
    assert len(counted) == 7


def test_other_fingerprints_have_their_own_limit() -> None:
    control, _, _ = make(limit=3)
    run(control, exception_event(), 10)
    assert run(control, exception_event(kind="KeyError"), 5) == 3
    assert run(control, exception_event(line=11), 5) == 3


def test_while_the_storm_lasts_one_event_per_window_goes_through() -> None:
    control, clock, counted = make(limit=3)
    run(control, exception_event(), 10)
    for _ in range(3):
        clock.now += 60
        assert run(control, exception_event(), 10) == 1
    assert len(counted) == 7 + 3 * 9


def test_a_calm_window_restores_the_full_limit() -> None:
    control, clock, _ = make(limit=3)
    run(control, exception_event(), 10)
    clock.now += 60
    assert run(control, exception_event(), 1) == 1  # storming: one, and nothing more came
    clock.now += 60
    assert run(control, exception_event(), 10) == 3


def test_a_storm_that_stopped_long_ago_is_forgotten() -> None:
    control, clock, _ = make(limit=3)
    run(control, exception_event(), 10)
    clock.now += 600
    assert run(control, exception_event(), 10) == 3


def test_limit_zero_turns_storm_control_off_and_transactions_are_never_held() -> None:
    off, _, _ = make(limit=0)
    assert run(off, exception_event(), 50) == 50
    on, _, _ = make(limit=1)
    assert run(on, {"type": "transaction", "transaction": "task:pay"}, 5) == 5


def test_fingerprint_is_type_and_innermost_in_app_frame_or_the_explicit_one_or_the_template() -> None:
    assert fingerprint(exception_event()) == ("exception", "None", "ValueError", "app.pay", "charge", "10")
    business = {"fingerprint": ["business-rule", "daily_limit"], "message": "over the limit 42"}
    assert fingerprint(business) == ("fingerprint", "business-rule", "daily_limit")
    first = {"logger": "app", "logentry": {"message": "charge %s failed", "formatted": "charge 1 failed"}}
    second = {"logger": "app", "logentry": {"message": "charge %s failed", "formatted": "charge 2 failed"}}
    assert fingerprint(first) == fingerprint(second)
    assert fingerprint({"message": "a"}) != fingerprint({"message": "b"})


def test_remembered_fingerprints_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storm, "_MAX_FINGERPRINTS", 10)
    control, clock, _ = make(limit=1)
    for line in range(25):
        run(control, exception_event(line=line), 1)
    assert len(control._windows) <= 10
    clock.now += 200
    run(control, exception_event(line=99), 1)
    assert len(control._windows) == 1  # ended windows go first


def test_the_limit_holds_across_threads() -> None:
    control, _, counted = make(limit=50)
    passed: list[int] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        passed.append(run(control, exception_event(), 500))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(passed) == 50
    assert len(counted) == 8 * 500 - 50


def test_a_storm_of_identical_failures_sends_the_limit_and_counts_the_rest() -> None:
    sink = CapturedEvents()
    rule = f"limit_{uuid.uuid4().hex[:8]}"  # the per-rule limiter is the process's: a rule of its own
    try:
        obs.init("svc", environ={"OBSKIT_STORM_LIMIT": "5"}, dsn=TEST_DSN, transport=capture_transport(sink),
                 registry=sink.registry)  # fmt: skip
        for n in range(50):
            try:
                raise ConnectionError(f"broker down, attempt {n}")
            except ConnectionError as exc:
                obs.capture_exception(exc)
            obs.report_business_failure(rule, "over the limit")
    finally:
        obs.shutdown()
    assert len(sink.errors) == 5
    held = sink.metric("obskit_sentry_events_held_back_total", {"service": "svc", "reason": "storm"})
    # 45 failures; the business messages stop at their own per-rule limit (10) before storm control.
    assert held == 45 + (10 - 5)
    assert len(sink.messages) == 5

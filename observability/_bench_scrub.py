"""``obskit bench scrub``: what scrubbing costs per event, next to what the SDK itself spends on one.

The events are real: captured through the kit (in memory, nothing leaves the process) just before
the scrubber, from a typical failure (a dozen frames, a few locals, breadcrumbs, tags, extra) and a
large one (50 frames, 200 local variables).
"""

from __future__ import annotations

import functools
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

__all__ = ["run"]

Event = dict[str, Any]


def _typical_failure(depth: int = 10) -> None:
    order = {"id": 1042, "amount": "99.90", "currency": "EUR", "card_number": "4111 1111 1111 1111"}
    headers = {"authorization": "Bearer abc.def", "content-type": "application/json"}
    if depth:
        _typical_failure(depth - 1)
        return
    message = f"payment declined for order {order['id']} ({headers['content-type']})"
    raise ValueError(message)


def _large_failure(depth: int = 50) -> None:
    customer = {"id": depth, "email": f"user{depth}@example.com", "tier": "gold", "tags": ["a", "b", "c"]}
    note = f"step {depth}: charge via https://api.example.com/v1/charges?idempotency={depth:08d}"
    payload = '{"amount": 1200, "password": "hunter2", "items": [1, 2, 3]}'
    attempt = depth % 3
    if depth:
        _large_failure(depth - 1)
        return
    message = f"{note} {customer['id']} {payload[:5]} {attempt}"
    raise RuntimeError(message)


def _capture(fail: Callable[[], None], breadcrumbs: int) -> tuple[Event, float]:
    """One real event as the scrubber receives it, and what capture_exception took end to end (µs)."""
    import observability as obs
    from observability.testing import TEST_DSN, CapturedEvents, capture_transport

    grabbed: list[Event] = []

    def grab(event: Event, hint: dict[str, Any]) -> Event:
        grabbed.append(event)
        return event

    sink = CapturedEvents()
    obs.init(
        "bench-scrub",
        environ={},
        dsn=TEST_DSN,
        transport=capture_transport(sink),
        registry=sink.registry,
        processors=[grab],
        storm_limit=0,
    )
    log = logging.getLogger("bench.scrub")
    log.setLevel(logging.INFO)
    log.propagate = False  # breadcrumbs for the event, nothing on the terminal
    try:
        timings = []
        for _ in range(20):
            with obs.bind(user_id=42, component="billing"):
                for n in range(breadcrumbs):
                    log.info("step %d of the charge for order %s", n, 1042)
                timings.append(_fail_and_capture(fail))
    finally:
        obs.shutdown(timeout_s=1.0)
    return grabbed[-1], statistics.median(timings)


def _fail_and_capture(fail: Callable[[], None]) -> float:
    """Its own frame, so the event's frames hold the failure's locals, not the benchmark's."""
    import observability as obs

    try:
        fail()
    except Exception as exc:
        started = time.perf_counter()
        obs.capture_exception(exc, order_id=1042, attempt=2)
        return (time.perf_counter() - started) * 1e6
    return 0.0


def _per_call_us(function: Callable[[], Any], seconds: float = 0.5) -> float:
    """Median µs per call over batches run for about ``seconds``."""
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < 5:
        started = time.perf_counter()
        for _ in range(10):
            function()
        samples.append((time.perf_counter() - started) / 10 * 1e6)
    return statistics.median(samples)


def _shape(event: Event) -> str:
    values = event["exception"]["values"]
    frames = sum(len(v.get("stacktrace", {}).get("frames", [])) for v in values)
    variables = sum(len(f.get("vars") or {}) for v in values for f in v.get("stacktrace", {}).get("frames", []))
    crumbs = len(event.get("breadcrumbs", {}).get("values", []))
    return f"{frames} frames, {variables} variables, {crumbs} breadcrumbs"


def _new_strings_us(event: Event, seconds: float) -> float:
    """µs to scrub an event none of whose strings was seen before, by a scrubber that has seen other
    events (its key names are known, as in a process that has been running a while)."""
    from observability.scrub import Scrubber

    scrubber = Scrubber()
    scrubber(event, {})

    def once() -> None:
        scrubber._texts.clear()
        scrubber._lines.clear()
        scrubber(event, {})

    return _per_call_us(once, seconds)


def run(seconds: float = 0.5) -> dict[str, dict[str, Any]]:
    """Scrubbing µs per event for the typical and the large event, with the SDK's own capture cost.

    "new strings" is an event none of whose strings the scrubber has seen; "repeated" one like those
    before it (the same failure again, a storm), whose short strings are remembered scrubbed.
    """
    from observability.scrub import Scrubber

    results: dict[str, dict[str, Any]] = {}
    for name, fail, crumbs in (("typical", _typical_failure, 20), ("large", _large_failure, 100)):
        event, capture_us = _capture(fail, crumbs)
        warm = functools.partial(Scrubber(), event, {})
        results[name] = {
            "event": _shape(event),
            "scrub µs, new strings": round(_new_strings_us(event, seconds), 1),
            "scrub µs, repeated": round(_per_call_us(warm, seconds), 1),
            "capture_exception µs (SDK and kit, scrub included)": round(capture_us, 1),
        }
    return results

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import observability as obs
from observability import slo
from observability.metrics import Metrics
from observability.slo import Outcome, Recorder
from observability.slo.store import OUTCOMES


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


class FakeRedis:
    """Takes the store's pipelined flushes and keeps (time, counts per outcome) for each one executed."""

    def __init__(self) -> None:
        self.flushes: list[tuple[float, dict[str, int]]] = []
        self.down = False

    def register_script(self, _lua: str) -> Any:
        def run(*, keys: list[str], args: list[str], client: FakePipeline) -> None:
            # ... the counts, then the index member ("service|env").
            counts = zip(OUTCOMES, (int(a) for a in args[-len(OUTCOMES) - 1 : -1]), strict=True)
            client.queued.append((float(args[0]), {k.value: v for k, v in counts if v}))

        return run

    def pipeline(self, *, transaction: bool) -> FakePipeline:
        return FakePipeline(self)


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.queued: list[tuple[float, dict[str, int]]] = []

    def execute(self) -> None:
        if self.redis.down:
            raise ConnectionError("Redis is down")
        self.redis.flushes.extend(self.queued)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_an_idle_recorder_stamps_its_flush_time_once_a_minute() -> None:
    clock = Clock(1000.0)
    client = FakeRedis()
    recorder = Recorder(service="svc", env="prod", client=client, clock=clock)
    recorder._thread = object()  # type: ignore[assignment]  # no background thread: tick by hand
    recorder.record(Outcome.OK, 2)
    recorder._tick()
    assert client.flushes == [(1000.0, {"ok": 2})]
    for clock.now in (1001.0, 1030.0, 1059.5):
        recorder._tick()
    assert len(client.flushes) == 1  # idle for less than a minute: nothing sent
    clock.now = 1060.0
    recorder._tick()
    assert client.flushes[-1] == (1060.0, {})  # no counts, but the flush time moves on
    clock.now = 1061.0
    recorder._tick()
    assert len(client.flushes) == 2


def test_an_idle_heartbeat_with_redis_down_is_counted_and_tried_again_a_minute_later() -> None:
    registry = CollectorRegistry()
    clock = Clock(1000.0)
    client = FakeRedis()
    recorder = Recorder(service="svc", env="prod", client=client, clock=clock, metrics=Metrics.for_registry(registry))
    recorder._thread = object()  # type: ignore[assignment]
    recorder.record(Outcome.OK)
    recorder._tick()
    client.down = True
    for clock.now in (1060.0, 1061.0, 1119.0):
        recorder._tick()
    assert registry.get_sample_value("obskit_slo_flush_errors_total", {"service": "svc"}) == 1
    client.down = False
    clock.now = 1120.0
    recorder._tick()
    assert client.flushes[-1] == (1120.0, {})


def test_the_flush_thread_sends_heartbeats_while_idle() -> None:
    client = FakeRedis()
    recorder = Recorder(service="svc", env="prod", client=client, flush_interval_s=0.01, heartbeat_s=0.02)
    try:
        recorder.record(Outcome.OK)
        deadline = time.monotonic() + 10
        while len(client.flushes) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        recorder.close()
    assert client.flushes[0][1] == {"ok": 1}
    assert [counts for _, counts in client.flushes[1:3]] == [{}, {}]


def test_redis_down_keeps_counts_then_drops_and_counts_them() -> None:
    registry = CollectorRegistry()
    metrics = Metrics.for_registry(registry)
    recorder = Recorder(service="svc", env="prod", redis_url=closed_port_url(), metrics=metrics, max_pending_s=0.2)
    recorder._thread = object()  # type: ignore[assignment]  # no background thread: flush by hand
    recorder.record(Outcome.OK, 5)
    recorder.record(Outcome.ERROR)
    assert not recorder.flush()
    assert recorder.pending() == {"ok": 5, "error": 1}
    assert registry.get_sample_value("obskit_slo_flush_errors_total", {"service": "svc"}) == 1
    time.sleep(0.3)
    recorder.record(Outcome.OK)
    assert not recorder.flush()
    assert recorder.pending() == {}
    assert registry.get_sample_value("obskit_slo_records_dropped_total", {"service": "svc"}) == 7


def test_counts_redis_cannot_take_at_shutdown_are_counted_and_logged_as_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    client = FakeRedis()
    client.down = True
    recorder = Recorder(
        service="svc", env="prod", client=client, metrics=Metrics.for_registry(registry), flush_interval_s=60
    )
    recorder.record(Outcome.ERROR, 500)
    recorder.record(Outcome.OK, 2)
    with caplog.at_level(logging.WARNING, logger="observability.slo.recorder"):
        recorder.close(timeout_s=5)
    assert registry.get_sample_value("obskit_slo_records_dropped_total", {"service": "svc"}) == 502
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING][-1] == (
        "dropping 502 SLO counts at shutdown: Redis did not take the last flush"
    )
    assert recorder.pending() == {}


def test_a_clean_shutdown_sends_the_rest_and_drops_nothing() -> None:
    registry = CollectorRegistry()
    client = FakeRedis()
    recorder = Recorder(
        service="svc", env="prod", client=client, metrics=Metrics.for_registry(registry), flush_interval_s=60
    )
    recorder.record(Outcome.OK, 3)
    recorder.close(timeout_s=5)
    assert sum(counts.get("ok", 0) for _, counts in client.flushes) == 3
    assert not registry.get_sample_value("obskit_slo_records_dropped_total", {"service": "svc"})


def test_unknown_outcome_is_a_clear_error() -> None:
    recorder = Recorder(service="svc", env="prod", redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(ValueError, match="unknown outcome 'success': expected one of ok, error"):
        recorder.record("success")


def test_a_forked_child_starts_from_zero() -> None:
    recorder = Recorder(service="svc", env="prod", redis_url="redis://127.0.0.1:1/0")
    recorder._thread = object()  # type: ignore[assignment]
    recorder.record(Outcome.OK, 3)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports what it would flush, then leaves without running atexit hooks
        os.close(read)
        os.write(write, repr((recorder.pending(), recorder._thread is None)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        reported = pipe.read()
    os.waitpid(pid, 0)
    assert reported == "({}, True)"
    assert recorder.pending() == {"ok": 3}


def test_init_sets_the_recorder_up_from_redis_url_and_shutdown_removes_it() -> None:
    try:
        obs.init("svc", environ={"REDIS_URL": "redis://127.0.0.1:1/0"}, registry=CollectorRegistry())
        current = slo.recorder()
        assert current is not None
        assert (current.service, current.env) == ("svc", "development")
    finally:
        obs.shutdown(timeout_s=0.1)
    assert slo.recorder() is None
    slo.record(Outcome.OK)  # a no-op without a recorder


def test_bad_slo_redis_url_names_the_variable() -> None:
    with pytest.raises(obs.ConfigError, match="OBSKIT_SLO_REDIS_URL='http://x' is invalid"):
        obs.Settings.from_env({"SERVICE_NAME": "s", "OBSKIT_SLO_REDIS_URL": "http://x"})

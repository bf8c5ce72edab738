import os
import socket
import time

import pytest
from prometheus_client import CollectorRegistry

import observability as obs
from observability import slo
from observability.metrics import Metrics
from observability.slo import Outcome, Recorder


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


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

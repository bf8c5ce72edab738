"""Beat with Sentry Crons: each scheduled run checks in (in progress, then ok) and is a trace of its own.

The devstack's Sentry-compatible server stores no check-ins or transactions, so the worker's DSN points
at a recorder on 127.0.0.1 that keeps every envelope it receives.
"""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sentry_sdk.envelope import Envelope

from observability._http import Server, respond
from tests.helpers import wait_for
from tests.integration.workers.conftest import ROOT, Workers, worker_env

SLUG = "probe-every-second"


class Recorder:
    """Sentry's ingest endpoint, reduced to keeping what arrives."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._server = Server(self._app, host="127.0.0.1", port=0, name="test-envelope-recorder")
        self.dsn = f"http://public@127.0.0.1:{self._server.port}/1"

    def _app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        if environ.get("HTTP_CONTENT_ENCODING") == "gzip":
            raw = gzip.decompress(raw)
        with self._lock:
            for item in Envelope.deserialize(raw).items:
                # The SDK parses events and transactions itself; other items (check-ins) stay bytes.
                payload = item.payload.json if item.payload.json is not None else json.loads(item.payload.get_bytes())
                self.items.append((item.type or "", payload))
        return respond(start_response, "200 OK", "application/json", b"{}")

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [payload for item_type, payload in self.items if item_type == kind]

    def close(self) -> None:
        self._server.stop()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.close()


def test_each_beat_run_checks_in_and_is_a_trace_of_its_own(
    workers: Workers, recorder: Recorder, redis_url: str, tmp_path: Path
) -> None:
    worker = workers.start(SENTRY_DSN=recorder.dsn, SENTRY_TRACES_SAMPLE_RATE="1.0")
    env = worker_env(
        redis_url,
        SERVICE_NAME=f"itest-beat-{uuid.uuid4().hex[:8]}",
        OBSKIT_CELERY_QUEUE=worker.queue,
        OBSKIT_CELERY_CRONS="1",
        SENTRY_DSN=recorder.dsn,
    )
    log = tmp_path / "beat.log"
    command = [
        sys.executable, "-m", "celery", "-A", "tests.integration.workers.beat_app", "beat",
        "--schedule", str(tmp_path / "schedule"), "--loglevel", "INFO",
    ]  # fmt: skip
    with log.open("wb") as out:
        beat = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:

        def finished_runs() -> list[dict[str, Any]]:
            return [c for c in recorder.of_type("check_in") if c["monitor_slug"] == SLUG and c["status"] == "ok"]

        done = wait_for(lambda: len(finished_runs()) >= 3 and finished_runs(), 60, "three runs checked in")
    finally:
        beat.send_signal(signal.SIGTERM)
        beat.wait(30)
    assert beat.returncode == 0, log.read_text()
    started = {c["check_in_id"] for c in recorder.of_type("check_in") if c["status"] == "in_progress"}
    for check_in in done:
        assert check_in["check_in_id"] in started
        assert check_in["duration"] >= 0
        assert check_in["environment"] == "itest"
        assert "monitor_config" not in check_in  # Sentry Crons has no one-second interval
    traces = {
        t["contexts"]["trace"]["trace_id"] for t in recorder.of_type("transaction") if t["transaction"] == "probe.noop"
    }
    assert len(traces) >= 3
    assert worker.sample("obskit_celery_tasks_total", task="probe.noop", outcome="ok") >= 3

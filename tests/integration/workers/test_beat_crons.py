"""Beat with Sentry Crons: each scheduled run checks in (in progress, then ok) and is a trace of its own.

The devstack's Sentry-compatible server stores no check-ins or transactions, so the worker's DSN points
at the kit's envelope recorder on 127.0.0.1, which keeps every envelope it receives.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from observability.testing import EnvelopeRecorder
from tests.helpers import wait_for
from tests.integration.workers.conftest import ROOT, Workers, worker_env

SLUG = "probe-every-second"


def test_each_beat_run_checks_in_and_is_a_trace_of_its_own(
    workers: Workers, envelope_recorder: EnvelopeRecorder, redis_url: str, tmp_path: Path
) -> None:
    worker = workers.start(SENTRY_DSN=envelope_recorder.dsn, SENTRY_TRACES_SAMPLE_RATE="1.0")
    env = worker_env(
        redis_url,
        SERVICE_NAME=f"itest-beat-{uuid.uuid4().hex[:8]}",
        OBSKIT_CELERY_QUEUE=worker.queue,
        OBSKIT_CELERY_CRONS="1",
        SENTRY_DSN=envelope_recorder.dsn,
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
            check_ins = envelope_recorder.of_type("check_in")
            return [c for c in check_ins if c["monitor_slug"] == SLUG and c["status"] == "ok"]

        done = wait_for(lambda: len(finished_runs()) >= 3 and finished_runs(), 60, "three runs checked in")
    finally:
        beat.send_signal(signal.SIGTERM)
        beat.wait(30)
    assert beat.returncode == 0, log.read_text()
    started = {c["check_in_id"] for c in envelope_recorder.of_type("check_in") if c["status"] == "in_progress"}
    for check_in in done:
        assert check_in["check_in_id"] in started
        assert check_in["duration"] >= 0
        assert check_in["environment"] == "itest"
        assert "monitor_config" not in check_in  # Sentry Crons has no one-second interval
    transactions = envelope_recorder.of_type("transaction")
    traces = {t["contexts"]["trace"]["trace_id"] for t in transactions if t["transaction"] == "probe.noop"}
    assert len(traces) >= 3
    assert worker.sample("obskit_celery_tasks_total", task="probe.noop", outcome="ok") >= 3

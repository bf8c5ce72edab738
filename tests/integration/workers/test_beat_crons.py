"""Beat with Sentry Crons: each scheduled run checks in (in progress, then ok) and is a trace of its own.

The devstack's Sentry-compatible server stores no check-ins or transactions, so the worker's DSN points
at the kit's envelope recorder on 127.0.0.1, which keeps every envelope it receives.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from observability.testing import EnvelopeRecorder
from tests.helpers import wait_for
from tests.integration.workers.conftest import ROOT, Workers, worker_env
from workers import WorkerApp
from workers._crons import MONITOR_HEADER

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


def test_a_scheduled_run_stopped_at_its_hard_time_limit_checks_in_an_error(
    workers: Workers, envelope_recorder: EnvelopeRecorder, producer_app: Callable[[str], WorkerApp]
) -> None:
    # The monitor header beat's publish hook puts on a scheduled task, sent here directly. The child
    # checks the run in as in progress and never finishes it: the main process, which stops it at the
    # hard time limit, checks it in as an error (else Sentry would only see it time out, much later).
    worker = workers.start(SENTRY_DSN=envelope_recorder.dsn)
    check_in_id = uuid.uuid4().hex
    monitor = {"slug": "probe-hang", "check_in_id": check_in_id, "started": time.time()}
    result = producer_app(worker.queue).send_task("probe.hang", headers={MONITOR_HEADER: monitor})
    assert type(result.get(timeout=60, propagate=False)).__name__ == "TimeLimitExceeded"

    def check_ins() -> list[dict[str, Any]]:
        return [c for c in envelope_recorder.of_type("check_in") if c["check_in_id"] == check_in_id]

    wait_for(lambda: any(c["status"] == "error" for c in check_ins()), 30, "the error check-in")
    time.sleep(1)  # a second error check-in (Celery reports a hard time limit twice) would be here by now
    assert [c["status"] for c in check_ins()] == ["in_progress", "error"]
    error = check_ins()[1]
    assert (error["monitor_slug"], error["environment"]) == ("probe-hang", "itest")
    assert error["duration"] >= 1.0  # the time limit is one second

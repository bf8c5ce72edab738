"""Tasks the integration tests run in a real worker (``-I tests.integration.workers.probe_tasks``)."""

from __future__ import annotations

import os
import time

import redis

import observability as obs
from workers import app


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"])


@app.task(name="probe.report")
def report(label: str) -> str | None:
    """Send a message event from inside the task (its tags show the task's trace and user); returns its id."""
    return obs.capture_message(f"probe {label}", "info")


@app.task(name="probe.noop")
def noop(n: int) -> int:
    return n


@app.task(name="probe.block")
def block(key: str) -> int:
    """Note the attempt and this process's pid, then wait until the test sets ``<key>:release``."""
    client = _redis()
    attempt = int(client.incr(f"{key}:attempts"))
    client.rpush(f"{key}:pids", os.getpid())
    deadline = time.monotonic() + 120
    while not client.exists(f"{key}:release") and time.monotonic() < deadline:
        time.sleep(0.05)
    client.rpush(f"{key}:done", attempt)
    return attempt


@app.task(name="probe.hang", time_limit=1)
def hang() -> None:
    """Outlive the hard time limit: the main process kills the child and fails the task."""
    time.sleep(30)


@app.task(name="probe.exit_once")
def exit_once(key: str) -> int:
    """Call sys.exit on the first attempt (the child goes, Celery requeues the task); return the attempt."""
    attempt = int(_redis().incr(f"{key}:attempts"))
    if attempt == 1:
        raise SystemExit(3)
    return attempt

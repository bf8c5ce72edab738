"""Real Celery workers (``celery -A workers worker``, prefork) against the devstack's Redis and Sentry server."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib

from observability.config import Settings
from observability.sentry_api import ServerAPI, StoredEvent, client
from workers import WorkerApp, WorkerSettings, make_app

ROOT = Path(__file__).resolve().parents[3]
PROBES = "tests.integration.workers.probe_tasks"
ENV = "itest"

# Variables of the developer's own environment that must not reach a test worker.
_APP_VARIABLES = ("SENTRY_", "OBSKIT_", "REDIS_URL", "KAFKA_", "PROMETHEUS_MULTIPROC_DIR", "SERVICE_NAME", "CELERY_")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Worker:
    """A ``celery -A workers worker`` process (its own session: its children are its process group)."""

    proc: subprocess.Popen[bytes]
    queue: str
    service: str
    port: int
    log: Path
    env: dict[str, str] = field(repr=False)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            text = response.read().decode()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def sample(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted({"service": self.service, **labels}.items())))
        return self.metrics().get(key, 0.0)

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False)
        return [int(pid) for pid in out.stdout.split()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def worker_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_APP_VARIABLES)}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        REDIS_URL=redis_url,
        SENTRY_ENVIRONMENT=ENV,
        SENTRY_RELEASE="itest@1.0.0",
        OBSKIT_SLO_FLUSH_INTERVAL_S="0.2",
    )
    env.update(extra)
    return env


class Workers:
    """Starts workers on fresh queues and stops each (its whole process group) at the end."""

    def __init__(self, directory: Path, redis_url: str) -> None:
        self.directory = directory
        self.redis_url = redis_url
        self.started: list[Worker] = []

    def start(
        self, *args: str, queue: str | None = None, service: str | None = None, app: str = "workers", **env: str
    ) -> Worker:
        """A worker of ``app`` (the kit's, with the probe tasks, unless told) on a fresh queue."""
        queue = queue or f"q-{uuid.uuid4().hex[:10]}"
        service = service or f"itest-worker-{uuid.uuid4().hex[:8]}"
        port = free_port()
        directory = self.directory / f"worker-{len(self.started)}"
        directory.mkdir(parents=True)
        log = directory / "worker.log"
        full_env = worker_env(
            self.redis_url,
            SERVICE_NAME=service,
            OBSKIT_CELERY_QUEUE=queue,
            OBSKIT_WORKER_METRICS_PORT=str(port),
            PROMETHEUS_MULTIPROC_DIR=str(directory / "prometheus"),
            **env,
        )
        command = [
            sys.executable, "-m", "celery", "-A", app, "worker",
            "--pool", "prefork", "--concurrency", "2", *(["-I", PROBES] if app == "workers" else []),
            "--hostname", f"{service}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO",
            *args,
        ]  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        worker = Worker(proc, queue, service, port, log, full_env)
        self.started.append(worker)
        deadline = time.monotonic() + 60
        while not worker.healthy():
            if proc.poll() is not None or time.monotonic() > deadline:
                worker.stop()
                raise AssertionError(f"worker did not become ready (exit {proc.poll()}):\n{worker.tail()}")
            time.sleep(0.1)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


@pytest.fixture
def workers(tmp_path: Path, redis_url: str) -> Iterator[Workers]:
    """Workers for one test."""
    started = Workers(tmp_path, redis_url)
    yield started
    started.stop_all()


@pytest.fixture(scope="module")
def module_workers(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Workers]:
    """Workers shared by a module's tests."""
    started = Workers(tmp_path_factory.mktemp("workers"), redis_url)
    yield started
    started.stop_all()


@pytest.fixture(scope="module")
def producer_app(redis_url: str) -> Callable[[str], WorkerApp]:
    """The kit's Celery app as a producer (the test process) publishing onto a given queue."""

    def make(queue: str) -> WorkerApp:
        return make_app(WorkerSettings(redis_url=redis_url, queue=queue), set_as_current=False)

    return make


@pytest.fixture(scope="module")
def redis_client(redis_url: str) -> Iterator[Any]:
    client_ = redis_lib.Redis.from_url(redis_url)
    yield client_
    client_.close()


@pytest.fixture(scope="module")
def api(sentry_server: Any) -> Iterator[ServerAPI]:
    server = client(
        Settings.from_env(
            {
                "SENTRY_URL": sentry_server.url,
                "SENTRY_AUTH_TOKEN": sentry_server.token,
                "SENTRY_PROJECT": sentry_server.project,
                "OBSKIT_SENTRY_API": sentry_server.api,
            },
            service="itest",
        )
    )
    yield server
    server.close()


def new_user() -> str:
    """A user id no other test uses: the server is searched by it."""
    return f"u-{uuid.uuid4().hex[:10]}"


def events_of_user(api: ServerAPI, user_id: str) -> list[StoredEvent]:
    """Every stored event tagged with this user, across the issues they fall in."""
    from observability.sentry_api import search_query

    found = []
    for issue in api.issues(search_query({"user_id": user_id})):
        found.extend(api.events(issue.id, search_query({"user_id": user_id})))
    return found

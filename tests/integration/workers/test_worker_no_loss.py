"""Tasks ack late and survive a dying worker: a killed child's task runs again at once, a killed parent's
after the visibility timeout; /metrics stays right when children come and go."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import observability as obs
from observability.sentry_api import ServerAPI
from tests.helpers import wait_for
from tests.integration.workers.conftest import Workers, events_of_user, new_user
from workers import WorkerApp


def attempts(redis_client: Any, key: str) -> int:
    return int(redis_client.get(f"{key}:attempts") or 0)


@pytest.mark.parametrize(
    ("app_name", "task"),
    [
        ("workers", "probe.block"),
        # An app of one's own that only called setup(): the worker gives its tasks the kit's request.
        ("tests.integration.workers.plain_app", "plain.block"),
    ],
    ids=["kit-app", "own-app"],
)
def test_a_task_whose_child_is_killed_runs_again_at_once_completes_and_the_loss_is_one_tagged_event(
    workers: Workers,
    redis_client: Any,
    producer_app: Callable[[str], WorkerApp],
    sentry_server: Any,
    api: ServerAPI,
    app_name: str,
    task: str,
) -> None:
    # The visibility timeout is an hour: only an immediate requeue can finish the task within the wait.
    worker = workers.start(SENTRY_DSN=sentry_server.dsn, app=app_name)
    app = producer_app(worker.queue)
    key = f"block-{uuid.uuid4().hex[:8]}"
    user = new_user()
    with obs.bind(user_id=user) as unit:
        result = app.send_task(task, args=[key])
    wait_for(lambda: attempts(redis_client, key) == 1, 30, "the first attempt started")
    child = int(redis_client.lindex(f"{key}:pids", 0))
    assert child in worker.children()
    os.kill(child, signal.SIGKILL)
    wait_for(lambda: attempts(redis_client, key) == 2, 30, "the task redelivered after its child died")
    redis_client.set(f"{key}:release", 1)
    assert result.get(timeout=30) == 2
    assert worker.proc.poll() is None
    assert worker.healthy()
    wait_for(
        lambda: worker.sample("obskit_celery_tasks_total", task=task, outcome="ok") == 1,
        30,
        "the completed attempt counted",
    )
    # Celery logs the lost child in the main process (no task_failure: the task was requeued); the
    # event carries the task's tags, user and trace like the task's own would.
    (lost,) = wait_for(lambda: events_of_user(api, user), 30, "the lost child's event")
    assert lost.data["exception"]["values"][-1]["type"] == "WorkerLostError"
    tags = lost.tags
    assert (tags["task"], tags["task_id"], tags["queue"], tags["user_id"]) == (task, result.id, worker.queue, user)
    assert tags["trace_id"] == unit.trace_id
    assert tags["service"] == worker.service


def test_a_task_that_calls_sys_exit_runs_again_and_the_exit_is_one_tagged_event(
    workers: Workers,
    redis_client: Any,
    producer_app: Callable[[str], WorkerApp],
    sentry_server: Any,
    api: ServerAPI,
) -> None:
    worker = workers.start(SENTRY_DSN=sentry_server.dsn)
    app = producer_app(worker.queue)
    key = f"exit-{uuid.uuid4().hex[:8]}"
    user = new_user()
    with obs.bind(user_id=user):
        result = app.send_task("probe.exit_once", args=[key])
    assert result.get(timeout=60) == 2
    (event,) = wait_for(lambda: events_of_user(api, user), 30, "the exit's event")
    assert event.data["exception"]["values"][-1]["type"] in ("SystemExit", "WorkerLostError")
    assert (event.tags["task"], event.tags["task_id"]) == ("probe.exit_once", result.id)
    wait_for(
        lambda: worker.sample("obskit_celery_tasks_total", task="probe.exit_once", outcome="ok") == 1,
        30,
        "the second attempt counted",
    )
    assert worker.sample("obskit_celery_tasks_total", task="probe.exit_once", outcome="retried") == 1
    assert worker.sample("obskit_celery_tasks_total", task="probe.exit_once", outcome="error") == 0


def test_tasks_of_a_killed_parent_run_after_the_visibility_timeout_and_none_is_lost(
    workers: Workers, redis_client: Any, producer_app: Callable[[str], WorkerApp]
) -> None:
    timeout = {"OBSKIT_CELERY_VISIBILITY_TIMEOUT_S": "8"}
    first = workers.start(**timeout)
    app = producer_app(first.queue)
    keys = [f"block-{uuid.uuid4().hex[:8]}" for _ in range(4)]
    results = [app.send_task("probe.block", args=[key]) for key in keys]
    # Two children, one task reserved each: two tasks run, two wait in the queue.
    wait_for(lambda: sum(attempts(redis_client, k) for k in keys) == 2, 30, "two tasks running")
    running = [k for k in keys if attempts(redis_client, k) == 1]
    children = first.children()
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    # The children die with their parent (Celery sets their parent-death signal to SIGKILL).
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in children), 30, "the children gone")
    for key in keys:
        redis_client.set(f"{key}:release", 1)

    workers.start(queue=first.queue, **timeout)
    assert sorted(r.get(timeout=90) for r in results) == [1, 1, 2, 2]
    assert sorted(attempts(redis_client, k) for k in running) == [2, 2]
    for key in keys:
        assert redis_client.llen(f"{key}:done") == 1, key


def test_with_one_task_per_child_metrics_count_exactly_the_tasks_that_ran(
    workers: Workers, producer_app: Callable[[str], WorkerApp]
) -> None:
    worker = workers.start("--max-tasks-per-child", "1")
    app = producer_app(worker.queue)
    n = 8
    results = [app.send_task("probe.noop", args=[k]) for k in range(n)]
    assert sorted(r.get(timeout=60) for r in results) == list(range(n))

    def counted() -> float:
        return worker.sample("obskit_celery_tasks_total", task="probe.noop", outcome="ok")

    # Every child exited after its one task; its counts must stay in the sum.
    wait_for(lambda: counted() >= n, 30, f"{n} tasks counted")
    assert counted() == n
    assert worker.sample("obskit_celery_task_runtime_seconds_count", task="probe.noop") == n
    assert worker.sample("obskit_celery_queue_wait_seconds_count", queue=worker.queue) == n
    assert worker.sample("obskit_celery_worker_up") == 1
    # The exited children's files were folded into the archive at the scrapes: what remains is the
    # archive and the files of processes still running (the main process and its two children).
    directory = Path(worker.env["PROMETHEUS_MULTIPROC_DIR"])

    def files_of_exited_processes() -> list[str]:
        worker.metrics()  # a scrape folds what exited before it
        running = {str(worker.proc.pid), *map(str, worker.children())}
        return [f.name for f in directory.glob("*_[0-9]*.db") if f.stem.rsplit("_", 1)[1] not in running]

    wait_for(lambda: not files_of_exited_processes(), 15, "the exited children's files folded")
    assert (directory / "counter_archive.db").exists()
    assert counted() == n

"""``obskit bench celery``: bare Celery and Celery with the kit, side by side in one run.

Each round fills a fresh queue with a start marker, N no-op tasks and an end marker, then starts a solo
worker (acks_late, prefetch 1, real Redis broker) that drains it; the markers stamp the worker's clock,
so worker start-up is not measured; CPU time per task comes from the same stamps. The kit's worker
samples 10% of tasks for tracing (up to its budget of traced tasks per second) and sends them to a
local Sentry endpoint (in this process), records SLO outcomes to Redis and keeps its metrics, as in
production. Publishing runs in a process of its own per round, so the bare round's messages carry no
kit headers.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from celery import Celery

from observability._recorder import EnvelopeRecorder
from workers.app import WorkerApp, _LazyConfig
from workers.instrumentation import DEFAULT_TRACES_MAX_PER_S

__all__ = ["bare_app", "bench_celery", "kit_app", "run"]

# Both apps: the same Celery settings (from the environment, read when a worker starts), the same tasks.
bare_app = Celery("bench-bare", set_as_current=False)
bare_app.config_from_object(_LazyConfig(None))
kit_app = WorkerApp("bench-kit", set_as_current=False)

_client: Any = None


def _redis() -> Any:
    global _client  # noqa: PLW0603
    if _client is None:
        import redis

        _client = redis.Redis.from_url(os.environ["REDIS_URL"])
    return _client


def _register(app: Celery) -> None:
    @app.task(name="bench.noop", ignore_result=True, shared=False)
    def noop() -> None:
        return None

    @app.task(name="bench.mark", ignore_result=True, shared=False)
    def mark(key: str) -> None:
        # Wall clock and the worker process's CPU time (all its threads: the SDK's sender too).
        _redis().set(key, f"{time.time()!r} {time.process_time()!r}")


_register(bare_app)
_register(kit_app)

APPS = {"bare": "workers._bench:bare_app", "kit": "workers._bench:kit_app"}


@contextmanager
def _redis_url(given: str | None) -> Iterator[str]:
    """The given Redis, else a devstack Redis started for the bench in a temporary directory."""
    if given:
        yield given
        return
    from observability.devstack import Devstack

    with tempfile.TemporaryDirectory(prefix="obskit-bench-") as tmp:
        stack = Devstack(Path(tmp))
        try:
            stack.up(["redis"])
            yield stack.env(["redis"])["REDIS_URL"]
        finally:
            stack.down()


def _env(mode: str, redis_url: str, queue: str, *, dsn: str, traces: float, traces_max_per_s: float) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SENTRY_", "OBSKIT_", "PROMETHEUS_MULTIPROC_DIR", "CELERY_"))
    }
    env.update(REDIS_URL=redis_url, OBSKIT_CELERY_QUEUE=queue, SERVICE_NAME="bench-celery")
    if mode == "kit":
        env.update(
            SENTRY_DSN=dsn,
            SENTRY_TRACES_SAMPLE_RATE=str(traces),
            SENTRY_ENVIRONMENT="bench",
            OBSKIT_CELERY_TRACES_MAX_PER_S=str(traces_max_per_s),
        )
    return env


def _round(
    mode: str,
    *,
    tasks: int,
    redis_url: str,
    sink: EnvelopeRecorder,
    traces: float,
    traces_max_per_s: float,
    timeout_s: float,
) -> dict[str, Any]:
    import redis

    queue = f"bench-{mode}-{uuid.uuid4().hex[:8]}"
    env = _env(mode, redis_url, queue, dsn=sink.dsn, traces=traces, traces_max_per_s=traces_max_per_s)
    client = redis.Redis.from_url(redis_url)
    published = subprocess.run(
        [sys.executable, "-m", "workers._bench", "publish", mode, queue, str(tasks)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if published.returncode != 0:
        message = f"publishing the {mode} round failed: {published.stderr.strip()[-500:]}"
        raise click.ClickException(message)
    sent_before = sink.counts.get("transaction", 0)
    command = [
        sys.executable, "-m", "celery", "-A", APPS[mode], "worker", "--pool", "solo", "--concurrency", "1",
        "--queues", queue, "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING",
        "--hostname", f"{queue}@%h",
    ]  # fmt: skip
    worker = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout_s
        while client.get(f"{queue}:end") is None:
            if worker.poll() is not None or time.monotonic() > deadline:
                err = worker.stderr.read().decode(errors="replace")[-1000:] if worker.stderr else ""
                message = f"the {mode} worker did not drain its queue: {err}"
                raise click.ClickException(message)
            time.sleep(0.05)
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    (wall_0, cpu_0), (wall_1, cpu_1) = (
        (float(v) for v in (client.get(f"{queue}:{k}") or b"0 0").split()) for k in ("start", "end")
    )
    client.delete(f"{queue}:start", f"{queue}:end", queue)
    client.close()
    seconds = wall_1 - wall_0
    return {
        "mode": mode,
        "tasks": tasks,
        "seconds": round(seconds, 3),
        "tasks_per_s": round(tasks / seconds, 1),
        "cpu_us_per_task": round((cpu_1 - cpu_0) / tasks * 1e6, 1),
        "transactions_sent": sink.counts.get("transaction", 0) - sent_before,
    }


def run(
    *,
    tasks: int = 5000,
    rounds: int = 5,
    redis_url: str | None = None,
    traces: float = 0.1,
    traces_max_per_s: float = DEFAULT_TRACES_MAX_PER_S,
    timeout_s: float = 300,
) -> dict[str, Any]:
    """Alternate bare and kit rounds; report each round, the best and the median of each, their ratios."""
    results: list[dict[str, Any]] = []
    with _redis_url(redis_url) as url:
        sink = EnvelopeRecorder(keep=False)
        try:
            for n in range(rounds):
                # Bare first in even rounds, the kit first in odd ones: neither always runs second.
                for mode in ("bare", "kit") if n % 2 == 0 else ("kit", "bare"):
                    results.append(
                        _round(
                            mode,
                            tasks=tasks,
                            redis_url=url,
                            sink=sink,
                            traces=traces,
                            traces_max_per_s=traces_max_per_s,
                            timeout_s=timeout_s,
                        )
                    )
        finally:
            sink.close()

    def of(mode: str, key: str) -> list[float]:
        return [float(r[key]) for r in results if r["mode"] == mode]

    # Noise from other processes only ever slows a round down: the best round is the closest to the
    # cost itself; the median is shown next to it.
    bare_best, kit_best = max(of("bare", "tasks_per_s")), max(of("kit", "tasks_per_s"))
    bare_median, kit_median = statistics.median(of("bare", "tasks_per_s")), statistics.median(of("kit", "tasks_per_s"))
    bare_cpu, kit_cpu = min(of("bare", "cpu_us_per_task")), min(of("kit", "cpu_us_per_task"))
    # Each kit round against the bare round of the same pair: the two ran back to back, under the same load.
    pairs = statistics.median(k / b for b, k in zip(of("bare", "tasks_per_s"), of("kit", "tasks_per_s"), strict=True))
    return {
        "tasks per round": tasks,
        "rounds": rounds,
        "traces sample rate": traces,
        "traced tasks per s at most": traces_max_per_s,
        "bare tasks/s (best)": bare_best,
        "kit tasks/s (best)": kit_best,
        "ratio kit/bare (best)": round(kit_best / bare_best, 3),
        "bare tasks/s (median)": bare_median,
        "kit tasks/s (median)": kit_median,
        "ratio kit/bare (median)": round(kit_median / bare_median, 3),
        "ratio kit/bare (median of pairs)": round(pairs, 3),
        "bare CPU us/task (least)": bare_cpu,
        "kit CPU us/task (least)": kit_cpu,
        "CPU ratio bare/kit": round(bare_cpu / kit_cpu, 3),
        "rounds detail": results,
    }


@click.command("celery")
@click.option("--tasks", type=click.IntRange(min=1), default=5000, show_default=True, help="No-op tasks per round.")
@click.option("--rounds", type=click.IntRange(min=1), default=5, show_default=True, help="Rounds of each, alternated.")
@click.option("--redis-url", help="The broker (default: a devstack Redis started for the bench).")
@click.option("--traces", type=click.FloatRange(0, 1), default=0.1, show_default=True, help="The kit's sample rate.")
@click.option(
    "--traces-max-per-s",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TRACES_MAX_PER_S,
    show_default=True,
    help="The kit worker's budget of traced tasks per second (OBSKIT_CELERY_TRACES_MAX_PER_S).",
)
@click.option("--json", "as_json", is_flag=True)
def bench_celery(
    *, tasks: int, rounds: int, redis_url: str | None, traces: float, traces_max_per_s: float, as_json: bool
) -> None:
    """Worker throughput: bare Celery vs Celery with the kit (solo pool, acks_late, Redis broker)."""
    result = run(tasks=tasks, rounds=rounds, redis_url=redis_url, traces=traces, traces_max_per_s=traces_max_per_s)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        if key != "rounds detail":
            click.echo(f"{key:<34} {value}")
    for r in result["rounds detail"]:
        click.echo(
            f"  {r['mode']:<5} {r['tasks_per_s']:>9.1f} tasks/s {r['cpu_us_per_task']:>8.1f} us CPU/task"
            f"  ({r['seconds']} s, {r['transactions_sent']} transactions)"
        )


def _publish(mode: str, queue: str, tasks: int) -> None:
    app = kit_app if mode == "kit" else bare_app
    with app.producer_or_acquire() as producer:
        app.send_task("bench.mark", args=[f"{queue}:start"], queue=queue, producer=producer)
        for _ in range(tasks):
            app.send_task("bench.noop", queue=queue, producer=producer)
        app.send_task("bench.mark", args=[f"{queue}:end"], queue=queue, producer=producer)


if __name__ == "__main__":
    _, command, mode, queue, count = sys.argv
    if command != "publish":
        sys.exit("usage: python -m workers._bench publish bare|kit <queue> <tasks>")
    _publish(mode, queue, int(count))

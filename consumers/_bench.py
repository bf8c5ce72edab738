"""``obskit bench consumer``: the runner against a bare confluent-kafka loop, side by side, same data.

Every variant reads the same topic (one partition, small JSON messages) from the start in a group of
its own, with a handler that does nothing; throughput is messages over the time from the first
message to the last. The bare loop does what a careful hand-written one does: ``consume()`` batches,
``json.loads``, offsets stored after handling and committed asynchronously once a second.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

__all__ = ["bench_consumer", "run"]


@contextmanager
def _services(bootstrap: str | None, redis_url: str | None) -> Iterator[tuple[str, str]]:
    """The given Kafka and Redis, else devstack ones started for the bench in a temporary directory."""
    if bootstrap and redis_url:
        yield bootstrap, redis_url
        return
    from observability.devstack import Devstack

    with tempfile.TemporaryDirectory(prefix="obskit-bench-") as tmp:
        stack = Devstack(Path(tmp))
        try:
            stack.up(["redis", "kafka"])
            env = stack.env(["redis", "kafka"])
            yield bootstrap or env["KAFKA_BOOTSTRAP_SERVERS"], redis_url or env["REDIS_URL"]
        finally:
            stack.down()


def _prepare(bootstrap: str, messages: int) -> str:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10_000})
    for n in range(messages):
        value = json.dumps({"payment_id": n, "user_id": n % 1000, "amount": 12.5, "currency": "EUR"}).encode()
        while True:
            try:
                producer.produce(topic, value)
                break
            except BufferError:
                producer.poll(0.1)
    if producer.flush(60):
        message = "could not produce the benchmark's messages"
        raise RuntimeError(message)
    return topic


def _bare(bootstrap: str, topic: str, messages: int) -> float:
    """A careful hand-written loop: batches, json.loads, offsets stored after handling, async commits."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-bare-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    consumer.subscribe([topic])
    seen = 0
    started = 0.0
    next_commit = 0.0
    loads = json.loads

    def handle(payload: Any) -> None:
        return None

    while seen < messages:
        batch = consumer.consume(500, 0.2)
        if not batch:
            continue
        if not started:
            started = time.perf_counter()
        last = {}
        for message in batch:
            if message.error() is not None:
                continue
            handle(loads(message.value()))
            last[(message.topic(), message.partition())] = message
            seen += 1
        consumer.store_offsets(offsets=[TopicPartition(t, p, m.offset() + 1) for (t, p), m in last.items()])
        now = time.monotonic()
        if now >= next_commit:
            consumer.commit(asynchronous=True)
            next_commit = now + 1.0
    elapsed = time.perf_counter() - started
    consumer.close()
    return seen / elapsed


def _obskit(bootstrap: str, topic: str, messages: int, *, rate: float, dsn: str, redis_url: str) -> float:
    """The runner with the full kit: lazy tags bound per message, metrics, SLO recording, offsets stored."""
    import observability as obs
    from consumers.runner import Runner
    from consumers.settings import ConsumerSettings

    obs.init(
        "bench-consumer",
        environ={"SENTRY_DSN": dsn, "SENTRY_TRACES_SAMPLE_RATE": str(rate), "REDIS_URL": redis_url},
    )
    seen = 0
    started = 0.0
    finished = 0.0
    runner: Runner | None = None

    def handle(payload: Any) -> None:
        nonlocal seen, started, finished
        if not seen:
            started = time.perf_counter()
        seen += 1
        if seen == messages:
            finished = time.perf_counter()
            assert runner is not None
            runner.stop()

    settings = ConsumerSettings.from_env(
        {}, bootstrap_servers=bootstrap, group_id=f"bench-obskit-{uuid.uuid4().hex[:6]}", topics=(topic,)
    )
    runner = Runner(handle, settings, install_signals=False)
    runner.run()
    obs.shutdown(timeout_s=2)
    return seen / (finished - started)


class _RecorderProcess:
    """The local Sentry endpoint in a process of its own, so its work does not share the consumer's GIL."""

    def __init__(self) -> None:
        import subprocess
        import sys

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "observability._recorder"], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.dsn = self.proc.stdout.readline().strip()

    def counts(self) -> dict[str, int]:
        import httpx

        port = self.dsn.rsplit(":", 1)[1].split("/")[0]
        return dict(httpx.get(f"http://127.0.0.1:{port}/counts", timeout=5).json())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def run(*, bootstrap: str | None, redis_url: str | None, messages: int, rounds: int) -> dict[str, Any]:
    recorder = _RecorderProcess()
    try:
        with _services(bootstrap, redis_url) as (kafka, redis):
            topic = _prepare(kafka, messages)
            variants: dict[str, Callable[[], float]] = {
                "bare confluent-kafka loop": lambda: _bare(kafka, topic, messages),
                "obskit, traces 0": lambda: _obskit(
                    kafka, topic, messages, rate=0.0, dsn=recorder.dsn, redis_url=redis
                ),
                "obskit, traces 0.01": lambda: _obskit(
                    kafka, topic, messages, rate=0.01, dsn=recorder.dsn, redis_url=redis
                ),
                "obskit, traces 0.1": lambda: _obskit(
                    kafka, topic, messages, rate=0.1, dsn=recorder.dsn, redis_url=redis
                ),
            }
            results: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(rounds):  # interleaved, so drift on a shared machine hits every variant alike
                for name, variant in variants.items():
                    results[name].append(variant())
        time.sleep(2)  # let the last transactions arrive
        transactions = recorder.counts().get("transaction", 0)
    finally:
        recorder.close()
    bare = statistics.median(results["bare confluent-kafka loop"])
    rows = {
        name: {"msg_per_s": round(statistics.median(r)), "ratio": round(statistics.median(r) / bare, 3)}
        for name, r in results.items()
    }
    return {"messages": messages, "rounds": rounds, "transactions_received": transactions, "variants": rows}


@click.command("consumer")
@click.option("--messages", type=int, default=200_000, show_default=True)
@click.option("--rounds", type=int, default=3, show_default=True, help="Interleaved rounds; medians are shown.")
@click.option("--bootstrap-servers", envvar="OBSKIT_BENCH_KAFKA", help="A Kafka to use (default: a devstack one).")
@click.option("--redis-url", envvar="OBSKIT_BENCH_REDIS", help="A Redis for SLO counts (default: a devstack one).")
@click.option("--json", "as_json", is_flag=True)
def bench_consumer(
    messages: int, rounds: int, bootstrap_servers: str | None, redis_url: str | None, as_json: bool
) -> None:
    """Kafka consumer throughput: bare loop vs the obskit runner at trace sampling 0, 0.01, 0.1."""
    result = run(bootstrap=bootstrap_servers, redis_url=redis_url, messages=messages, rounds=rounds)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{messages} messages, 1 partition, no-op handler, median of {rounds} interleaved rounds")
    click.echo(f"{'variant':<28} {'msg/s':>10} {'x bare':>8}")
    for name, row in result["variants"].items():
        click.echo(f"{name:<28} {row['msg_per_s']:>10} {row['ratio']:>8.3f}")
    click.echo(f"transactions received by the local Sentry endpoint: {result['transactions_received']}")

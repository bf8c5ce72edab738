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
from confluent_kafka import Consumer, Message, Producer, TopicPartition
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


def _fill(bootstrap: str, messages: int, *, prefix: str = "bench", failing: bool = False) -> str:
    """A new one-partition topic (and its .dlq) with small JSON payments; ``failing`` marks one in a hundred."""
    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic(name, num_partitions=1, replication_factor=1) for name in (topic, f"{topic}.dlq")]
    for future in admin.create_topics(new).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10_000})
    for n in range(messages):
        body: dict[str, Any] = {"payment_id": n, "user_id": n % 1000, "amount": 12.5, "currency": "EUR"}
        if failing:
            body["fail"] = n % 100 == 50
        value = json.dumps(body).encode()
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


def _handle_noop(payload: Any) -> None:
    return None


def _consumer(bootstrap: str, kind: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{kind}-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )


def _hand_loop(consumer: Any, topic: str, messages: int, each: Callable[[Message], None]) -> float:
    """A careful hand-written loop: ``consume()`` batches, ``each(message)``, offsets stored after
    handling, commits asynchronous once a second. Returns messages per second, first to last."""
    consumer.subscribe([topic])
    # OpenTelemetry's proxy does not forward store_offsets: store through the consumer it wraps.
    store = (consumer.original_consumer() if hasattr(consumer, "original_consumer") else consumer).store_offsets
    seen = 0
    started = 0.0
    next_commit = 0.0
    try:
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
                each(message)
                last[(message.topic(), message.partition())] = message
                seen += 1
            store(offsets=[TopicPartition(t, p, m.offset() + 1) for (t, p), m in last.items()])
            now = time.monotonic()
            if now >= next_commit:
                consumer.commit(asynchronous=True)
                next_commit = now + 1.0
        return seen / (time.perf_counter() - started)
    finally:
        consumer.close()


def _bare(bootstrap: str, topic: str, messages: int) -> float:
    """The baseline: the hand-written loop with ``json.loads`` and a handler that does nothing."""
    loads = json.loads
    return _hand_loop(_consumer(bootstrap, "bare"), topic, messages, lambda m: _handle_noop(loads(m.value())))


class _Failure(Exception):
    pass


def _run_obskit(
    bootstrap: str,
    topic: str,
    messages: int,
    *,
    environ: dict[str, str],
    attempts: int = 3,
    at: dict[int, Callable[[], None]] | None = None,
) -> float:
    """The runner with the full kit (lazy tags per message, metrics, SLO recording, offsets stored) over
    ``messages``; payloads with ``"fail": true`` raise. ``at[n]`` runs when the n-th message arrives."""
    import observability as obs
    from consumers.runner import Runner
    from consumers.settings import ConsumerSettings

    obs.init("bench-consumer", environ=environ)
    seen = 0
    started = finished = 0.0
    runner: Any = None
    hooks = at or {}

    def handle(payload: Any) -> None:
        nonlocal seen, started, finished
        if not seen:
            started = time.perf_counter()
        seen += 1
        if seen in hooks:
            hooks[seen]()
        if seen == messages:
            finished = time.perf_counter()
            runner.stop()
        if payload.get("fail"):
            message = f"payment {payload['payment_id']} failed"
            raise _Failure(message)

    settings = ConsumerSettings.from_env(
        {},
        bootstrap_servers=bootstrap,
        group_id=f"bench-obskit-{uuid.uuid4().hex[:6]}",
        topics=(topic,),
        attempts=attempts,
    )
    runner = Runner(handle, settings, install_signals=False)
    runner.run()
    obs.shutdown(timeout_s=2)
    return seen / (finished - started)


# Sampled messages handled untraced because the SDK's send queue was full, per sample rate.
_shed: dict[float, int] = {}


def _dropped() -> float:
    from prometheus_client import REGISTRY

    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "obskit_sentry_events_dropped"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("reason") == "queue_overflow"
    )


def _obskit(bootstrap: str, topic: str, messages: int, *, rate: float, dsn: str, redis_url: str) -> float:
    environ = {"SENTRY_DSN": dsn, "SENTRY_TRACES_SAMPLE_RATE": str(rate), "REDIS_URL": redis_url}
    before = _dropped()
    throughput = _run_obskit(bootstrap, topic, messages, environ=environ)
    _shed[rate] = _shed.get(rate, 0) + int(_dropped() - before)
    return throughput


def _obskit_failing(bootstrap: str, topic: str, messages: int, *, dsn: str, redis_url: str) -> float:
    """One message in a hundred fails: one attempt, then the DLQ and a Sentry event."""
    environ = {"SENTRY_DSN": dsn, "SENTRY_TRACES_SAMPLE_RATE": "0", "REDIS_URL": redis_url}
    return _run_obskit(bootstrap, topic, messages, environ=environ, attempts=1)


def _arroyo(bootstrap: str, topic: str, messages: int) -> float:
    """getsentry/arroyo: a StreamProcessor with RunTask (the handler) and CommitOffsets."""
    from arroyo.backends.kafka import KafkaConsumer
    from arroyo.backends.kafka.configuration import build_kafka_consumer_configuration
    from arroyo.processing import StreamProcessor
    from arroyo.processing.strategies import CommitOffsets, ProcessingStrategyFactory, RunTask
    from arroyo.types import Topic

    seen = 0
    started = finished = 0.0
    processor: Any = None

    def handle(message: Any) -> None:
        nonlocal seen, started, finished
        if not seen:
            started = time.perf_counter()
        _handle_noop(json.loads(message.payload.value))
        seen += 1
        if seen == messages:
            finished = time.perf_counter()
            processor.signal_shutdown()

    class Factory(ProcessingStrategyFactory):  # type: ignore[type-arg]
        def create_with_partitions(self, commit: Any, partitions: Any) -> Any:
            return RunTask(handle, CommitOffsets(commit))

    config = build_kafka_consumer_configuration(
        default_config={},
        bootstrap_servers=[bootstrap],
        auto_offset_reset="earliest",
        group_id=f"bench-arroyo-{uuid.uuid4().hex[:6]}",
    )
    processor = StreamProcessor(KafkaConsumer(config), Topic(topic), Factory())
    processor.run()
    return seen / (finished - started)


def _sentry_per_message(bootstrap: str, topic: str, messages: int, *, dsn: str) -> float:
    """What the field notes write by hand: an isolation scope, continue_trace and a transaction per
    message, tags set on the scope, 10% trace sampling, Sentry's own defaults otherwise."""
    import sentry_sdk

    sentry_sdk.init(dsn=dsn, traces_sample_rate=0.1, default_integrations=False, auto_enabling_integrations=False)

    def each(message: Message) -> None:
        headers = {k: v.decode() for k, v in message.headers() or []}
        with sentry_sdk.isolation_scope() as scope:
            scope.set_tag("topic", message.topic())
            scope.set_tag("partition", str(message.partition()))
            transaction = sentry_sdk.continue_trace(headers, op="queue.process", name=message.topic())
            with sentry_sdk.start_transaction(transaction):
                _handle_noop(json.loads(message.value()))

    try:
        return _hand_loop(_consumer(bootstrap, "sentry"), topic, messages, each)
    finally:
        sentry_sdk.get_client().close(timeout=2)


def _opentelemetry(bootstrap: str, topic: str, messages: int) -> float:
    """OpenTelemetry's confluent-kafka instrumentation (a span per message, 10% sampled) on the same loop."""
    from opentelemetry.instrumentation.confluent_kafka import ConfluentKafkaInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.1)))
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    consumer = ConfluentKafkaInstrumentor().instrument_consumer(_consumer(bootstrap, "otel"), tracer_provider=provider)
    try:
        return _hand_loop(consumer, topic, messages, lambda m: _handle_noop(json.loads(m.value())))
    finally:
        provider.shutdown()


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _memory(bootstrap: str, redis_url: str, dsn: str, messages: int) -> dict[str, float]:
    """RSS of the obskit runner after a warm-up and after ``messages`` more, in one process."""
    warmup = min(100_000, messages // 10)
    topic = _fill(bootstrap, warmup + messages)
    marks: dict[str, float] = {}
    environ = {"SENTRY_DSN": dsn, "SENTRY_TRACES_SAMPLE_RATE": "0.01", "REDIS_URL": redis_url}
    hooks = {warmup: lambda: marks.__setitem__("before", _rss_mb()),
             warmup + messages: lambda: marks.__setitem__("after", _rss_mb())}  # fmt: skip
    _run_obskit(bootstrap, topic, warmup + messages, environ=environ, at=hooks)
    return {
        "messages": messages,
        "rss_before_mb": round(marks["before"], 1),
        "rss_after_mb": round(marks["after"], 1),
        "growth_mb": round(marks["after"] - marks["before"], 1),
    }


def _closed_port_dsn() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://public@127.0.0.1:{port}/1"


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


def _ensure_peers() -> None:
    from observability._bench_report import ensure_bench_extra

    ensure_bench_extra(
        ("arroyo", "opentelemetry.instrumentation.confluent_kafka", "psutil"), lambda line: click.echo(line, err=True)
    )


def run(
    *,
    bootstrap: str | None,
    redis_url: str | None,
    messages: int,
    rounds: int,
    peers: bool = True,
    peer_messages: int = 20_000,
    memory_messages: int = 0,
) -> dict[str, Any]:
    if peers:
        _ensure_peers()
    recorder = _RecorderProcess()
    down = _closed_port_dsn()
    prefix_bare: dict[str, float] = {}
    try:
        with _services(bootstrap, redis_url) as (kafka, redis):
            topic = _fill(kafka, messages)
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
            slow: dict[str, Callable[[], float]] = {}
            if peers:
                failing = _fill(kafka, messages, prefix="bench-fail", failing=True)
                variants["obskit, 1% failing, Sentry up"] = lambda: _obskit_failing(
                    kafka, failing, messages, dsn=recorder.dsn, redis_url=redis
                )
                variants["obskit, 1% failing, Sentry down"] = lambda: _obskit_failing(
                    kafka, failing, messages, dsn=down, redis_url=redis
                )
                variants["arroyo (RunTask + CommitOffsets)"] = lambda: _arroyo(kafka, topic, messages)
                slow["hand-written Sentry per message"] = lambda: _sentry_per_message(
                    kafka, topic, peer_messages, dsn=recorder.dsn
                )
                slow["OpenTelemetry confluent-kafka"] = lambda: _opentelemetry(kafka, topic, peer_messages)
            results: dict[str, list[float]] = {name: [] for name in (*variants, *slow)}
            for _ in range(rounds):  # interleaved, so drift on a shared machine hits every variant alike
                for name, variant in variants.items():
                    results[name].append(variant())
            for name, variant in slow.items():
                # A few percent of bare: one round over a prefix of the same data, against a bare run
                # over the same prefix measured just before it (the machine's load drifts).
                prefix_bare[name] = _bare(kafka, topic, peer_messages)
                results[name].append(variant())
            memory = _memory(kafka, redis, recorder.dsn, memory_messages) if memory_messages else None
        time.sleep(2)  # let the last transactions arrive
        received = recorder.counts()
    finally:
        recorder.close()
    bare = statistics.median(results["bare confluent-kafka loop"])
    rows = {
        name: {
            "msg_per_s": round(statistics.median(r)),
            "ratio": round(statistics.median(r) / (prefix_bare[name] if name in slow else bare), 3),
            "messages": peer_messages if name in slow else messages,
            "rounds": 1 if name in slow else rounds,
        }
        for name, r in results.items()
    }
    result: dict[str, Any] = {
        "messages": messages,
        "rounds": rounds,
        "received_by_sentry_endpoint": received,
        "variants": rows,
        # Sampled (about rate x messages x rounds) minus sent: shed because the SDK's queue was full.
        "traces_shed_by_backpressure": {str(rate): n for rate, n in sorted(_shed.items())},
    }
    if "obskit, 1% failing, Sentry up" in rows:
        up, down_row = rows["obskit, 1% failing, Sentry up"], rows["obskit, 1% failing, Sentry down"]
        result["sentry_down_vs_up"] = round(down_row["msg_per_s"] / up["msg_per_s"], 3)
    if memory is not None:
        result["memory"] = memory
    return result


def print_result(result: dict[str, Any], echo: Callable[[str], None] = click.echo) -> None:
    echo(f"{result['messages']} messages, 1 partition, no-op handler; medians of interleaved rounds")
    echo(f"{'variant':<36} {'msg/s':>10} {'x bare':>8}  note")
    for name, row in result["variants"].items():
        note = f"{row['messages']} messages, {row['rounds']} round(s)" if row["messages"] != result["messages"] else ""
        echo(f"{name:<36} {row['msg_per_s']:>10} {row['ratio']:>8.3f}  {note}")
    if "sentry_down_vs_up" in result:
        echo(f"Sentry down / Sentry up (1% failing): {result['sentry_down_vs_up']:.3f}")
    echo(f"received by the local Sentry endpoint: {result['received_by_sentry_endpoint']}")
    echo(f"sampled but shed (SDK send queue full), per rate: {result['traces_shed_by_backpressure']}")
    if "memory" in result:
        m = result["memory"]
        growth = f"{m['growth_mb']:+} MB"
        echo(f"RSS: {m['rss_before_mb']} MB -> {m['rss_after_mb']} MB over {m['messages']} messages ({growth})")


@click.command("consumer")
@click.option("--messages", type=int, default=200_000, show_default=True)
@click.option("--rounds", type=int, default=3, show_default=True, help="Interleaved rounds; medians are shown.")
@click.option(
    "--peers/--no-peers", default=True, show_default=True, help="Also arroyo, OpenTelemetry, Sentry per message."
)
@click.option("--peer-messages", type=int, default=20_000, show_default=True, help="Messages for the slowest peers.")
@click.option("--memory-messages", type=int, default=0, help="Also measure RSS growth over this many messages.")
@click.option("--bootstrap-servers", envvar="OBSKIT_BENCH_KAFKA", help="A Kafka to use (default: a devstack one).")
@click.option("--redis-url", envvar="OBSKIT_BENCH_REDIS", help="A Redis for SLO counts (default: a devstack one).")
@click.option("--json", "as_json", is_flag=True)
def bench_consumer(
    *,
    messages: int,
    rounds: int,
    peers: bool,
    peer_messages: int,
    memory_messages: int,
    bootstrap_servers: str | None,
    redis_url: str | None,
    as_json: bool,
) -> None:
    """Kafka consumer throughput: bare loop, the obskit runner at trace sampling 0 / 0.01 / 0.1, and peers."""
    result = run(
        bootstrap=bootstrap_servers,
        redis_url=redis_url,
        messages=messages,
        rounds=rounds,
        peers=peers,
        peer_messages=peer_messages,
        memory_messages=memory_messages,
    )
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        print_result(result)

"""What operators use: /metrics and /healthz, consumer lag, replaying the dead-letter topic."""

import os
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import httpx

from tests.helpers import wait_for as wait_until
from tests.integration.consumers.kafka_helpers import committed, produce, read_all


def sample(registry: Any, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_metrics_health_and_lag(start_consumer, kafka_bootstrap: str, topic: str) -> None:
    gate = threading.Event()
    seen: list[int] = []

    def handler(payload: dict[str, Any]) -> None:
        seen.append(payload["n"])
        if payload["n"] == 0:
            gate.wait(30)  # hold the first message: the rest waits behind it, as lag

    produce(kafka_bootstrap, topic, [{"n": n} for n in range(50)])
    running = start_consumer(handler, topic, metrics_port=0, lag_interval_s=0.2, stall_after_s=1.0)
    wait_until(lambda: running.runner.metrics_port is not None and seen)
    base = f"http://127.0.0.1:{running.runner.metrics_port}"
    # The poll loop is stuck in the handler: /healthz says so once stall_after_s has passed.
    wait_until(lambda: httpx.get(f"{base}/healthz", timeout=5).status_code == 503)
    gate.set()
    wait_until(lambda: committed(kafka_bootstrap, f"g-{topic}", topic) == 50)
    wait_until(lambda: httpx.get(f"{base}/healthz", timeout=5).status_code == 200)
    registry = start_consumer.registry
    labels = {"service": "itest-consumer", "topic": topic, "partition": "0"}
    wait_until(lambda: sample(registry, "obskit_kafka_consumer_lag_messages", **labels) == 0)
    assert sample(registry, "obskit_kafka_consumer_lag_seconds", **labels) == 0
    assert sample(registry, "obskit_kafka_consumer_assigned_partitions", service="itest-consumer", topic=topic) == 1
    line = f'obskit_kafka_messages_total{{outcome="ok",service="itest-consumer",topic="{topic}"}} 50.0'
    wait_until(lambda: line in httpx.get(f"{base}/metrics", timeout=5).text)  # counts flush once a second
    running.stop()


def test_a_missing_topic_shows_as_no_partition_assigned(start_consumer, kafka_bootstrap: str) -> None:
    # A typo in the topic: librdkafka says so once (UNKNOWN_TOPIC_OR_PART) and the consumer waits, healthy.
    missing = f"missing-{uuid.uuid4().hex[:10]}"
    running = start_consumer(lambda payload: None, missing, stall_after_s=5.0)
    registry = start_consumer.registry
    unknown = {"service": "itest-consumer", "code": "UNKNOWN_TOPIC_OR_PART"}
    wait_until(lambda: sample(registry, "obskit_kafka_broker_errors_total", **unknown))
    assert sample(registry, "obskit_kafka_consumer_assigned_partitions", service="itest-consumer", topic=missing) == 0
    assert running.runner.healthy()  # what ObskitKafkaTopicUnassigned is for: nothing else looks wrong
    running.stop()


def test_lag_is_reported_while_behind(start_consumer, kafka_bootstrap: str, topic: str) -> None:
    gate = threading.Event()

    def handler(payload: dict[str, Any]) -> None:
        if payload["n"] == 1:
            gate.wait(30)

    produce(kafka_bootstrap, topic, [{"n": n} for n in range(30)])
    running = start_consumer(handler, topic, lag_interval_s=0.2, batch_size=1)
    registry = start_consumer.registry
    labels = {"service": "itest-consumer", "topic": topic, "partition": "0"}
    # Blocked in the handler on message 1: the lag the loop read on its last pass is what is behind.
    wait_until(lambda: (sample(registry, "obskit_kafka_consumer_lag_messages", **labels) or 0) >= 28)
    assert (sample(registry, "obskit_kafka_consumer_lag_seconds", **labels) or 0) > 0
    gate.set()
    wait_until(lambda: committed(kafka_bootstrap, f"g-{topic}", topic) == 30)
    wait_until(lambda: sample(registry, "obskit_kafka_consumer_lag_messages", **labels) == 0)
    running.stop()


def test_replay_resends_parked_messages_with_their_headers_and_commits_what_it_sent(
    start_consumer, kafka_bootstrap: str, topic: str
) -> None:
    def handler(payload: dict[str, Any]) -> None:
        if payload.get("bad"):
            raise ValueError("bad payment")

    produce(
        kafka_bootstrap, topic, [{"n": 0, "bad": True}, {"n": 1, "bad": True}, {"n": 2}], headers=[("x-user-id", b"u1")]
    )
    running = start_consumer(handler, topic, attempts=1)
    read_all(kafka_bootstrap, f"{topic}.dlq", expected=2)
    wait_until(lambda: committed(kafka_bootstrap, f"g-{topic}", topic) == 3)
    running.stop()

    def obskit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "observability.cli", "dlq", "replay", "--from", f"{topic}.dlq", *args],
            env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    dry = obskit("--dry-run", "--idle-timeout", "3")
    assert dry.returncode == 0, dry.stderr
    assert "would replay 2 message(s)" in dry.stdout
    assert read_all(kafka_bootstrap, topic, expected=3, timeout_s=5).__len__() == 3  # nothing re-sent

    real = obskit("--limit", "1", "--idle-timeout", "3")
    assert real.returncode == 0, real.stderr
    assert "replayed 1 message(s)" in real.stdout
    again = obskit("--idle-timeout", "3")
    assert "replayed 1 message(s)" in again.stdout, "the first was committed: only the second is left"

    messages = read_all(kafka_bootstrap, topic, expected=5)
    replayed = messages[3:]
    assert [m.value() for m in replayed] == [b'{"n": 0, "bad": true}', b'{"n": 1, "bad": true}']
    for message in replayed:
        headers = dict(message.headers())
        assert headers["x-user-id"] == b"u1"
        assert headers["obskit-replays"] == b"1"
        assert not any(k.startswith("obskit-original") for k in headers)


def test_a_commit_interval_under_a_second_is_honoured(start_consumer, kafka_bootstrap: str, topic: str) -> None:
    def handler(payload: dict[str, Any]) -> None:
        time.sleep(0.25)  # each message outlasts the 0.2 s commit interval: each is committed on its own

    produce(kafka_bootstrap, topic, [{"n": n} for n in range(8)])
    running = start_consumer(handler, topic, batch_size=1, commit_interval_s=0.2)
    wait_until(lambda: committed(kafka_bootstrap, f"g-{topic}", topic) == 8)
    running.stop()
    commits = sample(start_consumer.registry, "obskit_kafka_commits_total", service="itest-consumer", result="ok")
    # Committed on the loop's once-a-second tick instead, 2 s of work made about 3 commits.
    assert (commits or 0) >= 7, commits

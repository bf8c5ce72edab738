"""Talking to the devstack's Kafka from tests, and running the consumer runner in a thread."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from consumers.runner import Runner


def create_topics(bootstrap: str, names: list[str], partitions: int = 1, config: dict[str, str] | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [NewTopic(n, num_partitions=partitions, replication_factor=1, config=config or {}) for n in names]
    futures = admin.create_topics(topics)
    for future in futures.values():
        future.result(30)


def produce(bootstrap: str, topic: str, values: list[Any], *, headers: list[tuple[str, bytes]] | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for n, value in enumerate(values):
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        producer.produce(topic, raw, key=str(n).encode(), headers=headers)
    assert producer.flush(30) == 0


def read_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 30) -> list[Any]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                messages.append(message)
        # Anything beyond what was expected would be a duplicate: give it a moment to show up.
        extra_deadline = time.monotonic() + 1.0
        while time.monotonic() < extra_deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                messages.append(message)
    finally:
        consumer.close()
    return messages


def committed(bootstrap: str, group: str, topic: str, partition: int = 0, timeout_s: float = 30) -> int:
    """The group's committed offset; a coordinator still loading or moving (a timeout here) is asked again."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                return int(consumer.committed([TopicPartition(topic, partition)], timeout=10)[0].offset)
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()


class Running:
    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.runner.run()

    def stop(self, timeout_s: float = 30) -> int | None:
        self.runner.stop()
        self.thread.join(timeout_s)
        return self.code

"""A task hands a payment to Kafka: the message carries the task's trace and user to the consumer."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

import observability as obs
from observability.propagation import extract
from tests.integration.workers.conftest import Workers
from workers import WorkerSettings, make_app


def read_one(bootstrap: str, topic: str, timeout_s: float = 30) -> Any:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                return message
    finally:
        consumer.close()
    raise AssertionError(f"no message on {topic} within {timeout_s} s")


def test_the_produced_message_continues_the_tasks_trace_and_user(
    workers: Workers, kafka_bootstrap: str, sentry_server: Any, redis_url: str
) -> None:
    topic = f"payments-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(30)
    worker = workers.start(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, SENTRY_DSN=sentry_server.dsn)
    app = make_app(WorkerSettings(redis_url=redis_url, queue=worker.queue), set_as_current=False)
    user = f"u-{uuid.uuid4().hex[:8]}"
    payment = {"payment_id": uuid.uuid4().hex, "user_id": user, "amount": 12.5, "currency": "EUR"}
    with obs.bind(user_id=user) as unit:
        result = app.send_task("workers.tasks.publish_payment_event", args=[payment], kwargs={"topic": topic})
    assert result.get(timeout=60) == payment["payment_id"]

    message = read_one(kafka_bootstrap, topic)
    incoming = extract(message.headers())
    assert incoming.trace_id == unit.trace_id
    assert incoming.user_id == user
    # The message's parent is the task's own span, itself a child of the publisher's.
    assert incoming.parent_span_id not in (None, unit.span_id)
    assert message.key() == user.encode()
    # The full task -> consumer event check lands with the consumer runner (consumers/, in progress).

"""A task hands a payment to Kafka: the message carries the task's trace and user, and the consumer's
event is in the publisher's trace."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import CollectorRegistry

import observability as obs
from observability.propagation import extract
from observability.sentry_api import ServerAPI
from tests.helpers import wait_for
from tests.integration.workers.conftest import ENV, Workers, events_of_user, new_user
from workers import WorkerApp


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


def create_topic(bootstrap: str) -> str:
    topic = f"payments-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(30)
    return topic


def test_the_produced_message_continues_the_tasks_trace_and_user(
    workers: Workers, kafka_bootstrap: str, sentry_server: Any, producer_app: Callable[[str], WorkerApp]
) -> None:
    topic = create_topic(kafka_bootstrap)
    worker = workers.start(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, SENTRY_DSN=sentry_server.dsn)
    app = producer_app(worker.queue)
    user = new_user()
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


def test_one_trace_runs_from_the_publisher_through_the_task_into_the_consumer(
    workers: Workers,
    kafka_bootstrap: str,
    sentry_server: Any,
    producer_app: Callable[[str], WorkerApp],
    api: ServerAPI,
) -> None:
    from consumers.examples import handle_payment
    from consumers.runner import Runner
    from consumers.settings import ConsumerSettings

    topic = create_topic(kafka_bootstrap)
    worker = workers.start(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, SENTRY_DSN=sentry_server.dsn)
    app = producer_app(worker.queue)
    user = new_user()
    # Over the daily limit: the consumer's handler reports a business failure, a Sentry message.
    payment = {"payment_id": uuid.uuid4().hex, "user_id": user, "amount": 50_000, "currency": "EUR"}
    with obs.bind(user_id=user) as unit:
        app.send_task("workers.tasks.publish_payment_event", args=[payment], kwargs={"topic": topic}).get(timeout=60)

    obs.init(
        "itest-consumer",
        environ={"SENTRY_DSN": sentry_server.dsn, "SENTRY_ENVIRONMENT": ENV},
        registry=CollectorRegistry(),
    )
    settings = ConsumerSettings.from_env(
        {}, bootstrap_servers=kafka_bootstrap, topics=(topic,), group_id=f"g-{topic}", commit_interval_s=0.2
    )
    runner = Runner(handle_payment, settings, install_signals=False)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        # The task's own events and the consumer's: the consumer's carries the topic tag.
        consumer_events = wait_for(
            lambda: [e for e in events_of_user(api, user) if e.tags.get("topic") == topic],
            60,
            "the consumer's business-rule message",
        )
    finally:
        runner.stop()
        thread.join(30)
        obs.shutdown(timeout_s=10)
    (message,) = consumer_events
    assert message.tags["rule"] == "daily_limit"
    assert message.tags["trace_id"] == unit.trace_id == message.data["contexts"]["trace"]["trace_id"]
    assert message.tags["user_id"] == user
    assert message.tags["service"] == "itest-consumer"

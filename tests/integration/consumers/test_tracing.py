"""One trace from producer to consumer; sampled messages become queue.process transactions."""

import json
from typing import Any

import observability as obs
from consumers.producer import Producer
from observability.config import Settings
from observability.sentry_api import client
from observability.testing import EnvelopeRecorder
from tests.helpers import wait_for as wait_until
from tests.integration.consumers.kafka_helpers import committed, produce


class Declined(Exception):
    pass


def test_the_producers_trace_and_user_are_on_the_consumers_event(
    start_consumer, kafka_bootstrap: str, topic: str, kit_env: dict[str, str]
) -> None:
    service = f"itest-trace-{topic[-6:]}"
    event_ids: list[str | None] = []

    def handler(payload: dict[str, Any]) -> None:
        try:
            raise Declined(f"declined {payload['order']}")
        except Declined as exc:
            event_ids.append(obs.capture_exception(exc))

    running = start_consumer(handler, topic, service=service)
    producer = Producer(bootstrap_servers=kafka_bootstrap)
    with obs.bind(user_id="u-trace") as unit:
        producer.produce(topic, {"order": 7})
    assert producer.flush(30) == 0
    wait_until(lambda: committed(kafka_bootstrap, f"g-{topic}", topic) == 1)
    running.stop()
    obs.flush(10)
    api = client(Settings.from_env(kit_env, service=service))
    assert event_ids[0] is not None
    wait_until(lambda: api.event(event_ids[0]) is not None)  # type: ignore[arg-type]
    stored = api.event(event_ids[0])  # type: ignore[arg-type]
    assert stored is not None
    assert stored.tags["trace_id"] == unit.trace_id
    assert stored.data["contexts"]["trace"]["trace_id"] == unit.trace_id
    assert stored.data["contexts"]["trace"]["parent_span_id"] == unit.span_id
    assert stored.tags["user_id"] == "u-trace"


def test_every_sampled_message_sends_one_queue_process_transaction(
    start_consumer, kafka_bootstrap: str, topic: str, envelope_recorder: EnvelopeRecorder
) -> None:
    trace = "ab" * 16
    headers = [("sentry-trace", f"{trace}-{'cd' * 8}-1".encode())]
    produce(kafka_bootstrap, topic, [{"n": n} for n in range(50)], headers=headers)
    produce(kafka_bootstrap, topic, [{"n": n} for n in range(50, 100)])  # no headers: a new trace each
    running = start_consumer(
        lambda payload: None,
        topic,
        env={"SENTRY_DSN": envelope_recorder.dsn, "SENTRY_TRACES_SAMPLE_RATE": "1.0"},
    )
    wait_until(lambda: committed(kafka_bootstrap, f"g-{topic}", topic) == 100)
    running.stop()
    obs.flush(10)
    wait_until(lambda: len(envelope_recorder.of_type("transaction")) >= 100)
    transactions = envelope_recorder.of_type("transaction")
    assert len(transactions) == 100
    continued = [t for t in transactions if t["contexts"]["trace"]["trace_id"] == trace]
    assert len(continued) == 50
    assert all(t["contexts"]["trace"]["parent_span_id"] == "cd" * 8 for t in continued)
    assert len({t["contexts"]["trace"]["trace_id"] for t in transactions}) == 51
    first = transactions[0]
    assert first["contexts"]["trace"]["op"] == "queue.process"
    assert first["transaction"] == topic
    data = first["contexts"]["trace"]["data"]
    assert data["messaging.destination.name"] == topic
    assert data["messaging.message.body.size"] == len(json.dumps({"n": 0}))
    assert data["messaging.message.retry.count"] == 0
    assert data["messaging.message.receive.latency"] >= 0
    assert first["tags"]["topic"] == topic
    assert first["tags"]["trace_id"] == first["contexts"]["trace"]["trace_id"]

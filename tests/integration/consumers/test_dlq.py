"""Failures park in the dead-letter topic with the reason; Sentry hears of each exactly once."""

import time
from typing import Any

import redis as redis_lib

from observability.config import Settings
from observability.sentry_api import client, search_query
from observability.slo.store import Store
from observability.slo.windows import parse_duration
from tests.helpers import wait_for as wait_until
from tests.integration.consumers.kafka_helpers import committed, create_topics, produce, read_all


class Boom(Exception):
    pass


def headers_of(message: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in message.headers() or []}


def bad_count(redis_url: str, service: str) -> int:
    store = Store(redis_lib.Redis.from_url(redis_url))
    (reading,) = store.read([(service, "itest")], [parse_duration("1h")], time.time())
    return sum(n for outcome, n in reading.windows[parse_duration("1h")].items() if outcome.value == "error")


def test_failing_handler_parks_the_message_once_reports_once_and_counts_one_bad(
    start_consumer, kafka_bootstrap: str, topic: str, kit_env: dict[str, str], redis_url: str
) -> None:
    attempts: list[int] = []
    service = f"itest-dlq-{topic[-6:]}"

    def handler(payload: dict[str, Any]) -> None:
        if payload["n"] == 1:
            attempts.append(1)
            raise Boom(f"cannot charge card 4111 1111 1111 1111 for payment {payload['n']}")

    user = f"user-{topic[-6:]}"
    produce(kafka_bootstrap, topic, [{"n": 0}, {"n": 1, "user_id": user}, {"n": 2}])
    running = start_consumer(handler, topic, service=service, attempts=3)
    (parked,) = read_all(kafka_bootstrap, f"{topic}.dlq", expected=1)
    wait_until(lambda: committed(kafka_bootstrap, f"g-{topic}", topic) == 3)
    running.stop()

    assert len(attempts) == 3
    assert parked.value() == b'{"n": 1, "user_id": "%s"}' % user.encode()
    assert parked.key() == b"1"
    headers = headers_of(parked)
    assert headers["obskit-original-topic"] == topic
    assert headers["obskit-original-partition"] == "0"
    assert headers["obskit-original-offset"] == "1"
    assert int(headers["obskit-original-timestamp"]) > 0
    assert headers["obskit-reason"] == "handler_error"
    assert headers["obskit-error-type"].endswith("Boom")
    assert "4111 1111 1111 1111" not in headers["obskit-error-message"]
    assert "for payment 1" in headers["obskit-error-message"]
    assert headers["obskit-attempts"] == "3"
    assert headers["obskit-service"] == service
    assert len(headers["obskit-trace-id"]) == 32
    assert headers["obskit-sentry-link"].startswith(kit_env["SENTRY_URL"])
    assert headers["obskit-trace-id"] in headers["obskit-sentry-link"]

    api = client(Settings.from_env(kit_env, service=service))
    wait_until(lambda: api.event(headers["obskit-sentry-event-id"]) is not None)
    issues = api.issues(search_query({"service": service, "user_id": user}))
    assert len(issues) == 1
    assert issues[0].count == 1, "retries must not be events: exactly one event per failed message"
    stored = api.event(headers["obskit-sentry-event-id"])
    assert stored is not None
    tags = stored.tags
    assert (tags["topic"], tags["partition"], tags["offset"], tags["consumer_group"]) == (topic, "0", "1", f"g-{topic}")
    assert tags["trace_id"] == headers["obskit-trace-id"]
    assert tags["user_id"] == user
    assert [c["category"] for c in stored.data["breadcrumbs"]["values"]].count("retry") == 3
    wait_until(lambda: bad_count(redis_url, service) == 1)


def test_undecodable_message_goes_to_the_dlq_at_once(start_consumer, kafka_bootstrap: str, topic: str) -> None:
    calls: list[Any] = []
    produce(kafka_bootstrap, topic, [b"{not json", {"ok": True}])
    running = start_consumer(calls.append, topic)
    (parked,) = read_all(kafka_bootstrap, f"{topic}.dlq", expected=1)
    wait_until(lambda: committed(kafka_bootstrap, f"g-{topic}", topic) == 2)
    running.stop()
    assert calls == [{"ok": True}]
    assert parked.value() == b"{not json"
    assert headers_of(parked)["obskit-reason"] == "undecodable"
    assert headers_of(parked)["obskit-attempts"] == "0"


def test_business_failure_moves_on_without_dlq(start_consumer, kafka_bootstrap: str, topic: str, kit_env) -> None:
    from consumers.examples import handle_payment

    service = f"itest-biz-{topic[-6:]}"
    produce(
        kafka_bootstrap,
        topic,
        [{"payment_id": "p1", "amount": 50_000, "user_id": "u7"}, {"payment_id": "p2", "amount": 5}],
    )
    running = start_consumer(handle_payment, topic, service=service)
    wait_until(lambda: committed(kafka_bootstrap, f"g-{topic}", topic) == 2)
    running.stop()
    assert read_all(kafka_bootstrap, f"{topic}.dlq", expected=0, timeout_s=2) == []
    api = client(Settings.from_env(kit_env, service=service))
    found: list[Any] = []

    def has_issue() -> bool:
        found[:] = api.issues(search_query({"service": service, "rule": "daily_limit"}))
        return bool(found)

    wait_until(has_issue)
    assert found[0].title.endswith("payment over the daily limit")


def test_unwritable_dlq_stops_the_consumer_without_committing(start_consumer, kafka_bootstrap: str, topic: str) -> None:
    def handler(payload: dict[str, Any]) -> None:
        if payload["n"] == 1:
            raise Boom("always")

    produce(kafka_bootstrap, topic, [{"n": 0}, {"n": 1}, {"n": 2}])
    # A topic name Kafka refuses: every write to the DLQ fails.
    running = start_consumer(handler, topic, attempts=1, dlq_topic="not a valid topic name!")
    running.thread.join(60)
    assert not running.thread.is_alive(), "the consumer must stop by itself"
    assert running.code == 1
    assert committed(kafka_bootstrap, f"g-{topic}", topic) in (-1001, 1)  # never past the parked message


def test_too_large_for_the_dlq_is_parked_as_a_reference(start_consumer, kafka_bootstrap: str, topic: str) -> None:
    dlq = f"{topic}.small-dlq"
    create_topics(kafka_bootstrap, [dlq], config={"max.message.bytes": "2048"})

    def handler(payload: dict[str, Any]) -> None:
        raise Boom("too big to handle")

    produce(kafka_bootstrap, topic, [{"blob": "x" * 10_000}])
    running = start_consumer(handler, topic, attempts=1, dlq_topic=dlq)
    (parked,) = read_all(kafka_bootstrap, dlq, expected=1)
    wait_until(lambda: committed(kafka_bootstrap, f"g-{topic}", topic) == 1)
    running.stop()
    assert parked.value() is None
    headers = headers_of(parked)
    assert int(headers["obskit-payload-omitted"]) > 10_000
    assert headers["obskit-reason"] == "handler_error"

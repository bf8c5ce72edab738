"""Each devstack service really works: the tests talk to it the way an application would."""

import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest


def test_redis_set_then_get(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    key = f"obskit-test:{uuid.uuid4().hex}"
    client.set(key, "value", ex=60)
    assert client.get(key) == b"value"


def test_kafka_produce_then_consume_one_message(kafka_bootstrap: str) -> None:
    from confluent_kafka import Consumer, Producer

    topic = f"obskit-test-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    delivered: list[object] = []
    producer.produce(topic, key=b"k", value=b"hello", on_delivery=lambda err, msg: delivered.append(err or msg))
    assert producer.flush(30) == 0
    assert len(delivered) == 1
    assert not isinstance(delivered[0], Exception)

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"g-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        message = None
        while message is None and time.monotonic() < deadline:
            candidate = consumer.poll(1.0)
            if candidate is not None and candidate.error() is None:
                message = candidate
        assert message is not None, "no message consumed within 30 s"
        assert (message.key(), message.value()) == (b"k", b"hello")
    finally:
        consumer.close()


def _query(prometheus_url: str, expr: str) -> list[dict[str, object]]:
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=5)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success"
    return list(body["data"]["result"])


def test_prometheus_answers_a_query_for_up(prometheus) -> None:
    deadline = time.monotonic() + 30
    result: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        result = _query(prometheus.url, 'up{job="prometheus"}')
        if result:
            break
        time.sleep(0.5)
    assert result, "Prometheus never scraped itself"
    assert result[0]["value"][1] == "1"


def test_prometheus_sends_alerts_to_the_devstack_alertmanager(prometheus, alertmanager_url: str) -> None:
    if prometheus.dir is None:
        pytest.skip("a user-provided Prometheus: its Alertmanager wiring is theirs")
    deadline = time.monotonic() + 30
    active: list[dict[str, str]] = []
    while time.monotonic() < deadline and not active:
        body = httpx.get(f"{prometheus.url}/api/v1/alertmanagers", timeout=5).json()
        active = body["data"]["activeAlertmanagers"]
        time.sleep(0.5)
    assert [a["url"].split("/api/")[0] for a in active] == [alertmanager_url]


def test_alertmanager_accepts_an_alert_and_lists_it(alertmanager_url: str) -> None:
    name = f"ObskitDevstackTest{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    alert = {
        "labels": {"alertname": name, "service": "devstack-test", "severity": "info"},
        "annotations": {"summary": "devstack self-test"},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=5)).isoformat(),
    }
    httpx.post(f"{alertmanager_url}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()
    listed = httpx.get(f"{alertmanager_url}/api/v2/alerts", params={"filter": f"alertname={name}"}, timeout=5).json()
    assert [a["labels"]["alertname"] for a in listed] == [name]

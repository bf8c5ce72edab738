"""Replay parked messages from a dead-letter topic back to where they came from."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from consumers.dlq import HEADER_PREFIX
from observability.errors import ObskitError

__all__ = ["ReplayResult", "replay"]

REPLAYS = "obskit-replays"


@dataclass
class ReplayResult:
    replayed: int = 0
    failed: int = 0


def _header(headers: list[tuple[str, bytes]], name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode(errors="replace")
    return None


def replay(
    *,
    bootstrap_servers: str,
    source: str,
    target: str | None,
    limit: int | None,
    dry_run: bool,
    group_id: str,
    idle_s: float,
    echo: Callable[[str], None],
) -> ReplayResult:
    """Re-produce each parked message (original key, value and headers, replay count + 1); an offset is
    committed only after its re-produced message was delivered. Reference records (payload omitted) are
    listed and skipped: there is nothing to replay."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
        }
    )
    producer = (
        None
        if dry_run
        else Producer({"bootstrap.servers": bootstrap_servers, "acks": "all", "enable.idempotence": True})
    )
    result = ReplayResult()
    deliveries: list[tuple[Any, Any]] = []
    consumer.subscribe([source])
    try:
        idle_since = time.monotonic()
        while (limit is None or result.replayed + result.failed < limit) and time.monotonic() - idle_since < idle_s:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF:
                    continue
                problem = f"reading {source}: {message.error()}"
                raise ObskitError(problem)
            idle_since = time.monotonic()
            headers = list(message.headers() or [])
            destination = target or _header(headers, "obskit-original-topic")
            where = f"{source}[{message.partition()}]@{message.offset()}"
            if destination is None:
                echo(f"skip {where}: no obskit-original-topic header and no --to")
                result.failed += 1
                continue
            if _header(headers, "obskit-payload-omitted") is not None:
                echo(f"skip {where}: a reference record (payload was too large to park)")
                result.failed += 1
                continue
            reason = _header(headers, "obskit-reason")
            echo(f"{'would replay' if dry_run else 'replay'} {where} -> {destination} ({reason})")
            if producer is None:
                result.replayed += 1
                continue
            count = int(_header(headers, REPLAYS) or 0) + 1
            original = [(k, v) for k, v in headers if not k.startswith(HEADER_PREFIX)]
            outgoing = [*original, (REPLAYS, str(count).encode())]
            deliveries.clear()
            producer.produce(
                destination,
                message.value(),
                message.key(),
                headers=outgoing,
                on_delivery=lambda e, m: deliveries.append((e, m)),
            )
            producer.flush(30)
            if not deliveries or deliveries[0][0] is not None:
                problem = deliveries[0][0] if deliveries else "no delivery report within 30 s"
                echo(f"failed {where}: {problem}")
                result.failed += 1
                break  # keep order: do not commit past a message that was not re-sent
            consumer.commit(
                offsets=[TopicPartition(message.topic(), message.partition(), message.offset() + 1)], asynchronous=False
            )
            result.replayed += 1
    finally:
        consumer.close()
    return result

"""A confluent-kafka producer that carries the trace and user to the consumer and reports delivery failures.

The librdkafka client is created on first use in the process that uses it, never before a fork: a
Celery prefork child or a forked consumer gets a client of its own.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from observability.propagation import inject

__all__ = ["Producer", "encode_value"]

logger = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]


def encode_value(value: object) -> bytes | None:
    """Bytes as they are, text as UTF-8, anything else as compact JSON."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":"), default=str).encode()


class Producer:
    """Produce with trace headers injected; ``config`` is librdkafka's (``bootstrap.servers`` at least)."""

    def __init__(self, config: Mapping[str, Any] | None = None, *, bootstrap_servers: str | None = None) -> None:
        settings = dict(config or {})
        servers = bootstrap_servers or settings.get("bootstrap.servers") or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not servers:
            from observability.errors import ConfigError

            raise ConfigError("KAFKA_BOOTSTRAP_SERVERS", "", "host:port[,host:port...] of the Kafka brokers")
        settings["bootstrap.servers"] = servers
        self.config = settings
        self._client: Any = None
        self._pid: int | None = None

    @property
    def client(self) -> Any:
        """The librdkafka producer of this process, created on first use (after any fork)."""
        if self._client is None or self._pid != os.getpid():
            from confluent_kafka import Producer as KafkaProducer

            self._client = KafkaProducer({**self.config, "error_cb": self._on_error})
            self._pid = os.getpid()
        return self._client

    def produce(
        self,
        topic: str,
        value: object,
        key: bytes | str | None = None,
        headers: Headers | Mapping[str, str | bytes] | None = None,
        *,
        on_delivery: Callable[[Any, Any], None] | None = None,
        **kwargs: Any,
    ) -> None:
        """Send one message with the current unit's trace and user headers; delivery is reported via poll/flush."""
        carrier: Headers
        if headers is None:
            carrier = []
        elif isinstance(headers, Mapping):
            carrier = [(k, v if isinstance(v, bytes) else str(v).encode()) for k, v in headers.items()]
        else:
            carrier = list(headers)
        inject(carrier)
        client = self.client
        client.produce(
            topic, encode_value(value), key, headers=carrier, on_delivery=self._delivery(topic, on_delivery), **kwargs
        )
        client.poll(0)

    def _delivery(self, topic: str, callback: Callable[[Any, Any], None] | None) -> Callable[[Any, Any], None]:
        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                _count_failure(topic)
                logger.error("Kafka delivery to %s failed: %s", topic, err)
            if callback is not None:
                callback(err, msg)

        return delivered

    @staticmethod
    def _on_error(err: Any) -> None:
        from observability.sentry import runtime

        try:
            rt = runtime()
        except RuntimeError:
            rt = None
        if rt is not None:
            rt.metrics.kafka_broker_errors.labels(rt.settings.service, err.name()).inc()
        logger.warning("Kafka producer: %s", err)

    def flush(self, timeout_s: float = 10.0) -> int:
        """Wait for outstanding deliveries; returns how many are still undelivered."""
        if self._client is None or self._pid != os.getpid():
            return 0
        return int(self._client.flush(timeout_s))


def _count_failure(topic: str) -> None:
    from observability.sentry import runtime

    try:
        rt = runtime()
    except RuntimeError:
        return
    rt.metrics.kafka_produce_errors.labels(rt.settings.service, topic).inc()

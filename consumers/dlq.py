"""The dead-letter topic: where a message goes when it cannot be handled, with the reason in its headers.

A parked message keeps its key, value and original headers, plus ``obskit-*`` headers saying where it
came from and why it failed (the error message scrubbed of secrets). A message too large for the DLQ
with those headers is parked as a reference record: the headers, no payload. Its offset is stored
only once the DLQ's delivery report arrived; a DLQ that cannot be written stops the consumer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from consumers._log import LIBRDKAFKA_LOG
from consumers.settings import ConsumerSettings, connection_settings

__all__ = ["HEADER_PREFIX", "DeadLetters", "dlq_headers"]

logger = logging.getLogger(__name__)

HEADER_PREFIX = "obskit-"
MAX_ERROR_MESSAGE = 1000

OnDone = Callable[[str | None], None]


def _error_message(error: BaseException) -> str:
    from observability.scrub import scrub_text

    return scrub_text(str(error))[:MAX_ERROR_MESSAGE]


def _sentry_link(trace_id: str) -> str | None:
    """The Sentry (or devstack server) issue list filtered by this trace, when the web API is configured."""
    from observability.sentry import runtime
    from observability.sentry_api import issues_link

    settings = runtime().settings
    if not settings.sentry_url:
        return None
    return issues_link(
        api=settings.sentry_api,
        url=settings.sentry_url,
        project=settings.sentry_project,
        org=settings.sentry_org,
        filters={"trace_id": trace_id},
    )


def dlq_headers(
    message: Message,
    *,
    reason: str,
    error: BaseException,
    attempts: int,
    service: str,
    trace_id: str,
    event_id: str | None,
) -> list[tuple[str, bytes]]:
    """The original headers (trace, user, ...) followed by the ``obskit-*`` ones."""
    _kind, stamp = message.timestamp()
    ours = {
        "original-topic": message.topic(),
        "original-partition": str(message.partition()),
        "original-offset": str(message.offset()),
        "original-timestamp": str(stamp),
        "reason": reason,
        "error-type": f"{type(error).__module__}.{type(error).__qualname__}",
        "error-message": _error_message(error),
        "attempts": str(attempts),
        "service": service,
        "trace-id": trace_id,
        "parked-at": str(int(time.time() * 1000)),
    }
    if event_id:
        ours["sentry-event-id"] = event_id
    link = _sentry_link(trace_id)
    if link:
        ours["sentry-link"] = link
    original = [
        (k, v) for k, v in (message.headers() or []) if not k.startswith(HEADER_PREFIX) or k == "obskit-replays"
    ]
    return original + [(HEADER_PREFIX + k, v.encode()) for k, v in ours.items()]


class DeadLetters:
    """Produces parked messages and reports each delivery (or the reason it failed) to the runner."""

    def __init__(self, settings: ConsumerSettings, *, on_error: Callable[[Any], None]) -> None:
        self.settings = settings
        self.producer = Producer(
            {
                **connection_settings(settings.kafka),  # the consumer's TLS/SASL settings: the same brokers
                "bootstrap.servers": settings.bootstrap_servers,
                "acks": "all",
                "enable.idempotence": True,
                "error_cb": on_error,
                "logger": LIBRDKAFKA_LOG,
            }
        )

    def park(self, message: Message, *, on_done: OnDone, **why: Any) -> None:
        topic = self.settings.dlq_for(message.topic())
        headers = dlq_headers(message, **why)

        def delivered(err: Any, _msg: Any) -> None:
            if err is None:
                on_done(None)
            elif err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                self._reference(topic, message, headers, on_done)
            else:
                on_done(str(err))

        self._produce(
            topic,
            key=message.key(),
            value=message.value(),
            headers=headers,
            delivered=delivered,
            on_done=on_done,
            original=message,
        )

    def _reference(self, topic: str, message: Message, headers: list[tuple[str, bytes]], on_done: OnDone) -> None:
        """Too large with its headers: park the headers and the payload's size, not the payload."""
        size = len(message.value() or b"")
        logger.warning(
            "message %s[%d]@%d too large for %s: parking a reference",
            message.topic(),
            message.partition(),
            message.offset(),
            topic,
        )
        reference = [*headers, ("obskit-payload-omitted", str(size).encode())]

        def delivered(err: Any, _msg: Any) -> None:
            on_done(None if err is None else str(err))

        self._produce(
            topic, key=message.key(), value=None, headers=reference, delivered=delivered, on_done=on_done, original=None
        )

    def _produce(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        delivered: Callable[[Any, Any], None],
        on_done: OnDone,
        original: Message | None,
    ) -> None:
        for _ in range(100):
            try:
                self.producer.produce(topic, value, key, headers=headers, on_delivery=delivered)
            except BufferError:
                self.producer.poll(0.1)  # the local queue is full: let deliveries drain
                continue
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if original is not None and error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                    self._reference(topic, original, headers, on_done)
                else:
                    on_done(str(exc))
                return
            self.producer.poll(0)
            return
        on_done("the producer's queue stayed full")

    def poll(self, timeout_s: float = 0.0) -> None:
        self.producer.poll(timeout_s)

    def flush(self, timeout_s: float) -> int:
        return int(self.producer.flush(timeout_s))

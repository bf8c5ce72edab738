"""Clients the tasks share within one worker process, made after the fork and flushed before exit.

A prefork child inherits the parent's memory but not its threads: librdkafka's producer must be
created in the child. The instrumentation calls :func:`start` in ``worker_process_init`` and
:func:`close` in ``worker_process_shutdown`` (a child runs no atexit handlers).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from consumers.producer import Producer

__all__ = ["close", "kafka_producer", "start"]

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_producer: Producer | None = None
_pid: int | None = None


def kafka_producer() -> Producer:
    """This process's Kafka producer (``KAFKA_BOOTSTRAP_SERVERS``), created on first use."""
    global _producer, _pid  # noqa: PLW0603
    with _lock:
        if _producer is None or _pid != os.getpid():
            from consumers.producer import Producer

            _producer = Producer()
            _pid = os.getpid()
        return _producer


def start() -> None:
    """Create this process's clients now, when the process starts, if they are configured."""
    global _producer, _pid
    with _lock:
        _producer, _pid = None, None
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        kafka_producer().client  # noqa: B018  (creates librdkafka's producer in this process)


def close(timeout_s: float) -> None:
    """Deliver what is still buffered, waiting at most ``timeout_s``."""
    global _producer, _pid
    with _lock:
        producer, _producer, _pid = _producer, None, None
    if producer is not None:
        undelivered = producer.flush(timeout_s)
        if undelivered:
            logger.error("%d Kafka messages not delivered at shutdown", undelivered)

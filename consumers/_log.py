"""librdkafka's log lines, routed into Python logging."""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["LIBRDKAFKA_LOG"]


class _LibrdkafkaLog:
    """Where librdkafka's own log lines go: at most WARNING, so a broker restart's burst of "connection
    refused" lines stays in the logs and breadcrumbs instead of becoming one Sentry event each."""

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def log(self, level: int, msg: str, *args: Any) -> None:
        self._logger.log(min(level, logging.WARNING), msg, *args)


LIBRDKAFKA_LOG = _LibrdkafkaLog("consumers.librdkafka")

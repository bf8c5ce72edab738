"""Tasks the issue-search tests run in a real worker (``-I tests.integration.issues.probe_tasks``)."""

from __future__ import annotations

import logging
from typing import Any

import observability as obs
from workers import app, clients

logger = logging.getLogger(__name__)


class LedgerUnavailable(Exception):
    """The (pretend) ledger is down."""


@app.task(name="issues.flag_and_publish")
def flag_and_publish(payment: dict[str, Any], topic: str, rule: str, word: str) -> str | None:
    """Report a business-rule failure, then hand the payment to Kafka: the consumer goes on in this trace.
    Returns the reported event's id."""
    event_id = obs.report_business_failure(rule, f"payment flagged for review {word}")
    producer = clients.kafka_producer()
    producer.produce(topic, payment, key=str(payment["user_id"]))
    undelivered = producer.flush(10.0)
    if undelivered:
        message = f"{undelivered} message(s) not delivered to {topic}"
        raise RuntimeError(message)
    return event_id


@app.task(name="issues.crash")
def crash(word: str) -> None:
    """Log an error (an event of its own), then fail the task."""
    # The word goes into the message itself: Bugsink groups log records by their unformatted message.
    logger.error("ledger lookup failed " + word)
    message = f"ledger unavailable {word}"
    raise LedgerUnavailable(message)

"""Example tasks: a payment that can fail a business rule, a flaky call retried on its own, a checkout that
chains two tasks, and a task that hands a payment event to Kafka (the trace goes on in the consumer).

Each shows what the kit gives a task without code of its own: tags, trace, one event per real failure.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import chain

import observability as obs
from workers import app, clients

__all__ = [
    "DAILY_LIMIT",
    "KafkaDeliveryError",
    "RateServiceUnavailable",
    "checkout",
    "fetch_exchange_rate",
    "pay",
    "publish_payment_event",
    "send_receipt",
]

logger = logging.getLogger(__name__)

DAILY_LIMIT = 10_000


class RateServiceUnavailable(Exception):
    """The (pretend) exchange-rate service is down for a moment."""


class KafkaDeliveryError(Exception):
    """Kafka did not confirm a message in time; the task is retried (it acks late, nothing is lost)."""


@app.task(name="workers.tasks.pay")
def pay(user_id: str, amount: float, currency: str = "EUR") -> dict[str, Any]:
    """Charge a payment; over the daily limit it is a business failure (a Sentry message), not an error."""
    obs.set_user(user_id)
    obs.add_breadcrumb("business", "checking the daily limit", amount=amount, currency=currency)
    if amount > DAILY_LIMIT:
        raise obs.BusinessRuleError("daily_limit", "payment over the daily limit", amount=amount, currency=currency)
    return {"payment_id": uuid.uuid4().hex, "user_id": user_id, "amount": amount, "currency": currency}


@app.task(
    name="workers.tasks.fetch_exchange_rate",
    bind=True,
    autoretry_for=(RateServiceUnavailable,),
    max_retries=3,
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=False,
)
def fetch_exchange_rate(self: Any, currency: str, fail_times: int = 0) -> float:
    """Fails its first ``fail_times`` attempts; retried 3 times with backoff (1, 2, 4 s), then it fails for
    good: each retry is a breadcrumb on the one event of that final failure."""
    if self.request.retries < fail_times:
        message = f"rate service unavailable for {currency} (attempt {self.request.retries + 1})"
        raise RateServiceUnavailable(message)
    return 1.0 if currency == "EUR" else 1.1


@app.task(name="workers.tasks.send_receipt")
def send_receipt(payment: dict[str, Any]) -> str:
    """Mail the receipt of a payment (pretend)."""
    obs.add_breadcrumb("business", "sending the receipt", payment_id=payment["payment_id"])
    logger.info("receipt for payment %s sent", payment["payment_id"])
    return str(payment["payment_id"])


@app.task(name="workers.tasks.checkout")
def checkout(user_id: str, amount: float, currency: str = "EUR") -> str:
    """Start the payment and, when it went through, the receipt: one trace from checkout to receipt."""
    result = chain(pay.s(user_id, amount, currency), send_receipt.s()).apply_async()
    return str(result.id)


@app.task(
    name="workers.tasks.publish_payment_event",
    bind=True,
    autoretry_for=(KafkaDeliveryError,),
    max_retries=5,
    retry_backoff=True,
)
def publish_payment_event(self: Any, payment: dict[str, Any], topic: str = "payments") -> str:
    """Hand a payment to Kafka for ``consumers.examples:handle_payment``; the message carries the task's
    trace and user. The task waits for Kafka's acknowledgement before it acks its own message."""
    producer = clients.kafka_producer()
    failures: list[Any] = []
    producer.produce(
        topic,
        payment,
        key=str(payment.get("user_id") or ""),
        on_delivery=lambda err, _msg: failures.append(err) if err is not None else None,
    )
    undelivered = producer.flush(10.0)
    if undelivered or failures:
        message = f"{undelivered} undelivered, errors {failures!r}"
        raise KafkaDeliveryError(message)
    return str(payment.get("payment_id"))

"""An example consumer: payment events that succeed, fail a business rule, or break.

Run it with ``python -m consumers run consumers.examples:handle_payment --topic payments --group payments``.
"""

from __future__ import annotations

import logging
from typing import Any

import observability as obs

__all__ = ["DAILY_LIMIT", "PaymentGatewayError", "handle_payment"]

logger = logging.getLogger(__name__)

DAILY_LIMIT = 10_000


class PaymentGatewayError(Exception):
    """The (pretend) payment gateway failed."""


def handle_payment(event: dict[str, Any]) -> None:
    """``{"payment_id", "user_id", "amount", "currency"}``; ``"fail": true`` stands for a gateway outage."""
    amount = float(event["amount"])
    obs.add_breadcrumb("business", "checking the daily limit", amount=amount)
    if amount > DAILY_LIMIT:
        raise obs.BusinessRuleError(
            "daily_limit", "payment over the daily limit", payment_id=event.get("payment_id"), amount=amount
        )
    if event.get("fail"):
        message = f"gateway timeout charging payment {event.get('payment_id')}"
        raise PaymentGatewayError(message)
    logger.debug("payment %s charged", event.get("payment_id"))

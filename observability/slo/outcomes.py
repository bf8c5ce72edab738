"""The outcomes of a unit of work, one table for workers and consumers alike.

| outcome            | when                                                        | in the SLO          |
| ------------------ | ----------------------------------------------------------- | ------------------- |
| `ok`               | handled                                                     | good                |
| `error`            | failed after its retries; dead-lettered; undecodable        | bad                 |
| `business_failure` | a business rule said no (`BusinessRuleError`)               | good, unless the spec says bad |
| `retried`          | an attempt failed and will be retried                       | not counted: the final outcome is |
| `rejected`         | refused before running (Celery reject, unknown task)        | counted separately, not bad |
| `revoked`          | cancelled (Celery revoke, expired)                          | counted separately, not bad |
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["COMPLETED", "DEFAULT_BAD", "Outcome"]


class Outcome(StrEnum):
    OK = "ok"
    ERROR = "error"
    BUSINESS_FAILURE = "business_failure"
    RETRIED = "retried"
    REJECTED = "rejected"
    REVOKED = "revoked"


# Units that ran to a final outcome: the SLO's denominator.
COMPLETED = (Outcome.OK, Outcome.ERROR, Outcome.BUSINESS_FAILURE)
DEFAULT_BAD = (Outcome.ERROR,)

"""The tag schema users filter by, and the rules that keep tags within Sentry's limits."""

from __future__ import annotations

import re

from observability.errors import ObskitError

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_VALUE_LENGTH",
    "RESERVED_TAGS",
    "SCHEMA",
    "TagError",
    "check_key",
    "tag_value",
]

MAX_KEY_LENGTH = 32
MAX_VALUE_LENGTH = 200

# Tag -> where it comes from. The contract of DESIGN.md; `obskit sentry-info` prints it.
SCHEMA = {
    "service": "SERVICE_NAME / init(service=...), every event",
    "env": "SENTRY_ENVIRONMENT, every event (also Sentry's environment)",
    "user_id": "bind(user_id=...) per unit of work (also Sentry's user.id)",
    "trace_id": "incoming trace header, else new per unit of work (equals contexts.trace.trace_id)",
    "task": "Celery task name",
    "task_id": "Celery task id",
    "queue": "Celery queue",
    "retries": "Celery retry count",
    "topic": "Kafka topic",
    "partition": "Kafka partition",
    "offset": "Kafka offset",
    "consumer_group": "Kafka consumer group",
    "rule": "report_business_failure(rule=...)",
}

# Sentry's ingest drops custom tags with these names: release and dist are event fields, user is the
# user interface; filename/function belong to frames.
RESERVED_TAGS = frozenset({"release", "dist", "user", "filename", "function"})

_KEY_RE = re.compile(r"^[a-zA-Z0-9_.:-]{1,32}$")
_NEWLINES = re.compile(r"[\r\n]+")


class TagError(ObskitError, ValueError):
    """A tag name Sentry would reject or drop."""


def check_key(key: str) -> str:
    """Return ``key`` if Sentry keeps it as a tag, else raise :class:`TagError` saying why."""
    if key in RESERVED_TAGS:
        message = f"tag {key!r} is dropped by Sentry's ingest: use init(release=...) or bind(user_id=...) instead"
        raise TagError(message)
    if not _KEY_RE.match(key):
        message = f"tag {key!r} is invalid: expected 1-{MAX_KEY_LENGTH} characters of letters, digits, _ . : -"
        raise TagError(message)
    return key


def tag_value(value: object) -> str:
    """A tag value as Sentry stores it: a string of at most 200 characters on one line."""
    text = value if isinstance(value, str) else str(value)
    if "\n" in text or "\r" in text:
        text = _NEWLINES.sub(" ", text)
    return text[:MAX_VALUE_LENGTH]

"""The helpers teams write by hand, with the signatures they use, bound to the kit's tags and units."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

import sentry_sdk

from observability.context import current
from observability.sentry import runtime

__all__ = [
    "BREADCRUMB_CATEGORIES",
    "add_breadcrumb",
    "capture_exception",
    "capture_message",
    "set_user",
    "span",
]

Level = Literal["debug", "info", "warning", "error", "fatal"]

# The categories the kit and its examples use; any string works, these keep dashboards consistent.
BREADCRUMB_CATEGORIES = {
    "task": "a Celery task started, retried or finished",
    "kafka": "a Kafka message was received, retried or parked",
    "retry": "an attempt failed and will be retried",
    "business": "a business rule was checked",
    "db": "a database query",
    "http": "an outgoing HTTP call",
    "cache": "a cache read or write",
    "auth": "authentication or authorization",
    "lifecycle": "process start, shutdown, rebalance",
}


def _merged(context: dict[str, Any] | None, extra: dict[str, Any]) -> dict[str, Any]:
    return {**context, **extra} if context else extra


def capture_exception(
    exc: BaseException | None = None, context: dict[str, Any] | None = None, **extra: Any
) -> str | None:
    """Report an exception (the one being handled if ``exc`` is None) with extra context; counts it in
    ``obskit_errors_total``. Returns the event id, or None when Sentry is off or the event was dropped."""
    rt = runtime()
    error = exc if exc is not None else _handled_exception()
    if error is not None:
        rt.metrics.errors.labels(rt.settings.service, rt.settings.environment, type(error).__qualname__).inc()
    if not rt.sentry_enabled:
        return None
    data = _merged(context, extra)
    if data:
        return sentry_sdk.capture_exception(error, extras=data)
    return sentry_sdk.capture_exception(error)


def _handled_exception() -> BaseException | None:
    import sys

    return sys.exc_info()[1]


def capture_message(
    message: str, level: Level = "info", context: dict[str, Any] | None = None, **extra: Any
) -> str | None:
    """Send a message event with extra context; returns its id, or None when Sentry is off."""
    if not runtime().sentry_enabled:
        return None
    data = _merged(context, extra)
    if data:
        return sentry_sdk.capture_message(message, level=level, extras=data)
    return sentry_sdk.capture_message(message, level=level)


def set_user(user_id: object, email: str | None = None, username: str | None = None) -> None:
    """Set the user of the current unit of work (or, outside one, of the current scope).

    Email and username go to Sentry only when the app opted in (``OBSKIT_SEND_PII=1``).
    """
    fields = {}
    if runtime().settings.send_default_pii:
        fields = {k: v for k, v in (("email", email), ("username", username)) if v}
    unit = current()
    if unit is None:
        sentry_sdk.set_user({"id": str(user_id), **fields})
        return
    # Read first: a LazyUnit that has not yet resolved its source would otherwise overwrite this later.
    _ = unit.user_id
    unit.user_id = str(user_id)
    unit.user_fields = fields or None


def add_breadcrumb(category: str, message: str, level: Level = "info", **data: Any) -> None:
    """Record a breadcrumb in the current unit of work (outside one, in the current scope)."""
    crumb: dict[str, Any] = {"category": category, "message": message, "level": level, "type": "default"}
    if data:
        crumb["data"] = data
    unit = current()
    if unit is None:
        sentry_sdk.add_breadcrumb(crumb)
        return
    import time

    crumb["timestamp"] = time.time()
    unit.add_breadcrumb(crumb)


@contextlib.contextmanager
def span(op: str, description: str | None = None) -> Iterator[Any]:
    """Time a block as a span of the current sampled transaction; a no-op otherwise.

    Works for the SDK's transactions and for those the kit builds itself (a sampled Kafka message).
    """
    parent = sentry_sdk.get_current_span()
    if parent is not None and parent.sampled:
        with parent.start_child(op=op, name=description) as child:
            yield child
        return
    unit = current()
    if unit is None or not unit.sampled or unit.spans is None:
        yield None
        return
    import time

    from observability.context import new_span_id

    record: dict[str, Any] = {
        "trace_id": unit.trace_id,
        "span_id": new_span_id(),
        "parent_span_id": unit.span_id,
        "op": op,
        "description": description,
        "start_timestamp": time.time(),
        "status": "ok",
    }
    started = time.perf_counter()
    try:
        yield record
    except BaseException:
        record["status"] = "internal_error"
        raise
    finally:
        record["timestamp"] = record["start_timestamp"] + (time.perf_counter() - started)
        unit.spans.append(record)

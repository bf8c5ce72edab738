"""Noise: events nobody should be paged for never reach Sentry; each one held back is counted.

Held back, in ``obskit_sentry_events_held_back_total{reason}``: exception types and loggers the app
ignores (``OBSKIT_IGNORE_EXCEPTIONS``, ``OBSKIT_IGNORE_LOGGERS``), client errors (bad input, not a
fault of the service; sent with ``OBSKIT_SEND_CLIENT_ERRORS=1``), a second report of an exception
already reported (logged and captured: one event), and health-check transactions.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any

from observability.errors import ObskitError

__all__ = ["CLIENT_ERROR_TYPES", "HEALTH_CHECK", "ClientError", "NoiseFilter", "breadcrumb_filter", "type_names"]

logger = logging.getLogger(__name__)

Event = dict[str, Any]
Hint = dict[str, Any]


class ClientError(ObskitError):
    """Raise (or subclass) for bad input: a malformed message, a request that fails validation. The
    unit fails as usual, but no Sentry event is sent unless ``OBSKIT_SEND_CLIENT_ERRORS=1``."""


# Validation errors of the common libraries, by the module that defines them: the input was wrong.
CLIENT_ERROR_TYPES = frozenset(
    {
        f"{ClientError.__module__}.{ClientError.__qualname__}",
        "pydantic_core._pydantic_core.ValidationError",
        "pydantic.v1.error_wrappers.ValidationError",
        "pydantic.error_wrappers.ValidationError",
        "marshmallow.exceptions.ValidationError",
        "jsonschema.exceptions.ValidationError",
        "fastjsonschema.exceptions.JsonSchemaValueException",
        "django.core.exceptions.ValidationError",
        "rest_framework.exceptions.ValidationError",
        "django.http.response.Http404",
    }
)
# HTTP errors raised towards a client: a 4xx status is the client's error, a 5xx the service's.
_HTTP_STATUS = {
    "starlette.exceptions.HTTPException": "status_code",
    "werkzeug.exceptions.HTTPException": "code",
    "rest_framework.exceptions.APIException": "status_code",
}

# Transaction names of health checks: `GET /healthz`, `task:app.tasks.health_check`, `celery.ping`.
HEALTH_CHECK = r"(?i)(?:^|[\s/.:])(?:health(?:[_-]?checks?|z)?|livez|liveness|readyz|readiness|ping)(?:$|[\s/?])"

_REPORTED = "__obskit_reported__"


def type_names(cls: type) -> frozenset[str]:
    """Every ``module.QualName`` in the class's MRO, builtins also by the bare name (``KeyError``)."""
    names = set()
    for base in cls.__mro__:
        name = f"{base.__module__}.{base.__qualname__}"
        names.add(name)
        if base.__module__ == "builtins":
            names.add(base.__qualname__)
    return frozenset(names)


def _exception_of(hint: Hint) -> tuple[BaseException | None, bool]:
    """The exception an event reports, and whether it carries its traceback (exc_info) or is only
    mentioned as an argument of a log message."""
    exc_info = hint.get("exc_info")
    if exc_info and isinstance(exc_info[1], BaseException):
        return exc_info[1], True
    record = hint.get("log_record")
    args = getattr(record, "args", None)
    if isinstance(args, dict):
        args = tuple(args.values())
    if isinstance(args, tuple):
        for arg in args:
            if isinstance(arg, BaseException):
                return arg, False
    return None, False


def _already_reported(exc: BaseException) -> bool:
    return getattr(exc, _REPORTED, False) is True


def _mark_reported(exc: BaseException) -> None:
    # An exception type without a __dict__ is deduplicated by the SDK's own rule only.
    with contextlib.suppress(AttributeError, TypeError):
        setattr(exc, _REPORTED, True)


class NoiseFilter:
    """The event processor that holds back noise; built once by ``init()`` from the settings."""

    def __init__(
        self,
        *,
        ignore_exceptions: Iterable[str] = (),
        ignore_loggers: Iterable[str] = (),
        send_client_errors: bool = False,
        count: Callable[[str], None] | None = None,
    ) -> None:
        ignored = {name if "." in name else f"builtins.{name}" for name in ignore_exceptions}
        self._ignored = frozenset(ignored | {name.removeprefix("builtins.") for name in ignored})
        # Names a module re-exports (requests.Timeout) resolve to the defining module once it is imported.
        self._unresolved = sorted(name for name in ignored if not name.startswith("builtins."))
        self._loggers = tuple(ignore_loggers)
        self._client_errors = not send_client_errors
        self._count = count or (lambda _reason: None)
        self._health = re.compile(HEALTH_CHECK)

    def __call__(self, event: Event, hint: Hint) -> Event | None:
        if event.get("type") == "transaction":
            name = event.get("transaction")
            if isinstance(name, str) and self._health.search(name):
                self._count("health_check")
                return None
            return event
        exc, with_traceback = _exception_of(hint)
        reason = self._reason(event, exc)
        if reason is not None:
            self._count(reason)
            return None
        if exc is not None:
            # Sent once: a later report of the same object (logged, then captured) is a duplicate.
            if not with_traceback and exc.__traceback__ is not None and "exception" not in event:
                _attach_traceback(event, hint, exc)
            _mark_reported(exc)
        return event

    def _reason(self, event: Event, exc: BaseException | None) -> str | None:
        """Why the event is held back, or None to send it."""
        name = event.get("logger")
        if self._loggers and isinstance(name, str) and self.ignored_logger(name):
            return "ignored_logger"
        if exc is None:
            return self._by_event_type(event)
        if _already_reported(exc):
            return "duplicate"
        names = type_names(type(exc))
        if self._ignored and names & self._resolved():
            return "ignored_exception"
        if self._client_errors and _is_client_error(exc, names):
            return "client_error"
        return None

    def ignored_logger(self, name: str) -> bool:
        """The logger or one of its parents is ignored (``app.db`` also ignores ``app.db.pool``)."""
        return any(name == ignored or name.startswith(ignored + ".") for ignored in self._loggers)

    def _resolved(self) -> frozenset[str]:
        if self._unresolved:
            found = set()
            for dotted in self._unresolved:
                module_name, _, attribute = dotted.rpartition(".")
                module = sys.modules.get(module_name)
                cls = getattr(module, attribute, None) if module is not None else None
                if isinstance(cls, type):
                    found.add(f"{cls.__module__}.{cls.__qualname__}")
                    self._unresolved = [name for name in self._unresolved if name != dotted]
            if found:
                self._ignored = self._ignored | found
        return self._ignored

    def _by_event_type(self, event: Event) -> str | None:
        """An event without the exception object (built elsewhere): match the reported type by name."""
        if not self._ignored:
            return None
        values = (event.get("exception") or {}).get("values") if isinstance(event.get("exception"), dict) else None
        if not values or not isinstance(values[-1], dict):
            return None
        top = values[-1]
        module, kind = top.get("module"), top.get("type")
        full = f"{module}.{kind}" if module else str(kind)
        return "ignored_exception" if full in self._ignored or kind in self._ignored else None


def _attach_traceback(event: Event, hint: Hint, exc: BaseException) -> None:
    """A log message that only mentions an exception (``log.error("failed: %s", exc)``) gets its
    traceback, as ``log.exception`` would: the one event sent for it then shows where it was raised."""
    import sentry_sdk
    from sentry_sdk.serializer import serialize
    from sentry_sdk.utils import event_from_exception, handle_in_app

    exc_info = (type(exc), exc, exc.__traceback__)
    try:
        options = sentry_sdk.get_client().options
        built, _ = event_from_exception(
            exc_info, client_options=options, mechanism={"type": "logging", "handled": True}
        )
        built = handle_in_app(built, options["in_app_exclude"], options["in_app_include"], options["project_root"])
        event["exception"] = serialize(dict(built), max_value_length=options.get("max_value_length"))["exception"]
    except Exception:
        logger.debug("could not attach the traceback of %s to a log event", type(exc).__qualname__, exc_info=True)
        return
    hint["exc_info"] = exc_info


def _is_client_error(exc: BaseException, names: frozenset[str]) -> bool:
    if names & CLIENT_ERROR_TYPES:
        return True
    for type_name, attribute in _HTTP_STATUS.items():
        if type_name in names:
            status = getattr(exc, attribute, None)
            return isinstance(status, int) and 400 <= status < 500
    return False


def breadcrumb_filter(ignore_loggers: Iterable[str]) -> Callable[[Event, Hint], Event | None] | None:
    """For ``before_breadcrumb``: drop log breadcrumbs of ignored loggers; None when none are ignored,
    so the breadcrumb path stays as cheap as before."""
    noise = NoiseFilter(ignore_loggers=ignore_loggers)
    if not noise._loggers:
        return None

    def drop_ignored(crumb: Event, hint: Hint) -> Event | None:
        record = hint.get("log_record") if hint else None
        name = getattr(record, "name", None)
        if isinstance(name, str) and noise.ignored_logger(name):
            return None
        return crumb

    return drop_ignored

"""Log records that carry the unit of work's ``trace_id`` and ``user_id``.

ERROR and CRITICAL records become Sentry events and lower ones breadcrumbs through the SDK's logging
integration, which ``init()`` configures (``OBSKIT_LOG_EVENT_LEVEL``, ``OBSKIT_LOG_BREADCRUMB_LEVEL``).
This module adds the ids to records so any formatter can print ``%(trace_id)s``; it never configures
the root logger or any handler. Records at ERROR and above also get ``issue_url``: the server's issue list
for the record's trace when the server's web API is configured (``SENTRY_URL``), else ``-``. Lower records
are left as they are, at no cost; a formatter printing ``%(issue_url)s`` at every level passes
``defaults={"issue_url": "-"}``.
"""

from __future__ import annotations

import logging
from typing import Any

from observability.context import Unit, current

__all__ = ["LogContextFilter", "install_record_factory"]

_NONE = "-"


def _stamp(record: logging.LogRecord) -> None:
    unit = current()
    if unit is None:
        record.trace_id = _NONE
        record.user_id = _NONE
    else:
        record.trace_id = unit.trace_id
        record.user_id = unit.user_id or _NONE
    if record.levelno >= logging.ERROR:
        record.issue_url = _NONE if unit is None else _issue_url(unit)


def _issue_url(unit: Unit) -> str:
    """The server's issues of this unit's trace; ``-`` before ``init()`` or without ``SENTRY_URL``."""
    from observability.sentry import runtime
    from observability.sentry_api import issues_link_for

    try:
        settings = runtime().settings
    except RuntimeError:
        return _NONE
    link = issues_link_for(settings)
    return _NONE if link is None else link({"trace_id": unit.trace_id})


class LogContextFilter(logging.Filter):
    """For handler configs (``logging.config.dictConfig``): adds ``trace_id`` and ``user_id`` to records, and
    ``issue_url`` to ERROR and above."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "trace_id"):
            _stamp(record)
        return True


_installed = False


def install_record_factory() -> None:
    """Make every new log record carry ``trace_id`` and ``user_id`` (``issue_url`` from ERROR up); chains the
    current factory, once."""
    global _installed  # noqa: PLW0603
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _stamp(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True

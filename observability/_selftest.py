"""``obskit test-sentry``: send one tagged test event of each kind and confirm it reached the server."""

from __future__ import annotations

import time
from collections.abc import Callable

import observability as obs
from observability import sentry_api
from observability.errors import ServerAPIError

KINDS = ("error", "message", "breadcrumbs", "business", "api_error")


class ObskitTestError(Exception):
    """Raised on purpose by ``obskit test-sentry error``."""


class ObskitTestAPIError(Exception):
    """Stands for a failed call to another service, raised by ``obskit test-sentry api_error``."""


def _send(kind: str) -> str | None:
    if kind == "error":
        try:
            raise ObskitTestError("obskit test error: nothing is broken")  # noqa: TRY301
        except ObskitTestError as exc:
            return obs.capture_exception(exc, context={"kind": kind})
    if kind == "message":
        return obs.capture_message("obskit test message", "info", kind=kind)
    if kind == "breadcrumbs":
        for step in ("loaded order", "reserved stock", "charged card"):
            obs.add_breadcrumb("business", f"obskit test: {step}")
        return obs.capture_message("obskit test breadcrumbs", "info", kind=kind)
    if kind == "business":
        return obs.report_business_failure("obskit_test_rule", "obskit test business-rule failure", kind=kind)
    try:
        raise ObskitTestAPIError("obskit test API error: POST /payments answered 502")  # noqa: TRY301
    except ObskitTestAPIError as exc:
        return obs.capture_exception(exc, context={"status_code": 502, "method": "POST", "path": "/payments"})


def run(kind: str, *, service: str, user_id: str, timeout_s: float, echo: Callable[[str], None]) -> bool:
    """Send the events; True when every one was sent and, if the web API is configured, found there."""
    rt = obs.init(service)
    if not rt.sentry_enabled:
        echo("SENTRY_DSN is not set: nothing to send to")
        return False
    kinds = KINDS if kind == "all" else (kind,)
    sent: dict[str, str | None] = {}
    with obs.bind(user_id=user_id, test="true"):
        for name in kinds:
            sent[name] = _send(name)
    obs.flush(timeout_s)
    for name, event_id in sent.items():
        echo(f"{name:<12} {event_id or 'NOT SENT'}")
    if not all(sent.values()):
        return False
    if not rt.settings.sentry_url:
        echo("SENTRY_URL is not set: sent, arrival not checked")
        return True
    api = sentry_api.client(rt.settings)
    deadline = time.monotonic() + timeout_s
    missing = {name: eid for name, eid in sent.items() if eid}
    while missing and time.monotonic() < deadline:
        for name, event_id in list(missing.items()):
            try:
                if api.event(event_id) is not None:
                    echo(f"{name:<12} arrived: {api.event_url(event_id)}")
                    del missing[name]
            except ServerAPIError as exc:
                echo(f"{name:<12} cannot check: {exc}")
                return False
        if missing:
            time.sleep(0.5)
    for name in missing:
        echo(f"{name:<12} NOT FOUND at the server after {timeout_s:g} s")
    return not missing

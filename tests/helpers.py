"""Waiting helpers the integration tests share: bounded polls, never timed assertions."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from observability.sentry_api import ServerAPI, StoredEvent

Handler = Callable[[httpx.Request], httpx.Response]


def wait_for(
    condition: Callable[[], Any], timeout_s: float = 30, what: str = "the condition", *, poll_s: float = 0.2
) -> Any:
    """Poll until ``condition()`` is truthy and return its value; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            message = f"timed out after {timeout_s:g} s waiting for {what}"
            raise AssertionError(message)
        time.sleep(poll_s)


def wait_for_event(api: ServerAPI, event_id: str | None, timeout_s: float = 30) -> StoredEvent:
    """The stored event with the id the SDK returned, once the server has it."""
    assert event_id, "the SDK did not send the event"
    stored: StoredEvent = wait_for(lambda: api.event(event_id), timeout_s, f"event {event_id} to be stored")
    return stored


def wire(api: ServerAPI, handler: Handler) -> list[httpx.Request]:
    """Answer the client's requests with ``handler`` instead of a server; returns the requests seen."""
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    api._http = httpx.Client(base_url=api.url, headers=api._http.headers, transport=httpx.MockTransport(record))
    return seen

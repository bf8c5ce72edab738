"""What the publish hook writes into a task message's headers."""

import time
from typing import Any

import pytest
from celery import signals

import observability as obs
from observability.propagation import extract
from observability.testing import CapturedEvents
from workers import WorkerSettings, instrumentation, make_app


@pytest.fixture(scope="module", autouse=True)
def _instrumented() -> None:
    app = make_app(WorkerSettings(redis_url="redis://127.0.0.1:9/0"), set_as_current=False)
    assert app.conf.task_acks_late  # configuring the app connects the handlers


def publish(headers: dict[str, Any]) -> dict[str, Any]:
    signals.before_task_publish.send(
        sender="unit.task",
        body=((), {}, {}),
        exchange="",
        routing_key="q",
        headers=headers,
        properties={},
        declare=[],
        retry_policy={},
    )
    return headers


def test_the_units_trace_and_user_and_a_publish_time_are_added() -> None:
    before = time.time()
    with obs.bind(user_id=42) as unit:
        headers = publish({"id": "t-1", "task": "unit.task", "retries": 0})
    incoming = extract(headers)
    assert incoming.trace_id == unit.trace_id
    assert incoming.parent_span_id == unit.span_id
    assert incoming.user_id == "42"
    assert int(before * 1000) <= headers[instrumentation.PUBLISHED_AT_HEADER] <= time.time() * 1000
    assert headers["traceparent"] == f"00-{unit.trace_id}-{unit.span_id}-00"


def test_a_user_header_given_by_the_caller_is_kept_outside_a_unit() -> None:
    headers = publish({"id": "t-2", "x-user-id": "9"})
    assert extract(headers).user_id == "9"


def test_each_beat_run_starts_a_trace_of_its_own() -> None:
    first = publish({"id": "b-1", "celery_beat_task": True})
    second = publish({"id": "b-2", "celery_beat_task": True})
    assert extract(first).trace_id is not None
    assert extract(first).trace_id != extract(second).trace_id
    assert extract(second).trace_id is not None
    assert "obskit-monitor" not in first  # crons are off unless beat wraps its scheduler


def test_a_retry_carries_the_failed_attempts_forward() -> None:
    with obs.bind(trace_id="a" * 32, task_id="t-3", retries=0):
        try:
            raise TimeoutError("gateway slow")
        except TimeoutError:
            first = publish({"id": "t-3", "retries": 1})
    with obs.bind(trace_id="a" * 32, task_id="t-3", retries=1):
        try:
            raise TimeoutError("gateway slow again")
        except TimeoutError:
            second = publish({"id": "t-3", "retries": 2, **{k: v for k, v in first.items() if k.startswith("obskit")}})
    history = second[instrumentation.RETRY_HISTORY_HEADER]
    assert [(h["attempt"], h["error"]) for h in history] == [
        (1, "TimeoutError: gateway slow"),
        (2, "TimeoutError: gateway slow again"),
    ]
    assert extract(second).trace_id == "a" * 32


def test_a_task_publishing_another_task_is_no_retry() -> None:
    with obs.bind(task_id="t-4", retries=0):
        headers = publish({"id": "t-5", "retries": 0})
    assert instrumentation.RETRY_HISTORY_HEADER not in headers


def test_a_failing_hook_is_counted_and_the_message_still_goes(
    obskit_events: CapturedEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> dict[str, str]:
        raise RuntimeError("propagation bug")

    monkeypatch.setattr(instrumentation, "outgoing_headers", broken)
    headers = publish({"id": "t-6"})
    assert headers["id"] == "t-6"
    labels = {"service": "test", "component": "celery_publish"}
    assert obskit_events.metric("obskit_internal_errors_total", labels) == 1

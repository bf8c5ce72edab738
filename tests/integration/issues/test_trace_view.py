"""`obskit issues --trace-id T --events`: one trace's events across the Celery worker and the Kafka consumer."""

from __future__ import annotations

from collections.abc import Callable

from observability import issues
from observability.sentry_api import ServerAPI
from tests.integration.issues.conftest import Run, Scenario


def test_the_trace_view_lists_the_tasks_event_then_the_consumers_in_time_order(
    obskit: Callable[..., Run], scenario: Scenario
) -> None:
    found = obskit("issues", "--trace-id", scenario.traces[0], "--events", "--json").json()
    events = found["events"]
    assert [e["event_id"] for e in events] == [scenario.flagged_event, scenario.declined_events[0]]
    task, message = events
    assert (task["service"], task["task"], task["topic"], task["level"]) == (
        scenario.worker_service,
        "issues.flag_and_publish",
        None,
        "warning",
    )
    assert task["title"] == f"payment flagged for review {scenario.word}"
    assert (message["service"], message["topic"], message["level"]) == (
        scenario.consumer_service,
        scenario.topic,
        "error",
    )
    assert message["title"].startswith("PaymentGatewayError: gateway timeout charging payment")
    assert task["time"] < message["time"]
    assert {e["user_id"] for e in events} == {scenario.users[0]}


def test_the_trace_view_table_names_service_task_or_topic_level_and_event(
    obskit: Callable[..., Run], scenario: Scenario
) -> None:
    run = obskit("issues", "--trace-id", scenario.traces[1], "--events")
    assert run.code == 0, run.stderr
    header, logged, failed, footer = run.stdout.splitlines()
    assert header.split() == ["time", "(UTC)", "service", "task", "/", "topic", "level", "event", "id", "title"]
    assert logged.split()[2:5] == [scenario.worker_service, "issues.crash", "error"]
    assert logged.endswith(f"ledger lookup failed {scenario.word}")
    assert failed.split()[2:5] == [scenario.worker_service, "issues.crash", "error"]
    assert failed.endswith(f"LedgerUnavailable: ledger unavailable {scenario.word}")
    assert footer.startswith("web UI: ")


def test_the_trace_view_asks_one_list_then_one_per_issue_and_per_event(
    server_api: ServerAPI, scenario: Scenario
) -> None:
    asked: list[str] = []
    server_api._http.event_hooks["request"].append(lambda request: asked.append(request.url.path))
    try:
        found = issues.trace(server_api, issues.Search(filters={"trace_id": scenario.traces[0]}, limit=200))
    finally:
        server_api._http.event_hooks["request"].pop()
    assert len(found["events"]) == 2
    assert len(asked) == 1 + 2 + 2  # the trace's issues, each one's events, each event's payload

"""A real prefork worker and the Sentry-compatible server: the publisher's trace and user on the worker's
events, one trace along a chain, one event for a task that fails after its retries."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from celery import chain

import observability as obs
from observability.sentry_api import ServerAPI
from observability.slo import Outcome
from observability.slo.store import Store
from tests.helpers import wait_for, wait_for_event
from tests.integration.workers.conftest import ENV, Worker, Workers, events_of_user, new_user
from workers import WorkerApp


@pytest.fixture(scope="module")
def worker(module_workers: Workers, sentry_server: Any) -> Worker:
    return module_workers.start(SENTRY_DSN=sentry_server.dsn)


@pytest.fixture(scope="module")
def app(worker: Worker, producer_app: Callable[[str], WorkerApp]) -> WorkerApp:
    return producer_app(worker.queue)


@pytest.fixture(scope="module")
def slo_store(redis_client: Any) -> Store:
    return Store(redis_client)


def slo_counts(store: Store, worker: Worker) -> dict[Outcome, int]:
    (reading,) = store.read([(worker.service, ENV)], [3600], time.time())
    return dict(reading.windows[3600])


def test_the_publishers_trace_and_user_are_the_tags_of_the_workers_event(
    app: WorkerApp, worker: Worker, api: ServerAPI
) -> None:
    user = new_user()
    with obs.bind(user_id=user) as unit:
        result = app.send_task("probe.report", args=["tags"])
    stored = wait_for_event(api, result.get(timeout=30))
    tags = stored.tags
    assert tags["trace_id"] == unit.trace_id == stored.data["contexts"]["trace"]["trace_id"]
    assert stored.data["contexts"]["trace"]["parent_span_id"] == unit.span_id
    assert tags["user_id"] == user == stored.data["user"]["id"]
    assert (tags["task"], tags["task_id"], tags["queue"], tags["retries"]) == (
        "probe.report",
        result.id,
        worker.queue,
        "0",
    )
    assert (tags["service"], tags["env"]) == (worker.service, ENV)
    # Sentry's own Celery integration stays off: the kit's instrumentation replaces it.
    assert "celery" not in stored.data["sdk"]["integrations"]
    assert "celery_task_id" not in tags


def test_a_chain_is_one_trace_each_task_a_child_of_the_one_before(
    app: WorkerApp, worker: Worker, api: ServerAPI
) -> None:
    user = new_user()
    links = [app.signature("probe.report", args=(label,), immutable=True) for label in ("a", "b", "c")]
    with obs.bind(user_id=user) as unit:
        last = chain(*links).apply_async()
    results = [last.parent.parent, last.parent, last]
    stored = [wait_for_event(api, result.get(timeout=30)) for result in results]
    assert [s.tags["trace_id"] for s in stored] == [unit.trace_id] * 3
    assert [s.tags["user_id"] for s in stored] == [user] * 3
    spans = [s.data["contexts"]["trace"] for s in stored]
    assert spans[0]["parent_span_id"] == unit.span_id
    assert spans[1]["parent_span_id"] == spans[0]["span_id"]
    assert spans[2]["parent_span_id"] == spans[1]["span_id"]


def test_a_task_failing_after_three_retries_is_one_event_and_one_bad_slo_count(
    app: WorkerApp, worker: Worker, api: ServerAPI, slo_store: Store
) -> None:
    user = new_user()
    before = slo_counts(slo_store, worker)
    with obs.bind(user_id=user) as unit:
        result = app.send_task("workers.tasks.fetch_exchange_rate", args=["USD"], kwargs={"fail_times": 99})
    failure = result.get(timeout=60, propagate=False)
    assert type(failure).__name__ == "RateServiceUnavailable"
    assert result.state == "FAILURE"

    def slo_moved() -> dict[Outcome, int] | None:
        counts = slo_counts(slo_store, worker)
        return counts if counts[Outcome.ERROR] > before.get(Outcome.ERROR, 0) else None

    after = wait_for(slo_moved, 30, "the failure counted in the SLO")
    assert after[Outcome.ERROR] - before.get(Outcome.ERROR, 0) == 1
    assert after[Outcome.RETRIED] - before.get(Outcome.RETRIED, 0) == 3
    (event,) = wait_for(lambda: events_of_user(api, user), 30, "the failure's event")
    # The retries were published seconds before the final failure: any event of theirs would be
    # stored by now. Ask again to be sure there is exactly one.
    assert len(events_of_user(api, user)) == 1
    assert event.tags["trace_id"] == unit.trace_id
    assert event.tags["retries"] == "3"
    assert event.data["exception"]["values"][-1]["type"] == "RateServiceUnavailable"
    crumbs = [c["message"] for c in event.data["breadcrumbs"]["values"] if c.get("category") == "retry"]
    assert crumbs == [
        f"attempt {n} failed: RateServiceUnavailable: rate service unavailable for USD (attempt {n})" for n in (1, 2, 3)
    ]
    assert worker.sample("obskit_celery_tasks_total", task="workers.tasks.fetch_exchange_rate", outcome="error") == 1
    assert worker.sample("obskit_celery_tasks_total", task="workers.tasks.fetch_exchange_rate", outcome="retried") == 3


def test_a_business_rule_failure_in_a_chain_is_a_message_in_the_checkouts_trace(
    app: WorkerApp, worker: Worker, api: ServerAPI, slo_store: Store
) -> None:
    user = new_user()
    before = slo_counts(slo_store, worker)
    with obs.bind(user_id=user) as unit:
        app.send_task("workers.tasks.checkout", args=[user, 50_000]).get(timeout=30)
    (message,) = wait_for(lambda: events_of_user(api, user), 30, "the business-rule message")
    assert "exception" not in message.data
    assert message.tags["rule"] == "daily_limit"
    assert message.tags["task"] == "workers.tasks.pay"
    assert message.tags["trace_id"] == unit.trace_id
    assert message.data["level"] == "warning"

    def counted() -> dict[Outcome, int] | None:
        counts = slo_counts(slo_store, worker)
        return counts if counts[Outcome.BUSINESS_FAILURE] > before.get(Outcome.BUSINESS_FAILURE, 0) else None

    after = wait_for(counted, 30, "the business failure counted")
    assert after[Outcome.ERROR] == before.get(Outcome.ERROR, 0)
    assert worker.sample("obskit_business_failures_total", rule="daily_limit") >= 1


def test_the_main_process_serves_queue_wait_backlog_and_up(app: WorkerApp, worker: Worker) -> None:
    results = [app.send_task("probe.noop", args=[n]) for n in range(4)]
    assert [r.get(timeout=30) for r in results] == [0, 1, 2, 3]
    wait_for(
        lambda: worker.sample("obskit_celery_tasks_total", task="probe.noop", outcome="ok") == 4,
        30,
        "four tasks counted",
    )
    assert worker.sample("obskit_celery_queue_wait_seconds_count", queue=worker.queue) >= 4
    assert worker.sample("obskit_celery_task_runtime_seconds_count", task="probe.noop") == 4
    assert worker.sample("obskit_celery_worker_up") == 1
    key = ("obskit_celery_queue_backlog_messages", (("queue", worker.queue), ("service", worker.service)))
    assert key in worker.metrics()


def test_a_task_over_its_hard_time_limit_is_one_tagged_event_and_one_error(
    app: WorkerApp, worker: Worker, api: ServerAPI, slo_store: Store
) -> None:
    # The main process fails the task and terminates its child: Celery logs it there, sends
    # task_failure twice there (from the pool's error callback and from its timeout handler), and the
    # terminated child runs the task's postrun. One event with the task's tags, one error counted.
    user = new_user()
    before = slo_counts(slo_store, worker)
    with obs.bind(user_id=user) as unit:
        result = app.send_task("probe.hang")
    failure = result.get(timeout=60, propagate=False)
    assert type(failure).__name__ == "TimeLimitExceeded"
    wait_for(
        lambda: worker.sample("obskit_celery_tasks_total", task="probe.hang", outcome="error") >= 1,
        30,
        "the failure counted",
    )
    (event,) = wait_for(lambda: events_of_user(api, user), 30, "the failure's event")
    time.sleep(2)  # whatever else was sent about this task went in the same breath: it is stored by now
    assert len(events_of_user(api, user)) == 1
    assert event.data["exception"]["values"][-1]["type"] == "TimeLimitExceeded"
    tags = event.tags
    assert (tags["task"], tags["task_id"], tags["queue"], tags["trace_id"]) == (
        "probe.hang",
        result.id,
        worker.queue,
        unit.trace_id,
    )
    outcomes = {
        dict(labels)["outcome"]: value
        for (name, labels), value in worker.metrics().items()
        if name == "obskit_celery_tasks_total" and dict(labels).get("task") == "probe.hang"
    }
    assert outcomes == {"error": 1.0}

    def errors_since() -> int:
        return slo_counts(slo_store, worker).get(Outcome.ERROR, 0) - before.get(Outcome.ERROR, 0)

    wait_for(lambda: errors_since() >= 1, 10, "the failure in the SLO")
    assert errors_since() == 1

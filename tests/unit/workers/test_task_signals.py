"""What the signal handlers make of a task attempt, run eagerly against an in-memory Sentry transport."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sentry_sdk
from celery.exceptions import Ignore, Reject, Retry

import observability as obs
from observability.testing import TEST_DSN, CapturedEvents, capture_transport
from workers import WorkerSettings, make_app

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
QUEUE = "unit-q"


class Unpicklable(Exception):
    """An exception Celery cannot pickle: its __init__ takes two arguments, its args hold one."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code


@pytest.fixture(scope="module")
def app() -> Any:
    app = make_app(WorkerSettings(redis_url="redis://127.0.0.1:9/0", queue=QUEUE), set_as_current=False)

    @app.task(name="unit.ok")
    def ok(value: int) -> int:
        return value * 2

    @app.task(name="unit.boom")
    def boom(card: str) -> None:
        raise ValueError("card declined by the gateway")

    @app.task(name="unit.sdk_user")
    def sdk_user(user: str) -> None:
        # As tasks written for Sentry's own Celery integration do: its scope is per task.
        sentry_sdk.set_user({"id": user, "email": f"{user}@example.com"})
        sentry_sdk.set_tag("order_id", f"o-{user}")
        raise ValueError("card declined by the gateway")

    @app.task(name="unit.rule")
    def rule(amount: int) -> None:
        raise obs.BusinessRuleError("daily_limit", "payment over the daily limit", amount=amount)

    @app.task(name="unit.unpicklable")
    def unpicklable() -> None:
        raise Unpicklable(503, "upstream down")

    @app.task(name="unit.control")
    def control(kind: str) -> None:
        raise {"ignore": Ignore(), "reject": Reject("no", requeue=False), "retry": Retry("later")}[kind]

    @app.task(name="unit.terminated")
    def terminated() -> None:
        raise SystemExit(15)  # what a child's SIGTERM handler raises at a hard time limit

    @app.task(name="unit.spanned")
    def spanned() -> None:
        with obs.span("db.query", "select 1"):
            pass

    @app.task(name="unit.outer")
    def outer() -> None:
        app.tasks["unit.boom"].apply(("x",), routing_key=QUEUE)  # run inside this task: refines its unit
        raise RuntimeError("outer failed after its inner task")

    @app.task(name="unit.replaced", bind=True)
    def replaced(self: Any, value: int) -> Any:
        # Eagerly, Celery runs the replacement inside this attempt under the same task id.
        return self.replace(app.tasks["unit.rule" if value < 0 else "unit.ok"].s(value))

    @app.task(name="unit.meddler", bind=True)
    def meddler(self: Any) -> tuple[bool, bool, str | None]:
        # Another task's signals arriving while this attempt runs must not finish or claim it.
        from workers import instrumentation

        other = app.tasks["unit.ok"]
        instrumentation._task_postrun(sender=other, task=other, task_id="another-id", state="SUCCESS")
        unit = obs.current()
        task = None if unit is None else unit.tags.get("task")
        return instrumentation._running(self.request.id), instrumentation._running("another-id"), task

    app.conf.task_store_eager_result = False
    return app


def run(app: Any, name: str, *args: Any, headers: dict[str, Any] | None = None) -> Any:
    return app.tasks[name].apply(args, headers=headers or {}, routing_key=QUEUE)


def tasks_total(events: CapturedEvents, task: str, outcome: str) -> float:
    return events.metric("obskit_celery_tasks_total", {"service": "test", "task": task, "outcome": outcome})


@pytest.fixture
def traced() -> Iterator[CapturedEvents]:
    """The kit with every task traced."""
    sink = CapturedEvents()
    obs.init(
        "test",
        dsn=TEST_DSN,
        environ={},
        transport=capture_transport(sink),
        registry=sink.registry,
        traces_sample_rate=1.0,
    )
    try:
        with sentry_sdk.isolation_scope():
            yield sink
    finally:
        obs.shutdown(timeout_s=1.0)


def test_a_failure_is_one_event_with_the_incoming_trace_user_and_task_tags(
    app: Any, obskit_events: CapturedEvents
) -> None:
    headers = {"sentry-trace": f"{TRACE}-{PARENT}", "x-user-id": "u-7"}
    result = run(app, "unit.boom", "4111 1111 1111 1111", headers=headers)
    assert result.state == "FAILURE"
    (event,) = obskit_events
    assert event["exception"]["values"][-1]["type"] == "ValueError"
    tags = event["tags"]
    assert tags["trace_id"] == TRACE == event["contexts"]["trace"]["trace_id"]
    assert event["contexts"]["trace"]["parent_span_id"] == PARENT
    assert tags["user_id"] == "u-7"
    assert (tags["task"], tags["task_id"], tags["queue"], tags["retries"]) == ("unit.boom", result.id, QUEUE, "0")
    celery_task = event["extra"]["celery_task"]
    assert celery_task["task"] == "unit.boom"
    assert "4111" not in str(celery_task["args"])
    assert tasks_total(obskit_events, "unit.boom", "error") == 1
    assert (
        obskit_events.metric(
            "obskit_errors_total", {"service": "test", "env": "development", "error_type": "ValueError"}
        )
        == 1
    )


def test_a_success_sends_nothing_and_is_counted_with_its_runtime(app: Any, obskit_events: CapturedEvents) -> None:
    assert run(app, "unit.ok", 21).get() == 42
    assert list(obskit_events) == []
    assert tasks_total(obskit_events, "unit.ok", "ok") == 1
    labels = {"service": "test", "task": "unit.ok"}
    assert obskit_events.metric("obskit_celery_task_runtime_seconds_count", labels) == 1


def test_an_interrupted_attempt_is_left_to_the_main_process(app: Any, obskit_events: CapturedEvents) -> None:
    # The main process fails the task (hard time limit) or requeues it (cold shutdown): counted there.
    with pytest.raises(SystemExit):
        run(app, "unit.terminated")
    assert list(obskit_events) == []
    assert {
        outcome: tasks_total(obskit_events, "unit.terminated", outcome) for outcome in ("ok", "error", "retried")
    } == {"ok": 0, "error": 0, "retried": 0}
    labels = {"service": "test", "task": "unit.terminated"}
    assert obskit_events.metric("obskit_celery_task_runtime_seconds_count", labels) == 1


def test_the_main_process_remembers_the_task_ids_it_failed_for_a_while() -> None:
    from workers.instrumentation import _TaskIds

    now = [0.0]
    seen = _TaskIds(size=2, ttl_s=5.0, clock=lambda: now[0])
    assert [seen.add("a"), seen.add("a"), seen.add("b"), seen.add("c")] == [True, False, True, True]
    assert [task_id in seen for task_id in ("a", "b", "c")] == [False, True, True]
    seen.discard("b")
    assert seen.add("b")
    now[0] = 5.0
    assert "c" not in seen
    assert seen.add("c")


def test_only_celerys_own_lines_about_what_the_kit_reports_are_dropped() -> None:
    import logging

    from workers import instrumentation

    def record(msg: str, name: str = "celery.worker.request") -> dict[str, Any]:
        return {"log_record": logging.LogRecord(name, logging.ERROR, __file__, 1, msg, (), None)}

    event: dict[str, Any] = {"level": "error"}
    lines = ["Task handler raised error: %r", "Hard time limit (%ss) exceeded for %s[%s]", "Couldn't ack %r"]
    outside = [instrumentation._drop_celerys_duplicates(event, record(m)) for m in lines]
    token = instrumentation._handling.set(True)
    try:
        inside = [instrumentation._drop_celerys_duplicates(event, record(m)) for m in lines]
        other_logger = instrumentation._drop_celerys_duplicates(event, record(lines[0], name="app"))
    finally:
        instrumentation._handling.reset(token)
    assert outside == [event, event, event]
    assert inside == [None, None, event]
    assert other_logger is event


def test_a_business_rule_is_a_message_not_an_error(app: Any, obskit_events: CapturedEvents) -> None:
    run(app, "unit.rule", 20_000, headers={"x-user-id": "u-8"})
    (message,) = obskit_events
    assert "exception" not in message
    assert message["tags"]["rule"] == "daily_limit"
    assert message["tags"]["user_id"] == "u-8"
    assert message["tags"]["task"] == "unit.rule"
    assert tasks_total(obskit_events, "unit.rule", "business_failure") == 1
    assert tasks_total(obskit_events, "unit.rule", "error") == 0


def test_an_exception_celery_cannot_pickle_is_reported_as_itself(app: Any, obskit_events: CapturedEvents) -> None:
    run(app, "unit.unpicklable")
    (event,) = obskit_events
    assert event["exception"]["values"][-1]["type"] == "Unpicklable"


@pytest.mark.parametrize(("kind", "outcome"), [("ignore", "ignored"), ("reject", "rejected"), ("retry", "retried")])
def test_ignore_reject_and_retry_are_no_errors(
    app: Any, obskit_events: CapturedEvents, kind: str, outcome: str
) -> None:
    run(app, "unit.control", kind)
    assert list(obskit_events) == []
    assert tasks_total(obskit_events, "unit.control", outcome) == 1
    assert tasks_total(obskit_events, "unit.control", "error") == 0


def test_earlier_attempts_are_breadcrumbs_on_the_final_failure(app: Any, obskit_events: CapturedEvents) -> None:
    history = [
        {"attempt": 1, "error": "TimeoutError: gateway", "at": 1700000000.0},
        {"attempt": 2, "error": "TimeoutError: gateway", "at": 1700000001.0},
    ]
    run(app, "unit.boom", "x", headers={"obskit-retries": history})
    (event,) = obskit_events
    crumbs = [c["message"] for c in event["breadcrumbs"]["values"] if c.get("category") == "retry"]
    assert crumbs == ["attempt 1 failed: TimeoutError: gateway", "attempt 2 failed: TimeoutError: gateway"]


def test_the_unsampled_path_starts_no_transaction(
    app: Any, obskit_events: CapturedEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a transaction was started for an unsampled task")

    monkeypatch.setattr(obs.sentry, "start_transaction", forbidden)
    monkeypatch.setattr(obs.sentry, "send_transaction", forbidden)
    monkeypatch.setattr(obs.sentry, "transport_has_room", forbidden)
    monkeypatch.setattr(sentry_sdk, "start_transaction", forbidden)
    assert run(app, "unit.ok", 1).get() == 2
    assert obskit_events.metric("obskit_internal_errors_total", {"service": "test", "component": "celery_prerun"}) == 0
    assert obskit_events.transactions == []


def test_a_sampled_task_is_a_transaction_continuing_the_incoming_trace(app: Any, traced: CapturedEvents) -> None:
    run(app, "unit.ok", 1, headers={"sentry-trace": f"{TRACE}-{PARENT}"})
    run(app, "unit.boom", "x", headers={"sentry-trace": f"{TRACE}-{PARENT}-1"})
    ok, failed = traced.transactions
    assert ok["transaction"] == "unit.ok"
    assert ok["contexts"]["trace"]["trace_id"] == TRACE
    assert ok["contexts"]["trace"]["parent_span_id"] == PARENT
    assert ok["contexts"]["trace"]["op"] == "queue.task.celery"
    assert ok["contexts"]["trace"]["status"] == "ok"
    assert failed["contexts"]["trace"]["status"] == "internal_error"
    (error,) = traced.errors
    assert error["contexts"]["trace"]["span_id"] == failed["contexts"]["trace"]["span_id"]


def test_tasks_one_after_another_share_nothing(app: Any, obskit_events: CapturedEvents) -> None:
    history = [{"attempt": 1, "error": "TimeoutError: gateway", "at": 1700000000.0}]
    first = run(
        app,
        "unit.boom",
        "x",
        headers={"sentry-trace": f"{TRACE}-{PARENT}", "x-user-id": "u-1", "obskit-retries": history},
    )
    obs.set_user("u-1b")  # outside any task now: the worker's scope, seen by a task that has no user
    second = run(app, "unit.boom", "y", headers={"x-user-id": "u-2"})
    third = run(app, "unit.boom", "z")
    one, two, three = obskit_events
    assert (one["tags"]["user_id"], one["tags"]["trace_id"], one["tags"]["task_id"]) == ("u-1", TRACE, first.id)
    assert two["tags"]["user_id"] == "u-2"
    assert three["tags"]["user_id"] == "u-1b"
    assert len({TRACE, two["tags"]["trace_id"], three["tags"]["trace_id"]}) == 3
    assert (two["tags"]["task_id"], three["tags"]["task_id"]) == (second.id, third.id)
    assert "parent_span_id" not in two["contexts"]["trace"]
    for event in (two, three):
        assert not [c for c in event.get("breadcrumbs", {}).get("values", []) if c.get("category") == "retry"]


def test_what_a_task_sets_on_the_sdks_scope_is_its_own(app: Any, obskit_events: CapturedEvents) -> None:
    with sentry_sdk.isolation_scope():  # the user set before the tasks stays in this test
        # Set before the tasks (an app's own task_prerun receiver may run before the kit's): seen by every
        # task that sets none, as in a scope forked per task.
        sentry_sdk.set_user({"id": "set-before"})
        run(app, "unit.sdk_user", "u-9")
        run(app, "unit.boom", "x")
        obs.capture_message("after the tasks")
    first, second, after = obskit_events
    assert (first["user"]["id"], first["tags"]["user_id"], first["tags"]["order_id"]) == ("u-9", "u-9", "o-u-9")
    # The first task's user and tag are not the second task's.
    assert (second["user"]["id"], second["tags"]["user_id"]) == ("set-before", "set-before")
    assert "order_id" not in second["tags"]
    assert (after["user"]["id"], after["tags"]["user_id"]) == ("set-before", "set-before")
    assert "order_id" not in after["tags"]


def test_a_sampled_task_that_sets_a_user_and_tag_on_the_sdks_scope_has_them_on_its_transaction(
    app: Any, traced: CapturedEvents
) -> None:
    run(app, "unit.sdk_user", "u-9")
    run(app, "unit.ok", 1)
    (failed, ok) = traced.transactions
    assert (failed["user"]["id"], failed["tags"]["user_id"], failed["tags"]["order_id"]) == ("u-9", "u-9", "o-u-9")
    assert failed["tags"]["task"] == "unit.sdk_user"
    assert "user" not in ok
    assert "order_id" not in ok["tags"]


def test_a_user_the_task_sets_never_mixes_with_the_messages_user(app: Any, obskit_events: CapturedEvents) -> None:
    # The message carries user 42; the task sets another person on the SDK's scope: the unit's user wins
    # whole, with no other person's email beside its id.
    app.tasks["unit.sdk_user"].apply(("u-9",), headers={"x-user-id": "42"}, routing_key=QUEUE)
    (event,) = obskit_events
    assert event["user"] == {"id": "42"}
    assert event["tags"]["user_id"] == "42"


def test_an_attempt_nested_under_the_same_task_id_is_finished_on_its_own(
    app: Any, obskit_events: CapturedEvents
) -> None:
    ok = run(app, "unit.replaced", 21, headers={"x-user-id": "u-3"})
    assert ok.get() == 42
    failed = run(app, "unit.replaced", -5, headers={"x-user-id": "u-4"})
    # The replacement fails, and the outer attempt with it (``get()`` raises there): one message each,
    # each in its own unit, with the id both ran under.
    inner, outer = obskit_events
    assert [(m["tags"]["task"], m["tags"]["task_id"], m["tags"]["user_id"]) for m in (inner, outer)] == [
        ("unit.rule", failed.id, "u-4"),
        ("unit.replaced", failed.id, "u-4"),
    ]
    assert tasks_total(obskit_events, "unit.ok", "ok") == 1
    assert tasks_total(obskit_events, "unit.rule", "business_failure") == 1
    assert tasks_total(obskit_events, "unit.replaced", "ok") == 1
    assert tasks_total(obskit_events, "unit.replaced", "business_failure") == 1
    assert obs.current() is None


def test_another_tasks_signals_leave_the_running_attempt_alone(app: Any, obskit_events: CapturedEvents) -> None:
    assert run(app, "unit.meddler").get() == (True, False, "unit.meddler")
    assert tasks_total(obskit_events, "unit.meddler", "ok") == 1
    assert tasks_total(obskit_events, "unit.ok", "ok") == 0


def test_a_nested_attempt_whose_prerun_failed_leaves_the_outer_attempt_to_its_own_postrun(
    app: Any, obskit_events: CapturedEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers import instrumentation

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bind bug")

    # The replacement runs inside the outer attempt (the bind path), under the same id; its prerun fails.
    monkeypatch.setattr(instrumentation, "bind_incoming", broken)
    assert run(app, "unit.replaced", 21, headers={"x-user-id": "u-5"}).get() == 42
    assert tasks_total(obskit_events, "unit.replaced", "ok") == 1  # finished by its own postrun
    assert tasks_total(obskit_events, "unit.ok", "ok") == 0  # its attempt never started here
    assert obskit_events.metric("obskit_internal_errors_total", {"service": "test", "component": "celery_prerun"}) == 1
    assert obs.current() is None


def test_a_sampled_tasks_spans_stay_in_its_own_transaction(app: Any, traced: CapturedEvents) -> None:
    run(app, "unit.spanned", headers={"sentry-trace": f"{TRACE}-{PARENT}-1"})
    run(app, "unit.ok", 1, headers={"sentry-trace": f"{TRACE}-{PARENT}-1"})
    spanned, ok = traced.transactions
    assert [s["op"] for s in spanned["spans"]] == ["db.query"]
    assert ok["spans"] == []


def test_a_task_run_inside_another_refines_its_unit(app: Any, obskit_events: CapturedEvents) -> None:
    outer = run(app, "unit.outer", headers={"sentry-trace": f"{TRACE}-{PARENT}", "x-user-id": "u-9"})
    inner_event, outer_event = obskit_events
    for event in (inner_event, outer_event):
        assert (event["tags"]["user_id"], event["tags"]["trace_id"]) == ("u-9", TRACE)
    assert inner_event["tags"]["task"] == "unit.boom"
    assert (outer_event["tags"]["task"], outer_event["tags"]["task_id"]) == ("unit.outer", outer.id)


def test_an_unsampled_parent_is_honoured(app: Any, traced: CapturedEvents) -> None:
    run(app, "unit.ok", 1, headers={"sentry-trace": f"{TRACE}-{PARENT}-0"})
    assert traced.transactions == []


def test_the_kits_own_failure_is_counted_and_the_task_runs(
    app: Any, obskit_events: CapturedEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> bool:
        raise RuntimeError("sampler bug")

    monkeypatch.setattr(obs.runtime().sampler, "decide", broken)
    assert run(app, "unit.ok", 5).get() == 10
    labels = {"service": "test", "component": "celery_prerun"}
    assert obskit_events.metric("obskit_internal_errors_total", labels) == 1


def test_a_failing_task_keeps_its_exception_when_the_kit_breaks(
    app: Any, obskit_events: CapturedEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers import instrumentation

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("reporting bug")

    monkeypatch.setattr(instrumentation._Kit, "report_failure", broken)
    result = run(app, "unit.boom", "x")
    assert isinstance(result.result, ValueError)
    assert str(result.result) == "card declined by the gateway"
    labels = {"service": "test", "component": "celery_failure"}
    assert obskit_events.metric("obskit_internal_errors_total", labels) == 1


def test_tasks_run_untouched_before_the_kit_is_initialised(app: Any) -> None:
    obs.shutdown()
    assert run(app, "unit.ok", 2).get() == 4
    assert isinstance(run(app, "unit.boom", "x").result, ValueError)


def test_sentrys_own_celery_integration_stays_off(app: Any, obskit_events: CapturedEvents) -> None:
    run(app, "unit.boom", "x")
    client = sentry_sdk.get_client()
    assert "celery" not in client.integrations
    (event,) = obskit_events
    assert "celery" not in event["sdk"]["integrations"]
    assert "celery_task_id" not in event["tags"]


def test_the_trace_budget_refills_at_its_rate() -> None:
    from observability.sentry import TokenBucket

    now = [0.0]
    budget = TokenBucket(2.0, clock=lambda: now[0])
    assert [budget.take() for _ in range(3)] == [True, True, False]
    now[0] = 0.5
    assert [budget.take() for _ in range(2)] == [True, False]
    # Under one a second: one every 1/rate seconds, not none at all.
    slow = TokenBucket(0.5, clock=lambda: now[0])
    assert [slow.take() for _ in range(2)] == [True, False]
    now[0] = 2.0
    assert [slow.take() for _ in range(2)] == [False, False]
    now[0] = 2.5
    assert [slow.take() for _ in range(2)] == [True, False]


def test_a_task_over_the_trace_budget_is_not_traced(app: Any, traced: CapturedEvents) -> None:
    from workers import instrumentation

    kit = instrumentation._active()
    assert kit is not None
    kit.budget = obs.sentry.TokenBucket(1.0, clock=lambda: 0.0)
    run(app, "unit.ok", 1)
    run(app, "unit.boom", "x")
    (transaction,) = traced.transactions
    assert transaction["transaction"] == "unit.ok"
    (error,) = traced.errors
    assert error["contexts"]["trace"]["trace_id"] != transaction["contexts"]["trace"]["trace_id"]


def test_queue_wait_runs_from_publish_and_a_start_before_publish_is_counted_as_skew(
    app: Any, obskit_events: CapturedEvents
) -> None:
    now_ms = int(time.time() * 1000)
    run(app, "unit.ok", 1, headers={"obskit-published-ms": now_ms - 2000})
    run(app, "unit.ok", 1, headers={"obskit-published-ms": now_ms + 60_000})
    labels = {"service": "test", "queue": QUEUE}
    assert obskit_events.metric("obskit_celery_queue_wait_seconds_count", labels) == 1
    assert 2.0 <= obskit_events.metric("obskit_celery_queue_wait_seconds_sum", labels) < 60
    assert obskit_events.metric("obskit_celery_queue_wait_clock_skew_total", labels) == 1


def test_queue_wait_of_a_task_with_an_eta_runs_from_the_eta(obskit_events: CapturedEvents) -> None:
    from workers import instrumentation

    kit = instrumentation._active()
    assert kit is not None
    eta = datetime.fromtimestamp(1000.0, tz=UTC).isoformat()
    assert kit.observe_wait("q", 1003.5, 900_000, eta) == 3.5
    assert kit.observe_wait("q", 1003.5, 1_002_000, eta) == 1.5


def test_a_worker_gives_an_app_of_its_own_the_kits_request_unless_it_has_one(caplog: pytest.LogCaptureFixture) -> None:
    from celery import Celery
    from celery import Task as CeleryTask
    from celery.worker.request import Request as CeleryRequest

    from workers.instrumentation import Request, adopt_request

    class Based(CeleryTask):  # type: ignore[misc]  # its tasks take Celery's request from here, not app.Task
        pass

    class Mine(CeleryRequest):  # type: ignore[misc]
        pass

    class MineBased(CeleryTask):  # type: ignore[misc]
        Request = Mine

    plain = Celery("plain", set_as_current=False)

    @plain.task(name="plain.ok")
    def ok() -> None: ...

    @plain.task(name="plain.based", base=Based)
    def based() -> None: ...

    assert adopt_request(plain)
    # Tasks made before the worker started, too, and one on a base class of its own.
    assert [plain.tasks[name].Request for name in ("plain.ok", "plain.based")] == [Request, Request]
    assert Based.Request == "celery.worker.request:Request"  # the user's base class is left as it was

    kit = make_app(WorkerSettings(redis_url="redis://127.0.0.1:9/0", queue=QUEUE), set_as_current=False)
    assert adopt_request(kit)
    assert kit.Task.Request == "workers.instrumentation:Request"  # left as it was

    mixed = Celery("mixed", set_as_current=False)

    @mixed.task(name="mixed.ok")
    def mixed_ok() -> None: ...

    @mixed.task(name="mixed.mine", base=MineBased)
    def mixed_mine() -> None: ...

    with caplog.at_level("WARNING", logger="workers.instrumentation"):
        assert not adopt_request(mixed)
    assert (mixed.tasks["mixed.ok"].Request, mixed.tasks["mixed.mine"].Request) == (Request, Mine)
    assert "mixed.mine" in caplog.text
    assert "mixed.ok" not in caplog.text

    caplog.clear()
    custom = Celery("custom", set_as_current=False)
    custom.Task.Request = Mine
    with caplog.at_level("WARNING", logger="workers.instrumentation"):
        assert not adopt_request(custom)
    assert custom.Task.Request is Mine
    assert "a request class of their own" in caplog.text


def test_a_name_only_counted_gets_no_runtime_histogram(obskit_events: CapturedEvents) -> None:
    from workers import instrumentation

    instrumentation._task_unknown(sender=None, name="nope", id="t-1", message=None, exc=None)
    instrumentation._task_rejected(sender=None, message=None, exc=None)
    assert tasks_total(obskit_events, "unregistered", "rejected") == 1
    assert tasks_total(obskit_events, "invalid", "rejected") == 1
    runtimes = {s.labels["task"] for m in obskit_events.registry.collect() for s in m.samples if "runtime" in s.name}
    assert not runtimes & {"unregistered", "invalid"}


def test_the_request_is_read_off_celerys_stack_as_task_request_reads_it(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from workers import instrumentation

    task = app.tasks["unit.ok"]
    assert type(task.request_stack) is instrumentation._FAST_STACK  # this Celery's stack: read directly
    reads: list[Any] = []
    stack_top = instrumentation._stack_top

    def counted(stack: Any) -> Any:
        reads.append(stack)
        return stack_top(stack)

    monkeypatch.setattr(instrumentation, "_stack_top", counted)
    assert instrumentation._request_of(task) is task.request  # outside any attempt: Celery's default
    task.push_request(id="outer")
    try:
        task.push_request(id="inner")
        reads.clear()
        assert instrumentation._request_of(task) is task.request
        assert instrumentation._request_of(task).id == "inner"
        assert len(reads) == 2  # read off the stack, not through task.request
        task.pop_request()
        assert instrumentation._request_of(task).id == "outer"

        seen: list[Any] = []

        def other_thread() -> None:  # a thread sees its own stack (the threads pool): here, none
            seen.append(instrumentation._request_of(task) is task.request and task.request.id != "outer")
            task.push_request(id="threaded")
            seen.append(instrumentation._request_of(task).id)
            task.pop_request()

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert seen == [True, "threaded"]
        assert instrumentation._request_of(task).id == "outer"
    finally:
        task.pop_request()
    assert instrumentation._request_of(task) is task.request


def test_a_request_stack_of_another_kind_is_read_through_task_request(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery.utils import threads

    from workers import instrumentation

    def unreadable(stack: Any) -> Any:
        raise AssertionError("only Celery's default stack is read directly")

    monkeypatch.setattr(instrumentation, "_stack_top", unreadable)
    task = app.tasks["unit.ok"]
    monkeypatch.setattr(type(task), "request_stack", threads._FastLocalStack())  # USE_FAST_LOCALS's stack
    task.push_request(id="t-1")
    try:
        assert instrumentation._request_of(task) is task.request
        assert instrumentation._request_of(task).id == "t-1"
    finally:
        task.pop_request()


def test_a_celery_whose_default_stack_reads_otherwise_is_not_read_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    from celery.utils import threads

    from workers import instrumentation

    class Stack(threads._LocalStack):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:  # keeps its items elsewhere: the storage read would miss them
            super().__init__()
            self.items: list[Any] = []

        def push(self, obj: Any) -> None:
            self.items.append(obj)

        def pop(self) -> Any:
            return self.items.pop()

        @property
        def top(self) -> Any:
            return self.items[-1] if self.items else None

    assert instrumentation._probe_stack_type() is threads._LocalStack
    monkeypatch.setattr(threads, "_LocalStack", Stack)
    assert instrumentation._probe_stack_type() is None

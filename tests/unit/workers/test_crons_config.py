"""Sentry Crons monitors made from beat schedule entries, and the check-ins a worker sends for them."""

from datetime import timedelta
from typing import Any

import pytest
from celery.schedules import crontab, schedule

from observability.testing import CapturedEvents
from workers import WorkerSettings, _crons, make_app

APP = make_app(WorkerSettings(redis_url="redis://127.0.0.1:9/0"), set_as_current=False)


@APP.task(name="unit.cron_lost")
def lost() -> None:
    """A task the main process fails (its child lost, or stopped at the hard time limit)."""


@pytest.mark.parametrize(
    ("entry_schedule", "expected"),
    [
        (crontab(minute="*/5", app=APP), {"type": "crontab", "value": "*/5 * * * *"}),
        (crontab(minute=0, hour=3, day_of_week="mon-fri", app=APP), {"type": "crontab", "value": "0 3 * * mon-fri"}),
        (schedule(timedelta(minutes=10)), {"type": "interval", "value": 10, "unit": "minute"}),
        (schedule(timedelta(hours=2)), {"type": "interval", "value": 2, "unit": "hour"}),
        (schedule(timedelta(days=14)), {"type": "interval", "value": 2, "unit": "week"}),
    ],
)
def test_crontabs_and_whole_minute_intervals_become_monitor_configs(entry_schedule: Any, expected: Any) -> None:
    assert _crons.monitor_config(entry_schedule, "UTC") == {"schedule": expected, "timezone": "UTC"}


@pytest.mark.parametrize("seconds", [1.0, 30.0, 90.0, 60.5])
def test_intervals_sentry_cannot_express_get_no_config(seconds: float) -> None:
    assert _crons.monitor_config(schedule(timedelta(seconds=seconds)), "UTC") is None


def test_slugs_are_what_sentry_accepts() -> None:
    assert _crons.monitor_slug("Nightly Report!") == "nightly-report"
    assert _crons.monitor_slug("payments.reconcile_daily") == "payments-reconcile_daily"
    assert len(_crons.monitor_slug("x" * 80)) == 50


def test_the_wrapped_scheduler_names_the_entry_it_sends_once_wrapped() -> None:
    seen = []

    class Scheduler:
        app = APP

        def apply_async(self, entry: Any, producer: Any = None, advance: bool = True) -> str:
            seen.append((_crons.current_entry(), advance))
            return "sent"

    scheduler = Scheduler()
    _crons.wrap_scheduler(scheduler)
    wrapped = scheduler.apply_async
    _crons.wrap_scheduler(scheduler)
    assert scheduler.apply_async is wrapped
    assert scheduler.apply_async("entry-1", advance=False) == "sent"
    assert seen == [(("entry-1", "UTC"), False)]
    assert _crons.current_entry() is None


def test_a_scheduled_task_checks_in_progress_then_ok_and_error(obskit_events: CapturedEvents) -> None:
    @APP.task(name="unit.cron")
    def cron(fail: bool) -> None:
        if fail:
            raise RuntimeError("report failed")

    config = {"schedule": {"type": "crontab", "value": "0 3 * * *"}, "timezone": "UTC"}
    for n, fail in enumerate((False, True)):
        monitor = {"slug": "nightly", "check_in_id": f"c{n}", "started": 1.0, "config": config}
        cron.apply((fail,), headers={_crons.MONITOR_HEADER: monitor})
    check_ins = [
        item.payload.json for envelope in obskit_events.envelopes for item in envelope.items if item.type == "check_in"
    ]
    assert [(c["check_in_id"], c["status"]) for c in check_ins] == [
        ("c0", "in_progress"),
        ("c0", "ok"),
        ("c1", "in_progress"),
        ("c1", "error"),
    ]
    assert check_ins[0]["monitor_config"] == config
    assert check_ins[1]["duration"] > 0


@pytest.mark.parametrize(
    ("handled_id", "acknowledged", "requeued", "expected"),
    [
        ("t-1", True, False, ["error"]),  # failed for good (a hard time limit, a lost child not requeued)
        ("t-1", True, True, []),  # requeued: the run that follows checks in
        ("t-1", False, False, []),  # left unacknowledged: redelivered, same
        ("t-2", True, False, []),  # the failure was another task's
    ],
)
def test_the_main_process_closes_a_failed_runs_check_in_only_when_its_message_is_gone(
    obskit_events: CapturedEvents, handled_id: str, acknowledged: bool, requeued: bool, expected: list[str]
) -> None:
    from types import SimpleNamespace

    from workers import instrumentation

    monitor = {"slug": "nightly", "check_in_id": "c9", "started": 1.0}
    # What the main process's request holds when Celery fails its task there (duck-typed: a real one
    # needs a message): the kit's Request is handling it while task_failure is sent, twice for a hard
    # time limit; then the check-in is closed, once, if the message will not come back.
    request = SimpleNamespace(id=handled_id, request_dict={_crons.MONITOR_HEADER: monitor}, acknowledged=acknowledged)
    setattr(request, instrumentation._REQUEUED, requeued)
    token = instrumentation._handling.set(request)  # type: ignore[arg-type]
    try:
        for _ in range(2):
            instrumentation._task_failure(sender=APP.tasks[lost.name], task_id="t-1", exception=RuntimeError("lost"))
            instrumentation.Request._check_in_failure(request)
    finally:
        instrumentation._handling.reset(token)
        instrumentation._failed_in_main.discard("t-1")
    check_ins = [
        item.payload.json for envelope in obskit_events.envelopes for item in envelope.items if item.type == "check_in"
    ]
    assert [c["status"] for c in check_ins if c["check_in_id"] == "c9"] == expected
    assert len(obskit_events.errors) == 1  # the failure itself: one event either way

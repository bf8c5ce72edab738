"""The event pipeline, tags, integrations and sampling, against an in-memory transport."""

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk

import observability as obs
from observability.config import Settings
from observability.sentry import INTEGRATIONS, Sampler
from observability.testing import CapturedEvents


def test_only_the_chosen_integrations_are_active_even_with_celery_and_redis_installed(
    obskit_events: CapturedEvents,
) -> None:
    import celery  # noqa: F401  (installed, so the SDK would auto-enable its integration)
    import redis  # noqa: F401

    assert sorted(sentry_sdk.get_client().integrations) == sorted(INTEGRATIONS)


def test_release_is_the_event_field_never_a_tag() -> None:
    from observability.testing import capture_transport

    sink = CapturedEvents()
    try:
        obs.init(
            "svc",
            environ={"SENTRY_DSN": "http://k@127.0.0.1:9/1", "SENTRY_RELEASE": "svc@1.0"},
            transport=capture_transport(sink),
            registry=sink.registry,
        )
        obs.capture_message("m")
    finally:
        obs.shutdown()
    (event,) = sink
    assert event["release"] == "svc@1.0"
    assert "release" not in event["tags"]
    assert event["environment"] == "development"


def test_unit_tags_user_and_trace_are_on_the_event(obskit_events: CapturedEvents) -> None:
    with obs.bind(user_id=42, component="billing") as unit:
        obs.capture_message("hello")
    (event,) = obskit_events
    assert event["tags"]["service"] == "test"
    assert event["tags"]["env"] == "development"
    assert event["tags"]["user_id"] == "42"
    assert event["tags"]["component"] == "billing"
    assert event["user"]["id"] == "42"
    assert event["tags"]["trace_id"] == unit.trace_id == event["contexts"]["trace"]["trace_id"]
    for reserved in ("release", "user", "dist"):
        assert reserved not in event["tags"]


@pytest.fixture
def traced() -> Iterator[CapturedEvents]:
    """The kit with every transaction sampled."""
    from observability.testing import TEST_DSN, capture_transport

    sink = CapturedEvents()
    obs.init("test", environ={}, dsn=TEST_DSN, transport=capture_transport(sink), registry=sink.registry,
             traces_sample_rate=1.0)  # fmt: skip
    try:
        yield sink
    finally:
        obs.shutdown(timeout_s=1.0)


def test_an_sdk_transaction_started_in_a_unit_joins_its_trace_with_its_spans_and_errors(
    traced: CapturedEvents,
) -> None:
    with (
        obs.bind(user_id=3) as unit,
        sentry_sdk.start_transaction(name="job", op="function"),
        sentry_sdk.start_span(op="db", name="q"),
    ):
        obs.capture_message("inside the transaction")
    (transaction,) = traced.transactions
    (message,) = traced.messages
    trace = transaction["contexts"]["trace"]
    (span,) = transaction["spans"]
    assert trace["op"] == "function"  # its own context, not replaced
    assert (span["trace_id"], span["parent_span_id"]) == (trace["trace_id"], trace["span_id"])
    assert transaction["tags"]["trace_id"] == trace["trace_id"] == unit.trace_id
    assert message["contexts"]["trace"]["trace_id"] == message["tags"]["trace_id"] == unit.trace_id
    assert transaction["tags"]["user_id"] == "3"


def test_the_kits_own_transactions_carry_the_units_trace(traced: CapturedEvents) -> None:
    import time

    with obs.bind(user_id=4) as unit:
        with obs.sentry.start_transaction(unit, op="task", name="task:pay"):
            pass
        obs.sentry.send_transaction(unit, name="topic:pay", op="queue.process", start=time.time(), end=time.time())
    for transaction in traced.transactions:
        assert transaction["contexts"]["trace"]["trace_id"] == transaction["tags"]["trace_id"] == unit.trace_id
        assert transaction["contexts"]["trace"]["span_id"] == unit.span_id
    assert len(traced.transactions) == 2


def test_a_business_rules_own_tags_win_over_the_units_but_not_over_the_schema(obskit_events: CapturedEvents) -> None:
    with obs.bind(user_id=42, rule="outer", component="billing", service="other", env="other") as unit:
        obs.report_business_failure("daily_limit", "payment over the daily limit")
    (event,) = obskit_events
    assert event["tags"]["rule"] == "daily_limit"
    assert event["fingerprint"] == ["business-rule", "daily_limit"]
    assert event["tags"]["component"] == "billing"
    assert (event["tags"]["service"], event["tags"]["env"]) == ("test", "development")
    assert (event["tags"]["user_id"], event["tags"]["trace_id"]) == ("42", unit.trace_id)


def test_a_tag_set_on_the_scope_in_one_unit_does_not_beat_the_next_units_bind(obskit_events: CapturedEvents) -> None:
    # The kit opens no Sentry scope per unit: a set_tag outlives the unit it was set in.
    try:
        with obs.bind():
            sentry_sdk.set_tag("component", "a")
        with obs.bind(component="b"):
            obs.capture_message("m")
    finally:
        sentry_sdk.get_isolation_scope().remove_tag("component")
    (event,) = obskit_events
    assert event["tags"]["component"] == "b"


def test_nothing_leaks_into_the_next_unit(obskit_events: CapturedEvents) -> None:
    with obs.bind(user_id=1, component="a"):
        obs.add_breadcrumb("task", "first unit step")
        obs.capture_message("one")
    with obs.bind():
        obs.capture_message("two")
    obs.capture_message("outside")
    first, second, outside = obskit_events
    assert [c["message"] for c in first["breadcrumbs"]["values"]] == ["first unit step"]
    assert second["breadcrumbs"]["values"] == []
    for event in (second, outside):
        assert "user_id" not in event["tags"]
        assert "component" not in event["tags"]
        assert "id" not in (event.get("user") or {})
    assert first["tags"]["trace_id"] != second["tags"]["trace_id"]


def test_a_bound_trace_id_in_capitals_is_sent_in_lowercase(obskit_events: CapturedEvents) -> None:
    with obs.bind(trace_id=" ABCDEF0123456789ABCDEF0123456789 ") as unit:
        headers = obs.propagation.outgoing_headers()
        obs.capture_message("m")
    (event,) = obskit_events
    trace_id = "abcdef0123456789abcdef0123456789"
    assert unit.trace_id == event["tags"]["trace_id"] == event["contexts"]["trace"]["trace_id"] == trace_id
    assert headers["sentry-trace"].startswith(f"{trace_id}-")


@pytest.mark.parametrize("bad", ["not-a-trace", "0" * 32, "abcdef0123456789abcdef012345678g", "a" * 33])
def test_a_bound_trace_id_that_is_not_one_starts_a_new_trace_with_one_warning(
    bad: str, obskit_events: CapturedEvents, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from observability import context

    monkeypatch.setattr(context, "_warned_bad_trace_id", False)
    caplog.set_level(logging.WARNING, logger="observability.context")
    with obs.bind(trace_id=bad, parent_span_id="b" * 16, baggage=f"sentry-trace_id={bad}") as unit:
        obs.capture_message("m")
    with obs.bind(trace_id=bad):
        pass
    (event,) = obskit_events
    assert len(unit.trace_id) == 32
    assert int(unit.trace_id, 16)
    assert event["tags"]["trace_id"] == event["contexts"]["trace"]["trace_id"] == unit.trace_id
    assert "parent_span_id" not in event["contexts"]["trace"]  # the span of a trace it no longer is in
    assert unit.baggage is None
    (record,) = [r for r in caplog.records if r.name == "observability.context"]
    assert repr(bad) in record.getMessage()
    assert "new trace" in record.getMessage()


def test_an_empty_trace_id_is_no_trace_id() -> None:
    with obs.bind(trace_id="1" * 32), obs.bind(trace_id="") as inner:
        assert inner.trace_id == "1" * 32


def test_log_breadcrumbs_go_to_the_unit_and_errors_become_events(obskit_events: CapturedEvents) -> None:
    log = logging.getLogger("app.payments")
    log.setLevel(logging.INFO)
    with obs.bind(user_id=5) as unit:
        log.info("charging card")
        log.error("charge failed for order %s", 17)
    (event,) = obskit_events
    assert event["logentry"]["message"] == "charge failed for order %s"
    assert any(c.get("message") == "charging card" for c in event["breadcrumbs"]["values"])
    assert event["tags"]["trace_id"] == unit.trace_id


def test_log_records_carry_trace_and_user_ids(obskit_events: CapturedEvents) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    log = logging.getLogger("app.ids")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with obs.bind(user_id=9) as unit:
            log.info("inside")
        log.info("outside")
    finally:
        log.removeHandler(handler)
    assert (records[0].trace_id, records[0].user_id) == (unit.trace_id, "9")  # type: ignore[attr-defined]
    assert (records[1].trace_id, records[1].user_id) == ("-", "-")  # type: ignore[attr-defined]


def test_units_in_threads_do_not_see_each_other(obskit_events: CapturedEvents) -> None:
    barrier = threading.Barrier(2)

    def work(user: str) -> None:
        with obs.bind(user_id=user):
            barrier.wait()
            obs.capture_message(f"from {user}")

    threads = [threading.Thread(target=work, args=(u,)) for u in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    by_message = {e["message"]: e for e in obskit_events}
    assert by_message["from a"]["tags"]["user_id"] == "a"
    assert by_message["from b"]["tags"]["user_id"] == "b"


def test_units_in_asyncio_tasks_do_not_see_each_other(obskit_events: CapturedEvents) -> None:
    async def work(user: str) -> None:
        with obs.bind(user_id=user):
            await asyncio.sleep(0.01)
            obs.capture_message(f"from {user}")

    async def main() -> None:
        await asyncio.gather(work("x"), work("y"))

    asyncio.run(main())
    by_message = {e["message"]: e for e in obskit_events}
    assert by_message["from x"]["tags"]["user_id"] == "x"
    assert by_message["from y"]["tags"]["user_id"] == "y"


def test_tag_values_are_cut_to_sentry_limits(obskit_events: CapturedEvents) -> None:
    with obs.bind(user_id="u" * 500, component="line one\nline two"):
        obs.capture_message("long")
    (event,) = obskit_events
    assert len(event["tags"]["user_id"]) == 200
    assert event["tags"]["component"] == "line one line two"


def test_tag_values_stay_within_sentry_limits_after_scrubbing_and_the_apps_processors() -> None:
    from observability.testing import TEST_DSN, capture_transport

    def add_tag(event: dict[str, Any], hint: object) -> dict[str, Any]:
        event["tags"]["note"] = "first line\r\n" + "n" * 300
        return event

    sink = CapturedEvents()
    try:
        obs.init("svc", environ={}, dsn=TEST_DSN, transport=capture_transport(sink), registry=sink.registry,
                 processors=[add_tag])  # fmt: skip
        with obs.bind(component="c" * 190 + " pwd=abcdefgh"):
            obs.capture_message("long")
    finally:
        obs.shutdown()
    (event,) = sink
    component = event["tags"]["component"]
    assert len(component) == 200
    assert "abcdefgh" not in component
    assert component.startswith("c" * 190 + " pwd=[Filt")
    assert event["tags"]["note"] == "first line " + "n" * 189


@pytest.mark.parametrize("name", ["release", "user", "dist", "x" * 33, "has space"])
def test_tags_sentry_would_drop_are_refused_with_a_clear_error(name: str) -> None:
    with pytest.raises(ValueError, match=repr(name)):
        obs.bind(**{name: "v"})


def test_capture_exception_counts_by_type_and_sends_context(obskit_events: CapturedEvents) -> None:
    try:
        raise KeyError("order")
    except KeyError as exc:
        event_id = obs.capture_exception(exc, context={"order_id": 7}, attempt=2)
    (event,) = obskit_events.errors
    assert event["event_id"] == event_id
    assert event["extra"]["order_id"] == 7
    assert event["extra"]["attempt"] == 2
    labels = {"service": "test", "env": "development", "error_type": "KeyError"}
    assert obskit_events.metric("obskit_errors_total", labels) == 1


def test_set_user_email_only_with_pii_opt_in(obskit_events: CapturedEvents) -> None:
    with obs.bind():
        obs.set_user(3, email="a@example.com")
        obs.capture_message("no pii")
    (event,) = obskit_events
    assert event["user"] == {"id": "3"}


def test_set_user_outside_a_unit_also_tags_the_event(obskit_events: CapturedEvents) -> None:
    try:
        obs.set_user(42)
        obs.capture_message("outside")
    finally:
        sentry_sdk.set_user(None)  # the scope's user would outlive the test
    with obs.bind(user_id=7):
        obs.capture_message("inside")
    outside, inside = obskit_events
    assert outside["user"]["id"] == outside["tags"]["user_id"] == "42"
    assert inside["user"]["id"] == inside["tags"]["user_id"] == "7"


def test_span_is_a_noop_without_a_sampled_transaction(obskit_events: CapturedEvents) -> None:
    with obs.span("db.query", "select 1") as span:
        assert span is None


def test_no_dsn_means_sentry_off_and_everything_else_works(caplog: pytest.LogCaptureFixture) -> None:
    from prometheus_client import CollectorRegistry

    caplog.set_level(logging.INFO, logger="observability.sentry")
    registry = CollectorRegistry()
    try:
        rt = obs.init("no-dsn", environ={}, registry=registry)
        assert not rt.sentry_enabled
        assert obs.capture_message("ignored") is None
        assert obs.report_business_failure("limit", "over the limit") is None
        labels = {"service": "no-dsn", "rule": "limit"}
        assert registry.get_sample_value("obskit_business_failures_total", labels) == 1
        assert [r.message for r in caplog.records if "Sentry disabled" in r.message]
    finally:
        obs.shutdown()


def test_init_is_idempotent_for_the_same_settings() -> None:
    try:
        first = obs.init("same", environ={})
        assert obs.init("same", environ={}) is first
    finally:
        obs.shutdown()


def test_init_logs_one_line_with_environment_release_and_service(caplog: pytest.LogCaptureFixture) -> None:
    from observability.testing import capture_transport

    caplog.set_level(logging.INFO, logger="observability.sentry")
    try:
        obs.init(
            "svc",
            environ={"SENTRY_DSN": "http://k@127.0.0.1:9/1", "SENTRY_ENVIRONMENT": "prod", "SENTRY_RELEASE": "svc@9"},
            transport=capture_transport(CapturedEvents()),
        )
    finally:
        obs.shutdown()
    lines = [r.getMessage() for r in caplog.records if r.name == "observability.sentry"]
    assert lines == ["Sentry initialized for environment: prod (release svc@9, service svc)"]


class TestSampler:
    def make(self, **kw: object) -> Sampler:
        return Sampler(Settings(service="s", **kw))  # type: ignore[arg-type]

    def test_rate_zero_never_samples_and_rate_one_always(self) -> None:
        assert not any(self.make(traces_sample_rate=0.0).decide("x", None) for _ in range(1000))
        assert all(self.make(traces_sample_rate=1.0).decide("x", None) for _ in range(1000))

    def test_rate_is_applied_statistically(self) -> None:
        sampler = self.make(traces_sample_rate=0.1)
        hits = sum(sampler.decide("x", None) for _ in range(20_000))
        assert 1600 < hits < 2400

    def test_per_name_override(self) -> None:
        sampler = self.make(traces_sample_rate=0.0, traces_sample_rates={"topic:payments": 1.0})
        assert sampler.decide("topic:payments", None)
        assert not sampler.decide("topic:other", None)

    def test_unsampled_parent_is_honoured(self) -> None:
        assert not self.make(traces_sample_rate=1.0).decide("x", False)

    def test_incoming_sampled_traces_are_capped(self) -> None:
        # A producer sampling at 1.0 sends 1000 sampled messages at once: only the burst cap is continued.
        sampler = self.make(traces_sample_rate=0.0, traces_incoming_max_per_s=5.0)
        assert sum(sampler.decide("x", True) for _ in range(1000)) == 5

    def test_a_cap_under_one_per_second_still_continues_a_sampled_trace(self) -> None:
        # 0.5 per second: one now, the next two seconds later; never none at all.
        sampler = self.make(traces_sample_rate=0.0, traces_incoming_max_per_s=0.5)
        assert [sampler.decide("x", True) for _ in range(3)] == [True, False, False]
        sampler._incoming._refilled -= 2.0  # two seconds on
        assert [sampler.decide("x", True) for _ in range(2)] == [True, False]

    def test_sdk_sampler_hook_uses_the_same_decision(self) -> None:
        sampler = self.make(traces_sample_rate=0.0)
        assert sampler({"transaction_context": {"name": "x"}, "parent_sampled": None}) == 0.0
        assert sampler({"transaction_context": {"name": "x"}, "parent_sampled": False}) == 0.0


def test_lazy_unit_reads_its_source_only_when_an_event_needs_it(obskit_events: CapturedEvents) -> None:
    from observability.context import LazyUnit, activate, deactivate

    resolved: list[str] = []

    def resolve(unit: LazyUnit, source: dict[str, str], extra: object) -> None:
        resolved.append(source["user"])
        unit.user_id = source["user"]
        unit.set_trace(source["trace"])
        unit.tags = {"topic": "payments"}

    unit = LazyUnit(resolve)
    token = activate(unit)
    try:
        unit.rebind({"user": "a", "trace": "1" * 32})
        unit.rebind({"user": "b", "trace": "2" * 32})  # a message that succeeded: never read
        obs.capture_message("for b")
    except BaseException:
        deactivate(token)
        raise
    unit.rebind({"user": "c", "trace": "3" * 32})
    obs.add_breadcrumb("kafka", "only c's")
    unit.rebind({"user": "d", "trace": "4" * 32})  # nothing of c's may reach d
    obs.capture_message("for d")
    deactivate(token)
    first, second = obskit_events
    event = first
    assert resolved == ["b", "d"]
    assert second["tags"]["user_id"] == "d"
    assert second["tags"]["trace_id"] == "4" * 32
    assert second["breadcrumbs"]["values"] == []
    assert event["tags"]["user_id"] == "b"
    assert event["tags"]["topic"] == "payments"
    assert event["tags"]["trace_id"] == "2" * 32 == event["contexts"]["trace"]["trace_id"]


def test_a_failing_processor_does_not_recurse_through_the_kits_own_error_log() -> None:
    from observability.testing import capture_transport

    calls = []

    def failing(event: object, hint: object) -> object:
        calls.append(1)
        raise ValueError("processor bug")

    sink = CapturedEvents()
    try:
        obs.init(
            "svc",
            environ={},
            dsn="http://k@127.0.0.1:9/1",
            transport=capture_transport(sink),
            registry=sink.registry,
            processors=[failing],
        )
        obs.capture_message("hello")
    finally:
        obs.shutdown()
    assert len(calls) == 1
    assert [e.get("message") for e in sink] == ["hello"]
    assert sink.metric("obskit_internal_errors_total", {"service": "svc", "component": "event_pipeline"}) == 1


def test_events_the_apps_own_processor_drops_are_counted_as_held_back() -> None:
    from observability.testing import capture_transport

    def drop_debug(event: dict[str, object], hint: object) -> dict[str, object] | None:
        return None if event.get("level") == "debug" else event

    sink = CapturedEvents()
    try:
        obs.init(
            "svc",
            environ={},
            dsn="http://k@127.0.0.1:9/1",
            transport=capture_transport(sink),
            registry=sink.registry,
            processors=[drop_debug],
        )
        obs.capture_message("noise", "debug")
        obs.capture_message("kept", "warning")
    finally:
        obs.shutdown()
    assert [e["message"] for e in sink] == ["kept"]
    labels = {"service": "svc", "reason": "app_processor"}
    assert sink.metric("obskit_sentry_events_held_back_total", labels) == 1


def test_an_unreachable_sentry_never_stops_the_work_and_every_drop_is_counted() -> None:
    import socket

    from prometheus_client import CollectorRegistry

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    registry = CollectorRegistry()
    environ = {"SENTRY_DSN": f"http://public@127.0.0.1:{port}/1", "OBSKIT_SENTRY_QUEUE_SIZE": "5"}
    try:
        obs.init("down", environ=environ, registry=registry)
        ids = [obs.capture_message(f"unsent {n}") for n in range(50)]
        assert all(ids), "capturing must go on while Sentry is down"
        obs.flush(2.0)
    finally:
        obs.shutdown(timeout_s=2.0)
    dropped = {
        sample.labels["reason"]: sample.value
        for metric in registry.collect()
        if metric.name == "obskit_sentry_events_dropped"
        for sample in metric.samples
        if sample.name.endswith("_total")
    }
    # Every one of the 50 was lost, and each loss was counted: a full queue or a refused connection.
    assert sum(dropped.values()) == 50, dropped
    assert set(dropped) <= {"queue_overflow", "network_error"}


def test_set_user_on_an_unresolved_lazy_unit_is_not_overwritten_by_its_source(obskit_events: CapturedEvents) -> None:
    from observability.context import LazyUnit, activate, deactivate

    def resolve(unit: LazyUnit, source: str, extra: object) -> None:
        unit.user_id = source  # what the message's headers say

    unit = LazyUnit(resolve)
    token = activate(unit)
    try:
        unit.rebind("from-headers")
        obs.set_user("set-by-handler")
        obs.capture_message("who")
    finally:
        deactivate(token)
    (event,) = obskit_events
    assert event["tags"]["user_id"] == "set-by-handler"


def test_a_lazy_units_span_id_does_not_outlive_its_source() -> None:
    from observability.context import LazyUnit

    def resolve(unit: LazyUnit, source: str, extra: object) -> None:
        unit.set_trace(None)

    unit = LazyUnit(resolve)
    unit.rebind("first")
    first = unit.span_id  # read without the trace: still the first source's
    unit.rebind("second")
    assert unit.span_id != first


def test_a_new_lazy_unit_starts_as_an_empty_unit() -> None:
    from observability.context import LazyUnit, Unit

    lazy, plain = LazyUnit(lambda unit, source, extra: None), Unit(None, None, None, None, None, None, {})
    for slot in Unit.__slots__:
        field = Unit.__dict__[slot]
        assert field.__get__(lazy, Unit) == field.__get__(plain, Unit), slot
    assert lazy.tags is not LazyUnit(lambda unit, source, extra: None).tags  # no dict shared between units


def test_business_rule_error_survives_pickling() -> None:
    import pickle

    error = obs.BusinessRuleError("daily_limit", "over the limit", level="error", amount=5)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.rule, copy.message, copy.level, copy.context) == (
        "daily_limit",
        "over the limit",
        "error",
        {"amount": 5},
    )
    assert str(copy) == "over the limit"

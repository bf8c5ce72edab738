"""Noise: ignored types and loggers, client errors, one event per exception, health checks."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import observability as obs
from observability.noise import ClientError, NoiseFilter, breadcrumb_filter
from observability.testing import TEST_DSN, CapturedEvents, capture_transport

Kit = Callable[..., CapturedEvents]


@pytest.fixture
def kit() -> Iterator[Kit]:
    """Initialise the kit in memory with the given settings."""

    def start(**overrides: Any) -> CapturedEvents:
        sink = CapturedEvents()
        obs.init(
            "svc", environ={}, dsn=TEST_DSN, transport=capture_transport(sink), registry=sink.registry, **overrides
        )
        return sink

    yield start
    obs.shutdown()


def held_back(sink: CapturedEvents, reason: str) -> float:
    return sink.metric("obskit_sentry_events_held_back_total", {"service": "svc", "reason": reason})


def capture(exc: BaseException) -> None:
    try:
        raise exc
    except BaseException as raised:
        obs.capture_exception(raised)


class PaymentTimeout(TimeoutError):
    pass


def test_ignored_exception_types_and_their_subclasses_are_held_back_and_counted(kit: Kit) -> None:
    sink = kit(ignore_exceptions=("KeyError", "builtins.TimeoutError"))
    capture(KeyError("k"))
    capture(PaymentTimeout("slow"))
    capture(ValueError("sent"))
    assert [e["exception"]["values"][-1]["type"] for e in sink] == ["ValueError"]
    assert held_back(sink, "ignored_exception") == 2


def test_an_ignored_type_named_where_it_is_re_exported_is_still_matched(kit: Kit) -> None:
    # json.JSONDecodeError is defined in json.decoder: the name users write resolves to it.
    sink = kit(ignore_exceptions=("json.JSONDecodeError",))
    try:
        json.loads("{")
    except ValueError as exc:
        obs.capture_exception(exc)
    assert list(sink) == []
    assert held_back(sink, "ignored_exception") == 1


def test_ignored_loggers_and_their_children_send_neither_events_nor_breadcrumbs(kit: Kit) -> None:
    sink = kit(ignore_loggers=("noisy.lib",))
    for name in ("noisy.lib", "noisy.lib.pool", "noisy.library", "app"):
        logging.getLogger(name).setLevel(logging.INFO)
    with obs.bind():
        logging.getLogger("noisy.lib.pool").info("connection reset")
        logging.getLogger("noisy.library").info("kept: another logger")
        logging.getLogger("noisy.lib").error("pool exhausted")
        logging.getLogger("app").error("charge failed")
    (event,) = sink
    assert event["logentry"]["message"] == "charge failed"
    assert [c["message"] for c in event["breadcrumbs"]["values"]] == ["kept: another logger"]
    assert held_back(sink, "ignored_logger") == 1


def test_client_errors_are_held_back_by_default(kit: Kit) -> None:
    class InvalidMessage(ClientError):
        pass

    # Validation errors of the common libraries, recognised by where they are defined.
    validation = type("ValidationError", (ValueError,), {"__module__": "pydantic_core._pydantic_core"})
    http = type("HTTPException", (Exception,), {"__module__": "starlette.exceptions"})
    not_found, unavailable = http("not found"), http("unavailable")
    not_found.status_code, unavailable.status_code = 404, 503

    sink = kit()
    for exc in (InvalidMessage("no amount"), validation("amount: field required"), not_found, unavailable):
        capture(exc)
    assert [e["exception"]["values"][-1]["value"] for e in sink] == ["unavailable"]
    assert held_back(sink, "client_error") == 3


def test_client_errors_are_sent_when_the_app_opts_in(kit: Kit) -> None:
    sink = kit(send_client_errors=True)
    capture(ClientError("no amount"))
    assert len(sink.errors) == 1


def test_errors_held_back_still_count_as_errors(kit: Kit) -> None:
    sink = kit()
    capture(ClientError("no amount"))
    labels = {"service": "svc", "env": "development", "error_type": "ClientError"}
    assert sink.metric("obskit_errors_total", labels) == 1


def test_an_exception_logged_then_captured_is_one_event(kit: Kit) -> None:
    sink = kit()
    log = logging.getLogger("app.pay")
    try:
        raise RuntimeError("declined")
    except RuntimeError as exc:
        log.exception("charge failed")
        obs.capture_exception(exc)
    (event,) = sink
    assert event["logentry"]["message"] == "charge failed"


def test_an_exception_captured_then_logged_is_one_event(kit: Kit) -> None:
    sink = kit()
    log = logging.getLogger("app.pay")
    try:
        raise RuntimeError("declined")
    except RuntimeError as exc:
        obs.capture_exception(exc)
        log.error("charge failed", exc_info=True)
        log.error("charge failed: %s", exc)
    assert len(sink) == 1
    # The SDK's own deduplication drops the first repeat before the kit sees it; the kit, the second.
    assert held_back(sink, "duplicate") == 1


def test_one_event_per_exception_even_when_other_reports_come_between(kit: Kit) -> None:
    # The SDK's own deduplication remembers only the last exception; the kit remembers each one.
    sink = kit()
    log = logging.getLogger("app.pay")
    first, second = RuntimeError("first"), RuntimeError("second")
    for exc in (first, second):
        try:
            raise exc
        except RuntimeError:
            log.exception("failed")
    obs.capture_exception(first)
    obs.capture_exception(second)
    assert [e["exception"]["values"][-1]["value"] for e in sink] == ["first", "second"]


def test_a_log_message_that_only_mentions_an_exception_carries_its_traceback(kit: Kit) -> None:
    sink = kit()
    log = logging.getLogger("app.pay")
    try:
        raise RuntimeError("declined")
    except RuntimeError as exc:
        log.error("charge failed: %s", exc)
        obs.capture_exception(exc)
    (event,) = sink
    assert event["logentry"]["message"] == "charge failed: %s"
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert exception["stacktrace"]["frames"][-1]["function"] == (
        "test_a_log_message_that_only_mentions_an_exception_carries_its_traceback"
    )


@pytest.mark.parametrize(
    ("name", "dropped"),
    [
        ("GET /healthz", True),
        ("GET /health/ready", True),
        ("task:workers.tasks.health_check", True),
        ("topic:healthcheck", True),
        ("celery.ping", True),
        ("GET /readyz", True),
        ("task:workers.tasks.ping_partner", False),
        ("task:workers.tasks.shipping", False),
        ("task:workers.tasks.update_health_score", False),
        ("topic:payments", False),
    ],
)
def test_health_check_transactions_are_dropped(name: str, dropped: bool) -> None:
    counted: list[str] = []
    noise = NoiseFilter(count=counted.append)
    transaction = {"type": "transaction", "transaction": name}
    assert (noise(transaction, {}) is None) is dropped
    assert counted == (["health_check"] if dropped else [])


def test_health_check_transactions_never_reach_sentry(kit: Kit) -> None:
    sink = kit(traces_sample_rate=1.0)
    for name in ("task:workers.tasks.health_check", "task:workers.tasks.pay"):
        with obs.bind() as unit, obs.sentry.start_transaction(unit, op="task", name=name):
            pass
    assert [t["transaction"] for t in sink.transactions] == ["task:workers.tasks.pay"]
    assert held_back(sink, "health_check") == 1


def test_without_ignored_loggers_the_breadcrumb_path_gets_no_filter() -> None:
    assert breadcrumb_filter(()) is None
    drop = breadcrumb_filter(("noisy",))
    assert drop is not None
    record = logging.LogRecord("noisy.x", logging.INFO, __file__, 1, "m", None, None)
    assert drop({"message": "m"}, {"log_record": record}) is None
    assert drop({"message": "m"}, {}) == {"message": "m"}


def test_sentry_info_shows_what_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from observability.cli import main

    for name in ("SENTRY_DSN", "SENTRY_DSN_FILE", "SENTRY_URL"):
        monkeypatch.delenv(name, raising=False)
    environ = {
        "SERVICE_NAME": "svc",
        "OBSKIT_SCRUB_KEYS": "ssn",
        "OBSKIT_SCRUB_PATTERNS": r"EMP-\d+",
        "OBSKIT_IGNORE_EXCEPTIONS": "KeyError",
        "OBSKIT_IGNORE_LOGGERS": "noisy",
        "OBSKIT_STORM_LIMIT": "0",
    }
    result = CliRunner().invoke(main, ["sentry-info"], env=environ)
    assert result.exit_code == 0, result.output
    lines = {line[:28].strip(): line[28:].strip() for line in result.output.splitlines()}
    assert "+ ssn" in lines["scrubbing"]
    assert "1 of OBSKIT_SCRUB_PATTERNS" in lines["scrubbing"]
    assert lines["ignored exceptions"] == "KeyError"
    assert lines["ignored loggers"] == "noisy"
    assert lines["client errors"].startswith("held back")
    assert lines["storm control"] == "off (OBSKIT_STORM_LIMIT=0)"

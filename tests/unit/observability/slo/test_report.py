import pytest
from prometheus_client.parser import text_string_to_metric_families

from observability.exporter import SLOCollector, render_text
from observability.slo import SLO, Outcome, Spec
from observability.slo.report import build_reports, window_stats
from observability.slo.store import Reading

SLO_999 = SLO(service="s", objective=99.9, min_events=100)


def test_zero_traffic_gives_ratio_zero_never_nan() -> None:
    stats = window_stats(600, {}, SLO_999)
    assert (stats.total, stats.bad, stats.error_ratio, stats.burn_rate, stats.sufficient) == (0, 0, 0.0, 0.0, False)


def test_ratio_and_burn_rate() -> None:
    stats = window_stats(600, {Outcome.OK: 9_990, Outcome.ERROR: 10}, SLO_999)
    assert stats.error_ratio == pytest.approx(0.001)
    assert stats.burn_rate == pytest.approx(1.0)
    assert stats.sufficient


def test_business_failures_are_good_unless_the_spec_says_bad() -> None:
    counts = {Outcome.OK: 90, Outcome.BUSINESS_FAILURE: 10}
    assert window_stats(600, counts, SLO_999).bad == 0
    strict = SLO(service="s", bad_outcomes=(Outcome.ERROR, Outcome.BUSINESS_FAILURE))
    assert window_stats(600, counts, strict).error_ratio == pytest.approx(0.1)


def test_retried_rejected_revoked_are_not_in_the_denominator() -> None:
    counts = {Outcome.OK: 10, Outcome.RETRIED: 1000, Outcome.REJECTED: 5, Outcome.REVOKED: 5}
    stats = window_stats(600, counts, SLO_999)
    assert stats.total == 10
    assert stats.bad == 0
    assert stats.outcomes[Outcome.RETRIED] == 1000


def test_minimum_traffic_guard() -> None:
    assert not window_stats(600, {Outcome.ERROR: 99}, SLO_999).sufficient
    assert window_stats(600, {Outcome.ERROR: 100}, SLO_999).sufficient


def test_budget_is_measured_over_the_period_as_bad_over_total() -> None:
    period = 30 * 86400
    # 30d: 1,000,000 units, 500 bad -> ratio 0.0005 -> half the 0.1% budget spent.
    reading = Reading("s", "prod", 1000.0, 990.0, {period: {Outcome.OK: 999_500, Outcome.ERROR: 500}, 600: {}})
    (report,) = build_reports([reading], Spec())
    assert report.budget_remaining == pytest.approx(0.5)
    assert report.freshness_s == pytest.approx(10.0)
    assert report.pages


def test_never_flushed_service_has_full_budget_and_no_freshness() -> None:
    (report,) = build_reports([Reading("s", "staging", 1000.0, None, {30 * 86400: {}})], Spec())
    assert report.budget_remaining == 1.0
    assert report.freshness_s is None
    assert not report.pages


class _Source:
    def __init__(self, reports: list) -> None:  # type: ignore[type-arg]
        self._reports = reports

    def reports(self) -> list:  # type: ignore[type-arg]
        return self._reports


def test_fast_renderer_matches_the_prometheus_text_format() -> None:
    readings = [
        Reading('pay"ments', "prod\nx", 1000.0, None, {600: {Outcome.OK: 3, Outcome.ERROR: 1}, 30 * 86400: {}}),
        Reading("other", "staging", 1000.0, 999.5, {600: {}, 30 * 86400: {Outcome.OK: 10**7}}),
    ]
    families = SLOCollector(_Source(build_reports(readings, Spec()))).collect()  # type: ignore[arg-type]
    parsed = {f.name: f for f in text_string_to_metric_families(render_text(families).decode())}
    ratio = {tuple(sorted(s.labels.items())): s.value for s in parsed["obskit_slo_error_ratio"].samples}
    assert ratio[(("env", "prod\nx"), ("service", 'pay"ments'), ("window", "10m"))] == 0.25
    fresh = {s.labels["service"]: s.value for s in parsed["obskit_slo_freshness_seconds"].samples}
    assert fresh == {'pay"ments': float("inf"), "other": 0.5}
    assert parsed["obskit_slo_exporter_redis_up"].samples[0].value == 1
    events = {s.labels["service"]: s.value for s in parsed["obskit_slo_events"].samples if s.labels["window"] == "30d"}
    assert events["other"] == 10**7

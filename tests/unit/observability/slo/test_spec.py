from pathlib import Path

import pytest

from observability.slo import Outcome, SpecError, load_spec
from observability.slo.spec import parse_spec
from observability.slo.windows import format_duration, parse_duration, tier_for


def test_defaults_without_a_file() -> None:
    spec = load_spec(None)
    slo = spec.for_service("payments", "prod")
    assert (slo.objective, slo.period_s, slo.bad_outcomes, slo.min_events) == (99.9, 30 * 86400, (Outcome.ERROR,), 100)
    assert slo.pages("prod")
    assert not slo.pages("staging")
    assert slo.budget == pytest.approx(0.001)


def test_one_threshold_name_may_have_several_windows() -> None:
    spec = parse_spec(
        {"defaults": {"thresholds": [{"name": "errors", "window": w, "error_ratio": 0.01} for w in ("10m", "1h")]}}
    )
    assert [(t.name, t.window_s) for t in spec.defaults.thresholds] == [("errors", 600), ("errors", 3600)]


def test_the_pipelines_production_env_pages_by_default() -> None:
    # .gitlab-ci.yml deploys tags with SENTRY_ENVIRONMENT=production: that env must page without a spec.
    slo = load_spec(None).for_service("payments", "production")
    assert slo.pages("production")
    assert slo.pages("prod")


def test_entries_override_defaults_and_exact_env_wins(tmp_path: Path) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text(
        """
defaults: {objective: 99.5, bad_outcomes: [error, business_failure], paging_envs: [prod, live]}
slos:
  - {service: payments, objective: 99.95}
  - {service: payments, env: staging, objective: 99.0, min_events: 10}
"""
    )
    spec = load_spec(path)
    assert spec.for_service("payments", "prod").objective == 99.95
    assert spec.for_service("payments", "prod").bad_outcomes == (Outcome.ERROR, Outcome.BUSINESS_FAILURE)
    assert spec.for_service("payments", "staging").min_events == 10
    assert spec.for_service("other", "live").objective == 99.5
    assert spec.for_service("other", "live").pages("live")


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ("defaults: {objective: 100}", "defaults.objective=100 is invalid: expected a percentage between 0 and 100"),
        ("defaults: {objective: abc}", "defaults.objective='abc' is invalid"),
        ("defaults: {period: 10 days}", "defaults.period='10 days' is invalid: expected a duration"),
        ("defaults: {period: 400d}", "defaults.period='400d' is invalid: expected at most"),
        (
            "defaults: {bad_outcomes: [error, boom]}",
            "defaults.bad_outcomes=['error', 'boom'] is invalid: expected a non-empty list of outcomes from ok, error",
        ),
        # Not in the ratio's total (ok + error + business_failure): counting them bad would push it past 1.
        (
            "slos: [{service: a, bad_outcomes: [error, rejected]}]",
            "slos[0].bad_outcomes=['error', 'rejected'] is invalid: expected a non-empty list of outcomes from ok, "
            "error, business_failure (retried, rejected, revoked are not in the total)",
        ),
        ("defaults: {bad_outcomes: [retried]}", "defaults.bad_outcomes=['retried'] is invalid"),
        ("defaults: {bad_outcomes: [revoked]}", "defaults.bad_outcomes=['revoked'] is invalid"),
        ("defaults: {bad_outcomes: [error, error]}", "expected each outcome once"),  # else counted twice
        ("defaults: {min_events: -1}", "defaults.min_events=-1 is invalid"),
        ("defaults: {paging_envs: prod}", "defaults.paging_envs='prod' is invalid: expected a list"),
        ("defaults: {objektive: 99}", "defaults.objektive=99 is invalid: expected one of the fields"),
        ("slos: [{objective: 99}]", "slos[0].service"),
        ("slos: [{service: a}, {service: a}]", "slos[1]='a/*' is invalid: expected one entry per service and env"),
        (
            "defaults: {thresholds: [{name: t, window: 10m, error_ratio: 2}]}",
            "defaults.thresholds[0].error_ratio=2 is invalid",
        ),
        (
            "defaults: {thresholds: [{name: t, window: 10m, error_ratio: 0.01},"
            " {name: t, window: 600s, error_ratio: 0.1}]}",
            "defaults.thresholds[1].name='t' is invalid: expected a name no other threshold of the list has with",
        ),
        ("- just a list", "(top level)"),
    ],
)
def test_bad_spec_fails_with_one_line_naming_file_field_and_value(tmp_path: Path, document: str, fragment: str) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text(document)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert fragment in message
    assert "\n" not in message


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the SLO spec"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("defaults: {objective: [}")
    with pytest.raises(SpecError, match="not valid YAML at line 1"):
        load_spec(bad)


def test_empty_document_is_the_defaults() -> None:
    assert parse_spec(None).for_service("x", "prod").objective == 99.9


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("10m", 600), ("6h", 21600), ("30d", 2592000), ("1w", 604800)]
)
def test_durations_round_trip(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "10", "0m", "1.5h", "-1m", "10 minutes"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_tiers_grow_with_the_window() -> None:
    assert [tier_for(parse_duration(w)).step_s for w in ("5m", "1h", "2h", "6h", "1d", "3d", "30d")] == [
        10, 10, 60, 60, 300, 3600, 3600,
    ]  # fmt: skip
    # No tier keeps more than ~1,000 snapshots, whatever the window.
    for window in ("5m", "1h", "6h", "1d", "30d"):
        tier = tier_for(parse_duration(window))
        assert tier.retention_s // tier.step_s <= 2200

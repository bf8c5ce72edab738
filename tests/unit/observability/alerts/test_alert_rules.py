import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from observability.alerts.rules import RuleOptions, SentryLink, alert_names, build_rules, format_duration, render_rules
from observability.cli import main
from observability.errors import ConfigError
from observability.slo.spec import parse_spec

README = Path(__file__).resolve().parents[4] / "README.md"
_NO_SERVER = {"SENTRY_URL": None, "SENTRY_ORG": None, "SENTRY_PROJECT": None, "OBSKIT_SENTRY_API": None}


def _alerts(options: RuleOptions | None = None) -> list[dict[str, Any]]:
    return [rule for group in build_rules(options)["groups"] for rule in group["rules"] if "alert" in rule]


def test_every_alert_has_severity_summary_description_and_runbook_anchor() -> None:
    for rule in _alerts():
        assert rule["labels"]["severity"] in ("page", "ticket", "info"), rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}, rule["alert"]
        assert rule["annotations"]["runbook_url"] == f"README.md#{rule['alert'].lower()}"


def test_readme_has_a_runbook_heading_for_every_alert() -> None:
    headings = {line.lstrip("#").strip().lower() for line in README.read_text().splitlines() if line.startswith("####")}
    names = alert_names(build_rules(RuleOptions(spec=parse_spec({"slos": [{"service": "pay"}]}))))
    assert {name.lower() for name in names} <= headings


def test_only_slo_burn_and_one_minute_error_spikes_can_page() -> None:
    pages = {
        (r["alert"], r["labels"].get("long_window") or r["labels"].get("window"))
        for r in _alerts()
        if r["labels"]["severity"] == "page"
    }
    assert pages == {("ObskitSLOErrorBudgetBurn", "1h"), ("ObskitSLOErrorBudgetBurn", "6h"), ("ObskitErrorSpike", "1m")}
    for rule in _alerts():
        if rule["labels"]["severity"] == "page":
            assert "job:obskit_slo_paging:max == 1" in rule["expr"]


def test_burn_rate_pairs_are_the_sre_workbooks() -> None:
    pairs = {
        (r["labels"]["long_window"], r["labels"]["short_window"], r["labels"]["severity"], r.get("for"))
        for r in _alerts()
        if r["alert"] == "ObskitSLOErrorBudgetBurn"
    }
    assert pairs == {
        ("1h", "5m", "page", "2m"),
        ("1h", "5m", "ticket", "2m"),
        ("6h", "30m", "page", "2m"),
        ("6h", "30m", "ticket", "2m"),
        ("1d", "2h", "ticket", "15m"),
        ("3d", "6h", "ticket", "15m"),
    }
    fast = next(r for r in _alerts() if r["labels"].get("long_window") == "1h")
    assert "(14.4 * job:obskit_slo_period_seconds:max / 2592000)" in fast["expr"]
    assert 'job:obskit_slo_traffic_sufficient:max{window="1h"} == 1' in fast["expr"]


def test_for_scale_compresses_every_for_and_keeps_zero_absent() -> None:
    normal = {(r["alert"], r.get("for")) for r in _alerts()}
    scaled = {(r["alert"], r.get("for")) for r in _alerts(RuleOptions(for_scale=1 / 60))}
    assert ("ObskitSLOErrorBudgetBurn", "2m") in normal
    assert ("ObskitSLOErrorBudgetBurn", "2s") in scaled
    assert ("ObskitSLOErrorBudgetBurn", "15s") in scaled
    assert ("ObskitErrorSpike", None) in scaled


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (2, "2s"), (120, "2m"), (900, "15m"), (3600, "1h"), (86400, "1d"), (1.5, "1500ms")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_thresholds_come_from_the_options() -> None:
    alerts = _alerts(RuleOptions(errors_per_minute=7, errors_per_hour=70, lag_messages=5, backlog_messages=9))
    exprs = {r["alert"] + r["labels"].get("window", ""): r["expr"] for r in alerts}
    assert "increase1m > 7" in exprs["ObskitErrorSpike1m"]
    assert "increase1h > 70" in exprs["ObskitErrorSpike1h"]
    assert exprs["ObskitKafkaConsumerLagMessages"].endswith("> 5")
    assert exprs["ObskitCeleryQueueBacklog"].endswith("> 9")


def test_new_series_count_whole_from_their_created_timestamp() -> None:
    rules = build_rules()["groups"][1]["rules"]
    minute = next(r for r in rules if r.get("record") == "service_env_error_type:obskit_errors:increase1m")
    assert "(obskit_errors_total and (obskit_errors_created > time() - 60))" in minute["expr"]


def test_sentry_link_is_the_issues_link_filtered_by_the_alerts_service_and_env() -> None:
    sentry = SentryLink("sentry", "https://sentry.example", project="42", org="acme")
    (burn, *_) = _alerts(RuleOptions(sentry=sentry))
    assert burn["annotations"]["sentry_issues"] == (
        "https://sentry.example/organizations/acme/issues/?query=service%3A{{ $labels.service | urlquery }}"
        "%20env%3A{{ $labels.env | urlquery }}&project=42"
    )
    bugsink = SentryLink("bugsink", "http://127.0.0.1:8000", project="1")
    (burn, *_) = _alerts(RuleOptions(sentry=bugsink))
    assert burn["annotations"]["sentry_issues"] == (
        "http://127.0.0.1:8000/issues/1/all/?q=service%3A{{ $labels.service | urlquery }}"
        "+env%3A{{ $labels.env | urlquery }}"
    )
    # Target alerts have no service's issues to point at.
    down = next(r for r in _alerts(RuleOptions(sentry=sentry)) if r["alert"] == "ObskitTargetDown")
    assert "sentry_issues" not in down["annotations"]


def test_a_sentry_link_needs_the_organization() -> None:
    with pytest.raises(ConfigError, match="SENTRY_ORG"):
        SentryLink("sentry", "https://sentry.example")


def test_each_slo_the_spec_names_is_watched_for_absence() -> None:
    spec = parse_spec({"slos": [{"service": "pay", "env": "prod"}, {"service": "ledger"}]})
    absent = [r for r in _alerts(RuleOptions(spec=spec)) if r["alert"] == "ObskitSLOAbsent"]
    assert [r["expr"] for r in absent] == [
        'absent(job:obskit_slo_events:max{service="pay",env="prod",window="1h"})',
        'absent(job:obskit_slo_events:max{service="ledger",window="1h"})',
    ]
    assert [r["labels"] for r in absent] == [
        {"severity": "ticket", "service": "pay", "env": "prod"},
        {"severity": "ticket", "service": "ledger"},
    ]


@pytest.mark.parametrize(
    ("options", "variable"),
    [({"errors_per_minute": -1}, "--errors-per-minute"), ({"for_scale": 0.0}, "--for-scale")],
)
def test_bad_options_name_the_option(options: dict[str, Any], variable: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(variable)):
        RuleOptions(**options)


def test_render_is_yaml_with_a_header_and_block_expressions() -> None:
    text = render_rules()
    assert text.startswith("# Prometheus rules for obskit, generated by `obskit alerts rules`")
    assert "expr: |-\n" in text
    assert yaml.safe_load(text) == build_rules()


def test_cli_writes_the_rules_file(tmp_path: Path) -> None:
    out = tmp_path / "obskit.yml"
    result = CliRunner().invoke(main, ["alerts", "rules", "--out", str(out)], env=_NO_SERVER)
    assert result.exit_code == 0, result.output
    assert out.read_text() == render_rules()


def test_cli_links_to_the_configured_server() -> None:
    env = {**_NO_SERVER, "SENTRY_URL": "http://127.0.0.1:8000/", "SENTRY_PROJECT": "1", "OBSKIT_SENTRY_API": "bugsink"}
    result = CliRunner().invoke(main, ["alerts", "rules"], env=env)
    assert result.exit_code == 0, result.output
    assert "sentry_issues: http://127.0.0.1:8000/issues/1/all/?q=" in result.output
    result = CliRunner().invoke(main, ["alerts", "rules", "--no-sentry-link"], env=env)
    assert "sentry_issues" not in result.output


@pytest.mark.parametrize(
    ("argv", "variable"),
    [
        (["--errors-per-minute", "-1"], "--errors-per-minute"),
        (["--stale-after", "soon"], "--stale-after"),
        (["--sentry-url", "https://sentry.example"], "SENTRY_ORG"),
    ],
)
def test_cli_bad_setting_is_one_line_and_exit_2(argv: list[str], variable: str) -> None:
    result = CliRunner().invoke(main, ["alerts", "rules", *argv], env=_NO_SERVER)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("obskit: ")
    assert variable in lines[0]

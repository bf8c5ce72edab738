"""The committed rules and their promtool tests, checked by Prometheus's and Alertmanager's own tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from observability.alerts.routing import render_config
from observability.alerts.rules import RuleOptions, alert_names, render_rules
from observability.slo import load_spec

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "obskit.yml"
PROMTOOL_TESTS = ROOT / "tests" / "promtool"


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_committed_rules_are_what_the_command_generates_for_the_default_spec() -> None:
    # Without the server settings a developer may have exported: the committed file carries no Sentry link.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "OBSKIT_"))}
    result = subprocess.run(
        [sys.executable, "-m", "observability.cli", "alerts", "rules"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == RULES.read_text(), (
        "regenerate: obskit alerts rules --out deploy/prometheus/rules/obskit.yml"
    )


def test_promtool_accepts_the_committed_rules(promtool: str) -> None:
    result = _run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_of_the_committed_rules_pass(promtool: str) -> None:
    result = _run(promtool, "test", "rules", str(PROMTOOL_TESTS / "obskit_rules_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_a_specs_rules_pass(promtool: str, tmp_path: Path) -> None:
    spec_rules = tmp_path / "spec_rules.yml"
    spec_rules.write_text(render_rules(RuleOptions(spec=load_spec(PROMTOOL_TESTS / "spec.yml"))))
    assert _run(promtool, "check", "rules", str(spec_rules)).returncode == 0
    shutil.copy(PROMTOOL_TESTS / "spec_rules_test.yml", tmp_path)
    result = _run(promtool, "test", "rules", str(tmp_path / "spec_rules_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def _alert_tests(path: Path) -> tuple[set[str], set[str]]:
    """Alert names some test expects to fire, and names some test expects silent."""
    fires, silent = set(), set()
    for test in yaml.safe_load(path.read_text())["tests"]:
        for case in test.get("alert_rule_test") or []:
            (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    return fires, silent


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    names = set(alert_names(yaml.safe_load(RULES.read_text())))
    spec_names = set(
        alert_names(yaml.safe_load(render_rules(RuleOptions(spec=load_spec(PROMTOOL_TESTS / "spec.yml")))))
    )
    fires, silent = _alert_tests(PROMTOOL_TESTS / "obskit_rules_test.yml")
    spec_fires, spec_silent = _alert_tests(PROMTOOL_TESTS / "spec_rules_test.yml")
    assert names - fires == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested not firing"
    assert spec_names - names - spec_fires == set()
    assert spec_names - names - spec_silent == set()


_EVERY_RECEIVER = {
    "OBSKIT_ALERT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/XXXX",
    "OBSKIT_ALERT_SLACK_CHANNEL": "#alerts",
    "OBSKIT_ALERT_TELEGRAM_BOT_TOKEN": "123456:ABC-DEF1234ghIkl",
    "OBSKIT_ALERT_TELEGRAM_CHAT_ID": "-1001234567890",
    "OBSKIT_ALERT_PAGERDUTY_ROUTING_KEY": "0123456789abcdef0123456789abcdef",
    "OBSKIT_ALERT_EMAIL_TO": "oncall@example.com",
    "OBSKIT_ALERT_EMAIL_FROM": "alertmanager@example.com",
    "OBSKIT_ALERT_SMTP_SMARTHOST": "smtp.example.com:587",
    "OBSKIT_ALERT_SMTP_USERNAME": "alertmanager",
    "OBSKIT_ALERT_SMTP_PASSWORD": "secret",
    "OBSKIT_ALERT_WEBHOOK_URL": "https://hooks.example.com/alertmanager",
}


@pytest.mark.parametrize(
    "environ",
    [
        _EVERY_RECEIVER,
        {"OBSKIT_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/"},
        {"OBSKIT_ALERT_PAGERDUTY_ROUTING_KEY": "0123456789abcdef0123456789abcdef"},
    ],
    ids=["every-receiver", "webhook-only", "pagerduty-only"],
)
def test_amtool_accepts_the_rendered_alertmanager_config(amtool: str, tmp_path: Path, environ: dict[str, Any]) -> None:
    config = tmp_path / "alertmanager.yml"
    config.write_text(render_config(environ)[0])
    result = _run(amtool, "check-config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_amtool_accepts_the_compose_placeholder(amtool: str) -> None:
    result = _run(amtool, "check-config", str(ROOT / "deploy" / "alertmanager" / "alertmanager.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_amtool_routes_by_severity_and_env(amtool: str, tmp_path: Path) -> None:
    """Alertmanager's own routing test: which receivers an alert with given labels reaches."""
    config = tmp_path / "alertmanager.yml"
    config.write_text(render_config(_EVERY_RECEIVER)[0])

    def routed(*labels: str) -> str:
        result = _run(amtool, "config", "routes", "test", f"--config.file={config}", *labels)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout.strip()

    assert routed("severity=page", "env=prod", "service=pay") == "pagerduty,slack,telegram,email,webhook"
    # The env the pipeline deploys tags to (.gitlab-ci.yml), not only the short name.
    assert routed("severity=page", "env=production", "service=pay") == "pagerduty,slack,telegram,email,webhook"
    assert routed("severity=page", "env=staging", "service=pay") == "slack,telegram,email,webhook"
    assert routed("severity=ticket", "env=prod", "service=pay") == "slack,telegram,email,webhook"
    assert routed("severity=info", "env=prod", "service=pay") == "slack,webhook"
    assert routed("alertname=ObskitTestAlert", "obskit_receiver=telegram") == "telegram"
    assert routed("alertname=Unknown") == "nowhere"

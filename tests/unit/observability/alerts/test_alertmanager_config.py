import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from observability.alerts.routing import paging_envs, render_config
from observability.cli import main
from observability.errors import ConfigError
from observability.slo.spec import parse_spec

WEBHOOK = {"OBSKIT_ALERT_WEBHOOK_URL": "https://hooks.example.com/alertmanager"}
PAGERDUTY_KEY = "0123456789abcdef0123456789abcdef"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXX"


def _config(environ: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(render_config(environ, **kwargs)[0])
    return loaded


def _route(config: dict[str, Any], first_matcher: str) -> dict[str, Any]:
    return next(r for r in config["route"]["routes"] if r["matchers"][0] == first_matcher)


def _receivers(route: dict[str, Any]) -> list[str]:
    return [child["receiver"] for child in route["routes"]]


def test_only_configured_receivers_are_rendered() -> None:
    config = _config(WEBHOOK)
    assert [r["name"] for r in config["receivers"]] == ["nowhere", "webhook"]
    assert config["receivers"][1]["webhook_configs"] == [
        {"url": WEBHOOK["OBSKIT_ALERT_WEBHOOK_URL"], "send_resolved": True, "max_alerts": 0}
    ]


def test_pages_go_at_once_and_hourly_tickets_in_a_half_hour_digest() -> None:
    config = _config({**WEBHOOK, "OBSKIT_ALERT_PAGERDUTY_ROUTING_KEY": PAGERDUTY_KEY})
    assert config["route"]["group_by"] == ["alertname", "service", "env"]
    page = _route(config, 'severity="page"')
    assert page["matchers"] == ['severity="page"', 'env=~"prod|production"']
    assert (page["group_wait"], page["repeat_interval"]) == ("0s", "1h")
    assert _receivers(page) == ["pagerduty", "webhook"]
    assert all(child["continue"] for child in page["routes"])
    ticket = _route(config, 'severity=~"page|ticket"')
    assert (ticket["group_interval"], ticket["repeat_interval"]) == ("30m", "30m")
    assert _receivers(ticket) == ["webhook"]  # PagerDuty takes pages only
    info = _route(config, 'severity="info"')
    assert _receivers(info) == ["webhook"]


def test_a_page_silences_the_tickets_of_its_service_and_env() -> None:
    assert _config(WEBHOOK)["inhibit_rules"] == [
        {
            "source_matchers": ['severity="page"'],
            "target_matchers": ['severity=~"ticket|info"'],
            "equal": ["service", "env"],
        }
    ]


def test_the_envs_that_page_come_from_the_spec() -> None:
    spec = parse_spec(
        {"defaults": {"paging_envs": ["prod"]}, "slos": [{"service": "pay", "paging_envs": ["prod", "prod.eu"]}]}
    )
    assert paging_envs(spec) == ["prod", "prod.eu"]
    page = _route(_config(WEBHOOK, spec=spec), 'severity="page"')
    assert page["matchers"][1] == r'env=~"prod|prod\.eu"'


def test_each_receiver_has_its_own_test_route() -> None:
    config = _config({**WEBHOOK, "OBSKIT_ALERT_SLACK_WEBHOOK_URL": SLACK_URL})
    test = _route(config, 'alertname="ObskitTestAlert"')
    assert config["route"]["routes"][0] == test  # tried before the severity routes
    assert [(c["matchers"], c["receiver"]) for c in test["routes"]] == [
        (['obskit_receiver="slack"'], "slack"),
        (['obskit_receiver="webhook"'], "webhook"),
    ]


def test_severities_per_receiver_can_be_chosen() -> None:
    config = _config(
        {**WEBHOOK, "OBSKIT_ALERT_SLACK_WEBHOOK_URL": SLACK_URL, "OBSKIT_ALERT_SLACK_SEVERITIES": "ticket, page"}
    )
    assert _receivers(_route(config, 'severity="page"')) == ["slack", "webhook"]
    assert _receivers(_route(config, 'severity="info"')) == ["webhook"]


def test_interval_scale_compresses_time_for_tests() -> None:
    page = _route(_config(WEBHOOK, interval_scale=1 / 60), 'severity="page"')
    assert (page["group_wait"], page["group_interval"], page["repeat_interval"]) == ("0s", "1s", "1m")


def test_intervals_can_be_set() -> None:
    config = _config(
        {**WEBHOOK, "OBSKIT_ALERT_PAGE_REPEAT_INTERVAL": "2h", "OBSKIT_ALERT_TICKET_DIGEST_INTERVAL": "1h"}
    )
    assert _route(config, 'severity="page"')["repeat_interval"] == "2h"
    assert _route(config, 'severity=~"page|ticket"')["group_interval"] == "1h"


def test_secrets_are_read_from_files(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("123456:ABC-DEF\n")
    (tmp_path / "url").write_text(SLACK_URL + "\n")
    config = _config(
        {
            "OBSKIT_ALERT_TELEGRAM_BOT_TOKEN_FILE": str(tmp_path / "token"),
            "OBSKIT_ALERT_TELEGRAM_CHAT_ID": "-100123",
            "OBSKIT_ALERT_SLACK_WEBHOOK_URL_FILE": str(tmp_path / "url"),
        }
    )
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers["telegram"]["telegram_configs"][0]["bot_token"] == "123456:ABC-DEF"
    assert receivers["telegram"]["telegram_configs"][0]["chat_id"] == -100123
    assert receivers["slack"]["slack_configs"][0]["api_url"] == SLACK_URL


def test_email_takes_its_smtp_settings() -> None:
    config = _config(
        {
            "OBSKIT_ALERT_EMAIL_TO": "oncall@example.com, lead@example.com",
            "OBSKIT_ALERT_EMAIL_FROM": "am@example.com",
            "OBSKIT_ALERT_SMTP_SMARTHOST": "smtp.example.com:587",
            "OBSKIT_ALERT_SMTP_USERNAME": "am",
            "OBSKIT_ALERT_SMTP_PASSWORD": "pw",
            "OBSKIT_ALERT_SMTP_REQUIRE_TLS": "false",
        }
    )
    (email,) = config["receivers"][1]["email_configs"]
    assert email["to"] == "oncall@example.com, lead@example.com"
    assert (email["smarthost"], email["auth_username"], email["auth_password"]) == ("smtp.example.com:587", "am", "pw")
    assert email["require_tls"] is False


def test_a_severity_no_receiver_takes_is_a_warning() -> None:
    _, warnings = render_config({"OBSKIT_ALERT_PAGERDUTY_ROUTING_KEY": PAGERDUTY_KEY})
    assert warnings == [
        "no receiver takes severity=ticket alerts: they go nowhere",
        "no receiver takes severity=info alerts: they go nowhere",
    ]


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({}, "OBSKIT_ALERT_WEBHOOK_URL"),
        ({"OBSKIT_ALERT_WEBHOOK_URL": "ftp://example.com"}, "OBSKIT_ALERT_WEBHOOK_URL"),
        ({"OBSKIT_ALERT_WEBHOOK_URL_FILE": "/nonexistent/url"}, "OBSKIT_ALERT_WEBHOOK_URL_FILE"),
        ({"OBSKIT_ALERT_TELEGRAM_BOT_TOKEN": "123456:ABC"}, "OBSKIT_ALERT_TELEGRAM_CHAT_ID"),
        (
            {"OBSKIT_ALERT_TELEGRAM_BOT_TOKEN": "123456:ABC", "OBSKIT_ALERT_TELEGRAM_CHAT_ID": "@channel"},
            "OBSKIT_ALERT_TELEGRAM_CHAT_ID",
        ),
        ({"OBSKIT_ALERT_TELEGRAM_BOT_TOKEN": "not a token"}, "OBSKIT_ALERT_TELEGRAM_BOT_TOKEN"),
        ({"OBSKIT_ALERT_PAGERDUTY_ROUTING_KEY": "short"}, "OBSKIT_ALERT_PAGERDUTY_ROUTING_KEY"),
        ({"OBSKIT_ALERT_EMAIL_TO": "oncall@example.com"}, "OBSKIT_ALERT_EMAIL_FROM"),
        ({"OBSKIT_ALERT_EMAIL_TO": "nobody"}, "OBSKIT_ALERT_EMAIL_TO"),
        (
            {
                "OBSKIT_ALERT_EMAIL_TO": "oncall@example.com",
                "OBSKIT_ALERT_EMAIL_FROM": "am@example.com",
                "OBSKIT_ALERT_SMTP_SMARTHOST": "smtp.example.com",
            },
            "OBSKIT_ALERT_SMTP_SMARTHOST",
        ),
        ({**WEBHOOK, "OBSKIT_ALERT_WEBHOOK_SEVERITIES": "urgent"}, "OBSKIT_ALERT_WEBHOOK_SEVERITIES"),
        ({**WEBHOOK, "OBSKIT_ALERT_PAGE_REPEAT_INTERVAL": "hourly"}, "OBSKIT_ALERT_PAGE_REPEAT_INTERVAL"),
    ],
)
def test_a_bad_or_missing_setting_names_the_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        render_config(environ)
    assert caught.value.variable == variable


def test_a_bad_secret_is_not_printed() -> None:
    secret = "ftp://hooks.example.com/T0SECRETTOKEN"
    with pytest.raises(ConfigError) as caught:
        render_config({"OBSKIT_ALERT_SLACK_WEBHOOK_URL": secret})
    assert "SECRETTOKEN" not in str(caught.value)


def _cli(argv: list[str], environ: dict[str, str]) -> Any:
    clean = {k: None for k in os.environ if k.startswith("OBSKIT_ALERT_")}
    return CliRunner().invoke(main, ["alerts", "alertmanager-config", *argv], env={**clean, **environ})


def test_cli_writes_the_config_readable_by_its_owner_only(tmp_path: Path) -> None:
    out = tmp_path / "alertmanager.yml"
    result = _cli(["--out", str(out)], WEBHOOK)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert yaml.safe_load(out.read_text())["receivers"][1]["name"] == "webhook"


def test_cli_missing_receiver_is_one_line_and_exit_2() -> None:
    result = _cli([], {})
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith("obskit: OBSKIT_ALERT_WEBHOOK_URL='' is invalid: expected a receiver")


def test_cli_warns_on_stderr_about_a_severity_nobody_takes() -> None:
    result = _cli([], {"OBSKIT_ALERT_PAGERDUTY_ROUTING_KEY": PAGERDUTY_KEY})
    assert result.exit_code == 0
    assert "obskit: warning: no receiver takes severity=ticket alerts" in result.stderr
    assert "pagerduty_configs" in result.stdout

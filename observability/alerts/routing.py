"""Alertmanager's config, rendered from the environment: ``obskit alerts alertmanager-config``.

Alertmanager does not expand environment variables, and 0.25 reads neither Telegram's bot token nor a
webhook's URL from a file, so the secrets are read here (``VAR``, else the file named by ``VAR_FILE``)
and written into the rendered config, which is then a secret itself.

One receiver per configured integration (``slack``, ``telegram``, ``pagerduty``, ``email``,
``webhook``), each taking the severities it is set up for. The tree:

- ``alertname="ObskitTestAlert"``: ``obskit test-alert``'s alerts, to the one receiver they name;
- ``severity="page"`` in an env that pages (the SLO spec's ``paging_envs``): at once, again every hour;
- ``severity="page"`` elsewhere, and ``severity="ticket"``: a digest every 30 minutes;
- ``severity="info"``: a digest every 30 minutes, repeated daily;

grouped by ``alertname``, ``service`` and ``env``; a page silences the tickets and infos of its service
and env (inhibition).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from observability.alerts._env import Env
from observability.alerts._yaml import dump
from observability.alerts.rules import format_duration
from observability.errors import ConfigError
from observability.slo.spec import Spec

__all__ = [
    "RECEIVERS",
    "SEVERITIES",
    "TEST_ALERT",
    "TEST_LABEL",
    "Receiver",
    "build_config",
    "paging_envs",
    "receivers_from_env",
    "render_config",
]

SEVERITIES = ("page", "ticket", "info")
# The receivers obskit renders, in the order routes try them, with the severities each takes by default.
RECEIVERS: dict[str, tuple[str, ...]] = {
    "pagerduty": ("page",),
    "slack": ("page", "ticket", "info"),
    "telegram": ("page", "ticket"),
    "email": ("page", "ticket"),
    "webhook": ("page", "ticket", "info"),
}
TEST_ALERT = "ObskitTestAlert"
TEST_LABEL = "obskit_receiver"
_NOWHERE = "nowhere"

_TITLE = (
    '[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}]'
    " {{ .CommonLabels.alertname }} {{ .CommonLabels.service }}"
    "{{ with .CommonLabels.env }} ({{ . }}){{ end }}"
)
_TEXT = (
    "{{ range .Alerts }}{{ .Annotations.summary }}\n"
    "{{ with .Annotations.runbook_url }}Runbook: {{ . }}\n{{ end }}"
    "{{ with .Annotations.sentry_issues }}Sentry: {{ . }}\n{{ end }}"
    "{{ with .Annotations.sentry_url }}Sentry: {{ . }}\n{{ end }}"
    "{{ end }}"
)


@dataclass(frozen=True)
class Receiver:
    """One Alertmanager receiver: its name, the severities routed to it, its ``*_configs`` entry."""

    name: str
    severities: tuple[str, ...]
    config: Mapping[str, Any]


def _severities(env: Env, receiver: str) -> tuple[str, ...]:
    name = f"OBSKIT_ALERT_{receiver.upper()}_SEVERITIES"
    raw = env.get(name)
    if raw is None:
        return RECEIVERS[receiver]
    chosen = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not chosen or any(s not in SEVERITIES for s in chosen):
        raise ConfigError(name, raw, "comma-separated severities from page, ticket, info, e.g. page,ticket")
    return tuple(s for s in SEVERITIES if s in chosen)


def _masked(value: str) -> str:
    return f"{value[:4]}… ({len(value)} characters)" if len(value) > 8 else "…"


def _url(name: str, value: str, *, secret: bool) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(name, _masked(value) if secret else value, "an http(s) URL")
    return value


def _address(name: str, value: str) -> str:
    addresses = [a.strip() for a in value.split(",") if a.strip()]
    if not addresses or not all(re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", a) for a in addresses):
        raise ConfigError(name, value, "e-mail addresses, comma-separated, e.g. oncall@example.com")
    return ", ".join(addresses)


def _smarthost(name: str, value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(name, value, "the SMTP server as host:port, e.g. smtp.example.com:587")
    return value


def _slack(env: Env) -> dict[str, Any] | None:
    url = env.secret("OBSKIT_ALERT_SLACK_WEBHOOK_URL", "a Slack incoming-webhook URL")
    if url is None:
        return None
    config: dict[str, Any] = {
        "api_url": _url("OBSKIT_ALERT_SLACK_WEBHOOK_URL", url, secret=True),
        "send_resolved": True,
        "title": _TITLE,
        "text": _TEXT,
    }
    channel = env.get("OBSKIT_ALERT_SLACK_CHANNEL")
    if channel:
        config["channel"] = channel
    return {"slack_configs": [config]}


def _telegram(env: Env) -> dict[str, Any] | None:
    token = env.secret("OBSKIT_ALERT_TELEGRAM_BOT_TOKEN", "a Telegram bot token")
    if token is None:
        return None
    if not re.fullmatch(r"\d+:[\w-]+", token):
        raise ConfigError("OBSKIT_ALERT_TELEGRAM_BOT_TOKEN", _masked(token), "a bot token like 123456:ABC-DEF...")
    raw_chat = env.require(
        "OBSKIT_ALERT_TELEGRAM_CHAT_ID", "the chat's numeric id", needed_by="OBSKIT_ALERT_TELEGRAM_BOT_TOKEN"
    )
    if not re.fullmatch(r"-?\d+", raw_chat):
        raise ConfigError("OBSKIT_ALERT_TELEGRAM_CHAT_ID", raw_chat, "the chat's numeric id, e.g. -1001234567890")
    return {
        "telegram_configs": [
            {
                "bot_token": token,
                "chat_id": int(raw_chat),
                "parse_mode": "",
                "send_resolved": True,
                "message": f"{_TITLE}\n{_TEXT}",
            }
        ]
    }


def _pagerduty(env: Env) -> dict[str, Any] | None:
    key = env.secret("OBSKIT_ALERT_PAGERDUTY_ROUTING_KEY", "a PagerDuty Events API v2 integration key")
    if key is None:
        return None
    if not re.fullmatch(r"[A-Za-z0-9]{20,64}", key):
        raise ConfigError(
            "OBSKIT_ALERT_PAGERDUTY_ROUTING_KEY", _masked(key), "an Events API v2 integration key (32 letters/digits)"
        )
    return {"pagerduty_configs": [{"routing_key": key, "send_resolved": True, "description": _TITLE}]}


def _email(env: Env) -> dict[str, Any] | None:
    to = env.get("OBSKIT_ALERT_EMAIL_TO")
    if to is None:
        return None
    needed = "OBSKIT_ALERT_EMAIL_TO"
    config: dict[str, Any] = {
        "to": _address("OBSKIT_ALERT_EMAIL_TO", to),
        "from": _address(
            "OBSKIT_ALERT_EMAIL_FROM",
            env.require("OBSKIT_ALERT_EMAIL_FROM", "the sender's address", needed_by=needed),
        ),
        "smarthost": _smarthost(
            "OBSKIT_ALERT_SMTP_SMARTHOST",
            env.require("OBSKIT_ALERT_SMTP_SMARTHOST", "the SMTP server as host:port", needed_by=needed),
        ),
        "send_resolved": True,
        "headers": {"Subject": _TITLE},
        "text": _TEXT,
    }
    username = env.get("OBSKIT_ALERT_SMTP_USERNAME")
    password = env.secret("OBSKIT_ALERT_SMTP_PASSWORD", "the SMTP password")
    if password is not None and username is None:
        raise ConfigError("OBSKIT_ALERT_SMTP_USERNAME", "", "the SMTP user (needed with OBSKIT_ALERT_SMTP_PASSWORD)")
    if username is not None:
        config["auth_username"] = username
        if password is not None:
            config["auth_password"] = password
    tls = env.get("OBSKIT_ALERT_SMTP_REQUIRE_TLS")
    if tls is not None:
        if tls.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError("OBSKIT_ALERT_SMTP_REQUIRE_TLS", tls, "true or false")
        config["require_tls"] = tls.lower() in ("true", "1", "yes")
    return {"email_configs": [config]}


def _webhook(env: Env) -> dict[str, Any] | None:
    url = env.secret("OBSKIT_ALERT_WEBHOOK_URL", "the webhook's URL")
    if url is None:
        return None
    return {
        "webhook_configs": [
            {"url": _url("OBSKIT_ALERT_WEBHOOK_URL", url, secret=True), "send_resolved": True, "max_alerts": 0}
        ]
    }


_BUILDERS: dict[str, Callable[[Env], dict[str, Any] | None]] = {
    "pagerduty": _pagerduty,
    "slack": _slack,
    "telegram": _telegram,
    "email": _email,
    "webhook": _webhook,
}


def receivers_from_env(environ: Mapping[str, str] | None = None) -> list[Receiver]:
    """The receivers the environment configures, in routing order; a ConfigError names a bad variable."""
    env = Env(os.environ if environ is None else environ)
    found = []
    for name, build in _BUILDERS.items():
        config = build(env)
        if config is not None:
            found.append(Receiver(name, _severities(env, name), config))
    return found


def paging_envs(spec: Spec) -> list[str]:
    """Every env that pages for some service in the spec, in the order they appear."""
    envs: list[str] = []
    for slo in (spec.defaults, *spec.slos):
        envs.extend(e for e in slo.paging_envs if e not in envs)
    return envs


def _regex(values: list[str]) -> str:
    return "|".join(re.sub(r"([.+*?()\[\]{}|^$\\])", r"\\\1", v) for v in values)


def build_config(
    receivers: list[Receiver], *, spec: Spec, environ: Mapping[str, str] | None = None, interval_scale: float = 1.0
) -> tuple[dict[str, Any], list[str]]:
    """Alertmanager's config as data, and warnings (a severity that no receiver takes)."""
    if not receivers:
        names = ", ".join(
            f"OBSKIT_ALERT_{n}" for n in ("SLACK_WEBHOOK_URL", "TELEGRAM_BOT_TOKEN", "PAGERDUTY_ROUTING_KEY")
        )
        raise ConfigError(
            "OBSKIT_ALERT_WEBHOOK_URL", "", f"a receiver: set it or one of {names}, OBSKIT_ALERT_EMAIL_TO"
        )
    env = Env(os.environ if environ is None else environ)
    page_repeat = env.duration("OBSKIT_ALERT_PAGE_REPEAT_INTERVAL", "1h")
    digest = env.duration("OBSKIT_ALERT_TICKET_DIGEST_INTERVAL", "30m")

    def timing(wait_s: float, interval_s: float, repeat_s: float) -> dict[str, str]:
        return {
            "group_wait": format_duration(wait_s * interval_scale),
            "group_interval": format_duration(interval_s * interval_scale),
            "repeat_interval": format_duration(repeat_s * interval_scale),
        }

    def fan_out(severity: str) -> list[dict[str, Any]]:
        return [{"receiver": r.name, "continue": True} for r in receivers if severity in r.severities]

    envs = paging_envs(spec)
    tiers: list[tuple[list[str], str, dict[str, str]]] = [
        (['severity="page"', f'env=~"{_regex(envs)}"'], "page", timing(0, 60, page_repeat)),
        # A page from an env that does not page (Sentry's bridge, a rule of your own) is handled as a ticket.
        (['severity=~"page|ticket"'], "ticket", timing(60, digest, digest)),
        (['severity="info"'], "info", timing(300, digest, 86400)),
    ]
    warnings = []
    routes: list[dict[str, Any]] = [
        {
            "matchers": [f'alertname="{TEST_ALERT}"'],
            "group_by": ["..."],
            **timing(0, 60, 3600),
            "routes": [{"matchers": [f'{TEST_LABEL}="{r.name}"'], "receiver": r.name} for r in receivers],
        }
    ]
    for matchers, severity, times in tiers:
        children = fan_out(severity)
        if not children:
            warnings.append(f"no receiver takes severity={severity} alerts: they go nowhere")
        routes.append({"matchers": matchers, **times, "routes": children})
    config = {
        "route": {
            "receiver": _NOWHERE,
            "group_by": ["alertname", "service", "env"],
            **timing(30, 300, 4 * 3600),
            "routes": routes,
        },
        "inhibit_rules": [
            {
                "source_matchers": ['severity="page"'],
                "target_matchers": ['severity=~"ticket|info"'],
                "equal": ["service", "env"],
            }
        ],
        "receivers": [{"name": _NOWHERE}, *({"name": r.name, **r.config} for r in receivers)],
    }
    return config, warnings


HEADER = (
    "# Alertmanager config rendered by `obskit alerts alertmanager-config` from OBSKIT_ALERT_* settings.\n"
    "# It holds the receivers' secrets: keep it out of version control, readable by Alertmanager only.\n"
)


def render_config(
    environ: Mapping[str, str] | None = None, *, spec: Spec | None = None, interval_scale: float = 1.0
) -> tuple[str, list[str]]:
    """The config as YAML, and warnings for stderr."""
    if interval_scale <= 0:
        raise ConfigError("--interval-scale", interval_scale, "a positive number, e.g. 1 (or 0.01 in tests)")
    receivers = receivers_from_env(environ)
    config, warnings = build_config(receivers, spec=spec or Spec(), environ=environ, interval_scale=interval_scale)
    return HEADER + dump(config), warnings

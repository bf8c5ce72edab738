"""Prometheus recording and alerting rules for obskit, generated: ``obskit alerts rules``.

Three groups, each with its recording rules first so its alerts read values of the same evaluation:

- ``obskit-slo``: the SRE workbook's multiwindow, multi-burn-rate alerts on the exporter's
  ``obskit_slo_burn_rate`` gauges, the spec's simple thresholds, stale or missing SLO data. The spec's
  objective, period, thresholds, ``min_events`` and paging envs reach the rules as the exporter's
  gauges, so one rules file serves any spec and a spec change needs no new rules; the spec's own
  entries add one "no SLO data" alert each.
- ``obskit-errors``: more than N errors of one type in a minute / an hour.
- ``obskit-operations``: Kafka consumer lag, dead letters and unassigned topics, Celery backlog, targets down
  or absent, Sentry events dropped.

Every alert has the labels ``severity`` (page / ticket / info), ``service`` and ``env``, and the
annotations ``summary``, ``description``, ``runbook_url`` and, when a Sentry server is configured,
``sentry_issues``: the service's issues filtered by its tags.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from observability.alerts._yaml import dump
from observability.errors import ConfigError
from observability.sentry_api import issues_link
from observability.slo.spec import Spec

__all__ = [
    "PAGE_BURNS",
    "TICKET_BURNS",
    "BurnWindows",
    "RuleOptions",
    "SentryLink",
    "alert_names",
    "build_rules",
    "format_duration",
    "render_rules",
]

# The period the SRE workbook's burn-rate factors are written for; other periods scale them.
_WORKBOOK_PERIOD_S = 30 * 86400


@dataclass(frozen=True)
class BurnWindows:
    """Alert when the error budget burns ``factor`` times too fast over both windows (for a 30-day
    period: the factor is scaled by the SLO's period so the same share of the budget is spent)."""

    factor: float
    long: str
    short: str
    for_s: int

    @property
    def budget_share(self) -> float:
        """The share of the period's budget that burning at ``factor`` spends in the long window."""
        return self.factor * _seconds(self.long) / _WORKBOOK_PERIOD_S


# The SRE workbook, chapter "Alerting on SLOs": 2% of the budget in 1h or 5% in 6h pages;
# 10% in 1d or 10% in 3d opens a ticket. The short window makes the alert stop soon after the errors do.
PAGE_BURNS = (BurnWindows(14.4, "1h", "5m", 120), BurnWindows(6, "6h", "30m", 120))
TICKET_BURNS = (BurnWindows(3, "1d", "2h", 900), BurnWindows(1, "3d", "6h", 900))

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(text: str) -> float:
    for unit in ("ms", "s", "m", "h", "d"):
        if text.endswith(unit) and text[: -len(unit)].isdigit():
            return int(text[: -len(unit)]) * _UNITS[unit]
    message = f"not a duration: {text!r}"
    raise ValueError(message)


def format_duration(seconds: float) -> str:
    """A Prometheus / Alertmanager duration: 120 -> ``2m``, 1.5 -> ``1500ms``, 0 -> ``0s``."""
    ms = round(seconds * 1000)
    if ms % 1000:
        return f"{ms}ms"
    whole = ms // 1000
    for unit in ("d", "h", "m"):
        size = int(_UNITS[unit])
        if whole and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


@dataclass(frozen=True)
class SentryLink:
    """Where the ``sentry_issues`` annotation points: the web UI of a Sentry or Bugsink server."""

    api: str
    url: str
    project: str | None = None
    org: str | None = None

    def __post_init__(self) -> None:
        if self.api not in ("sentry", "bugsink"):
            raise ConfigError("OBSKIT_SENTRY_API", self.api, "sentry or bugsink")
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError("SENTRY_URL", self.url, "the server's base URL, e.g. https://sentry.io")
        if self.api == "sentry" and not self.org:
            raise ConfigError("SENTRY_ORG", self.org or "", "the organization's slug (needed for Sentry's issue links)")

    def template(self) -> str:
        """The issues link with the alert's ``service`` and ``env`` filled in by Prometheus."""
        marks = {"OBSKITSERVICEMARK": "service", "OBSKITENVMARK": "env"}
        link = issues_link(
            api=self.api,
            url=self.url,
            project=self.project,
            org=self.org,
            filters={label: mark for mark, label in marks.items()},
        )
        for mark, label in marks.items():
            link = link.replace(mark, "{{ $labels." + label + " | urlquery }}")
        return link


@dataclass(frozen=True, kw_only=True)
class RuleOptions:
    """What the generated rules alert on beyond the spec; every threshold is "more than"."""

    errors_per_minute: int = 5
    errors_per_hour: int = 10
    lag_messages: int = 10_000
    lag_seconds: int = 300
    backlog_messages: int = 1_000
    # Dead-lettered messages per topic in 10 minutes (0: every dead letter raises a ticket).
    dead_letters: int = 0
    sentry_dropped: int = 10
    # SLO data older than this, from a service that should have sent some by now, is stale.
    stale_after_s: int = 600
    # Prometheus jobs that must exist; their absence is an alert (the exporter's above all).
    expected_jobs: tuple[str, ...] = ("obskit-exporter",)
    # Multiplies every `for:` duration: 1 in production; tests compress time with e.g. 1/60.
    for_scale: float = 1.0
    # The README (or docs page) whose "Alerting" runbook has a heading per alert name.
    runbook_url: str = "README.md"
    sentry: SentryLink | None = None
    spec: Spec = field(default_factory=Spec)

    def __post_init__(self) -> None:
        counts = {
            "--errors-per-minute": self.errors_per_minute,
            "--errors-per-hour": self.errors_per_hour,
            "--lag-messages": self.lag_messages,
            "--lag-seconds": self.lag_seconds,
            "--backlog-messages": self.backlog_messages,
            "--dead-letters": self.dead_letters,
            "--sentry-dropped": self.sentry_dropped,
            "--stale-after": self.stale_after_s,
        }
        for name, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(name, value, "a whole number >= 0")
        if not math.isfinite(self.for_scale) or self.for_scale <= 0:
            raise ConfigError("--for-scale", self.for_scale, "a positive number, e.g. 1 (or 0.01 in tests)")


def _increase(metric: str, window: str, by: str) -> str:
    """``increase()`` that also counts a series born inside the window. A counter first scraped at 7 (a new
    error type, seven errors before the first scrape) has no increase() at all; when the process exposes
    the counter's ``_created`` timestamp (prometheus_client does, outside multiprocess mode), a series
    created inside the window counts with its whole value."""
    created = metric.removesuffix("_total") + "_created"
    new = f"({metric} and ({created} > time() - {_seconds(window):g}))"
    return f"sum by ({by}) (\n  (increase({metric}[{window}]) unless {new})\n  or\n  {new}\n)"


class _Builder:
    def __init__(self, options: RuleOptions) -> None:
        self.options = options
        self.sentry_template = options.sentry.template() if options.sentry is not None else None

    def alert(
        self,
        name: str,
        expr: str,
        *,
        severity: str,
        for_s: float,
        summary: str,
        description: str,
        labels: Mapping[str, str] | None = None,
        link: bool = True,
    ) -> dict[str, Any]:
        rule: dict[str, Any] = {"alert": name, "expr": expr}
        scaled = for_s * self.options.for_scale
        if scaled > 0:
            rule["for"] = format_duration(scaled)
        rule["labels"] = {"severity": severity, **(labels or {})}
        annotations = {
            "summary": summary,
            "description": description,
            "runbook_url": f"{self.options.runbook_url}#{name.lower()}",
        }
        if link and self.sentry_template is not None:
            annotations["sentry_issues"] = self.sentry_template
        rule["annotations"] = annotations
        return rule


_SVC = "{{ $labels.service }}{{ with $labels.env }} ({{ . }}){{ end }}"
_BURN = "job:obskit_slo_burn_rate:max"
_PAGING = "(job:obskit_slo_paging:max == 1)"


def _record(name: str, expr: str) -> dict[str, Any]:
    return {"record": name, "expr": expr}


def _burn_condition(burn: BurnWindows) -> str:
    scale = f"({burn.factor:g} * job:obskit_slo_period_seconds:max / {_WORKBOOK_PERIOD_S})"
    return (
        f'{_BURN}{{window="{burn.long}"}} > ignoring (window) {scale}\n'
        f"and ignoring (window)\n"
        f'{_BURN}{{window="{burn.short}"}} > ignoring (window) {scale}\n'
        f"and ignoring (window)\n"
        f'job:obskit_slo_traffic_sufficient:max{{window="{burn.long}"}} == 1'
    )


def _burn_alert(b: _Builder, burn: BurnWindows, *, severity: str, paging: str | None) -> dict[str, Any]:
    condition = _burn_condition(burn)
    if paging == "only":
        expr = f"(\n{_indent(condition)}\n)\nand ignoring (window) {_PAGING}"
    elif paging == "not":
        expr = f"(\n{_indent(condition)}\n)\nunless ignoring (window) {_PAGING}"
    else:
        expr = condition
    why = {
        "only": " A page: the env is one of the spec's paging_envs.",
        "not": " A ticket, not a page: the env is not one of the spec's paging_envs.",
        None: "",
    }[paging]
    return b.alert(
        "ObskitSLOErrorBudgetBurn",
        expr,
        severity=severity,
        for_s=burn.for_s,
        summary=(
            f'{_SVC} spends its error budget {{{{ $value | printf "%.1f" }}}}x as fast as its SLO allows'
            f" over {burn.long}, and still over {burn.short}"
        ),
        description=(
            f"Burn rate above {burn.factor:g}x over both {burn.long} and {burn.short}, with at least min_events units"
            f" in {burn.long} ({burn.factor:g}x is for a 30-day SLO, scaled to the SLO's period): at this rate"
            f" {burn.budget_share:.0%} of the error budget goes in {burn.long}.{why}"
        ),
        labels={"long_window": burn.long, "short_window": burn.short},
    )


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def _slo_group(b: _Builder) -> dict[str, Any]:
    recorded = (
        "burn_rate",
        "error_ratio",
        "traffic_sufficient",
        "events",
        "threshold_error_ratio",
        "paging",
        "period_seconds",
        "freshness_seconds",
    )
    # Exporter replicas read the same Redis and serve the same numbers: keep one of each.
    rules: list[dict[str, Any]] = [
        _record(f"job:obskit_slo_{name}:max", f"max without (instance) (obskit_slo_{name})") for name in recorded
    ]
    for burn in PAGE_BURNS:
        rules.append(_burn_alert(b, burn, severity="page", paging="only"))
        rules.append(_burn_alert(b, burn, severity="ticket", paging="not"))
    rules.extend(_burn_alert(b, burn, severity="ticket", paging=None) for burn in TICKET_BURNS)
    rules.append(
        b.alert(
            "ObskitSLOThresholdExceeded",
            "(\n  job:obskit_slo_error_ratio:max\n    > ignoring (threshold) group_right\n"
            "  job:obskit_slo_threshold_error_ratio:max\n)\n"
            "and ignoring (threshold) (job:obskit_slo_traffic_sufficient:max == 1)",
            severity="ticket",
            for_s=300,
            summary=(
                f"{_SVC}: {{{{ $value | humanizePercentage }}}} of units failed over {{{{ $labels.window }}}},"
                " above the spec's threshold {{ $labels.threshold }}"
            ),
            description=(
                "The error ratio over the threshold's window is above the ratio the SLO spec's threshold allows,"
                " with at least min_events units in that window."
            ),
        )
    )
    stale = format_duration(b.options.stale_after_s)
    rules.append(
        b.alert(
            "ObskitSLODataStale",
            f"job:obskit_slo_freshness_seconds:max > {b.options.stale_after_s}\nand\n"
            "(\n  job:obskit_slo_freshness_seconds:max\n  * ignoring (window)\n"
            '  job:obskit_slo_events:max{window="3d"} / 259200\n) > 10',
            severity="ticket",
            for_s=300,
            summary=f"{_SVC} has flushed no SLO outcome for {{{{ $value | humanizeDuration }}}}",
            description=(
                f"No outcome counts for more than {stale}, while the last 3 days' traffic says more than 10 units"
                " should have completed since: workers or consumers stopped, or cannot reach the SLO Redis."
            ),
        )
    )
    rules.append(
        b.alert(
            "ObskitSLOExporterRedisDown",
            "obskit_slo_exporter_redis_up == 0",
            severity="ticket",
            for_s=300,
            summary="The SLO exporter {{ $labels.instance }} cannot read Redis",
            description="While the exporter cannot read Redis, no SLO gauge is served and no SLO alert can fire.",
            labels={"service": "{{ $labels.job }}"},
            link=False,
        )
    )
    for slo in b.options.spec.slos:
        selector = f'service="{slo.service}"' + ("" if slo.env == "*" else f',env="{slo.env}"')
        where = slo.service + ("" if slo.env == "*" else f" ({slo.env})")
        rules.append(
            b.alert(
                "ObskitSLOAbsent",
                f'absent(job:obskit_slo_events:max{{{selector},window="1h"}})',
                severity="ticket",
                for_s=900,
                summary=f"No SLO data for {where}",
                description=(
                    "The SLO spec names this service, but the exporter serves nothing for it: it never recorded an"
                    " outcome, records into another Redis, or is not scraped."
                ),
                labels={"service": slo.service, **({} if slo.env == "*" else {"env": slo.env})},
            )
        )
    return {"name": "obskit-slo", "rules": rules}


def _errors_group(b: _Builder) -> dict[str, Any]:
    o = b.options
    minute, hour = "service_env_error_type:obskit_errors:increase1m", "service_env_error_type:obskit_errors:increase1h"
    rules: list[dict[str, Any]] = [
        _record(minute, _increase("obskit_errors_total", "1m", "service, env, error_type")),
        _record(hour, _increase("obskit_errors_total", "1h", "service, env, error_type")),
    ]
    summary = f"{_SVC}: {{{{ $value | humanize }}}} {{{{ $labels.error_type }}}} errors in "
    for severity, join in (("page", "and"), ("ticket", "unless")):
        rules.append(
            b.alert(
                "ObskitErrorSpike",
                f"{minute} > {o.errors_per_minute}\n{join} on (service, env) {_PAGING}",
                severity=severity,
                for_s=0,
                summary=summary + "1m",
                description=(
                    f"More than {o.errors_per_minute} failed units of one exception type in a minute"
                    f" ({'an env that pages' if severity == 'page' else 'an env that does not page'})."
                ),
                labels={"window": "1m"},
            )
        )
    rules.append(
        b.alert(
            "ObskitErrorSpike",
            f"{hour} > {o.errors_per_hour}",
            severity="ticket",
            for_s=0,
            summary=summary + "1h",
            description=f"More than {o.errors_per_hour} failed units of one exception type in an hour.",
            labels={"window": "1h"},
        )
    )
    return {"name": "obskit-errors", "rules": rules}


def _operations_group(b: _Builder) -> dict[str, Any]:
    o = b.options
    rules = [
        b.alert(
            "ObskitKafkaConsumerLagMessages",
            "sum by (service, env, topic) (\n"
            "  max by (service, env, topic, partition) (obskit_kafka_consumer_lag_messages)\n"
            f") > {o.lag_messages}",
            severity="ticket",
            for_s=600,
            summary=f"{_SVC} is {{{{ $value | humanize }}}} messages behind on {{{{ $labels.topic }}}}",
            description=f"More than {o.lag_messages} messages wait in the topic's partitions for 10 minutes.",
        ),
        b.alert(
            "ObskitKafkaConsumerLagSeconds",
            f"max by (service, env, topic) (obskit_kafka_consumer_lag_seconds) > {o.lag_seconds}",
            severity="ticket",
            for_s=600,
            summary=f"{_SVC} is {{{{ $value | humanizeDuration }}}} behind on {{{{ $labels.topic }}}}",
            description=f"The oldest unconsumed message is older than {format_duration(o.lag_seconds)} for 10 minutes.",
        ),
        b.alert(
            "ObskitKafkaDeadLetters",
            _increase("obskit_kafka_dlq_messages_total", "10m", "service, env, topic") + f" > {o.dead_letters}",
            severity="ticket",
            for_s=0,
            summary=f"{_SVC} dead-lettered {{{{ $value | humanize }}}} messages from {{{{ $labels.topic }}}} in 10m",
            description=(
                "Messages were parked in the dead-letter topic (the reason is in their headers); nothing is lost,"
                " but they wait for a fix and a replay."
            ),
        ),
        b.alert(
            "ObskitKafkaTopicUnassigned",
            "sum by (service, env, topic) (obskit_kafka_consumer_assigned_partitions) == 0",
            severity="ticket",
            for_s=900,
            summary=f"No consumer of {_SVC} has a partition of {{{{ $labels.topic }}}}",
            description=(
                "For 15 minutes no running consumer of the service was assigned a partition of the topic it"
                " subscribes to: the topic does not exist (a typo, not created yet) or the group cannot settle."
            ),
        ),
        b.alert(
            "ObskitCeleryQueueBacklog",
            f"max by (service, env, queue) (obskit_celery_queue_backlog_messages) > {o.backlog_messages}",
            severity="ticket",
            for_s=600,
            summary=f"{_SVC}: {{{{ $value | humanize }}}} tasks wait in queue {{{{ $labels.queue }}}}",
            description=f"More than {o.backlog_messages} messages wait in the Celery queue for 10 minutes.",
        ),
        b.alert(
            "ObskitTargetDown",
            "up == 0",
            severity="ticket",
            for_s=300,
            summary="Prometheus cannot scrape {{ $labels.instance }} (job {{ $labels.job }})",
            description="The target has failed every scrape for 5 minutes: the process is down or unreachable.",
            labels={"service": "{{ with $labels.service }}{{ . }}{{ else }}{{ $labels.job }}{{ end }}"},
            link=False,
        ),
    ]
    for job in o.expected_jobs:
        rules.append(
            b.alert(
                "ObskitTargetAbsent",
                f'absent(up{{job="{job}"}})',
                severity="ticket",
                for_s=600,
                summary=f"Prometheus has no target for job {job}",
                description="Service discovery finds no target for the job: it is not deployed, or not discovered.",
                labels={"service": job},
                link=False,
            )
        )
    rules.append(
        b.alert(
            "ObskitSentryEventsDropped",
            _increase("obskit_sentry_events_dropped_total", "15m", "service, env, reason") + f" > {o.sentry_dropped}",
            severity="info",
            for_s=0,
            summary=f"{_SVC} dropped {{{{ $value | humanize }}}} Sentry events in 15m ({{{{ $labels.reason }}}})",
            description=(
                "The SDK did not deliver these events (queue full, network error, rate limited): the work went on,"
                " but Sentry misses them."
            ),
        )
    )
    return {"name": "obskit-operations", "rules": rules}


def build_rules(options: RuleOptions | None = None) -> dict[str, Any]:
    """The rules file as data: ``{"groups": [...]}``."""
    b = _Builder(options or RuleOptions())
    return {"groups": [_slo_group(b), _errors_group(b), _operations_group(b)]}


HEADER = (
    "# Prometheus rules for obskit, generated by `obskit alerts rules`: do not edit, regenerate.\n"
    "# What each alert means and what to do: the runbook in README.md, section Alerting.\n"
)


def render_rules(options: RuleOptions | None = None) -> str:
    """The rules file as YAML, with a header saying where it comes from."""
    return HEADER + dump(build_rules(options))


def alert_names(rules: Mapping[str, Any]) -> list[str]:
    """Every alert name in a rules document, once each, in order."""
    names: list[str] = []
    groups: Sequence[Mapping[str, Any]] = rules.get("groups") or []
    for group in groups:
        for rule in group.get("rules") or []:
            name = rule.get("alert")
            if name and name not in names:
                names.append(name)
    return names

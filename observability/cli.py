"""The ``obskit`` command line: devstack, Sentry checks, SLO, alerts and the demo.

Exit codes: 0 success, 1 a service or server failed, 2 bad usage or bad configuration.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from observability.errors import ConfigError, ObskitError

__all__ = ["main"]


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Turn the kit's own errors into one line on stderr and the documented exit code."""
    try:
        yield
    except ConfigError as exc:
        click.echo(f"obskit: {exc}", err=True)
        sys.exit(2)
    except ObskitError as exc:
        click.echo(f"obskit: {exc}", err=True)
        sys.exit(1)


def _split_only(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


class PluginGroup(click.Group):
    """A command group that also offers the commands other packages register under an entry-point
    group, loaded only when used: ``observability`` imports neither ``workers`` nor ``consumers``."""

    def __init__(self, *args: Any, plugins: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plugins = plugins

    def _entry_points(self) -> Any:
        from importlib.metadata import entry_points

        return entry_points(group=self.plugins)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *(ep.name for ep in self._entry_points())})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        for ep in self._entry_points():
            if ep.name == cmd_name:
                loaded: click.Command = ep.load()
                return loaded
        return None


@click.group(cls=PluginGroup, plugins="obskit.commands")
@click.option("-v", "--verbose", is_flag=True, help="Log progress to stderr.")
def main(verbose: bool) -> None:
    """obskit: Sentry, Prometheus and SLOs for Celery workers and Kafka consumers."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def _serve_until_stopped(start: Callable[[], Any], where: str, banner: Callable[[Any], str]) -> None:
    """Start a server, say where it listens, serve until SIGTERM or SIGINT, then stop it."""
    import signal
    import threading

    try:
        server = start()
    except OSError as exc:
        message = f"cannot listen on {where}: {exc.strerror}"
        raise ObskitError(message) from None
    click.echo(banner(server))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()


# -- devstack ------------------------------------------------------------------------------------

_dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=".devstack",
    envvar="OBSKIT_DEVSTACK_DIR",
    show_default=True,
    help="Where the services keep their state, logs and pids.",
)
_only_option = click.option("--only", help="Comma-separated services (redis,kafka,bugsink,alertmanager,prometheus).")


@main.group()
def devstack() -> None:
    """Real Redis, Kafka, Bugsink, Prometheus and Alertmanager on 127.0.0.1, without Docker."""


def _stack(directory: Path) -> Any:
    from observability.devstack import Devstack

    return Devstack(directory)


@devstack.command("install")
@_dir_option
@_only_option
def devstack_install(directory: Path, only: str | None) -> None:
    """Install what the services need (Debian packages, Kafka jars, Bugsink); idempotent."""
    with _one_line_errors():
        installed = _stack(directory).install(_split_only(only))
    click.echo(f"installed: {', '.join(installed)}" if installed else "everything is installed")


@devstack.command("up")
@_dir_option
@_only_option
def devstack_up(directory: Path, only: str | None) -> None:
    """Start the services (those already healthy are left alone) and wait until each is ready."""
    with _one_line_errors():
        statuses = _stack(directory).up(_split_only(only))
    for status in statuses:
        click.echo(f"{status.name:<13} {status.address or '-':<22} pid {status.pid}  log {status.log}")
    click.echo(f'point your shell at it: eval "$(obskit devstack env --dir {shlex.quote(str(directory))})"')


@devstack.command("down")
@_dir_option
@_only_option
def devstack_down(directory: Path, only: str | None) -> None:
    """Stop exactly the processes `up` started."""
    with _one_line_errors():
        stopped = _stack(directory).down(_split_only(only))
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@devstack.command("status")
@_dir_option
@_only_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def devstack_status(directory: Path, only: str | None, as_json: bool) -> None:
    """Each service: pid, address, healthy. Exits 1 when a selected service is not healthy."""
    with _one_line_errors():
        stack = _stack(directory)
        statuses = stack.status(_split_only(only))
    if as_json:
        click.echo(json.dumps(stack.as_dict(statuses), indent=2))
    else:
        for s in statuses:
            state = "healthy" if s.healthy else ("running, not ready" if s.running else "stopped")
            click.echo(f"{s.name:<13} {s.address or '-':<22} pid {s.pid or '-':<8} {state}")
    if not all(s.healthy for s in statuses):
        sys.exit(1)


@devstack.command("env")
@_dir_option
@_only_option
@click.option(
    "--prefix", default="", help="Prefix every name, e.g. OBSKIT_TEST_ to point the test suite at this stack."
)
def devstack_env(directory: Path, only: str | None, prefix: str) -> None:
    """Print `export` lines for the running services (REDIS_URL, KAFKA_BOOTSTRAP_SERVERS, SENTRY_DSN, ...)."""
    with _one_line_errors():
        variables = _stack(directory).env(_split_only(only))
    for name, value in variables.items():
        click.echo(f"export {prefix}{name}={shlex.quote(value)}")


# -- Sentry --------------------------------------------------------------------------------------


def _settings(service: str | None) -> Any:
    from observability.config import Settings

    return Settings.from_env(service=service or _default_service())


def _default_service() -> str:
    return os.environ.get("SERVICE_NAME") or "obskit-cli"


@main.command("sentry-info")
@click.option("--service", help="Service name (default: SERVICE_NAME).")
def sentry_info(service: str | None) -> None:
    """Print the settings in effect (DSN masked), the integrations, and whether the server answers."""
    from observability import sentry_api
    from observability.sentry import INTEGRATIONS

    with _one_line_errors():
        settings = _settings(service)
        rows = [
            ("service", settings.service),
            ("environment", settings.environment),
            ("release", settings.release or "(none)"),
            ("dsn", settings.masked_dsn or "(not set: Sentry is off)"),
            ("traces sample rate", f"{settings.traces_sample_rate:g}"),
            ("per-name rates", ", ".join(f"{k}={v:g}" for k, v in settings.traces_sample_rates.items()) or "(none)"),
            ("incoming traces cap", f"{settings.traces_incoming_max_per_s:g}/s"),
            ("profiles sample rate", f"{settings.profiles_sample_rate:g}"),
            ("log events / breadcrumbs", f"{settings.log_event_level} / {settings.log_breadcrumb_level}"),
            ("send PII", "on" if settings.send_default_pii else "off"),
            ("business messages per rule", f"{settings.business_events_per_minute}/min"),
            ("scrubbing", _scrubbing(settings)),
            ("ignored exceptions", ", ".join(settings.ignore_exceptions) or "(none)"),
            ("ignored loggers", ", ".join(settings.ignore_loggers) or "(none)"),
            ("client errors", "sent" if settings.send_client_errors else "held back (OBSKIT_SEND_CLIENT_ERRORS=1)"),
            ("storm control", _storm(settings)),
            ("SDK integrations", ", ".join(INTEGRATIONS)),
        ]
        for name, value in rows:
            click.echo(f"{name:<28} {value}")
        reachable = sentry_api.ping_dsn(settings.dsn) if settings.dsn else None
        click.echo(f"{'ingest reachable':<28} {'-' if reachable is None else ('yes' if reachable else 'NO')}")
        if settings.sentry_url:
            try:
                click.echo(f"{'web API':<28} {sentry_api.client(settings).describe()}")
            except ObskitError as exc:
                click.echo(f"{'web API':<28} NO: {exc}")
                sys.exit(1)
        if reachable is False:
            sys.exit(1)


def _scrubbing(settings: Any) -> str:
    from observability.scrub import DEFAULT_KEYS

    keys = f" + {', '.join(settings.scrub_keys)}" if settings.scrub_keys else ""
    patterns = f" + {len(settings.scrub_patterns)} of OBSKIT_SCRUB_PATTERNS" if settings.scrub_patterns else ""
    return f"on: {len(DEFAULT_KEYS)} key names{keys}; cards, JWTs, credentials, private keys{patterns}"


def _storm(settings: Any) -> str:
    if settings.storm_limit <= 0:
        return "off (OBSKIT_STORM_LIMIT=0)"
    return f"{settings.storm_limit} events per fingerprint per {settings.storm_window_s:g}s, then 1 per window"


@main.command("test-sentry")
@click.argument(
    "kind", type=click.Choice(["all", "error", "message", "breadcrumbs", "business", "api_error"]), default="all"
)
@click.option("--service", help="Service name (default: SERVICE_NAME).")
@click.option("--user-id", default="test-user", show_default=True, help="user_id tag of the test events.")
@click.option(
    "--timeout", "timeout_s", type=float, default=30.0, show_default=True, help="Seconds to wait for arrival."
)
def test_sentry(kind: str, service: str | None, user_id: str, timeout_s: float) -> None:
    """Send tagged test events (tag test=true), print their ids, and confirm they arrived when the API is set."""
    from observability import _selftest

    with _one_line_errors():
        ok = _selftest.run(
            kind, service=service or _default_service(), user_id=user_id, timeout_s=timeout_s, echo=click.echo
        )
    if not ok:
        sys.exit(1)


@main.command()
@click.option("--old", "older_than_days", type=click.IntRange(min=0), help="Only issues not seen for N days.")
@click.option("--test-only", is_flag=True, help="Only issues made by test events (tag test=true).")
@click.option("--service", help="Only issues of this service (tag service).")
@click.option("--issue", "issue_ids", multiple=True, help="Only this issue (repeatable); lifts the production guard.")
@click.option("--delete", is_flag=True, help="Delete the issues instead of resolving them.")
@click.option("--execute", is_flag=True, help="Act; without it, only print what would be done.")
def cleanup(
    *,
    older_than_days: int | None,
    test_only: bool,
    service: str | None,
    issue_ids: tuple[str, ...],
    delete: bool,
    execute: bool,
) -> None:
    """Resolve (or delete) old and test issues on the server (SENTRY_URL, ...); a dry run unless --execute.

    Production issues (environment prod or production) that are unresolved or have comments are left
    alone unless named with --issue.
    """
    from observability import cleanup as cleaning
    from observability import sentry_api

    if older_than_days is None and not test_only and service is None and not issue_ids:
        raise click.UsageError("say what to clean up: --old N, --test-only, --service NAME or --issue ID")
    with _one_line_errors():
        api = sentry_api.client(_settings(None))
        try:
            decisions = cleaning.plan(
                api,
                older_than_days=older_than_days,
                test_only=test_only,
                delete=delete,
                service=service,
                issue_ids=issue_ids,
            )
            if execute:
                cleaning.execute(api, decisions, echo=click.echo)
            else:
                for line in cleaning.render(decisions):
                    click.echo(line)
        finally:
            api.close()


@main.command("issues")
@click.option("--service", help="Issues of this service (tag service).")
@click.option("--env", help="... in this environment (tag env).")
@click.option("--user-id", help="... that this user hit (tag user_id).")
@click.option("--trace-id", help="... of this trace (tag trace_id).")
@click.option("--release", help="... seen in this release (service@version).")
@click.option("--rule", help="... of this business rule (tag rule).")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Any other tag (repeatable).")
@click.option("--since", metavar="DURATION", help="Seen within this long: 30m, 1h, 2d, 1w.")
@click.option(
    "--level",
    "levels",
    multiple=True,
    type=click.Choice(["fatal", "error", "warning", "info", "debug"]),
    help="Only this level (repeatable).",
)
@click.option("--events", "trace_events", is_flag=True, help="Every event of --trace-id across services, oldest first.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many issues (20) or events (200).")
def issues_command(
    *,
    tags: tuple[str, ...],
    since: str | None,
    levels: tuple[str, ...],
    trace_events: bool,
    as_json: bool,
    limit: int | None,
    **named: str | None,
) -> None:
    """Issues on the server (SENTRY_URL, ...) carrying the given tags, most recently seen first.

    Every tag given must match; the server's own search does the matching. With --events and --trace-id:
    every event of that trace (Celery task, Kafka consumer, ...) in time order.
    """
    from observability import issues as finding
    from observability import sentry_api

    if trace_events and not named["trace_id"]:
        raise click.UsageError("--events lists one trace: give --trace-id")
    with _one_line_errors():
        search = finding.Search(
            filters=finding.parse_tags({key: named[key] for key in finding.TAG_OPTIONS}, tags),
            since=None if since is None else finding.parse_since(since),
            levels=levels,
            limit=limit or (finding.DEFAULT_EVENTS if trace_events else finding.DEFAULT_ISSUES),
        )
        api = sentry_api.client(_settings(None))
        try:
            found = finding.trace(api, search) if trace_events else finding.find(api, search)
        finally:
            api.close()
    if as_json:
        click.echo(json.dumps(found, indent=2))
    else:
        click.echo(finding.format_events(found) if trace_events else finding.format_issues(found))


# -- SLO -----------------------------------------------------------------------------------------


def _slo_source(redis_url: str | None, slo_file: Path | None) -> Any:
    import redis

    from observability.config import parse_redis_url
    from observability.exporter import SLOSource
    from observability.slo import load_spec
    from observability.slo.store import Store

    url = redis_url or os.environ.get("OBSKIT_SLO_REDIS_URL") or os.environ.get("REDIS_URL")
    if not url:
        raise ConfigError("OBSKIT_SLO_REDIS_URL", "", "a Redis URL like redis://host:6379/0 (or --redis-url)")
    client = redis.Redis.from_url(parse_redis_url("--redis-url", url), socket_timeout=5, socket_connect_timeout=2)
    return SLOSource(Store(client), load_spec(slo_file), issues_link=_issues_link())


def _issues_link() -> Any:
    """Links to each service's issues when the server's web API is configured (SENTRY_URL and friends)."""
    from observability.config import Settings
    from observability.sentry_api import issues_link_for

    names = ("SENTRY_URL", "SENTRY_ORG", "SENTRY_PROJECT", "OBSKIT_SENTRY_API")
    server = {name: os.environ[name] for name in names if name in os.environ}
    return issues_link_for(Settings.from_env(server, service="obskit-exporter"))


_redis_option = click.option("--redis-url", help="Where SLO counts live (default: OBSKIT_SLO_REDIS_URL, REDIS_URL).")
_slo_file_option = click.option(
    "--slo-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="OBSKIT_SLO_FILE",
    help="The SLO spec (YAML); without it every service gets 99.9% over 30d.",
)


@main.command()
@_redis_option
@_slo_file_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 in a container).")
@click.option("--port", type=int, default=9464, show_default=True, envvar="OBSKIT_EXPORTER_PORT")
def exporter(redis_url: str | None, slo_file: Path | None, host: str, port: int) -> None:
    """Serve the error-rate SLO: /metrics for Prometheus, / for people, /healthz."""

    from observability.exporter import serve

    with _one_line_errors():
        source = _slo_source(redis_url, slo_file)
        _serve_until_stopped(
            lambda: serve(source, host=host, port=port),
            f"{host}:{port}",
            lambda server: f"obskit exporter on http://{host}:{server.port}/ (metrics at /metrics)",
        )


@main.group()
def slo() -> None:
    """Error-rate SLOs from the counts in Redis."""


@slo.command("forget")
@_redis_option
@click.argument("service")
@click.argument("env")
def slo_forget(redis_url: str | None, service: str, env: str) -> None:
    """Delete a retired SERVICE's counts in ENV and take it off the exporter (stop its processes
    first: a running one is back at its next flush). Without this a service that stopped flushing
    leaves by itself once its counts expire."""
    with _one_line_errors():
        store = _slo_source(redis_url, None).store
        try:
            forgotten = store.forget(service, env)
        except Exception as exc:
            message = f"cannot reach the SLO Redis: {exc}"
            raise ObskitError(message) from None
        if not forgotten:
            message = f"no SLO counts for {service} in {env}: nothing forgotten (`obskit slo status` lists them)"
            raise ObskitError(message)
    click.echo(f"forgot {service} in {env}: its SLO counts and index entry are deleted")


@slo.command("status")
@_redis_option
@_slo_file_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def slo_status(redis_url: str | None, slo_file: Path | None, as_json: bool) -> None:
    """Each service's error ratio, burn rates, budget left and freshness."""
    from observability.exporter import format_table, status_rows

    with _one_line_errors():
        source = _slo_source(redis_url, slo_file)
        try:
            rows = status_rows(source.reports(), issues_link=source.issues_link)
        except Exception as exc:
            message = f"cannot read SLO counts from Redis: {exc}"
            raise ObskitError(message) from None
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif rows:
        click.echo(format_table(rows))
    else:
        click.echo("no service has recorded outcomes yet")


# -- alerting ------------------------------------------------------------------------------------


def _duration_s(option: str, value: str) -> int:
    from observability.slo.windows import parse_duration

    try:
        return parse_duration(value)
    except ValueError:
        raise ConfigError(option, value, "a duration such as 10m or 1h") from None


def _write(out: Path | None, text: str, *, private: bool = False) -> None:
    """Print ``text``, or write it to ``out`` (readable by its owner only when ``private``)."""
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
    except OSError as exc:
        message = f"cannot write {out}: {exc.strerror}"
        raise ObskitError(message) from None
    click.echo(f"wrote {out}", err=True)


_out_option = click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file instead of stdout."
)
_alertmanager_option = click.option(
    "--alertmanager-url", envvar="ALERTMANAGER_URL", help="Alertmanager's base URL (default: ALERTMANAGER_URL)."
)


def _alertmanager(url: str | None) -> str:
    if not url or not url.startswith(("http://", "https://")):
        raise ConfigError("ALERTMANAGER_URL", url or "", "Alertmanager's base URL, e.g. http://127.0.0.1:9093")
    return url


@main.group()
def alerts() -> None:
    """Prometheus alert rules and the Alertmanager config, generated (see the README's Alerting section)."""


@alerts.command("rules")
@_slo_file_option
@_out_option
@click.option(
    "--errors-per-minute", type=int, default=5, show_default=True, help="More of one type in 1m: a page (paging env)."
)
@click.option("--errors-per-hour", type=int, default=10, show_default=True, help="More of one type in 1h: a ticket.")
@click.option("--lag-messages", type=int, default=10_000, show_default=True, help="Consumer lag per topic.")
@click.option("--lag-seconds", type=int, default=300, show_default=True, help="Age of the oldest unconsumed message.")
@click.option("--backlog-messages", type=int, default=1_000, show_default=True, help="Messages waiting in a queue.")
@click.option("--dead-letters", type=int, default=0, show_default=True, help="Dead-lettered messages per 10 minutes.")
@click.option("--sentry-dropped", type=int, default=10, show_default=True, help="Sentry events dropped per 15 min.")
@click.option("--stale-after", default="10m", show_default=True, help="SLO data older than this is stale.")
@click.option(
    "--expect-job",
    "expected_jobs",
    multiple=True,
    default=("obskit-exporter",),
    show_default=True,
    help="A Prometheus job that must exist (repeatable).",
)
@click.option(
    "--runbook-url",
    envvar="OBSKIT_RUNBOOK_URL",
    default="README.md",
    show_default=True,
    help="The page whose Alerting runbook has a heading per alert, e.g. your repository's README URL.",
)
@click.option("--sentry-url", envvar="SENTRY_URL", help="Link alerts to this server's issues (default: SENTRY_URL).")
@click.option("--sentry-org", envvar="SENTRY_ORG", help="The organization's slug (default: SENTRY_ORG).")
@click.option("--sentry-project", envvar="SENTRY_PROJECT", help="The project (default: SENTRY_PROJECT).")
@click.option(
    "--sentry-api",
    envvar="OBSKIT_SENTRY_API",
    type=click.Choice(["sentry", "bugsink"]),
    default="sentry",
    show_default=True,
    help="Which web UI the links are for.",
)
@click.option("--no-sentry-link", is_flag=True, help="Leave the Sentry link out even when SENTRY_URL is set.")
@click.option(
    "--for-scale",
    type=float,
    default=1.0,
    show_default=True,
    help="Multiply every `for:` duration; for tests that compress time (e.g. 0.01). Leave at 1 in production.",
)
def alerts_rules(
    *,
    slo_file: Path | None,
    out: Path | None,
    stale_after: str,
    expected_jobs: tuple[str, ...],
    sentry_url: str | None,
    sentry_org: str | None,
    sentry_project: str | None,
    sentry_api: str,
    no_sentry_link: bool,
    **options: Any,
) -> None:
    """Prometheus recording and alerting rules: SLO burn rates (page / ticket), the spec's thresholds, error
    spikes, Kafka lag, dead letters and unassigned topics, Celery backlog, targets down or absent, stale SLO
    data, Sentry drops.

    The spec's objective, period, thresholds, min_events and paging envs reach the rules through the exporter's
    gauges, so a spec change needs no new rules, except that --slo-file adds a "no SLO data" alert for each
    service the spec names. Without a Sentry server (SENTRY_URL or --sentry-url) alerts carry no Sentry link.
    """
    from observability.alerts.rules import RuleOptions, SentryLink, render_rules
    from observability.slo import load_spec

    with _one_line_errors():
        sentry = None
        if sentry_url and not no_sentry_link:
            sentry = SentryLink(sentry_api, sentry_url.rstrip("/"), sentry_project or None, sentry_org or None)
        rule_options = RuleOptions(
            spec=load_spec(slo_file),
            stale_after_s=_duration_s("--stale-after", stale_after),
            expected_jobs=expected_jobs,
            sentry=sentry,
            **options,
        )
        _write(out, render_rules(rule_options))


@alerts.command("alertmanager-config")
@_slo_file_option
@_out_option
@click.option(
    "--interval-scale",
    type=float,
    default=1.0,
    show_default=True,
    help="Multiply group_wait, group_interval and repeat_interval; for tests that compress time.",
)
def alerts_alertmanager_config(slo_file: Path | None, out: Path | None, interval_scale: float) -> None:
    """Alertmanager's config from OBSKIT_ALERT_* settings (secrets also as *_FILE): routes by severity and env
    to Slack, Telegram, PagerDuty, e-mail and a webhook, each only when configured; pages at once and hourly,
    tickets in a digest every 30 minutes; a page silences the tickets of its service and env.

    The output holds the receivers' secrets: --out writes it readable by its owner only.
    """
    from observability.alerts.routing import render_config
    from observability.slo import load_spec

    with _one_line_errors():
        text, warnings = render_config(spec=load_spec(slo_file), interval_scale=interval_scale)
        for warning in warnings:
            click.echo(f"obskit: warning: {warning}", err=True)
        _write(out, text, private=True)


@main.command("sentry-bridge")
@_alertmanager_option
@_slo_file_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 in a container).")
@click.option("--port", type=int, default=9095, show_default=True, envvar="OBSKIT_SENTRY_BRIDGE_PORT")
@click.option("--resolve-after", default="1h", show_default=True, help="How long an issue alert stays firing.")
def sentry_bridge(
    alertmanager_url: str | None, slo_file: Path | None, host: str, port: int, resolve_after: str
) -> None:
    """Take Sentry's issue and metric alert webhooks and post them to Alertmanager as alerts (labels service,
    env, level from the event's tags; severity page only in an env that pages), so one routing tree pages for both.

    Point a Sentry internal integration's webhook (alert rule action) at http://HOST:PORT/. With
    OBSKIT_SENTRY_BRIDGE_SECRET (or _FILE) set to its client secret, unsigned requests are refused.
    """

    from observability.alerts._env import Env
    from observability.alerts.bridge import Bridge, serve
    from observability.alerts.routing import paging_envs
    from observability.slo import load_spec

    with _one_line_errors():
        bridge = Bridge(
            alertmanager_url=_alertmanager(alertmanager_url),
            paging_envs=tuple(paging_envs(load_spec(slo_file))),
            secret=Env(os.environ).secret("OBSKIT_SENTRY_BRIDGE_SECRET", "the integration's client secret"),
            resolve_after_s=_duration_s("--resolve-after", resolve_after),
        )
        _serve_until_stopped(
            lambda: serve(bridge, host=host, port=port),
            f"{host}:{port}",
            lambda server: f"obskit sentry-bridge on http://{host}:{server.port}/ -> {bridge.alertmanager_url}",
        )


@main.command("test-alert")
@_alertmanager_option
@click.option("--receiver", help="Only this receiver (default: each one).")
@click.option("--timeout", "timeout_s", type=float, default=30.0, show_default=True, help="Seconds per receiver.")
def test_alert(alertmanager_url: str | None, receiver: str | None, timeout_s: float) -> None:
    """Send a test alert through Alertmanager to each receiver and say which accepted it. Exits 1 unless all did.

    "accepted" is what Alertmanager 0.25 can tell: its notification counters (/metrics, per integration type)
    show a successful request to the receiver's endpoint after the alert was sent: Slack's, Telegram's or
    PagerDuty's API or the webhook answered 2xx, or the SMTP server took the mail. Not that a person saw it;
    and another notification of the same type in the same seconds can blur the answer. "refused": Alertmanager
    gave up on the notification (its log has the error). Needs the config `obskit alerts alertmanager-config`
    renders (its test route sends the alert to the one receiver it names).
    """
    from observability.alerts import testalert

    with _one_line_errors():
        results = testalert.run(
            _alertmanager(alertmanager_url), receiver=receiver, timeout_s=timeout_s, echo=click.echo
        )
    if not all(result.accepted for result in results):
        sys.exit(1)


# -- benchmarks ----------------------------------------------------------------------------------


@main.group(cls=PluginGroup, plugins="obskit.bench")
def bench() -> None:
    """Benchmarks that print ratios measured side by side in one run."""


@bench.command("all")
@click.option("--messages", type=int, default=200_000, show_default=True, help="Kafka messages per variant.")
@click.option("--rounds", type=int, default=3, show_default=True, help="Interleaved rounds per benchmark.")
@click.option("--memory-messages", type=int, default=1_000_000, show_default=True, help="Messages for the RSS check.")
@click.option(
    "--report", "report_dir", type=click.Path(file_okay=False, path_type=Path), help="Write benchmarks.md/.png here."
)
@click.option("--json", "as_json", is_flag=True)
def bench_all(messages: int, rounds: int, memory_messages: int, report_dir: Path | None, as_json: bool) -> None:
    """Every benchmark (consumer, celery, slo), each in its own process, in one invocation."""
    from observability._bench_report import run_all, summary_lines, write_report

    with _one_line_errors():
        result = run_all(
            messages=messages, rounds=rounds, memory_messages=memory_messages, echo=lambda m: click.echo(m, err=True)
        )
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo("\n".join(summary_lines(result)))
    if report_dir is not None:
        for path in write_report(result, report_dir):
            click.echo(f"wrote {path}", err=True)


@bench.command("slo")
@_redis_option
@click.option("--services", type=int, default=100, show_default=True, help="Services to scrape.")
@click.option("--records", type=int, default=1_000_000, show_default=True, help="Outcomes to record.")
@click.option("--json", "as_json", is_flag=True)
def bench_slo(redis_url: str | None, services: int, records: int, as_json: bool) -> None:
    """Recording cost per outcome and the cost of one scrape of many services x 9 windows."""
    from observability._bench_slo import run

    with _one_line_errors():
        result = run(redis_url=redis_url, services=services, records=records)
    click.echo(json.dumps(result, indent=2) if as_json else "\n".join(f"{k:<40} {v}" for k, v in result.items()))


@bench.command("scrub")
@click.option("--seconds", type=float, default=0.5, show_default=True, help="Time spent on each figure.")
@click.option("--json", "as_json", is_flag=True)
def bench_scrub(seconds: float, as_json: bool) -> None:
    """Scrubbing µs per event: a typical exception event and a large one (50 frames, 200+ variables)."""
    from observability._bench_scrub import run

    result = run(seconds)
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    for name, figures in result.items():
        click.echo(name)
        for key, value in figures.items():
            click.echo(f"  {key:<52} {value}")


# -- demo ----------------------------------------------------------------------------------------


@main.command()
@_dir_option
@click.option("--keep", is_flag=True, help="Leave the stack running afterwards.")
def demo(directory: Path, keep: bool) -> None:
    """Bring the stack up, send a tagged test event and print where to look."""
    from observability._demo import run_demo

    with _one_line_errors():
        run_demo(directory, keep=keep, echo=click.echo)


if __name__ == "__main__":  # pragma: no cover
    main()

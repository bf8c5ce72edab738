"""The SLO exporter: ``/metrics`` for Prometheus, ``/`` for people, ``/healthz`` for orchestrators.

Stateless: every scrape reads Redis (one pipelined round trip for all services and windows) and
computes the numbers, so several replicas may run; aggregate them with ``max without (instance)``.
"""

from __future__ import annotations

import html
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from observability._http import Server, respond
from observability.metrics import EXPORTER_CATALOGUE, MetricSpec
from observability.slo.outcomes import Outcome
from observability.slo.report import ServiceReport, build_reports, window_stats, windows_needed
from observability.slo.spec import Spec
from observability.slo.store import Store
from observability.slo.windows import WINDOWS, format_duration

__all__ = ["IssuesLink", "SLOCollector", "SLOSource", "make_app", "render_text", "serve"]

logger = logging.getLogger(__name__)

_SPECS: dict[str, MetricSpec] = {spec.name: spec for spec in EXPORTER_CATALOGUE}

# What the status page and `obskit slo status` show.
STATUS_WINDOWS = tuple(w for w in WINDOWS if format_duration(w) in ("10m", "1h", "6h", "30d"))


IssuesLink = Callable[[Mapping[str, str]], str]


class SLOSource:
    """Reads every service's counts from Redis and turns them into reports.

    ``issues_link`` (``sentry_api.issues_link_for``) gives each service and environment a link to its
    issues on the Sentry-compatible server, on the page and in the status JSON.
    """

    def __init__(
        self,
        store: Store,
        spec: Spec,
        *,
        clock: Callable[[], float] = time.time,
        issues_link: IssuesLink | None = None,
    ) -> None:
        self.store = store
        self.spec = spec
        self.clock = clock
        self.windows = windows_needed(spec, WINDOWS)
        self.issues_link = issues_link

    def reports(self) -> list[ServiceReport]:
        pairs = self.store.services()
        readings = self.store.read(pairs, self.windows, self.clock())
        # A pair whose totals expired (nothing flushed for the longest retention: the service is gone)
        # leaves the index instead of reading as stale for ever.
        expired = [(r.service, r.env) for r in readings if r.last_flush is None]
        if expired:
            try:
                gone = set(self.store.prune(expired))
            except Exception as exc:  # pruning is the exporter's only write: a read-only Redis still reports
                logger.warning("SLO index not pruned of %d expired service(s): %s", len(expired), exc)
                gone = set()
            if gone:
                logger.info("SLO index: dropped %s (no counts left in Redis)", ", ".join(f"{s}/{e}" for s, e in gone))
                readings = [r for r in readings if (r.service, r.env) not in gone]
        return build_reports(readings, self.spec)


def _family(name: str) -> GaugeMetricFamily:
    spec = _SPECS[name]
    return GaugeMetricFamily(name, spec.help, labels=list(spec.labels))


class SLOCollector(Collector):
    """A prometheus_client collector that computes the SLO gauges on every scrape."""

    def __init__(self, source: SLOSource) -> None:
        self.source = source

    def collect(self) -> list[GaugeMetricFamily]:
        started = time.perf_counter()
        families = {name: _family(name) for name in _SPECS}
        try:
            reports = self.source.reports()
        except Exception as exc:
            logger.warning("SLO exporter cannot read Redis: %s", exc)
            families["obskit_slo_exporter_redis_up"].add_metric([], 0)
            reports = []
        else:
            families["obskit_slo_exporter_redis_up"].add_metric([], 1)
        for report in reports:
            _add_report(families, report)
        families["obskit_slo_exporter_scrape_duration_seconds"].add_metric([], time.perf_counter() - started)
        return list(families.values())


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def render_text(families: Iterable[Metric]) -> bytes:
    """Prometheus text exposition for gauge families: the same format as prometheus_client's
    ``generate_latest``, several times faster for the exporter's ~100 series per service."""
    out: list[str] = []
    for family in families:
        help_text = family.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        out.append(f"# HELP {family.name} {help_text}\n# TYPE {family.name} {family.type}\n")
        for sample in family.samples:
            if sample.labels:
                labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels.items())
                out.append(f"{sample.name}{{{labels}}} {_number(sample.value)}\n")
            else:
                out.append(f"{sample.name} {_number(sample.value)}\n")
    return "".join(out).encode()


def _add_report(families: dict[str, GaugeMetricFamily], report: ServiceReport) -> None:
    se = [report.service, report.env]
    slo = report.slo
    for stats in report.windows.values():
        labels = [*se, format_duration(stats.window_s)]
        families["obskit_slo_events"].add_metric(labels, stats.total)
        families["obskit_slo_bad_events"].add_metric(labels, stats.bad)
        families["obskit_slo_error_ratio"].add_metric(labels, stats.error_ratio)
        families["obskit_slo_burn_rate"].add_metric(labels, stats.burn_rate)
        families["obskit_slo_traffic_sufficient"].add_metric(labels, 1 if stats.sufficient else 0)
        for outcome in Outcome:
            families["obskit_slo_outcome_events"].add_metric([*labels, outcome.value], stats.outcomes.get(outcome, 0))
    families["obskit_slo_objective_ratio"].add_metric(se, slo.objective / 100)
    families["obskit_slo_error_budget_ratio"].add_metric(se, slo.budget)
    families["obskit_slo_error_budget_remaining"].add_metric(se, report.budget_remaining)
    families["obskit_slo_period_seconds"].add_metric(se, slo.period_s)
    # No flush ever: as stale as can be, so "exporter stale" alerts fire rather than stay silent.
    freshness = report.freshness_s if report.freshness_s is not None else float("inf")
    families["obskit_slo_freshness_seconds"].add_metric(se, freshness)
    families["obskit_slo_min_events"].add_metric(se, slo.min_events)
    families["obskit_slo_paging"].add_metric(se, 1 if report.pages else 0)
    for threshold in slo.thresholds:
        labels = [*se, threshold.name, format_duration(threshold.window_s)]
        families["obskit_slo_threshold_error_ratio"].add_metric(labels, threshold.error_ratio)


# -- for people --------------------------------------------------------------------------------


def status_rows(reports: Sequence[ServiceReport], *, issues_link: IssuesLink | None = None) -> list[dict[str, Any]]:
    """The table `obskit slo status` prints and the page shows, as plain data (also its JSON); with
    ``issues_link``, each row's ``issues_url`` lists that service's issues in that environment."""
    rows = []
    for r in sorted(reports, key=lambda x: (x.service, x.env)):
        row: dict[str, Any] = {
            "service": r.service,
            "env": r.env,
            "objective": r.slo.objective,
            "budget_remaining": round(r.budget_remaining, 6),
            "freshness_s": None if r.freshness_s is None else round(r.freshness_s, 1),
            "pages": r.pages,
        }
        for window in STATUS_WINDOWS:
            stats = r.windows.get(window)
            name = format_duration(window)
            row[f"error_ratio_{name}"] = None if stats is None else round(stats.error_ratio, 6)
            row[f"burn_rate_{name}"] = None if stats is None else round(stats.burn_rate, 3)
            row[f"events_{name}"] = None if stats is None else stats.total
        if issues_link is not None:
            row["issues_url"] = issues_link({"service": r.service, "env": r.env})
        rows.append(row)
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A fixed-width table of the status rows."""
    names = [format_duration(w) for w in STATUS_WINDOWS]
    header = [
        "service",
        "env",
        "objective",
        *(f"err {n}" for n in names),
        *(f"burn {n}" for n in names),
        "budget",
        "fresh",
    ]
    lines = [header]
    for row in rows:
        lines.append(
            [
                row["service"],
                row["env"],
                f"{row['objective']:g}%",
                *(f"{row[f'error_ratio_{n}'] * 100:.3f}%" for n in names),
                *(f"{row[f'burn_rate_{n}']:.2f}x" for n in names),
                f"{row['budget_remaining'] * 100:.1f}%",
                "never" if row["freshness_s"] is None else f"{row['freshness_s']:.0f}s",
            ]
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(cell).ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def _chart(points: Sequence[tuple[float, float]], width: int = 320, height: int = 60) -> str:
    """An inline SVG line of burn rate over time, with the 1x line dashed."""
    if not points:
        return ""
    top = max(2.0, *(v for _, v in points))
    t0, t1 = points[0][0], points[-1][0]
    span = max(t1 - t0, 1.0)

    def xy(t: float, v: float) -> str:
        return f"{(t - t0) / span * width:.1f},{height - v / top * height:.1f}"

    line = " ".join(xy(t, v) for t, v in points)
    one = height - 1.0 / top * height
    return (
        f'<svg width="{width}" height="{height}" role="img" aria-label="burn rate">'
        f'<line x1="0" y1="{one:.1f}" x2="{width}" y2="{one:.1f}" stroke="#999" stroke-dasharray="4"/>'
        f'<polyline fill="none" stroke="#c0392b" stroke-width="1.5" points="{line}"/></svg>'
    )


def render_page(source: SLOSource, reports: Sequence[ServiceReport], *, history_h: int = 6) -> str:
    rows = status_rows(reports, issues_link=source.issues_link)
    names = [format_duration(w) for w in STATUS_WINDOWS]
    now = source.clock()
    body = []
    for row, report in zip(rows, sorted(reports, key=lambda x: (x.service, x.env)), strict=True):
        history = source.store.history(
            report.service, report.env, window_s=3600, history_s=history_h * 3600, points=73, now=now
        )
        slo = report.slo
        points = [(t, window_stats(3600, counts, slo).burn_rate) for t, counts in history]
        burning = any((row[f"burn_rate_{n}"] or 0) > 1 for n in names[:2])
        cells = [
            html.escape(row["service"]),
            html.escape(row["env"]) + (" (pages)" if row["pages"] else ""),
            f"{row['objective']:g}%",
            *(f"{row[f'error_ratio_{n}'] * 100:.3f}%" for n in names),
            *(f"{row[f'burn_rate_{n}']:.2f}&times;" for n in names),
            f"{row['budget_remaining'] * 100:.1f}%",
            "never" if row["freshness_s"] is None else f"{row['freshness_s']:.0f} s",
            _chart(points),
        ]
        if "issues_url" in row:
            cells.append(f"<a href='{html.escape(row['issues_url'], quote=True)}'>issues</a>")
        style = ' class="burning"' if burning else ""
        body.append(f"<tr{style}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = ["service", "env", "objective", *(f"errors {n}" for n in names), *(f"burn {n}" for n in names)]
    head += ["budget left", "freshness", f"1h burn rate, last {history_h}h"]
    if source.issues_link is not None:
        head.append("issues")
    empty = f'<tr><td colspan="{len(head)}">no service has recorded outcomes yet</td></tr>'
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>obskit SLOs</title>"
        "<meta http-equiv='refresh' content='30'>"
        "<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child"
        "{text-align:left}tr.burning{background:#fdecea}</style></head><body>"
        "<h1>Error-rate SLOs</h1><p>Burn rate 1&times; spends the error budget exactly over the SLO period; "
        "rows burning faster than that over 10m or 1h are highlighted. <a href='/metrics'>metrics</a></p>"
        "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + ("".join(body) or empty) + "</table>"
        "</body></html>"
    )


# -- HTTP --------------------------------------------------------------------------------------


def make_app(source: SLOSource) -> Callable[..., Iterator[bytes]]:
    """The exporter's WSGI application."""
    collector = SLOCollector(source)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        path = environ.get("PATH_INFO", "/")
        status, content_type, payload = "200 OK", "text/plain; charset=utf-8", b""
        try:
            if path == "/metrics":
                content_type, payload = CONTENT_TYPE_LATEST, render_text(collector.collect())
            elif path == "/healthz":
                source.store.client.ping()
                payload = b"ok\n"
            elif path == "/api/status":
                content_type = "application/json"
                payload = json.dumps(status_rows(source.reports(), issues_link=source.issues_link), indent=2).encode()
            elif path == "/":
                content_type = "text/html; charset=utf-8"
                payload = render_page(source, source.reports()).encode()
            else:
                status, payload = "404 Not Found", b"not found: try /, /metrics, /healthz, /api/status\n"
        except Exception as exc:
            logger.warning("exporter request %s failed: %s", path, exc)
            status, content_type, payload = "503 Service Unavailable", "text/plain; charset=utf-8", f"{exc}\n".encode()
        return iter(respond(start_response, status, content_type, payload))

    return app


def serve(source: SLOSource, *, host: str = "127.0.0.1", port: int = 9464) -> Server:
    """Start serving in a daemon thread; ``stop()`` on the result ends it. Port 0 picks a free port."""
    return Server(make_app(source), host=host, port=port, name="obskit-exporter")

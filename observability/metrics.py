"""The one catalogue of obskit's Prometheus metrics.

Names follow Prometheus conventions (``obskit_`` prefix, base units, ``_total`` counters, ``_seconds``
durations). Labels hold bounded values only: never a user id or a trace id (those are Sentry tags).
With ``PROMETHEUS_MULTIPROC_DIR`` set, prometheus_client keeps values in per-process files so a
prefork worker's children add up; gauges say how to combine them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "CATALOGUE",
    "EXPORTER_CATALOGUE",
    "FORBIDDEN_LABELS",
    "MetricSpec",
    "Metrics",
    "attribute_name",
    "incrementer",
    "observer",
]

Kind = Literal["counter", "gauge", "histogram"]
MultiprocessMode = Literal[
    "all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum", "mostrecent", "livemostrecent"
]

# Unbounded values that must never become labels.
FORBIDDEN_LABELS = frozenset({"user_id", "trace_id", "task_id", "offset", "event_id", "message_id"})

_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# Queue waits run from milliseconds to the better part of an hour when a backlog builds up.
_WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str
    buckets: tuple[float, ...] = _DURATION_BUCKETS
    # How a gauge's per-process values combine in multiprocess mode.
    multiprocess_mode: MultiprocessMode = "livesum"


CATALOGUE: tuple[MetricSpec, ...] = (
    # Core
    MetricSpec(
        "obskit_sentry_events_dropped_total",
        "counter",
        ("service", "reason"),
        "Sentry events and transactions the SDK did not deliver (queue full, network error, rate limited, ...).",
    ),
    MetricSpec(
        "obskit_sentry_events_held_back_total",
        "counter",
        ("service", "reason"),
        "Sentry events the kit chose not to send: storm, client_error, ignored_exception, ignored_logger,"
        " duplicate, health_check, app_processor (dropped by a processor given to init()).",
    ),
    MetricSpec(
        "obskit_business_failures_total",
        "counter",
        ("service", "rule"),
        "Business-rule failures reported, per rule (whether or not their Sentry message was sent).",
    ),
    MetricSpec(
        "obskit_business_failures_suppressed_total",
        "counter",
        ("service", "rule"),
        "Business-rule failures whose Sentry message was held back by the per-rule rate limit.",
    ),
    MetricSpec(
        "obskit_errors_total",
        "counter",
        ("service", "env", "error_type"),
        "Failed units of work by exception type (the type's qualified name: bounded by the code).",
    ),
    MetricSpec(
        "obskit_internal_errors_total",
        "counter",
        ("service", "component"),
        "Errors inside the kit itself, caught so the host application goes on.",
    ),
    # Kafka
    MetricSpec(
        "obskit_kafka_messages_total",
        "counter",
        ("service", "topic", "outcome"),
        "Kafka messages handled, by topic and outcome (ok, error, business_failure, retried, dead_lettered).",
    ),
    MetricSpec(
        "obskit_kafka_handler_duration_seconds",
        "histogram",
        ("service", "topic"),
        "Time in the message handler (every failure and traced message, a fixed share of the others).",
    ),
    MetricSpec(
        "obskit_kafka_dlq_messages_total",
        "counter",
        ("service", "topic", "reason"),
        "Messages parked in the dead-letter topic, by source topic and reason (handler_error, undecodable, ...).",
    ),
    MetricSpec(
        "obskit_kafka_consumer_lag_messages",
        "gauge",
        ("service", "topic", "partition"),
        "Messages between the committed position and the end of the partition (0 when caught up).",
    ),
    MetricSpec(
        "obskit_kafka_consumer_lag_seconds",
        "gauge",
        ("service", "topic", "partition"),
        "Age of the first unconsumed message (now minus its timestamp); 0 when caught up.",
    ),
    MetricSpec(
        "obskit_kafka_consumer_assigned_partitions",
        "gauge",
        ("service", "topic"),
        "Partitions of the topic assigned to this consumer; 0 while it has none (summed over the group, 0 means"
        " nobody consumes the topic: it does not exist, or the group cannot settle).",
    ),
    MetricSpec(
        "obskit_kafka_broker_errors_total",
        "counter",
        ("service", "code"),
        "Transport and broker errors reported by librdkafka (logged and counted, not sent to Sentry one by one).",
    ),
    MetricSpec(
        "obskit_kafka_produce_errors_total",
        "counter",
        ("service", "topic"),
        "Messages the producer could not deliver (delivery report with an error).",
    ),
    MetricSpec(
        "obskit_kafka_commits_total",
        "counter",
        ("service", "result"),
        "Offset commits by result (ok, error, nothing_stored).",
    ),
    # Celery
    MetricSpec(
        "obskit_celery_tasks_total",
        "counter",
        ("service", "task", "outcome"),
        "Celery task runs by task and outcome (ok, error, business_failure, retried, rejected, revoked, ignored,"
        " internal_error); unregistered and malformed messages count as task 'unregistered' / 'invalid'.",
    ),
    MetricSpec(
        "obskit_celery_task_runtime_seconds",
        "histogram",
        ("service", "task"),
        "Time a task attempt ran in the worker (prerun to postrun: the task, its result and its callbacks).",
    ),
    MetricSpec(
        "obskit_celery_queue_wait_seconds",
        "histogram",
        ("service", "queue"),
        "Time from publish (or the ETA, when later) to the start of the attempt.",
        buckets=_WAIT_BUCKETS,
    ),
    MetricSpec(
        "obskit_celery_queue_wait_clock_skew_total",
        "counter",
        ("service", "queue"),
        "Tasks that started before they were published by the worker's clock (clock skew between hosts);"
        " their wait is not observed.",
    ),
    MetricSpec(
        "obskit_celery_queue_backlog_messages",
        "gauge",
        ("service", "queue"),
        "Messages waiting in the queue (Redis LLEN), sampled by the worker's main process.",
        multiprocess_mode="livemax",
    ),
    MetricSpec(
        "obskit_celery_worker_up",
        "gauge",
        ("service",),
        "1 while the worker's main process consumes tasks, 0 while it starts or shuts down.",
        multiprocess_mode="livemax",
    ),
    # SLO recording
    MetricSpec(
        "obskit_slo_flush_errors_total",
        "counter",
        ("service",),
        "Flushes of SLO outcome counts to Redis that failed (the counts are kept and retried).",
    ),
    MetricSpec(
        "obskit_slo_records_dropped_total",
        "counter",
        ("service",),
        "SLO outcome counts dropped because Redis stayed unreachable longer than the buffer keeps them.",
    ),
)


def _slo_gauge(name: str, labels: tuple[str, ...], help_text: str) -> MetricSpec:
    return MetricSpec(name, "gauge", labels, help_text)


_SWW = ("service", "env", "window")
_SE = ("service", "env")

# The SLO exporter's gauges, computed from Redis on every scrape (the exporter is stateless). The alert
# rules read these; several exporter replicas aggregate with `max without (instance)`.
EXPORTER_CATALOGUE: tuple[MetricSpec, ...] = (
    _slo_gauge("obskit_slo_events", _SWW, "Units of work that completed (ok, error, business_failure) in the window."),
    _slo_gauge("obskit_slo_bad_events", _SWW, "Units in the window whose outcome the SLO counts as bad."),
    _slo_gauge("obskit_slo_error_ratio", _SWW, "Bad / completed units in the window; 0 when there was no traffic."),
    _slo_gauge("obskit_slo_burn_rate", _SWW, "Error ratio divided by the error budget (1 - objective)."),
    _slo_gauge(
        "obskit_slo_traffic_sufficient", _SWW, "1 when the window has at least min_events units (enough to page)."
    ),
    _slo_gauge(
        "obskit_slo_outcome_events", (*_SWW, "outcome"), "Units per outcome in the window (retried, rejected, ...)."
    ),
    _slo_gauge("obskit_slo_objective_ratio", _SE, "The SLO's objective as a ratio, e.g. 0.999."),
    _slo_gauge("obskit_slo_error_budget_ratio", _SE, "The share of units allowed to be bad: 1 - objective."),
    _slo_gauge(
        "obskit_slo_error_budget_remaining", _SE, "Share of the period's error budget left (negative when overspent)."
    ),
    _slo_gauge("obskit_slo_period_seconds", _SE, "The error budget's period."),
    _slo_gauge("obskit_slo_freshness_seconds", _SE, "Seconds since the newest flush of outcome counts."),
    _slo_gauge("obskit_slo_min_events", _SE, "Units a window needs before its ratio may page."),
    _slo_gauge("obskit_slo_paging", _SE, "1 when this env pages (the spec's paging_envs), else 0."),
    _slo_gauge(
        "obskit_slo_threshold_error_ratio",
        (*_SE, "threshold", "window"),
        "A simple threshold from the spec: alert when the window's error ratio exceeds it.",
    ),
    _slo_gauge("obskit_slo_exporter_redis_up", (), "1 when the last scrape could read Redis."),
    _slo_gauge("obskit_slo_exporter_scrape_duration_seconds", (), "How long the last scrape took to read and compute."),
)


class Metrics:
    """The catalogue's metrics, created in one registry (the default one unless a test passes its own).

    Each metric is an attribute named after it without the ``obskit_`` prefix and ``_total`` suffix
    (``obskit_errors_total`` -> ``metrics.errors``). Use :meth:`for_registry`: a registry refuses the
    same metric twice, so there is one instance each.
    """

    sentry_events_dropped: Counter
    sentry_events_held_back: Counter
    business_failures: Counter
    business_failures_suppressed: Counter
    errors: Counter
    internal_errors: Counter
    kafka_messages: Counter
    kafka_handler_duration_seconds: Histogram
    kafka_dlq_messages: Counter
    kafka_consumer_lag_messages: Gauge
    kafka_consumer_lag_seconds: Gauge
    kafka_consumer_assigned_partitions: Gauge
    kafka_broker_errors: Counter
    kafka_produce_errors: Counter
    kafka_commits: Counter
    celery_tasks: Counter
    celery_task_runtime_seconds: Histogram
    celery_queue_wait_seconds: Histogram
    celery_queue_wait_clock_skew: Counter
    celery_queue_backlog_messages: Gauge
    celery_worker_up: Gauge
    slo_flush_errors: Counter
    slo_records_dropped: Counter

    _instances: ClassVar[dict[int, Metrics]] = {}

    @classmethod
    def for_registry(cls, registry: CollectorRegistry | None = REGISTRY) -> Metrics:
        key = id(registry)
        found = cls._instances.get(key)
        if found is None or found.registry is not registry:
            found = cls._instances[key] = cls(registry)
        return found

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        self.registry = registry
        for spec in CATALOGUE:
            setattr(self, attribute_name(spec.name), self._create(spec))

    def _create(self, spec: MetricSpec) -> Any:
        bad = FORBIDDEN_LABELS.intersection(spec.labels)
        if bad:
            message = f"{spec.name}: unbounded label(s) {sorted(bad)} are not allowed"
            raise ValueError(message)
        # prometheus_client appends _total itself; it expects the counter's base name.
        if spec.kind == "counter":
            return Counter(spec.name.removesuffix("_total"), spec.help, spec.labels, registry=self.registry)
        if spec.kind == "gauge":
            return Gauge(
                spec.name, spec.help, spec.labels, registry=self.registry, multiprocess_mode=spec.multiprocess_mode
            )
        return Histogram(spec.name, spec.help, spec.labels, registry=self.registry, buckets=spec.buckets)


def attribute_name(metric: str) -> str:
    """``obskit_errors_total`` -> ``errors``: the attribute a metric has on :class:`Metrics`."""
    return metric.removeprefix("obskit_").removesuffix("_total")


# -- the hot path ---------------------------------------------------------------------------------
# A labelled child's public ``inc``/``observe`` checks on every call what a child made by ``labels()``
# always is (observable; a counter's amount non-negative) and walks a histogram's buckets one by one.
# A Celery task updates three of them: these go straight to the child's values (each still behind its
# own lock, or in multiprocess mode its file) and find the bucket by bisection. They fall back to the
# public methods where prometheus_client keeps its values under other names.


def incrementer(child: Any) -> Callable[[float], None]:
    """``child.inc`` (a counter's labelled child) for amounts the caller knows are >= 0, without the checks."""
    value = getattr(child, "_value", None)
    inc = getattr(value, "inc", None)
    return inc if callable(inc) else child.inc  # type: ignore[no-any-return]


def observer(child: Any) -> Callable[[float], None]:
    """``child.observe`` (a histogram's labelled child): the same sum and bucket counts, the bucket found
    by bisection (an amount equal to a bound counts in that bound's bucket, as ``le`` means)."""
    try:
        bounds = tuple(float(b) for b in child._upper_bounds)
        buckets = tuple(bucket.inc for bucket in child._buckets)
        add_to_sum = child._sum.inc
    except (AttributeError, TypeError, ValueError):
        return child.observe  # type: ignore[no-any-return]
    if len(bounds) != len(buckets) or not bounds or bounds[-1] != float("inf"):
        return child.observe  # type: ignore[no-any-return]
    slow = child.observe

    def observe(amount: float) -> None:
        if amount == amount:  # noqa: PLR0124  (NaN counts in no bucket: the public method's way)
            add_to_sum(amount)
            buckets[bisect_left(bounds, amount)](1)
        else:
            slow(amount)

    return observe

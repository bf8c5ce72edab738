"""The one catalogue of obskit's Prometheus metrics.

Names follow Prometheus conventions (``obskit_`` prefix, base units, ``_total`` counters, ``_seconds``
durations). Labels hold bounded values only: never a user id or a trace id (those are Sentry tags).
With ``PROMETHEUS_MULTIPROC_DIR`` set, prometheus_client keeps values in per-process files so a
prefork worker's children add up; gauges say how to combine them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["CATALOGUE", "FORBIDDEN_LABELS", "MetricSpec", "Metrics"]

Kind = Literal["counter", "gauge", "histogram"]
MultiprocessMode = Literal[
    "all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum", "mostrecent", "livemostrecent"
]

# Unbounded values that must never become labels.
FORBIDDEN_LABELS = frozenset({"user_id", "trace_id", "task_id", "offset", "event_id", "message_id"})

_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


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
)


class Metrics:
    """The catalogue's metrics, created in one registry (the default one unless a test passes its own).

    Use :meth:`for_registry`: a registry refuses the same metric twice, so there is one instance each.
    """

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
        self._by_name: dict[str, Any] = {}
        for spec in CATALOGUE:
            self._by_name[spec.name] = self._create(spec)

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

    def __getitem__(self, name: str) -> Any:
        return self._by_name[name]

    @property
    def sentry_events_dropped(self) -> Counter:
        return self._by_name["obskit_sentry_events_dropped_total"]  # type: ignore[no-any-return]

    @property
    def business_failures(self) -> Counter:
        return self._by_name["obskit_business_failures_total"]  # type: ignore[no-any-return]

    @property
    def business_failures_suppressed(self) -> Counter:
        return self._by_name["obskit_business_failures_suppressed_total"]  # type: ignore[no-any-return]

    @property
    def errors(self) -> Counter:
        return self._by_name["obskit_errors_total"]  # type: ignore[no-any-return]

    @property
    def internal_errors(self) -> Counter:
        return self._by_name["obskit_internal_errors_total"]  # type: ignore[no-any-return]

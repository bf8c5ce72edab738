"""Sentry set up from the environment, with the kit's event pipeline, sampler and transport.

``init()`` is the only place that calls ``sentry_sdk.init``. It picks the SDK's integrations
explicitly (never the auto-enabled Celery or Redis ones), tags every event with the schema, keeps
each unit of work's breadcrumbs to itself, and counts what the SDK drops.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import sentry_sdk
from prometheus_client import CollectorRegistry
from sentry_sdk.integrations import Integration
from sentry_sdk.transport import HttpTransport, Transport

from observability import propagation
from observability.config import Settings
from observability.context import Unit, current
from observability.metrics import Metrics
from observability.noise import NoiseFilter, breadcrumb_filter
from observability.scopes import user_and_tags
from observability.scrub import Scrubber
from observability.storm import StormControl
from observability.tags import MAX_VALUE_LENGTH, tag_value

__all__ = [
    "INTEGRATIONS",
    "EventProcessor",
    "Runtime",
    "Sampler",
    "TokenBucket",
    "init",
    "runtime",
    "send_transaction",
    "shutdown",
    "start_transaction",
    "transport_has_room",
]

logger = logging.getLogger(__name__)

Event = dict[str, Any]
Hint = dict[str, Any]
EventProcessor = Callable[[Event, Hint], Event | None]

# The SDK integrations the kit runs with, and only these. Celery, Redis and the other auto-enabling
# integrations stay off: the kit instruments Celery and Kafka itself, and a breadcrumb per Redis
# command would bury the ones that matter.
INTEGRATIONS = ("argv", "atexit", "dedupe", "excepthook", "logging", "modules", "stdlib", "threading")


class TokenBucket:
    """At most ``per_s`` takes a second, in bursts of up to that many (at least one: under one a
    second, a token would never be whole). Thread-safe."""

    def __init__(self, per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_s = per_s
        self._capacity = max(1.0, per_s)
        self._clock = clock
        self._tokens = self._capacity
        self._refilled = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + (now - self._refilled) * self.per_s)
            self._refilled = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


class Sampler:
    """One sampling decision for every unit: the configured rate, per-name overrides, and a cap on how
    many already-sampled incoming traces per second are continued as sampled."""

    def __init__(self, settings: Settings) -> None:
        self._default = settings.traces_sample_rate
        self._rates = dict(settings.traces_sample_rates)
        self._incoming = TokenBucket(settings.traces_incoming_max_per_s)
        self._random = random.random

    def rate_for(self, name: str | None) -> float:
        return self._rates.get(name, self._default) if name else self._default

    def decide(self, name: str | None, parent_sampled: bool | None) -> bool:
        """Whether this unit gets a transaction. An unsampled parent is honoured; a sampled one is, up to the cap."""
        if parent_sampled is False:
            return False
        if parent_sampled and self._incoming.take():
            return True
        rate = self._rates.get(name, self._default) if name else self._default
        return rate > 0.0 and (rate >= 1.0 or self._random() < rate)

    def __call__(self, sampling_context: dict[str, Any]) -> float:
        """The SDK's ``traces_sampler``: the same decision for transactions the SDK starts itself."""
        name = (sampling_context.get("transaction_context") or {}).get("name")
        return 1.0 if self.decide(name, sampling_context.get("parent_sampled")) else 0.0


def _enricher(settings: Settings) -> EventProcessor:
    """Tag the event with the schema and the current unit's user, trace and breadcrumbs (without a unit's
    user, the scope's)."""
    service, env = tag_value(settings.service), tag_value(settings.environment)

    def enrich(event: Event, hint: Hint) -> Event:
        tags = event.get("tags")
        if not isinstance(tags, dict):
            tags = event["tags"] = dict(tags or {})
        tags["service"] = service
        tags["env"] = env
        contexts = event.setdefault("contexts", {})
        trace = contexts.setdefault("trace", {})
        unit = current()
        if unit is not None:
            _apply_unit(event, tags, trace, unit)
        user = event.get("user")
        if isinstance(user, dict) and user.get("id") not in (None, ""):
            # The unit's user, else the scope's (sentry_sdk.set_user; obs.set_user outside a unit): tagged
            # too, so a search by user_id finds it.
            tags["user_id"] = user["id"]
        trace_id = trace.get("trace_id")
        if trace_id:
            tags["trace_id"] = trace_id
        _cut_tags(tags)
        return event

    return enrich


def _cut_tags(tags: dict[str, Any]) -> None:
    for key, value in tags.items():
        if not isinstance(value, str) or len(value) > MAX_VALUE_LENGTH or "\n" in value or "\r" in value:
            tags[key] = tag_value(value)


def _within_tag_limits(event: Event, hint: Hint) -> Event:
    """Tag values cut to Sentry's limits once more, last: scrubbing makes a value longer (``[Filtered]``
    for a shorter secret) and an app's processor may add tags; Sentry drops a tag over the limit."""
    tags = event.get("tags")
    if isinstance(tags, dict):
        _cut_tags(tags)
    return event


# Set by the enricher before the unit's tags: the schema's service and env, always.
_SCHEMA_TAGS = frozenset({"service", "env"})
# ... and a business-rule message's own tags, which say more than a unit's tags of the same name.
_BUSINESS_TAGS = _SCHEMA_TAGS | {"rule", "outcome"}


def _apply_unit(event: Event, tags: dict[str, Any], trace: dict[str, Any], unit: Unit) -> None:
    # The unit's tags win over the scope's of the same name (the scope's were set by the app, before the
    # unit or in it: see observability.scopes). Service and env are set already, user_id and trace_id after.
    own = _BUSINESS_TAGS if tags.get("outcome") == "business_failure" else _SCHEMA_TAGS
    for key, value in unit.tags.items():
        if key not in own:
            tags[key] = value
    if unit.user_id is not None:
        user = event.get("user")
        if not isinstance(user, dict) or str(user.get("id")) != unit.user_id:
            # Another user set on the scope (sentry_sdk.set_user, with another id or none): the unit's wins
            # whole, so no event carries one person's id with another's email.
            user = event["user"] = {}
        user["id"] = unit.user_id
        if unit.user_fields:
            user.update(unit.user_fields)
    if event.get("type") == "transaction":
        # The kit's own (start_transaction, send_transaction) are in the unit's trace already. One the
        # app started with the SDK began a trace of its own: it joins the unit's, its spans with it, and
        # keeps its op, status and span tree (the unit's errors are in that trace too).
        sdk_trace = trace.get("trace_id")
        if sdk_trace and sdk_trace != unit.trace_id:
            trace["trace_id"] = unit.trace_id
            if unit.parent_span_id and not trace.get("parent_span_id"):
                trace["parent_span_id"] = unit.parent_span_id
            for span in event.get("spans") or ():
                if isinstance(span, dict) and span.get("trace_id") == sdk_trace:
                    span["trace_id"] = unit.trace_id
        return
    if trace.get("trace_id") != unit.trace_id:
        # The SDK filled in its per-thread propagation context; this event belongs to the unit's trace.
        trace.clear()
        trace.update(trace_id=unit.trace_id, span_id=unit.span_id)
        if unit.parent_span_id:
            trace["parent_span_id"] = unit.parent_span_id
    crumbs = list(unit.breadcrumbs) if unit.breadcrumbs else []
    event["breadcrumbs"] = {"values": crumbs}


_in_pipeline = threading.local()


def _pipeline(processors: Sequence[EventProcessor], metrics: Metrics, service: str) -> EventProcessor:
    """Run processors in order; one returning None drops the event. The kit's own failure never loses it.

    An event raised while the pipeline runs (the kit logging its own failure at ERROR) is dropped,
    never processed: that would recurse without end when the same processor fails again.
    """

    def run(event: Event, hint: Hint) -> Event | None:
        if getattr(_in_pipeline, "active", False):
            return None
        _in_pipeline.active = True
        try:
            return _run(event, hint)
        finally:
            _in_pipeline.active = False

    def _run(event: Event, hint: Hint) -> Event | None:
        for processor in processors:
            try:
                result = processor(event, hint)
            except Exception:
                logger.exception("obskit event processor %s failed", getattr(processor, "__name__", processor))
                metrics.internal_errors.labels(service, "event_pipeline").inc()
                continue
            if result is None:
                return None
            event = result
        return event

    return run


def _fail_closed(scrubber: EventProcessor, metrics: Metrics, service: str) -> EventProcessor:
    """The scrubber, dropping the event when it fails: an event it could not scrub must not leave."""

    def scrub(event: Event, hint: Hint) -> Event | None:
        try:
            return scrubber(event, hint)
        except Exception:
            logger.exception("obskit could not scrub an event; it was dropped")
            metrics.internal_errors.labels(service, "scrub").inc()
            return None

    return scrub


def _processors(
    settings: Settings, metrics: Metrics, scrubber: Scrubber, extra: Sequence[EventProcessor]
) -> list[EventProcessor]:
    """The event pipeline: tag, drop noise, the app's own processors, storm control, and scrub last so
    whatever any step added (breadcrumbs, tags, user, contexts) is scrubbed too; then only the tags are
    cut to Sentry's limits again."""
    held_back = metrics.sentry_events_held_back
    service = settings.service
    noise = NoiseFilter(
        ignore_exceptions=settings.ignore_exceptions,
        ignore_loggers=settings.ignore_loggers,
        send_client_errors=settings.send_client_errors,
        count=lambda reason: held_back.labels(service, reason).inc(),
    )
    storm_count = held_back.labels(service, "storm").inc
    storm = StormControl(limit=settings.storm_limit, window_s=settings.storm_window_s, count=storm_count)
    app = [_app_processor(processor, held_back.labels(service, "app_processor").inc) for processor in extra]
    return [_enricher(settings), noise, *app, storm, _fail_closed(scrubber, metrics, service), _within_tag_limits]


def _app_processor(processor: EventProcessor, count: Callable[[], None]) -> EventProcessor:
    """One of the app's own processors (``init(processors=...)``): what it drops is counted too."""

    @functools.wraps(processor)
    def run(event: Event, hint: Hint) -> Event | None:
        result = processor(event, hint)
        if result is None:
            count()
        return result

    return run


def _breadcrumb_router(before: EventProcessor | None) -> Callable[[dict[str, Any], Hint], dict[str, Any] | None]:
    """Inside a unit of work, keep breadcrumbs in the unit's own buffer so none leak into the next unit."""

    def route(crumb: dict[str, Any], hint: Hint) -> dict[str, Any] | None:
        if before is not None:
            result = before(crumb, hint)
            if result is None:
                return None
            crumb = result
        unit = current()
        if unit is None:
            return crumb
        unit.add_breadcrumb(crumb)
        return None

    return route


def _counting_transport(metrics: Metrics, service: str) -> type[Transport]:
    dropped = metrics.sentry_events_dropped

    class CountingTransport(HttpTransport):
        """The SDK's HTTP transport, counting what it drops (full queue, network error, rate limit)."""

        def record_lost_event(self, reason: str, data_category: Any = None, item: Any = None, **kwargs: Any) -> None:
            category = item.data_category if item is not None else data_category
            # before_send drops are the kit's own choices, counted in obskit_sentry_events_held_back_total.
            if category in ("error", "transaction", "default") and reason != "before_send":
                dropped.labels(service, reason).inc(kwargs.get("quantity", 1) if item is None else 1)
            super().record_lost_event(reason, data_category, item, **kwargs)

    return CountingTransport


def _integrations(settings: Settings) -> list[Integration]:
    from sentry_sdk.integrations.argv import ArgvIntegration
    from sentry_sdk.integrations.atexit import AtexitIntegration
    from sentry_sdk.integrations.dedupe import DedupeIntegration
    from sentry_sdk.integrations.excepthook import ExcepthookIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration
    from sentry_sdk.integrations.modules import ModulesIntegration
    from sentry_sdk.integrations.stdlib import StdlibIntegration
    from sentry_sdk.integrations.threading import ThreadingIntegration

    return [
        ArgvIntegration(),
        AtexitIntegration(),
        DedupeIntegration(),
        ExcepthookIntegration(),
        LoggingIntegration(level=settings.log_breadcrumb_levelno, event_level=settings.log_event_levelno),
        ModulesIntegration(),
        StdlibIntegration(),
        ThreadingIntegration(propagate_scope=True),
    ]


@dataclass
class Runtime:
    """What init() set up; the rest of the kit reads it through :func:`runtime`."""

    settings: Settings
    metrics: Metrics
    sampler: Sampler
    sentry_enabled: bool
    event_processors: list[EventProcessor] = field(default_factory=list)
    # The scrubbing rules (scrub_value / scrub_text use them for DLQ headers, snippets, task arguments).
    scrubber: Scrubber | None = None
    # The before_send_transaction pipeline, for transactions the kit builds itself (send_transaction).
    transaction_pipeline: EventProcessor | None = None


_runtime: Runtime | None = None
_lock = threading.Lock()


def runtime() -> Runtime:
    """The kit's state after init(); a clear error before it."""
    if _runtime is None:
        message = "observability.init() has not been called"
        raise RuntimeError(message)
    return _runtime


def init(
    service: str | None = None,
    *,
    registry: CollectorRegistry | None = None,
    transport: type[Transport] | Callable[..., Any] | None = None,
    environ: dict[str, str] | None = None,
    processors: Sequence[EventProcessor] = (),
    **overrides: Any,
) -> Runtime:
    """Set up Sentry, metrics and sampling from the environment; idempotent for the same settings.

    ``overrides`` are :class:`Settings` fields and win over the environment. ``transport`` and
    ``registry`` are for tests (an in-memory transport, a fresh registry).
    """
    global _runtime  # noqa: PLW0603
    if service is not None:
        overrides["service"] = service
    settings = Settings.from_env(environ, **overrides)
    with _lock:
        if (
            _runtime is not None
            and _runtime.settings == settings
            and transport is None
            and registry is None
            and not processors
        ):
            return _runtime
        if _runtime is not None and _runtime.sentry_enabled:
            _close(settings.shutdown_timeout_s)
        from prometheus_client import REGISTRY

        metrics = Metrics.for_registry(REGISTRY if registry is None else registry)
        sampler = Sampler(settings)
        rt = Runtime(settings=settings, metrics=metrics, sampler=sampler, sentry_enabled=bool(settings.dsn))
        rt.scrubber = Scrubber(keys=settings.scrub_keys, patterns=settings.scrub_patterns)
        rt.event_processors = _processors(settings, metrics, rt.scrubber, processors)
        public_key = urlsplit(settings.dsn).username if settings.dsn else None
        propagation.set_static_baggage(
            public_key=public_key, release=settings.release, environment=settings.environment
        )
        from observability.logs import install_record_factory

        install_record_factory()
        if settings.dsn:
            _sdk_init(settings, rt, transport)
            logger.info(
                "Sentry initialized for environment: %s (release %s, service %s)",
                settings.environment,
                settings.release,
                settings.service,
            )
        else:
            logger.info(
                "Sentry disabled: SENTRY_DSN is not set (service %s); metrics and SLOs still work", settings.service
            )
        _setup_recorder(settings, metrics)
        _runtime = rt
        return rt


def _setup_recorder(settings: Settings, metrics: Metrics) -> None:
    from observability import slo

    previous = slo.set_recorder(None)
    if previous is not None:
        previous.close(settings.shutdown_timeout_s)
    if settings.slo_redis_url is None:
        logging.getLogger(slo.__name__).info("SLO recording off: neither OBSKIT_SLO_REDIS_URL nor REDIS_URL is set")
        return
    slo.set_recorder(
        slo.Recorder(
            service=settings.service,
            env=settings.environment,
            redis_url=settings.slo_redis_url,
            metrics=metrics,
            flush_interval_s=settings.slo_flush_interval_s,
            max_pending_s=settings.slo_buffer_s,
        )
    )


def _sdk_init(settings: Settings, rt: Runtime, transport: type[Transport] | Callable[..., Any] | None) -> None:
    # The SDK types events as a TypedDict; the pipeline works on plain dicts, which is what it passes.
    pipeline: Any = _pipeline(rt.event_processors, rt.metrics, settings.service)
    rt.transaction_pipeline = pipeline
    sentry_sdk.init(
        dsn=settings.dsn,
        environment=settings.environment,
        release=settings.release,
        debug=settings.debug,
        default_integrations=False,
        auto_enabling_integrations=False,
        integrations=_integrations(settings),
        traces_sampler=rt.sampler,
        profiles_sample_rate=settings.profiles_sample_rate or None,
        **_pii_options(settings.send_default_pii),
        max_breadcrumbs=100,
        transport=transport or _counting_transport(rt.metrics, settings.service),
        transport_queue_size=settings.sentry_queue_size,
        shutdown_timeout=settings.shutdown_timeout_s,
        before_send=pipeline,
        before_send_transaction=pipeline,
        before_breadcrumb=_breadcrumb_router(breadcrumb_filter(settings.ignore_loggers)),
    )


def _pii_options(opted_in: bool) -> dict[str, Any]:
    """User email and IP only when the app opts in; newer 2.x SDKs spell that ``data_collection``."""
    if not opted_in:
        return {}
    import inspect

    from sentry_sdk.consts import ClientConstructor

    if "data_collection" in inspect.signature(ClientConstructor.__init__).parameters:
        return {"data_collection": {"user_info": True}}
    return {"send_default_pii": True}


def _close(timeout_s: float) -> None:
    client = sentry_sdk.get_client()
    if client.is_active():
        client.close(timeout=timeout_s)


def shutdown(timeout_s: float | None = None) -> None:
    """Flush what is queued for Sentry, waiting at most ``timeout_s`` (default: the configured timeout)."""
    global _runtime  # noqa: PLW0603
    with _lock:
        if _runtime is None:
            return
        timeout = _runtime.settings.shutdown_timeout_s if timeout_s is None else timeout_s
        from observability import slo

        recorder = slo.set_recorder(None)
        if recorder is not None:
            recorder.close(timeout)
        if _runtime.sentry_enabled:
            _close(timeout)
        _runtime = None


def flush(timeout_s: float | None = None) -> None:
    """Send what is queued for Sentry now, waiting at most ``timeout_s``; the kit stays set up."""
    rt = _runtime
    if rt is not None and rt.sentry_enabled:
        sentry_sdk.flush(timeout=rt.settings.shutdown_timeout_s if timeout_s is None else timeout_s)


def start_transaction(unit: Unit, *, op: str, name: str, source: str = "task") -> Any:
    """A transaction for a sampled unit, continuing its trace: its span id is the unit's, so whatever the
    unit sends on is a child of it. Use as a context manager."""
    from sentry_sdk.tracing import Transaction
    from sentry_sdk.tracing_utils import Baggage

    baggage = Baggage.from_incoming_header(unit.baggage) if unit.baggage else None
    transaction = Transaction(
        name=name,
        op=op,
        source=source,
        trace_id=unit.trace_id,
        span_id=unit.span_id,
        parent_span_id=unit.parent_span_id,
        sampled=True,
        baggage=baggage,
    )
    unit.sampled = True
    return sentry_sdk.start_transaction(transaction)


def send_transaction(
    unit: Unit,
    *,
    name: str,
    op: str,
    start: float,
    end: float,
    status: str = "ok",
    data: dict[str, Any] | None = None,
    source: str = "task",
    sample_rate: float | None = None,
) -> bool:
    """Send a finished unit of work as a transaction, built directly rather than through the SDK's
    span machinery (a few tens of microseconds instead of a few hundred), through the same
    ``before_send_transaction`` pipeline (tags, scrubbing) and the SDK's own transport.

    Returns False when it was not sent: Sentry off, the pipeline dropped it, or the transport's queue
    was full (counted in ``obskit_sentry_events_dropped_total`` like any other drop).
    """
    rt = _runtime
    if rt is None or not rt.sentry_enabled or rt.transaction_pipeline is None:
        return False
    transport = sentry_sdk.get_client().transport
    if transport is None:
        return False
    trace: dict[str, Any] = {
        "trace_id": unit.trace_id,
        "span_id": unit.span_id,
        "op": op,
        "status": status,
        "origin": "auto.obskit",
    }
    if unit.parent_span_id:
        trace["parent_span_id"] = unit.parent_span_id
    if data:
        trace["data"] = data
    settings = rt.settings
    built: dict[str, Any] = {
        "type": "transaction",
        "event_id": new_event_id(),
        "platform": "python",
        "transaction": name,
        "transaction_info": {"source": source},
        "start_timestamp": start,
        "timestamp": end,
        "contexts": {"trace": trace},
        "spans": list(unit.spans or ()),
        "environment": settings.environment,
        "release": settings.release,
        "sdk": {"name": "obskit", "version": _VERSION},
    }
    # What the app set on the SDK's scope in this unit, as the SDK would apply it (the unit's own win after).
    scope_user, scope_tags = user_and_tags()
    if scope_tags:
        built["tags"] = dict(scope_tags)
    if scope_user:
        built["user"] = dict(scope_user)
    event = rt.transaction_pipeline(built, {})
    if event is None:
        return False
    from sentry_sdk.envelope import Envelope

    envelope = Envelope(headers={"event_id": event["event_id"], "trace": _dsc(unit, settings, sample_rate)})
    envelope.add_transaction(event)  # type: ignore[arg-type]
    transport.capture_envelope(envelope)
    return True


_VERSION = "0.1.0"


def new_event_id() -> str:
    return f"{random.getrandbits(128):032x}"


def transport_has_room() -> bool:
    """Whether the SDK's send queue can take another envelope: when it cannot, building a transaction
    only to drop it would slow the work down for nothing. The drop is counted as the SDK counts its own."""
    rt = _runtime
    if rt is None or not rt.sentry_enabled:
        return False
    transport = sentry_sdk.get_client().transport
    worker = getattr(transport, "_worker", None)
    full = getattr(worker, "full", None)
    if full is None or not full():
        return True
    rt.metrics.sentry_events_dropped.labels(rt.settings.service, "queue_overflow").inc()
    return False


def _dsc(unit: Unit, settings: Settings, sample_rate: float | None) -> dict[str, str]:
    """The trace's dynamic sampling context: the incoming one when the trace came with it, else ours."""
    if unit.baggage and "sentry-trace_id=" in unit.baggage:
        from sentry_sdk.tracing_utils import Baggage

        return Baggage.from_incoming_header(unit.baggage).dynamic_sampling_context()
    dsc = {"trace_id": unit.trace_id, "environment": settings.environment, "sampled": "true"}
    if settings.release:
        dsc["release"] = settings.release
    if settings.dsn:
        dsc["public_key"] = urlsplit(settings.dsn).username or ""
    if sample_rate is not None:
        dsc["sample_rate"] = str(sample_rate)
    return dsc

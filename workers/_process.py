"""Process lifecycle of the worker and beat: the kit set up where each process starts, flushed where it stops.

The worker's main process initialises the kit in ``worker_init`` (before the pool forks), serves
``/metrics`` and samples the backlog on the consumer's timer (its own thread: no lock held across a
fork). Each prefork child drops the Sentry client it inherited and initialises the kit again in
``worker_process_init``, so its transport, SLO recorder and Kafka producer are its own, and flushes
them in ``worker_process_shutdown``: a child runs no atexit handlers.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, NoReturn

import observability
from observability.errors import ConfigError
from workers import _metrics, clients
from workers.settings import WorkerSettings

__all__ = ["beat_init", "child_init", "child_shutdown", "worker_init", "worker_ready", "worker_shutdown"]

logger = logging.getLogger(__name__)


class _State:
    main_pid: int | None = None
    settings: WorkerSettings | None = None
    server: _metrics.MetricsServer | None = None
    ready = False
    backlog: _metrics.BacklogSampler | None = None
    backlog_timer: Any = None


_state = _State()

_MISSING_MULTIPROC_DIR = ConfigError(
    _metrics.MULTIPROC_ENV,
    "",
    "an empty directory for this worker: under the prefork pool /metrics (OBSKIT_WORKER_METRICS_PORT)"
    " sums the children's values from it",
)


def _fail(exc: ConfigError) -> NoReturn:
    """Bad configuration at start: one line, and the process ends (Celery would log and go on)."""
    sys.stderr.write(f"obskit: {exc}\n")
    sys.stderr.flush()
    raise SystemExit(2)


def settings_for(app: Any) -> WorkerSettings:
    """The app's worker settings: the kit's app knows them; for another app, the environment and its broker."""
    settings = getattr(app, "settings", None)
    if isinstance(settings, WorkerSettings):
        return settings
    broker = str(getattr(app.conf, "broker_url", "") or "")
    return WorkerSettings.from_env(redis_url=broker) if broker else WorkerSettings.from_env()


def _init_kit(settings: WorkerSettings) -> None:
    from workers import instrumentation

    observability.init(service=settings.service)
    instrumentation.configure(traces_max_per_s=settings.traces_max_per_s)


def _is_prefork(worker: Any) -> bool:
    from celery.concurrency import get_implementation
    from celery.concurrency.prefork import TaskPool

    pool = getattr(worker, "pool_cls", None)
    try:
        cls = get_implementation(pool) if isinstance(pool, str) else pool
    except Exception:
        return False
    return isinstance(cls, type) and issubclass(cls, TaskPool)


def worker_init(worker: Any) -> None:
    """The worker's main process, before the pool starts."""
    try:
        settings = settings_for(worker.app)
        _state.main_pid = os.getpid()
        _state.settings = settings
        path = _metrics.multiprocess_dir()
        if settings.metrics_port is not None and path is None and _is_prefork(worker):
            _fail(_MISSING_MULTIPROC_DIR)
        if path is not None:
            removed = _metrics.prepare_multiprocess_dir(path)
            if removed:
                logger.info("removed %d metric files of an earlier run from %s", removed, path)
        _init_kit(settings)
        _adopt_request(worker.app)
        if settings.metrics_port is not None:
            _state.server = _metrics.MetricsServer(
                host=settings.metrics_host, port=settings.metrics_port, ready=lambda: _state.ready
            )
            logger.info("worker metrics on http://%s:%d/metrics", _state.server.host, _state.server.port)
    except ConfigError as exc:
        _fail(exc)
    _set_up(0.0)


def _adopt_request(app: Any) -> None:
    from workers import instrumentation

    try:
        instrumentation.adopt_request(app)
    except Exception:  # the worker runs on with Celery's request: lost children are reported untagged
        instrumentation._count_internal("celery_adopt_request")


def _set_up(value: float) -> None:
    try:
        rt = observability.runtime()
        rt.metrics.celery_worker_up.labels(rt.settings.service).set(value)
    except Exception:
        logger.exception("obskit: cannot set obskit_celery_worker_up")


def worker_ready(consumer: Any) -> None:
    """The main process consumes: the worker is up; the backlog is sampled from now on."""
    _state.ready = True
    _set_up(1.0)
    settings = _state.settings
    if settings is None:
        return
    app = consumer.app
    broker = str(app.conf.broker_url or "")
    if not broker.startswith(("redis://", "rediss://", "unix://")):
        logger.info("queue backlog not sampled: the broker is not Redis")
        return
    try:
        queues = sorted({q.name for q in consumer.task_consumer.queues})
    except Exception:
        queues = [settings.queue]
    prefix = str((app.conf.broker_transport_options or {}).get("global_keyprefix") or "")
    _state.backlog = _metrics.BacklogSampler(redis_url=broker, queues=queues, key_prefix=prefix)
    _sample_backlog()
    # The consumer's timer runs on the main thread's event loop: no extra thread in a forking process.
    _state.backlog_timer = consumer.timer.call_repeatedly(settings.backlog_interval_s, _sample_backlog)


def _sample_backlog() -> None:
    sampler = _state.backlog
    if sampler is None:
        return
    try:
        rt = observability.runtime()
        gauge = rt.metrics.celery_queue_backlog_messages
        for queue, length in sampler.sample().items():
            gauge.labels(rt.settings.service, queue).set(length)
    except Exception as exc:
        logger.warning("queue backlog not sampled: %s", exc)
        try:
            rt = observability.runtime()
            rt.metrics.internal_errors.labels(rt.settings.service, "celery_backlog").inc()
        except Exception:
            logger.exception("obskit: cannot count a backlog sampling error")


def worker_shutdown(worker: Any) -> None:
    """The main process stops: down, backlog and /metrics stopped, the kit flushed."""
    _state.ready = False
    _set_up(0.0)
    if _state.backlog_timer is not None:
        _state.backlog_timer.cancel()
        _state.backlog_timer = None
    if _state.backlog is not None:
        _state.backlog.close()
        _state.backlog = None
    if _state.server is not None:
        _state.server.stop()
        _state.server = None
    clients.close(_shutdown_timeout())
    observability.shutdown()


def _shutdown_timeout() -> float:
    try:
        return observability.runtime().settings.shutdown_timeout_s
    except RuntimeError:
        return 2.0


def child_init() -> None:
    """A pool process starts: in a forked child, its own Sentry client, SLO recorder and producer."""
    if _state.main_pid == os.getpid():
        return  # solo and threads pools: this is the main process, set up in worker_init
    if _state.server is not None:
        _state.server.close_inherited()
    _state.server = None
    _state.backlog = None
    _state.backlog_timer = None
    import sentry_sdk

    # The inherited client's queue holds the parent's events: the parent sends them, not this child.
    sentry_sdk.get_global_scope().set_client(None)
    observability.shutdown(timeout_s=0)
    settings = _state.settings
    if settings is None:
        return
    try:
        _init_kit(settings)
        clients.start()
    except Exception:
        logger.exception("obskit: the worker process could not set up the kit; its tasks run uninstrumented")


def child_shutdown() -> None:
    """A pool child exits (after max_tasks_per_child, or on shutdown): flush, drop its live gauges."""
    if _state.main_pid == os.getpid():
        return
    try:
        clients.close(_shutdown_timeout())
        observability.shutdown()
    finally:
        _metrics.mark_dead(os.getpid())


def beat_init(service: Any) -> None:
    """Beat starts: the kit set up; with OBSKIT_CELERY_CRONS, the scheduler names its entries."""
    try:
        settings = settings_for(service.app)
        _state.settings = settings
        _init_kit(settings)
    except ConfigError as exc:
        _fail(exc)
    if settings.crons:
        from workers import _crons

        _crons.wrap_scheduler(service.scheduler)
        logger.info("Sentry Crons check-ins on for the beat schedule")

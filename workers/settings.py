"""The worker's settings from the environment, validated once: a bad value fails with one line naming it."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from observability.config import parse_bool, parse_port, parse_positive, parse_redis_url
from observability.errors import ConfigError

__all__ = ["WorkerSettings"]


def _queue(variable: str, raw: str) -> str:
    name = raw.strip()
    if not name or any(c.isspace() for c in name):
        raise ConfigError(variable, raw, "a queue name without spaces")
    return name


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """How the Celery app and its worker run. Build with :meth:`from_env`."""

    redis_url: str
    service: str = "workers"
    # The queue tasks go to unless routed elsewhere; the worker consumes it unless -Q says otherwise.
    queue: str = "celery"
    # A reserved task whose worker *parent* died is handed out again only after this long (the Redis
    # transport's visibility timeout). Make it longer than your longest task and your longest ETA.
    visibility_timeout_s: float = 3600.0
    # How often the worker's main process samples the length of its queues (Redis LLEN).
    backlog_interval_s: float = 15.0
    # /metrics and /healthz of the worker's main process; None: not served.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    # Beat attaches Sentry Crons check-in data to the tasks it schedules.
    crons: bool = False
    # At most this many traced tasks (Sentry transactions) per second per worker process: sending one
    # costs about a millisecond of CPU, so an unbounded 10% of a busy worker costs a tenth of it.
    traces_max_per_s: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> WorkerSettings:
        """Read and validate the settings; keyword overrides win over the environment."""
        env = os.environ if environ is None else environ
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            message = f"unknown worker setting {', '.join(unknown)}: expected some of {', '.join(sorted(known))}"
            raise TypeError(message)
        values: dict[str, Any] = {}
        if "redis_url" not in overrides:
            raw = env.get("REDIS_URL", "").strip()
            if not raw:
                raise ConfigError("REDIS_URL", raw, "the Celery broker and result backend, e.g. redis://host:6379/0")
            values["redis_url"] = parse_redis_url("REDIS_URL", raw)
        readers = {
            "service": ("SERVICE_NAME", lambda _v, raw: raw.strip()),
            "queue": ("OBSKIT_CELERY_QUEUE", _queue),
            "visibility_timeout_s": ("OBSKIT_CELERY_VISIBILITY_TIMEOUT_S", parse_positive),
            "backlog_interval_s": ("OBSKIT_CELERY_BACKLOG_INTERVAL_S", parse_positive),
            "metrics_port": ("OBSKIT_WORKER_METRICS_PORT", parse_port),
            "metrics_host": ("OBSKIT_WORKER_METRICS_HOST", lambda _v, raw: raw.strip()),
            "crons": ("OBSKIT_CELERY_CRONS", parse_bool),
            "traces_max_per_s": ("OBSKIT_CELERY_TRACES_MAX_PER_S", parse_positive),
        }
        for name, (variable, parse) in readers.items():
            raw = env.get(variable, "").strip()
            if name not in overrides and raw:
                values[name] = parse(variable, raw)
        return cls(**{**values, **overrides})

    @property
    def restore_interval_s(self) -> int:
        """How often a worker looks for reserved tasks past the visibility timeout: at most every 10 s."""
        return max(1, min(10, math.ceil(self.visibility_timeout_s / 10)))

    def celery_config(self) -> dict[str, Any]:
        """Celery's settings: tasks acknowledged only after they ran, never lost with a dying worker."""
        transport = {
            "visibility_timeout": self.visibility_timeout_s,
            # Sweep for expired reservations every restore_interval_s, not kombu's default of 100 s.
            "unacked_restore_interval": self.restore_interval_s,
            "unacked_restore_throttle": 1,
        }
        return {
            "broker_url": self.redis_url,
            "result_backend": self.redis_url,
            "broker_transport_options": transport,
            "broker_connection_retry_on_startup": True,
            "task_default_queue": self.queue,
            # Acknowledge after the task ran: a worker that dies mid-task leaves it to be redelivered.
            "task_acks_late": True,
            # A child killed mid-task (OOM, SIGKILL): requeue its task at once instead of failing it.
            "task_reject_on_worker_lost": True,
            # Reserve one task per child: with acks_late, a prefetched task is stuck behind a slow one.
            "worker_prefetch_multiplier": 1,
            "task_serializer": "json",
            "result_serializer": "json",
            "accept_content": ["json"],
            "result_expires": 86400,
            "enable_utc": True,
        }

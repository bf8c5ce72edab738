"""Count every unit of work's outcome in-process and flush to Redis at most once a second.

``record()`` is the hot path: one lock and one dict increment, no I/O. A daemon thread, started on
first use (and again in a forked child, which starts from zero), flushes the counts in one pipelined
round trip; with nothing to send it still stamps the flush time every ``heartbeat_s``, so freshness
tells a quiet service from a dead one. When Redis is down the counts stay in memory for
``max_pending_s``; past that they are dropped and counted in ``obskit_slo_records_dropped_total``, and
the work never waits.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from observability.metrics import Metrics
from observability.slo.outcomes import Outcome
from observability.slo.store import OUTCOMES, Store

__all__ = ["Recorder"]

logger = logging.getLogger(__name__)


class Recorder:
    """Outcome counts for one service in one env, flushed to Redis by a background thread."""

    def __init__(
        self,
        *,
        service: str,
        env: str,
        redis_url: str | None = None,
        client: Any = None,
        metrics: Metrics | None = None,
        flush_interval_s: float = 1.0,
        max_pending_s: float = 600.0,
        heartbeat_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if client is None and redis_url is None:
            message = "Recorder needs redis_url or client"
            raise ValueError(message)
        self.service = service
        self.env = env
        self._redis_url = redis_url
        self._client = client
        self._store: Store | None = None
        self._metrics = metrics
        self.flush_interval_s = flush_interval_s
        self.max_pending_s = max_pending_s
        self.heartbeat_s = heartbeat_s
        self._clock = clock
        self._reset()
        ref = weakref.ref(self)

        def reset_in_child() -> None:
            recorder = ref()
            if recorder is not None:
                recorder._reset()

        os.register_at_fork(after_in_child=reset_in_child)

    def _reset(self) -> None:
        """Fresh state: at construction, and in a forked child (the parent's counts are the parent's)."""
        self._lock = threading.Lock()
        self._pending: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self._pending_since: float | None = None
        # When this process last wrote to Redis (the clock's time), counts or heartbeat.
        self._last_sent: float | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        if self._redis_url is not None:
            self._client = None
            self._store = None

    def record(self, outcome: Outcome | str, n: int = 1) -> None:
        """Count ``n`` units with this outcome. No I/O; flushed within about a second."""
        with self._lock:
            try:
                self._pending[outcome] += n
            except KeyError:
                message = f"unknown outcome {outcome!r}: expected one of {', '.join(OUTCOMES)}"
                raise ValueError(message) from None
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="obskit-slo-flush", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self._tick()

    def _tick(self) -> None:
        """One round of the flush thread: send the counts; when idle, refresh the flush time now and then."""
        if not self.flush():
            return
        now = self._clock()
        last = self._last_sent
        if last is not None and 0 <= now - last < self.heartbeat_s:
            return
        # Stamped before trying: Redis down, the next attempt is a heartbeat later, not a second later.
        self._last_sent = now
        try:
            self._get_store().flush([(self.service, self.env, {})], now)
        except Exception as exc:
            if self._metrics is not None:
                self._metrics.slo_flush_errors.labels(self.service).inc()
            logger.debug("SLO heartbeat not written to Redis: %s", exc)

    def _get_store(self) -> Store:
        if self._store is None:
            if self._client is None:
                import redis

                self._client = redis.Redis.from_url(
                    str(self._redis_url), socket_timeout=2.0, socket_connect_timeout=1.0, health_check_interval=30
                )
            self._store = Store(self._client)
        return self._store

    def pending(self) -> dict[str, int]:
        with self._lock:
            return {k: v for k, v in self._pending.items() if v}

    def flush(self) -> bool:
        """Send what is pending now; True when there was nothing to send or it was sent."""
        with self._lock:
            if not any(self._pending.values()):
                return True
            batch = self._pending
            self._pending = dict.fromkeys(OUTCOMES, 0)
        counts = {Outcome(k): v for k, v in batch.items() if v}
        now = self._clock()
        try:
            self._get_store().flush([(self.service, self.env, counts)], now)
        except Exception as exc:
            self._requeue(batch, exc)
            return False
        self._last_sent = now
        self._pending_since = None
        return True

    def _requeue(self, batch: dict[str, int], exc: Exception) -> None:
        now = time.monotonic()
        if self._metrics is not None:
            self._metrics.slo_flush_errors.labels(self.service).inc()
        with self._lock:
            if self._pending_since is None:
                self._pending_since = now
                logger.warning(
                    "SLO counts not flushed to Redis (%s); keeping them for up to %g s", exc, self.max_pending_s
                )
            if now - self._pending_since > self.max_pending_s:
                dropped = sum(batch.values())
                logger.error(
                    "dropping %d SLO counts: Redis unreachable for more than %g s", dropped, self.max_pending_s
                )
                if self._metrics is not None:
                    self._metrics.slo_records_dropped.labels(self.service).inc(dropped)
                self._pending_since = now
                return
            for key, value in batch.items():
                self._pending[key] += value

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the flush thread and send what is left (bounded by ``timeout_s``).

        What Redis does not take now is lost with the process: it is counted as dropped and logged.
        """
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        if self.flush():
            return
        with self._lock:
            dropped = sum(self._pending.values())
            self._pending = dict.fromkeys(OUTCOMES, 0)
            self._pending_since = None
        if dropped:
            logger.warning("dropping %d SLO counts at shutdown: Redis did not take the last flush", dropped)
            if self._metrics is not None:
                self._metrics.slo_records_dropped.labels(self.service).inc(dropped)

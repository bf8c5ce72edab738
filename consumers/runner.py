"""An at-least-once Kafka consumer runner on confluent-kafka, wired onto ``observability``.

Per message, in order: decode -> context from headers (lazily) -> handler -> retry / dead-letter ->
offset store. What runs per message is decided once, at construction; the success path does no Sentry
scope or transaction work, and counts (metrics, SLO outcomes) are batched and flushed once a second.

An offset is stored only after its message was handled, or after the dead-letter topic's delivery
report for it arrived. A failing message pauses its partition while it waits for its retry, so the
poll loop keeps running (no max.poll.interval.ms breach) and other partitions keep flowing.
"""

from __future__ import annotations

import inspect
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

import observability as obs
from consumers import dlq
from consumers._log import LIBRDKAFKA_LOG
from consumers.settings import ConsumerSettings
from observability import slo
from observability.business import BusinessRuleError
from observability.business import report as report_business
from observability.context import LazyUnit, activate, deactivate
from observability.propagation import extract
from observability.sentry import send_transaction, transport_has_room
from observability.slo import Outcome

__all__ = ["FatalConsumerError", "Runner"]

logger = logging.getLogger(__name__)

Handler = Callable[..., Any]

_OK, _BUSINESS, _DEFERRED = 0, 1, 2


class FatalConsumerError(obs.ObskitError):
    """The consumer cannot go on without losing a message (the dead-letter topic is unwritable)."""


@dataclass
class _Pending:
    """A message whose partition is paused: waiting for its next attempt or for its DLQ delivery."""

    message: Message
    payload: Any
    attempt: int
    due: float
    breadcrumbs: Any = None
    parked: bool = False  # produced to the DLQ, waiting for the delivery report
    delivered: bool = False
    error: BaseException | None = None


@dataclass
class _Counts:
    """Outcome counts since the last flush, per topic."""

    by_topic: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, topic: str, outcome: str, n: int = 1) -> None:
        key = (topic, outcome)
        self.by_topic[key] = self.by_topic.get(key, 0) + n


def _arity(handler: Handler) -> int:
    """1: ``handler(payload)``; 2: ``handler(payload, message)``."""
    try:
        params = [
            p
            for p in inspect.signature(handler).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):
        return 2
    return 1 if len(params) == 1 else 2


def _parent_sampled(headers: list[tuple[str, bytes]]) -> bool | None:
    for key, value in headers:
        if key == "sentry-trace" and value:
            return True if value.endswith(b"-1") else False if value.endswith(b"-0") else None
        if key == "traceparent" and value:
            return True if value.endswith(b"-01") else None
    return None


class Runner:
    """Build once from settings and a handler; ``run()`` consumes until SIGTERM/SIGINT or ``stop()``."""

    def __init__(self, handler: Handler, settings: ConsumerSettings, *, install_signals: bool = True) -> None:
        rt = obs.runtime()
        self.settings = settings
        self.handler = handler
        self._service = rt.settings.service
        self._metrics = rt.metrics
        self._sampler = rt.sampler
        self._install_signals = install_signals
        self._stopping = threading.Event()
        self._fatal: FatalConsumerError | None = None
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._counts = _Counts()
        self._unit = LazyUnit(self._resolve)
        self._last_seen: dict[tuple[str, int], tuple[int, float]] = {}
        self._stored_since_commit = False
        self.last_poll = time.monotonic()
        self.consumer: Any = None
        self._dlq: dlq.DeadLetters | None = None
        # Decided once: how to decode, how to call the handler, which topics may be traced.
        self._loads: Callable[[bytes], Any] = json.loads if settings.decode == "json" else bytes
        self._call_with_message = _arity(handler) == 2
        self._rates = {topic: self._sampler.rate_for(f"topic:{topic}") for topic in settings.topics}
        self._duration_mask = max(1, 1 << (settings.duration_sample_every.bit_length() - 1)) - 1
        self._any_rate = any(rate > 0.0 for rate in self._rates.values())
        self._stop_flag = False
        # The port /metrics and /healthz are served on (settings.metrics_port 0 picks a free one).
        self.metrics_port: int | None = None
        self._last_commit = self._last_lag = 0.0

    # -- context --------------------------------------------------------------------------------

    def _resolve(self, unit: LazyUnit, message: Message, payload: Any) -> None:
        incoming = extract(message.headers())
        user_id = incoming.user_id
        field_name = self.settings.user_id_field
        if user_id is None and field_name and isinstance(payload, dict) and payload.get(field_name) is not None:
            user_id = str(payload[field_name])
        unit.user_id = user_id
        unit.set_trace(incoming.trace_id)
        unit.parent_span_id = incoming.parent_span_id
        unit.baggage = incoming.baggage
        unit.tags = {
            "topic": message.topic(),
            "partition": str(message.partition()),
            "offset": str(message.offset()),
            "consumer_group": self.settings.group_id,
        }

    # -- lifecycle ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop fetching; the message in hand is finished, offsets committed, the consumer closed."""
        self._stop_flag = True
        self._stopping.set()

    def _kafka_config(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.settings.bootstrap_servers,
            "group.id": self.settings.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "on_commit": self._on_commit,
            "error_cb": self._on_error,
            "logger": LIBRDKAFKA_LOG,
            **self.settings.kafka,
        }

    def run(self) -> int:
        """Consume until stopped; 0 on a clean stop, 1 when a message could not be kept safe."""
        if self._install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
        # Clients are made here, in the process that runs, never before a fork.
        self.consumer = Consumer(self._kafka_config())
        self._dlq = dlq.DeadLetters(self.settings, on_error=self._on_error)
        self.consumer.subscribe(
            list(self.settings.topics), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        server = self._serve_metrics()
        self.metrics_port = None if server is None else server.port
        token = activate(self._unit)
        try:
            self._loop()
        finally:
            deactivate(token)
            self._shutdown()
            if server is not None:
                server.stop()
        if self._fatal is not None:
            logger.critical("%s", self._fatal)
            return 1
        return 0

    def _shutdown(self) -> None:
        assert self._dlq is not None
        # Deliveries still in flight: wait for them so their offsets can be stored.
        self._dlq.flush(10.0)
        self._service_pending(final=True)
        # Stored offsets are only ever those of settled messages: safe to commit even after a fatal error.
        self._commit(asynchronous=False)
        self.consumer.close()
        self._flush_counts()
        obs.flush()
        self._stopping.set()

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:  # noqa: PLR0912  (the hot loop, kept flat on purpose)
        consume = self.consumer.consume
        store = self.consumer.store_offsets
        process = self._process
        batch_size, timeout = self.settings.batch_size, self.settings.poll_timeout_s
        pending = self._pending
        counts = self._counts
        # One topic (the usual case): key the batch's bookkeeping by partition alone.
        single = self.settings.topics[0] if len(self.settings.topics) == 1 else None
        mask = self._duration_mask
        next_tick = 0.0
        while not self._stop_flag and self._fatal is None:
            batch = consume(batch_size, timeout)
            now = time.monotonic()
            self.last_poll = now
            if batch:
                last: dict[Any, Message] = {}
                handled: dict[Any, int] = {}
                n = 0
                for message in batch:
                    if self._stop_flag:
                        break  # the message in hand is finished; the rest is fetched again later
                    if message.error() is not None:
                        self._message_error(message)
                        continue
                    key = message.partition() if single else (message.topic(), message.partition())
                    if pending and ((single, key) if single else key) in pending:
                        continue  # the partition waits for a paused message: re-fetched after it
                    n += 1
                    outcome = process(message, not n & mask)
                    if outcome != _DEFERRED:
                        last[key] = message
                        if outcome == _OK:
                            handled[key] = handled.get(key, 0) + 1
                if last:
                    offsets = [
                        TopicPartition(single, k, m.offset() + 1)
                        if single
                        else TopicPartition(k[0], k[1], m.offset() + 1)
                        for k, m in last.items()
                    ]
                    store(offsets=offsets)
                    self._stored_since_commit = True
                    for k, m in last.items():
                        self._last_seen[(single, k) if single else k] = (m.offset(), m.timestamp()[1] / 1000.0)
                    for k, count in handled.items():
                        counts.add(single or k[0], "ok", count)
            if pending:
                self._service_pending()
            assert self._dlq is not None
            self._dlq.poll()
            if now >= next_tick:
                self._tick(now)
                next_tick = now + 1.0

    def _process(self, message: Message, timed: bool) -> int:
        """One message: decode, handle, and say whether its offset may be stored now."""
        unit = self._unit
        unit.rebind(message)
        try:
            payload = self._loads(message.value())
        except (ValueError, TypeError) as exc:
            self._poison(message, exc)
            return _DEFERRED
        unit._extra = payload
        headers = message.headers()
        parent = None if headers is None else _parent_sampled(headers)
        if (
            (parent is not None or self._any_rate)
            and self._sampler.decide(f"topic:{message.topic()}", parent)
            and transport_has_room()
        ):
            return self._traced(message, payload)
        try:
            if timed:
                self._timed(message, payload)
            elif self._call_with_message:
                self.handler(payload, message)
            else:
                self.handler(payload)
        except BusinessRuleError as exc:
            return self._business(message, payload, exc)
        except Exception as exc:
            self._failed(message, payload, exc, attempt=1)
            return _DEFERRED
        return _OK

    def _call(self, message: Message, payload: Any) -> None:
        if self._call_with_message:
            self.handler(payload, message)
        else:
            self.handler(payload)

    def _timed(self, message: Message, payload: Any) -> None:
        started = time.perf_counter()
        try:
            self._call(message, payload)
        finally:
            self._metrics.kafka_handler_duration_seconds.labels(self._service, message.topic()).observe(
                time.perf_counter() - started
            )

    def _traced(self, message: Message, payload: Any) -> int:
        """A message sampled for tracing: a ``queue.process`` transaction continuing the producer's trace,
        built directly (send_transaction) with Sentry's queue fields."""
        unit = self._unit
        unit.mark_sampled()
        topic = message.topic()
        started_at, started = time.time(), time.perf_counter()
        status, result = "ok", _OK
        try:
            self._call(message, payload)
        except BusinessRuleError as exc:
            result = self._business(message, payload, exc)
        except Exception as exc:
            status, result = "internal_error", _DEFERRED
            self._failed(message, payload, exc, attempt=1)
        elapsed = time.perf_counter() - started
        self._metrics.kafka_handler_duration_seconds.labels(self._service, topic).observe(elapsed)
        data: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.destination.name": topic,
            "messaging.message.id": f"{topic}/{message.partition()}/{message.offset()}",
            "messaging.message.retry.count": 0,
            "messaging.message.body.size": len(message.value() or b""),
        }
        kind, stamp = message.timestamp()
        if kind and stamp > 0:
            data["messaging.message.receive.latency"] = max(0, int(started_at * 1000) - stamp)
        send_transaction(
            unit,
            name=topic,
            op="queue.process",
            start=started_at,
            end=started_at + elapsed,
            status=status,
            data=data,
            sample_rate=self._rates.get(topic),
        )
        return result

    # -- outcomes -------------------------------------------------------------------------------

    def _business(self, message: Message, payload: Any, exc: BusinessRuleError) -> int:
        report_business(exc)
        if self.settings.business_failure == "dlq":
            self._pause(message, payload, attempt=1)
            self._park(message, reason="business_failure", error=exc, attempts=1, event_id=None)
            return _DEFERRED
        self._counts.add(message.topic(), "business_failure")
        return _BUSINESS

    def _failed(self, message: Message, payload: Any, exc: BaseException, *, attempt: int) -> None:
        """An attempt failed: retry later with backoff, or report once and park in the DLQ."""
        obs.add_breadcrumb("retry", f"attempt {attempt} failed: {type(exc).__name__}", "warning", attempt=attempt)
        pending = self._pause(message, payload, attempt=attempt)
        pending.error = exc
        if attempt < self.settings.attempts:
            backoff = min(self.settings.backoff_max_s, self.settings.backoff_s * 2 ** (attempt - 1))
            pending.due = time.monotonic() + backoff
            self._counts.add(message.topic(), "retried")
            slo.record(Outcome.RETRIED)
            return
        event_id = obs.capture_exception(exc, attempts=attempt)
        self._park(message, reason="handler_error", error=exc, attempts=attempt, event_id=event_id)

    def _poison(self, message: Message, exc: BaseException) -> None:
        """An undecodable message goes to the DLQ at once, with the reason."""
        self._pause(message, None, attempt=0)
        event_id = obs.capture_exception(exc, reason="undecodable")
        self._park(message, reason="undecodable", error=exc, attempts=0, event_id=event_id)

    def _pause(self, message: Message, payload: Any, *, attempt: int) -> _Pending:
        tp = (message.topic(), message.partition())
        pending = self._pending.get(tp)
        if pending is None or pending.message.offset() != message.offset():
            pending = _Pending(message, payload, attempt, due=0.0, breadcrumbs=self._unit.breadcrumbs)
            self._pending[tp] = pending
            partition = TopicPartition(tp[0], tp[1])
            self.consumer.pause([partition])
            # What was fetched after this message is dropped and fetched again once it is settled.
            self.consumer.seek(TopicPartition(tp[0], tp[1], message.offset() + 1))
        pending.attempt = attempt
        return pending

    def _park(
        self, message: Message, *, reason: str, error: BaseException, attempts: int, event_id: str | None
    ) -> None:
        tp = (message.topic(), message.partition())
        pending = self._pending[tp]
        pending.parked = True
        assert self._dlq is not None

        def delivered(problem: str | None) -> None:
            if problem is None:
                pending.delivered = True
            else:
                self._fatal = FatalConsumerError(
                    f"cannot write to the dead-letter topic {self.settings.dlq_for(tp[0])!r} ({problem}): "
                    f"stopping without committing {tp[0]}[{tp[1]}]@{message.offset()}; fix the DLQ and restart"
                )

        self._dlq.park(
            message,
            reason=reason,
            error=error,
            attempts=attempts,
            service=self._service,
            trace_id=self._unit.trace_id,
            event_id=event_id,
            on_done=delivered,
        )
        self._metrics.kafka_dlq_messages.labels(self._service, tp[0], reason).inc()

    def _service_pending(self, *, final: bool = False) -> None:
        """Retry what is due; store and resume what the DLQ confirmed."""
        now = time.monotonic()
        for tp, pending in list(self._pending.items()):
            if pending.parked:
                if pending.delivered:
                    self._settle(tp, pending, "error" if pending.error is not None else "business_failure")
                continue
            if final or pending.due > now or self._fatal is not None:
                continue
            self._retry(tp, pending)

    def _retry(self, tp: tuple[str, int], pending: _Pending) -> None:
        message, payload = pending.message, pending.payload
        self._unit.rebind(message, payload)
        self._unit.breadcrumbs = pending.breadcrumbs
        try:
            self._timed(message, payload)
        except BusinessRuleError as exc:
            report_business(exc)
            pending.error = None
            self._settle(tp, pending, "business_failure")
        except Exception as exc:
            self._failed(message, payload, exc, attempt=pending.attempt + 1)
        else:
            self._settle(tp, pending, "ok")

    def _settle(self, tp: tuple[str, int], pending: _Pending, outcome: str) -> None:
        message = pending.message
        self.consumer.store_offsets(offsets=[TopicPartition(tp[0], tp[1], message.offset() + 1)])
        self._stored_since_commit = True
        self._last_seen[tp] = (message.offset(), message.timestamp()[1] / 1000.0)
        del self._pending[tp]
        self.consumer.resume([TopicPartition(tp[0], tp[1])])
        if outcome == "error":
            self._counts.add(tp[0], "dead_lettered")
        else:
            self._counts.add(tp[0], outcome)

    # -- callbacks ------------------------------------------------------------------------------

    def _drop_pending(self, partitions: list[TopicPartition]) -> None:
        for partition in partitions:
            # Not stored, so the partition's next owner gets the message again: nothing is lost.
            self._pending.pop((partition.topic, partition.partition), None)
            self._last_seen.pop((partition.topic, partition.partition), None)

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        logger.info("assigned %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._drop_pending(partitions)
        self._commit(asynchronous=False)
        logger.info("revoked %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # Lost partitions already belong to someone else: committing for them could overwrite theirs.
        self._drop_pending(partitions)
        logger.warning("lost %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))

    def _on_commit(self, err: Any, partitions: list[TopicPartition]) -> None:
        if err is None:
            self._metrics.kafka_commits.labels(self._service, "ok").inc()
        elif err.code() == KafkaError._NO_OFFSET:
            self._metrics.kafka_commits.labels(self._service, "nothing_stored").inc()
        else:
            self._metrics.kafka_commits.labels(self._service, "error").inc()
            logger.warning("offset commit failed: %s", err)

    def _on_error(self, err: Any) -> None:
        """Transport trouble (brokers down, restarts): logged and counted, never one Sentry event each."""
        self._metrics.kafka_broker_errors.labels(self._service, err.name()).inc()
        if err.fatal():
            self._fatal = FatalConsumerError(f"fatal Kafka client error: {err}")
        logger.warning("Kafka: %s", err)

    def _message_error(self, message: Message) -> None:
        err = message.error()
        if err.code() == KafkaError._PARTITION_EOF:
            return
        self._on_error(err)

    # -- periodic work --------------------------------------------------------------------------

    def _commit(self, *, asynchronous: bool) -> None:
        if not self._stored_since_commit:
            return
        try:
            self.consumer.commit(asynchronous=asynchronous)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if error is not None and error.code() == KafkaError._NO_OFFSET:
                self._metrics.kafka_commits.labels(self._service, "nothing_stored").inc()
            else:
                self._metrics.kafka_commits.labels(self._service, "error").inc()
                logger.warning("offset commit failed: %s", exc)
                return
        else:
            if not asynchronous:
                self._metrics.kafka_commits.labels(self._service, "ok").inc()
        self._stored_since_commit = False

    def _tick(self, now: float) -> None:
        if now - self._last_commit >= self.settings.commit_interval_s:
            self._commit(asynchronous=True)
            self._last_commit = now
        self._flush_counts()
        if now - self._last_lag >= self.settings.lag_interval_s:
            self._update_lag()
            self._last_lag = now

    def _flush_counts(self) -> None:
        # Drained in place: the loop holds a reference to this same object.
        drained = dict(self._counts.by_topic)
        self._counts.by_topic.clear()
        messages = self._metrics.kafka_messages
        slo_outcome = {
            "ok": Outcome.OK,
            "business_failure": Outcome.BUSINESS_FAILURE,
            "dead_lettered": Outcome.ERROR,
        }
        for (topic, outcome), n in drained.items():
            messages.labels(self._service, topic, outcome).inc(n)
            if outcome in slo_outcome:
                slo.record(slo_outcome[outcome], n)

    def _update_lag(self) -> None:
        """Lag from cached watermarks (no broker round trip): messages, and the age of the oldest unconsumed one
        estimated by the newest consumed one's timestamp (an upper bound)."""
        try:
            assignment = self.consumer.assignment()
        except KafkaException:
            return
        now = time.time()
        for partition in assignment:
            tp = (partition.topic, partition.partition)
            try:
                _low, high = self.consumer.get_watermark_offsets(partition, cached=True)
            except KafkaException:
                continue
            if high < 0:
                continue
            seen = self._last_seen.get(tp)
            position = seen[0] + 1 if seen else None
            if position is None:
                committed = self.consumer.committed([partition], timeout=1.0)[0].offset
                position = committed if committed >= 0 else _low
            lag = max(0, high - position)
            labels = (self._service, tp[0], str(tp[1]))
            self._metrics.kafka_consumer_lag_messages.labels(*labels).set(lag)
            age = max(0.0, now - seen[1]) if (lag and seen) else 0.0
            self._metrics.kafka_consumer_lag_seconds.labels(*labels).set(age)

    # -- HTTP -----------------------------------------------------------------------------------

    def healthy(self) -> bool:
        """The poll loop came round recently."""
        return not self._stopping.is_set() and time.monotonic() - self.last_poll < self.settings.stall_after_s

    def _serve_metrics(self) -> Any:
        if self.settings.metrics_port is None:
            return None
        from prometheus_client import REGISTRY, generate_latest
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        from observability._http import Server, respond

        registry = self._metrics.registry or REGISTRY

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            path = environ.get("PATH_INFO", "/")
            if path == "/metrics":
                return respond(start_response, "200 OK", CONTENT_TYPE_LATEST, generate_latest(registry))
            if path == "/healthz":
                ok = self.healthy()
                body = b"ok\n" if ok else f"poll loop stalled for {time.monotonic() - self.last_poll:.0f} s\n".encode()
                return respond(start_response, "200 OK" if ok else "503 Service Unavailable", "text/plain", body)
            return respond(start_response, "404 Not Found", "text/plain", b"try /metrics or /healthz\n")

        return Server(
            app, host=self.settings.metrics_host, port=self.settings.metrics_port, name="obskit-consumer-http"
        )

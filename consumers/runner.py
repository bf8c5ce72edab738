"""An at-least-once Kafka consumer runner on confluent-kafka, wired onto ``observability``.

Per message, in order: decode -> context from headers (lazily) -> handler -> retry / dead-letter ->
offset store. What runs per message is decided once, at construction; the success path does no Sentry
scope or transaction work, and counts (metrics, SLO outcomes) are batched and flushed once a second.

An offset is stored only after its message was handled, or after the dead-letter topic's delivery
report for it arrived. A failing message pauses its partition while it waits for its retry, so the
poll loop keeps running (no max.poll.interval.ms breach) and other partitions keep flowing.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
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
from observability.propagation import SENTRY_TRACE, TRACEPARENT, extract, sampled_flag
from observability.scopes import changed, hold, release
from observability.sentry import send_transaction, transport_has_room
from observability.slo import Outcome

__all__ = ["FatalConsumerError", "Runner"]

logger = logging.getLogger(__name__)

Handler = Callable[..., Any]

# What became of a message: its offset may be stored (_OK, _BUSINESS), may be stored once the DLQ
# confirms it (_PARKED), or it waits for a retry on its paused partition (_RETRY).
_OK, _BUSINESS, _PARKED, _RETRY = 0, 1, 2, 3
# How long a revocation waits for dead-letter deliveries in flight (within the rebalance timeout).
_REVOKE_FLUSH_S = 5.0


class FatalConsumerError(obs.ObskitError):
    """The consumer cannot go on without losing a message (the dead-letter topic is unwritable)."""


@dataclass
class _Retry:
    """A failed message waiting for its next attempt; its partition is paused meanwhile (order is kept)."""

    message: Message
    payload: Any
    attempt: int
    due: float
    breadcrumbs: Any = None


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


def _parent_sampled(headers: list[tuple[str, bytes | None]]) -> bool | None:
    """The producer's sampling decision, read as ``extract`` reads the trace the unit continues: Sentry's
    header when valid, else W3C's; header names in any case, the last of a name counting."""
    sentry_trace = traceparent = None
    for key, value in headers:
        n = len(key)  # only a name of the right length is lowered
        if n == _SENTRY_TRACE_LEN and (key == SENTRY_TRACE or key.lower() == SENTRY_TRACE):
            sentry_trace = value
        elif n == _TRACEPARENT_LEN and (key == TRACEPARENT or key.lower() == TRACEPARENT):
            traceparent = value
    if sentry_trace is None and traceparent is None:
        return None
    return sampled_flag(sentry_trace, traceparent)


_SENTRY_TRACE_LEN = len(SENTRY_TRACE)
_TRACEPARENT_LEN = len(TRACEPARENT)


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
        self._retrying: dict[tuple[str, int], _Retry] = {}
        # Offsets produced to the DLQ and not yet confirmed: nothing at or past them is stored.
        self._parked: dict[tuple[str, int], set[int]] = {}
        # Per partition, the offset after the last message settled (handled or parked).
        self._done: dict[tuple[str, int], int] = {}
        self._released: set[tuple[str, int]] = set()
        self._counts = _Counts()
        self._unit = LazyUnit(self._resolve)
        self._last_seen: dict[tuple[str, int], tuple[int, float]] = {}
        # Assigned partitions nothing was fetched from yet: the first message of each sets its lag's start.
        self._unseen: set[tuple[str, int]] = set()
        # Partitions assigned, per subscribed topic: 0 from the start, so a missing topic shows as one.
        self._assigned: dict[str, set[int]] = {topic: set() for topic in settings.topics}
        self._count_assigned(settings.topics)
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
        self._last_lag = 0.0

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
        try:
            self._loop()
        finally:
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
        self._store_released()
        # Stored offsets are only ever those of settled messages: safe to commit even after a fatal error.
        self._commit(asynchronous=False)
        self.consumer.close()
        self._flush_counts()
        obs.flush()
        self._stopping.set()

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        consume = self.consumer.consume
        batch_size, timeout = self.settings.batch_size, self.settings.poll_timeout_s
        retrying = self._retrying
        commit_every = self.settings.commit_interval_s
        next_tick = next_commit = 0.0
        while not self._stop_flag and self._fatal is None:
            # With a message waiting for its retry, poll no longer than until it is due.
            batch = consume(batch_size, self._wait_s(timeout) if retrying else timeout)
            now = time.monotonic()
            self.last_poll = now
            if batch:
                self._handle(batch)
            assert self._dlq is not None
            self._dlq.poll()
            if self._released:
                self._store_released()
            if retrying:
                self._service_retries()
            # Its own deadline, not the once-a-second tick: an interval under a second is honoured.
            if now >= next_commit:
                self._commit(asynchronous=True)
                next_commit = now + commit_every
            if now >= next_tick:
                self._tick(now)
                next_tick = now + 1.0

    def _handle(self, batch: list[Message]) -> None:
        """One fetched batch, message by message (the hot loop, kept flat on purpose)."""
        process = self._process
        retrying = self._retrying
        # One topic (the usual case): key the batch's bookkeeping by partition alone.
        single = self.settings.topics[0] if len(self.settings.topics) == 1 else None
        mask = self._duration_mask
        last: dict[Any, Message] = {}
        handled: dict[Any, int] = {}
        n = 0
        if self._unseen:
            self._note_first(batch)
        # The unit is current while the batch's messages are handled, not in between: what the runner
        # and librdkafka log about partitions and commits belongs to no message. What a handler sets on
        # the SDK's scope (sentry_sdk.set_user, set_tag) is its message's: the next starts from before.
        token, held = activate(self._unit), hold()
        try:
            for message in batch:
                if self._stop_flag:
                    break  # the message in hand is finished; the rest is fetched again later
                if message.error() is not None:
                    # Not about the unit's last message: logged outside it (rare: re-activated after).
                    deactivate(token)
                    try:
                        self._message_error(message)
                    finally:
                        token = activate(self._unit)
                    continue
                key = message.partition() if single else (message.topic(), message.partition())
                if retrying and ((single, key) if single else key) in retrying:
                    continue  # fetched before the partition was paused: fetched again after the retry
                n += 1
                outcome = process(message, not n & mask)
                if changed(held):
                    release(held)
                    held = hold()
                if outcome != _RETRY:
                    last[key] = message
                    if outcome == _OK:
                        handled[key] = handled.get(key, 0) + 1
        finally:
            release(held)
            deactivate(token)
        if last:
            self._advance([((single, k) if single else k, m) for k, m in last.items()])
            for k, count in handled.items():
                self._counts.add(single or k[0], "ok", count)

    def _note_first(self, batch: list[Message]) -> None:
        """The first message fetched from a partition nothing was settled from: until one is, the lag
        counts from it and its age is this message's (a handler stuck on it shows as growing lag)."""
        for message in batch:
            if message.error() is None:
                tp = (message.topic(), message.partition())
                if tp in self._unseen:
                    self._unseen.discard(tp)
                    self._last_seen.setdefault(tp, (message.offset() - 1, message.timestamp()[1] / 1000.0))

    def _wait_s(self, longest: float) -> float:
        """How long the next poll may block while a message waits: until the earliest retry is due."""
        now = time.monotonic()
        return min([longest, *(max(0.0, r.due - now) for r in self._retrying.values())])

    def _advance(self, settled: list[tuple[tuple[str, int], Message]]) -> None:
        """Record that these messages (the last settled one per partition) are done; store what may be stored."""
        offsets = []
        for tp, message in settled:
            self._done[tp] = message.offset() + 1
            self._last_seen[tp] = (message.offset(), message.timestamp()[1] / 1000.0)
            offsets.append(self._storable(tp))
        self._store(offsets)

    def _storable(self, tp: tuple[str, int]) -> TopicPartition:
        """The offset to store: after the last settled message, but never past one the DLQ has not confirmed."""
        parked = self._parked.get(tp)
        offset = min(self._done[tp], *parked) if parked else self._done[tp]
        return TopicPartition(tp[0], tp[1], offset)

    def _store(self, offsets: list[TopicPartition]) -> None:
        if offsets:
            self.consumer.store_offsets(offsets=offsets)
            self._stored_since_commit = True

    def _store_released(self) -> None:
        """Partitions whose parked messages the DLQ confirmed: their stored offset may move on."""
        released, self._released = self._released, set()
        self._store([self._storable(tp) for tp in released if tp in self._done])

    def _process(self, message: Message, timed: bool) -> int:
        """One message: decode, handle, and say what may happen to its offset."""
        unit = self._unit
        unit.rebind(message)
        value = message.value()
        try:
            # A tombstone (a null value: a deletion on a compacted topic) is handed on as None.
            payload = None if value is None else self._loads(value)
        except Exception as exc:  # not only ValueError: deeply nested JSON raises RecursionError
            return self._poison(message, exc)
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
            return self._business(message, exc)
        except Exception as exc:
            return self._failed(message, payload, exc, attempt=1)
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
            result = self._business(message, exc)
        except Exception as exc:
            status = "internal_error"
            result = self._failed(message, payload, exc, attempt=1)
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

    def _business(self, message: Message, exc: BusinessRuleError) -> int:
        report_business(exc)
        if self.settings.business_failure == "dlq":
            self._park(message, reason="business_failure", error=exc, attempts=1, event_id=None)
            return _PARKED
        self._counts.add(message.topic(), "business_failure")
        return _BUSINESS

    def _failed(self, message: Message, payload: Any, exc: BaseException, *, attempt: int) -> int:
        """An attempt failed: retry later with backoff on the paused partition, or report once and park."""
        obs.add_breadcrumb("retry", f"attempt {attempt} failed: {type(exc).__name__}", "warning", attempt=attempt)
        tp = (message.topic(), message.partition())
        if attempt < self.settings.attempts:
            backoff = min(self.settings.backoff_max_s, self.settings.backoff_s * 2 ** (attempt - 1))
            retry = self._retrying.get(tp)
            if retry is None:
                retry = self._retrying[tp] = _Retry(message, payload, attempt, 0.0, self._unit.breadcrumbs)
                self.consumer.pause([TopicPartition(tp[0], tp[1])])
                # What was fetched after this message is dropped and fetched again once it is settled.
                self.consumer.seek(TopicPartition(tp[0], tp[1], message.offset() + 1))
            retry.attempt = attempt
            retry.due = time.monotonic() + backoff
            self._counts.add(tp[0], "retried")
            slo.record(Outcome.RETRIED)
            return _RETRY
        event_id = obs.capture_exception(exc, attempts=attempt)
        self._park(message, reason="handler_error", error=exc, attempts=attempt, event_id=event_id)
        return _PARKED

    def _poison(self, message: Message, exc: BaseException) -> int:
        """An undecodable message goes to the DLQ at once, with the reason."""
        event_id = obs.capture_exception(exc, reason="undecodable")
        self._park(message, reason="undecodable", error=exc, attempts=0, event_id=event_id)
        return _PARKED

    def _park(
        self, message: Message, *, reason: str, error: BaseException, attempts: int, event_id: str | None
    ) -> None:
        """Produce to the DLQ; the offset may pass this message only once the delivery report says so."""
        tp = (message.topic(), message.partition())
        offset = message.offset()
        self._parked.setdefault(tp, set()).add(offset)
        assert self._dlq is not None

        def delivered(problem: str | None) -> None:
            if problem is not None:
                self._fatal = FatalConsumerError(
                    f"cannot write to the dead-letter topic {self.settings.dlq_for(tp[0])!r} ({problem}): "
                    f"stopping without committing {tp[0]}[{tp[1]}]@{offset}; fix the DLQ and restart"
                )
                return
            parked = self._parked.get(tp)
            if parked is not None and offset in parked:
                parked.discard(offset)
                self._released.add(tp)
            self._counts.add(tp[0], "dead_lettered" if reason != "business_failure" else "business_failure")

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

    def _service_retries(self) -> None:
        """Run the retries that are due; a settled message resumes its partition."""
        now = time.monotonic()
        for tp, retry in list(self._retrying.items()):
            if retry.due > now or self._fatal is not None or self._stop_flag:
                continue
            message, payload = retry.message, retry.payload
            unit = self._unit
            unit.rebind(message, payload)
            unit.carry_breadcrumbs(retry.breadcrumbs)
            outcome = _OK
            token, held = activate(unit), hold()
            try:
                self._timed(message, payload)
            except BusinessRuleError as exc:
                outcome = self._business(message, exc)
            except Exception as exc:
                outcome = self._failed(message, payload, exc, attempt=retry.attempt + 1)
            finally:
                release(held)
                deactivate(token)
            if outcome == _RETRY:
                continue
            if outcome == _OK:
                self._counts.add(tp[0], "ok")
            del self._retrying[tp]
            self._advance([(tp, message)])
            self.consumer.resume([TopicPartition(tp[0], tp[1])])

    # -- callbacks ------------------------------------------------------------------------------

    def _drop_pending(self, partitions: list[TopicPartition]) -> None:
        paused = []
        for partition in partitions:
            # Not stored, so the partition's next owner gets these messages again: nothing is lost.
            tp = (partition.topic, partition.partition)
            if self._retrying.pop(tp, None) is not None:
                paused.append(TopicPartition(*tp))
            for state in (self._parked, self._done, self._last_seen):
                state.pop(tp, None)  # type: ignore[attr-defined]
            self._released.discard(tp)
            self._unseen.discard(tp)
            self._assigned.setdefault(tp[0], set()).discard(tp[1])
            for gauge in (self._metrics.kafka_consumer_lag_messages, self._metrics.kafka_consumer_lag_seconds):
                with contextlib.suppress(KeyError):  # no lag measured for it yet
                    gauge.remove(self._service, tp[0], str(tp[1]))
        self._count_assigned({p.topic for p in partitions})
        if paused:
            # librdkafka keeps an application's pause across a rebalance: were the partition handed
            # back to this consumer, nothing would resume it.
            try:
                self.consumer.resume(paused)
            except KafkaException as exc:
                logger.warning("could not resume %s: %s", paused, exc)

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._unseen.update((p.topic, p.partition) for p in partitions if (p.topic, p.partition) not in self._last_seen)
        for p in partitions:
            self._assigned.setdefault(p.topic, set()).add(p.partition)
        self._count_assigned({p.topic for p in partitions})
        logger.info("assigned %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # Parked messages whose dead-letter delivery is in flight: confirmed now, their offsets go with
        # this commit instead of the next owner reading (and parking) them again.
        if self._parked and self._dlq is not None:
            self._dlq.flush(_REVOKE_FLUSH_S)
            if self._released:
                self._store_released()
        self._drop_pending(partitions)
        self._commit(asynchronous=False)
        logger.info("revoked %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))

    def _count_assigned(self, topics: Iterable[str]) -> None:
        gauge = self._metrics.kafka_consumer_assigned_partitions
        for topic in topics:
            gauge.labels(self._service, topic).set(len(self._assigned.get(topic, ())))

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
            # librdkafka gives the commit one partition's error; each refused partition carries its own.
            refused = ", ".join(f"{p.topic}[{p.partition}]: {p.error}" for p in partitions or () if p.error)
            logger.warning("offset commit failed: %s", refused or err)
            # The stored offsets are still there: the next commit (or the one at shutdown) sends them again.
            self._stored_since_commit = True

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
        estimated by the newest consumed one's timestamp (an upper bound), or before any was settled by the
        first one fetched (its own age)."""
        try:
            assignment = self.consumer.assignment()
        except KafkaException:
            return
        now = time.time()
        unseen = [p for p in assignment if (p.topic, p.partition) not in self._last_seen]
        committed: dict[tuple[str, int], int] = {}
        if unseen:
            # Partitions nothing was consumed from yet: where the group stands, asked once for all.
            try:
                committed = {(p.topic, p.partition): p.offset for p in self.consumer.committed(unseen, timeout=1.0)}
            except KafkaException as exc:  # the coordinator unreachable: those partitions wait a round
                logger.debug("committed offsets unavailable for the lag: %s", exc)
        for partition in assignment:
            tp = (partition.topic, partition.partition)
            try:
                low, high = self.consumer.get_watermark_offsets(partition, cached=True)
            except KafkaException:
                continue
            if high < 0:
                continue
            seen = self._last_seen.get(tp)
            if seen:
                position = seen[0] + 1
            elif tp in committed:
                position = committed[tp] if committed[tp] >= 0 else low
            else:
                continue
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

"""Celery wired onto ``observability`` through Celery's signals, in the style of sentry-python's integrations.

:func:`setup` connects the handlers once per process. What they do:

- publish (``before_task_publish``: ``delay``, ``apply_async``, chains, chords, beat): the current
  unit's trace and user headers, a publish timestamp, on a retry the attempt that failed, and for a
  beat schedule the Sentry Crons monitor;
- ``task_prerun`` / ``task_postrun``: bind the unit (user, trace, tags ``task``, ``task_id``, ``queue``,
  ``retries``), a transaction only when the sampler says so, queue wait, runtime, the outcome as a
  metric and an SLO count;
- ``task_failure``: one Sentry event for a task that failed after its retries (a retry, ``Ignore``
  or ``Reject`` is no error; a :class:`~observability.BusinessRuleError` is a business failure);
- revoked, unknown and malformed messages, internal errors: counted;
- worker, child and beat processes: ``observability.init`` where each starts (children after the
  fork), flushed where each stops, ``/metrics`` and the backlog in the main process.

The kit's own failures are caught, logged and counted in ``obskit_internal_errors_total``; a task's
exception is never touched (Celery handles it after the signals, unchanged).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from celery import Task as _CeleryTask
from celery import signals, states
from celery.exceptions import Ignore, Reject, Retry, TimeLimitExceeded
from celery.worker.request import Request as _CeleryRequest

import observability
from observability import slo
from observability.business import BusinessRuleError, report
from observability.context import LazyUnit, Unit, activate, bind, current, deactivate
from observability.metrics import incrementer, observer
from observability.propagation import (
    BAGGAGE,
    SENTRY_TRACE,
    TRACEPARENT,
    USER_ID,
    bind_incoming,
    extract,
    outgoing_headers,
    sampled_flag,
)
from observability.scopes import Held, hold, release
from observability.slo import Outcome
from workers import _crons

__all__ = [
    "DEFAULT_TRACES_MAX_PER_S",
    "PUBLISHED_AT_HEADER",
    "RETRY_HISTORY_HEADER",
    "Request",
    "Task",
    "adopt_request",
    "configure",
    "setup",
]

logger = logging.getLogger(__name__)

# Milliseconds since the epoch, an integer: the message is JSON-encoded again on every delivery (the
# Redis transport keeps a copy while unacknowledged), and a float costs a dtoa each time.
PUBLISHED_AT_HEADER = "obskit-published-ms"
RETRY_HISTORY_HEADER = "obskit-retries"
_MAX_RETRY_HISTORY = 10
_TRACE_HEADERS = (SENTRY_TRACE, BAGGAGE, TRACEPARENT, USER_ID)
_CONTROL_FLOW = (Retry, Ignore, Reject)

# Celery loggers whose records the kit replaces with its own events and breadcrumbs: the per-task
# "received" / "succeeded" / "raised unexpected" lines (the last would be a second event per failure).
# (celery.worker.request's duplicates are dropped one by one: see _drop_celerys_duplicates.)
_NOISY_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.redirected")

_STATE_OUTCOME = {
    states.SUCCESS: "ok",
    states.FAILURE: "error",
    states.RETRY: "retried",
    states.REJECTED: "rejected",
    states.IGNORED: "ignored",
}
_SLO_OUTCOMES = {o.value: o for o in Outcome}
_TRANSACTION_STATUS = {
    "ok": "ok",
    "error": "internal_error",
    "business_failure": "failed_precondition",
    "retried": "aborted",
    "rejected": "aborted",
    "ignored": "cancelled",
    "interrupted": "aborted",
}
_FILTERED = "[Filtered]"
DEFAULT_TRACES_MAX_PER_S = 10.0
_EMPTY: Mapping[str, Any] = {}


class _TaskStats:
    """One task's metric children (their hot-path ``inc``/``observe``) and sampler name, looked up once per
    attempt instead of per metric."""

    __slots__ = ("name", "outcomes", "rate_name", "runtime")

    def __init__(self, name: str) -> None:
        self.name = name
        self.rate_name = f"task:{name}"
        # Made at the end of the task's first attempt here: a name only counted (a main process failing
        # a lost child, "unregistered") gets no empty histogram.
        self.runtime: Callable[[float], None] | None = None
        self.outcomes: dict[str, Callable[[float], None]] = {}


class _Run:
    """One task attempt in this process, from prerun to postrun."""

    __slots__ = (
        "attempt",
        "binder",
        "kit",
        "monitor",
        "queue",
        "scope",
        "started",
        "stats",
        "task_id",
        "token",
        "traced_since",
        "unit",
        "wait_s",
    )

    def __init__(  # noqa: PLR0917  (built once a task, positionally)
        self,
        kit: _Kit,
        stats: _TaskStats,
        unit: Unit,
        task_id: str,
        queue: str,
        token: Any = None,
        scope: Held | None = None,
        binder: bind | None = None,
    ) -> None:
        self.kit = kit
        self.stats = stats
        self.task_id = task_id
        # How the unit is undone at postrun: its token and the SDK scope it held (the usual case), or the
        # bind it refines.
        self.binder = binder
        self.token = token
        self.scope = scope
        self.unit = unit
        self.queue = queue
        # Wall-clock start of a traced attempt (its transaction is built at postrun); None: not traced.
        self.traced_since: float | None = None
        self.wait_s: float | None = None
        self.monitor: Mapping[str, Any] | None = None
        self.started = 0.0
        self.attempt: contextvars.Token[_Run | _Skipped | None] | None = None  # what postrun resets


class _Skipped:
    """An attempt whose prerun failed: its postrun pops it and finishes nothing (not the attempt it
    may run inside)."""

    __slots__ = ("attempt", "task_id")

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.attempt: contextvars.Token[_Run | _Skipped | None] | None = None


# The attempt running in this context: set at prerun, reset at postrun. Prerun and postrun are sent
# by the same call of Celery's tracer, so they share a context; an eager task run inside a task (an
# eager retry runs under the same id) nests, and postrun pops the innermost. Every prerun that found
# the kit pushes one record, so a postrun never pops the attempt it runs inside.
_attempt: contextvars.ContextVar[_Run | _Skipped | None] = contextvars.ContextVar("obskit_celery_attempt", default=None)


def _stack_top(stack: Any) -> Any:
    """The top of Celery's default request stack (``celery.utils.threads._LocalStack``), read from its
    storage: ``task.request`` reaches it through a Python-level ``__getattr__`` and three frames, about
    5k CPU instructions a task. The same object: the stack's storage, keyed by the stack's own ident
    function (the thread, or the greenlet under gevent and eventlet). ``LookupError`` when the stack of
    this thread is empty."""
    local = stack._local
    return local.__storage__[local.__ident_func__()]["stack"][-1]


def _probe_stack_type() -> type | None:
    """Celery's default request stack type when :func:`_stack_top` reads it as Celery does, else None (a
    Celery whose stack is built otherwise: every request is then read through ``task.request``)."""
    try:
        from celery.utils.threads import _LocalStack

        stack, item = _LocalStack(), object()
        stack.push(item)
        try:
            return _LocalStack if _stack_top(stack) is item and stack.top is item else None
        finally:
            stack.pop()
    except Exception:
        return None


_FAST_STACK = _probe_stack_type()


def _request_of(task: Any) -> Any:
    """``task.request``: the attempt's request, or Celery's default one outside any."""
    stack = task.request_stack
    if type(stack) is _FAST_STACK:
        try:
            request = _stack_top(stack)
        except LookupError:
            pass
        else:
            if request is not None:  # (Celery pushes none; task.request stands in its default for one)
                return request
    return task.request


def _running(task_id: object) -> bool:
    """Whether this context runs an attempt of the task: its outcome is counted at its postrun."""
    run = _attempt.get()
    return run is not None and run.task_id == task_id


class _Kit:
    """What the handlers need from the kit's runtime, with metric children cached per label value."""

    def __init__(self, rt: observability.sentry.Runtime, traces_max_per_s: float) -> None:
        self.rt = rt
        self.service = rt.settings.service
        self.sentry = rt.sentry_enabled
        self.decide = rt.sampler.decide
        self.budget = observability.sentry.TokenBucket(traces_max_per_s)  # traced tasks a second
        metrics = rt.metrics
        self._tasks = metrics.celery_tasks
        self._runtime = metrics.celery_task_runtime_seconds
        self._wait = metrics.celery_queue_wait_seconds
        self._skew = metrics.celery_queue_wait_clock_skew
        self._internal = metrics.internal_errors
        self._stats: dict[str, _TaskStats] = {}
        self._wait_children: dict[str, Callable[[float], None]] = {}

    # -- metric children, created once per label value ---------------------------------------

    def stats(self, task: str) -> _TaskStats:
        stats = self._stats.get(task)
        if stats is None:
            stats = self._stats[task] = _TaskStats(task)
        return stats

    def count(self, task: str, outcome: str) -> None:
        self.count_for(self.stats(task), outcome)

    def count_for(self, stats: _TaskStats, outcome: str) -> None:
        inc = stats.outcomes.get(outcome)
        if inc is None:
            inc = stats.outcomes[outcome] = incrementer(self._tasks.labels(self.service, stats.name, outcome))
        inc(1)

    def observe_wait(self, queue: str, now: float, published_ms: object, eta: object) -> float | None:
        ref = float(published_ms) / 1000.0  # type: ignore[arg-type]
        if eta:
            ref = max(ref, _eta_timestamp(eta))
        wait = now - ref
        if wait < 0:
            self._skew.labels(self.service, queue).inc()
            return None
        observe = self._wait_children.get(queue)
        if observe is None:
            observe = self._wait_children[queue] = observer(self._wait.labels(self.service, queue))
        observe(wait)
        return wait

    def internal_error(self, component: str) -> None:
        # A warning, not an error: a bug here must not turn every task into a Sentry event. It is counted.
        logger.warning("obskit Celery instrumentation failed in %s; the task goes on", component, exc_info=True)
        with contextlib.suppress(Exception):  # counting must never raise into Celery
            self._internal.labels(self.service, component).inc()

    # -- a task attempt ------------------------------------------------------------------------

    def start(self, task: Any, task_id: str) -> None:
        request = _request_of(task)
        # The message's own headers (Celery's are attributes of the request; the rest are here).
        get = (request.headers or _EMPTY).get
        name = task.name
        stats = self._stats.get(name) or self.stats(name)
        queue = (request.delivery_info or _EMPTY).get("routing_key") or "unknown"
        # The core's decision (rates, an unsampled parent honoured), then this process's budget: a task
        # over budget is not traced, and neither is what it sends on (the trace is cut at its head).
        # (The incoming decision is read as ``extract`` reads it; the rest of the trace is read lazily.)
        sampled = self.decide(stats.rate_name, sampled_flag(get(SENTRY_TRACE), get(TRACEPARENT))) and self.budget.take()
        if current() is None:
            # The usual case: the unit's user, trace and tags are read from the request only when
            # something asks (an event, a log record, a message sent on, a transaction).
            unit = LazyUnit(_resolve_request, request, (name, task_id, queue))
            unit.sampled = sampled
            run = _Run(self, stats, unit, task_id, queue, activate(unit), hold())
        else:
            # A task run inside another unit (eagerly, ``apply()``): it refines that unit, as a bind does.
            binder = bind_incoming(
                extract(_trace_carrier(get)),
                sampled=sampled,
                task=name,
                task_id=task_id,
                queue=queue,
                retries=request.retries,
            )
            run = _Run(self, stats, binder.__enter__(), task_id, queue, binder=binder)
        run.attempt = _attempt.set(run)
        try:
            history = get(RETRY_HISTORY_HEADER)
            if history:
                _retry_breadcrumbs(run.unit, history)
            now = time.time()
            # A sampled attempt collects its spans on the unit; its transaction is built at postrun,
            # directly (tens of microseconds), not through the SDK's span machinery (hundreds).
            if sampled and self.sentry and observability.sentry.transport_has_room():
                run.unit.spans = []
                run.traced_since = now
            monitor = get(_crons.MONITOR_HEADER)
            if monitor and self.sentry:
                run.monitor = monitor
                _check_in(monitor, "in_progress")
            published = get(PUBLISHED_AT_HEADER)
            if published is not None:
                run.wait_s = self.observe_wait(queue, now, published, request.eta)
        finally:
            run.started = time.perf_counter()

    def finish(self, task: Any, run: _Run, state: str | None, retval: Any) -> None:
        elapsed = time.perf_counter() - run.started
        stats = run.stats
        runtime = stats.runtime
        if runtime is None:
            runtime = stats.runtime = observer(self._runtime.labels(self.service, stats.name))
        runtime(elapsed)
        if state is None and not isinstance(sys.exc_info()[1], Exception):
            # Interrupted (SystemExit: a child terminated at its hard time limit, a task calling
            # sys.exit): the main process decides what becomes of the task (a failure, a redelivery) and
            # counts it. (None with an Exception: Celery's own step before the task failed; counted.)
            outcome = "interrupted"
        else:
            outcome = _STATE_OUTCOME.get(state, "error")  # type: ignore[arg-type]
            if outcome == "error" and isinstance(retval, BusinessRuleError):
                outcome = "business_failure"
            self.count_for(stats, outcome)
            slo_outcome = _SLO_OUTCOMES.get(outcome)
            if slo_outcome is not None:
                slo.record(slo_outcome)
        if run.monitor is not None and outcome not in ("retried", "interrupted"):
            status = "error" if outcome in ("error", "rejected") else "ok"
            _check_in(run.monitor, status)
        if run.traced_since is not None:
            self._send_transaction(task, run, outcome)

    def _send_transaction(self, task: Any, run: _Run, outcome: str) -> None:
        unit = run.unit
        data: dict[str, Any] = {
            "messaging.system": "celery",
            "messaging.destination.name": run.queue,
            "messaging.message.id": unit.tags.get("task_id"),
            "messaging.message.retry.count": unit.tags.get("retries"),
        }
        if run.wait_s is not None:
            data["messaging.message.receive.latency"] = round(run.wait_s * 1000)
        name = task.name
        observability.sentry.send_transaction(
            unit,
            name=name,
            op="queue.task.celery",
            start=run.traced_since or 0.0,
            end=time.time(),
            status=_TRANSACTION_STATUS.get(outcome, "unknown"),
            data=data,
            sample_rate=self.rt.sampler.rate_for(run.stats.rate_name),
        )

    def report_failure(self, task: Any, exc: BaseException, args: Any, kwargs: Any) -> None:
        """The task failed for good: a business failure, an expected error, or one Sentry event."""
        if isinstance(exc, BusinessRuleError):
            report(exc)
            return
        throws = getattr(task, "throws", None)
        if throws and isinstance(exc, throws):
            return  # Celery's "expected" errors: logged at INFO by Celery, counted, no event
        context: dict[str, Any] = {"task": getattr(task, "name", None), "args": _FILTERED, "kwargs": _FILTERED}
        try:
            context["args"], context["kwargs"] = _scrub(args), _scrub(kwargs)
        except Exception:
            self.internal_error("celery_scrub")  # the event goes without the arguments
        observability.capture_exception(exc, context={"celery_task": context})


_kit: _Kit | None = None
_traces_max_per_s = DEFAULT_TRACES_MAX_PER_S


def configure(*, traces_max_per_s: float = DEFAULT_TRACES_MAX_PER_S) -> None:
    """Set how many tasks per second this process may trace (the worker passes its settings)."""
    global _traces_max_per_s, _kit  # noqa: PLW0603
    _traces_max_per_s = traces_max_per_s
    _kit = None


def _active() -> _Kit | None:
    """The handlers' view of the kit, rebuilt when init() ran again; None before init()."""
    global _kit  # noqa: PLW0603
    rt = observability.sentry._runtime  # observability.runtime() without raising: on every task
    if rt is None:
        return None
    kit = _kit
    if kit is None or kit.rt is not rt:
        kit = _kit = _Kit(rt, _traces_max_per_s)
    return kit


def _eta_timestamp(eta: object) -> float:
    if isinstance(eta, datetime):
        return eta.timestamp()
    return datetime.fromisoformat(str(eta)).timestamp()


_scrubber: Callable[[Any], Any] | None = None


def _scrub(value: Any) -> Any:
    """Task arguments as they may leave the process: through ``observability.scrub.scrub_value`` when
    the kit has it, else not at all."""
    global _scrubber  # noqa: PLW0603
    if _scrubber is None:
        try:
            from observability.scrub import scrub_value  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            _scrubber = lambda _value: _FILTERED  # noqa: E731
        else:
            _scrubber = scrub_value
    return _scrubber(value)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "retry requested"
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 200 else text[:199] + "…"


def _retry_breadcrumbs(unit: Unit, history: Any) -> None:
    """One breadcrumb per earlier attempt that failed and was retried."""
    for item in history if isinstance(history, list) else ():
        if isinstance(item, dict):
            unit.add_breadcrumb(
                {
                    "type": "default",
                    "category": "retry",
                    "level": "warning",
                    "message": f"attempt {item.get('attempt')} failed: {item.get('error')}",
                    "timestamp": item.get("at"),
                }
            )


def _check_in(monitor: Mapping[str, Any], status: str) -> None:
    """A Sentry Crons check-in for a scheduled task's monitor; ``ok`` and ``error`` carry the duration
    since beat sent the task."""
    from sentry_sdk.crons import capture_checkin

    in_progress = status == "in_progress"
    capture_checkin(
        monitor_slug=monitor.get("slug"),
        check_in_id=monitor.get("check_in_id"),
        status=status,
        duration=None if in_progress else time.time() - float(monitor.get("started") or time.time()),
        monitor_config=monitor.get("config") if in_progress else None,
    )


def _count_internal(component: str) -> None:
    kit = _active()
    if kit is not None:
        kit.internal_error(component)
    else:
        # A warning, not an error: a bug here must not turn every task into a Sentry event. It is counted.
        logger.warning("obskit Celery instrumentation failed in %s; the task goes on", component, exc_info=True)


# -- publish ---------------------------------------------------------------------------------------


def _before_task_publish(sender: Any = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is None:
        return
    try:
        unit = current()
        if unit is None and headers.get("celery_beat_task"):
            # Each run of a schedule is a trace of its own (beat has no unit of work to continue).
            with bind() as fresh:
                headers.update(outgoing_headers(fresh))
            scheduled = _crons.current_entry()
            if scheduled is not None:
                headers[_crons.MONITOR_HEADER] = _crons.monitor_header(*scheduled)
        else:
            headers.update(outgoing_headers(unit))
            if unit is not None and _is_retry_of(unit, headers):
                _add_retry(headers, unit)
        headers[PUBLISHED_AT_HEADER] = int(time.time() * 1000)
    except Exception:
        _count_internal("celery_publish")


def _is_retry_of(unit: Unit, headers: Mapping[str, Any]) -> bool:
    """A task publishing its own id with a higher retry count is retrying itself."""
    tags = unit.tags
    return tags.get("task_id") == headers.get("id") and int(headers.get("retries") or 0) > int(tags.get("retries") or 0)


def _add_retry(headers: dict[str, Any], unit: Unit) -> None:
    history = headers.get(RETRY_HISTORY_HEADER)
    history = list(history)[-(_MAX_RETRY_HISTORY - 1) :] if isinstance(history, list) else []
    attempt = int(unit.tags.get("retries") or 0) + 1
    history.append({"attempt": attempt, "error": _describe(sys.exc_info()[1]), "at": time.time()})
    headers[RETRY_HISTORY_HEADER] = history


# -- a task attempt --------------------------------------------------------------------------------


def _task_prerun(sender: Any = None, task_id: str | None = None, task: Any = None, **_: Any) -> None:
    kit = _active()
    if kit is None or task is None:
        return
    outer = _attempt.get()
    try:
        kit.start(task, task_id or "")
    except Exception:
        kit.internal_error("celery_prerun")
        if _attempt.get() is outer:  # failed before its record was set: postrun pops this one
            skipped = _Skipped(task_id or "")
            skipped.attempt = _attempt.set(skipped)


def _task_postrun(
    sender: Any = None,
    task_id: str | None = None,
    task: Any = None,
    retval: Any = None,
    state: str | None = None,
    **_: Any,
) -> None:
    run = _attempt.get()
    if run is None or task is None or run.task_id != (task_id or ""):
        return  # no attempt started here (the kit off at its prerun)
    _attempt.reset(run.attempt)
    if isinstance(run, _Skipped):
        return
    try:
        run.kit.finish(task, run, state, retval)
    except Exception:
        run.kit.internal_error("celery_postrun")
    finally:
        if run.scope is not None:
            release(run.scope)
        if run.token is not None:
            deactivate(run.token)
        else:
            run.binder.__exit__(None, None, None)


def _task_failure(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    args: Any = None,
    kwargs: Any = None,
    **_: Any,
) -> None:
    kit = _active()
    if kit is None or exception is None or isinstance(exception, _CONTROL_FLOW):
        return
    try:
        if _running(task_id):
            # In the attempt's unit (its outcome is counted at postrun), with the task's own exception.
            kit.report_failure(sender, _original(exception), args, kwargs)
            return
        # No attempt ran here: the main process failing a task whose child was lost or hit the hard
        # time limit. Celery puts the request on the task's stack for this signal, and sends it twice
        # for a hard time limit (from the pool's error callback and from its timeout handler): once here.
        if task_id and not _failed_in_main.add(task_id):
            return
        name = getattr(sender, "name", None) or "unknown"
        request = getattr(sender, "request", None)
        unit = current()
        bound = unit is not None and unit.tags.get("task_id") == task_id  # by Request, from the message
        with contextlib.nullcontext() if bound else _bind_request(request, name, task_id):
            kit.report_failure(sender, exception, args, kwargs)
        kit.count(name, "error")
        slo.record(Outcome.ERROR)
        handled = _handling.get()
        if handled is not None and handled.id == task_id:
            setattr(handled, _FAILED, True)  # a scheduled task's monitor hears it once Celery is done
    except Exception:
        kit.internal_error("celery_failure")


def _original(exception: BaseException) -> BaseException:
    """The exception the task raised: Celery hands the signal a pickleable stand-in (a base class built
    from its args, or a wrapper) when the real one does not pickle; the real one is being handled."""
    handled = sys.exc_info()[1]
    if handled is None or handled is exception:
        return exception
    from celery.utils.serialization import UnpickleableExceptionWrapper

    if isinstance(exception, UnpickleableExceptionWrapper) or (
        type(handled) is not type(exception) and isinstance(handled, type(exception))
    ):
        return handled
    return exception


def _trace_carrier(get: Callable[[str], Any]) -> dict[str, Any]:
    """The trace and user headers among a message's headers (``get`` is the headers' ``get``)."""
    return {key: value for key in _TRACE_HEADERS if (value := get(key)) is not None}


def _resolve_request(unit: LazyUnit, request: Any, extra: tuple[str, str, str]) -> None:
    """A task's unit, from its request: the trace and user its message carried, the task's tags."""
    name, task_id, queue = extra
    incoming = extract(_trace_carrier((request.headers or _EMPTY).get))
    unit.user_id = incoming.user_id
    unit.set_trace(incoming.trace_id)
    unit.parent_span_id = incoming.parent_span_id
    unit.baggage = incoming.baggage
    unit.tags = {"task": name, "task_id": task_id, "queue": queue, "retries": request.retries}


def _bind_request(request: Any, name: str, task_id: str | None) -> bind:
    headers = getattr(request, "headers", None) or _EMPTY
    incoming = extract(_trace_carrier(headers.get))
    queue = (getattr(request, "delivery_info", None) or _EMPTY).get("routing_key") or "unknown"
    retries = getattr(request, "retries", 0)
    return bind_incoming(incoming, task=name, task_id=task_id or "", queue=queue, retries=retries)


class Request(_CeleryRequest):  # type: ignore[misc]  # celery ships no type hints
    """Celery's worker-side request, with the task's unit bound while the main process handles what
    happened to it outside a child: a hard time limit, a child that died under the task (Celery then
    requeues it and sends no ``task_failure``: the kit reports the loss itself, once, with the task's
    tags). Celery's own log lines about these two are not made events a second time. Used by
    :class:`Task`, the base of the kit app's tasks."""

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> Any:
        if return_ok:  # the child ran the task and reported it: nothing here is logged or captured
            return super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
        exception = _unwrap(exc_info)
        token = _handling.set(self)
        try:
            with _bind_message(self):
                result = super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
                if getattr(self, _REQUEUED, False):
                    _report_lost_child(self, exception)
                self._check_in_failure()
                return result
        finally:
            _handling.reset(token)
            if not isinstance(exception, TimeLimitExceeded):  # else on_timeout follows, for the same task
                _failed_in_main.discard(self.id)

    def on_timeout(self, soft: bool, timeout: float) -> Any:
        token = _handling.set(self)
        try:
            with _bind_message(self):
                result = super().on_timeout(soft, timeout)
                self._check_in_failure()
                return result
        finally:
            _handling.reset(token)
            if not soft:
                _failed_in_main.discard(self.id)

    def _check_in_failure(self) -> None:
        """A scheduled task this process failed (a hard time limit, a lost child) whose message is gone
        for good: its monitor's check-in is closed as an error. A message that comes back (requeued, or
        left unacknowledged) keeps the check-in open for the run that follows."""
        if not getattr(self, _FAILED, False) or getattr(self, _CHECKED_IN, False):
            return
        monitor = self.request_dict.get(_crons.MONITOR_HEADER)
        kit = _active()
        if monitor and kit is not None and kit.sentry and self.acknowledged and not getattr(self, _REQUEUED, False):
            setattr(self, _CHECKED_IN, True)
            try:
                _check_in(monitor, "error")
            except Exception:
                kit.internal_error("celery_check_in")

    def reject(self, requeue: bool = False) -> Any:
        setattr(self, _REQUEUED, requeue)
        return super().reject(requeue=requeue)


class Task(_CeleryTask):  # type: ignore[misc]  # celery ships no type hints
    """The base of the kit app's tasks (``task_cls``); for an app of your own: ``Celery(...,
    task_cls="workers.instrumentation:Task")`` or ``Request = "workers.instrumentation:Request"``
    (a worker adopts the kit's request by itself where the app keeps Celery's: :func:`adopt_request`)."""

    Request = "workers.instrumentation:Request"


_CELERYS_REQUEST = "celery.worker.request:Request"


def adopt_request(app: Any) -> bool:
    """Give an app's tasks the kit's :class:`Request` where they have Celery's own (the main process
    then reports a lost child or a hard time limit with the task's tags); called at worker start,
    before Celery builds its per-task strategies. Each task is looked at: one on a base class of its
    own (``@app.task(base=...)``) inherits its request from there, not from ``app.Task``. Tasks with a
    request class of their own keep it, with a warning. Returns whether every task uses the kit's
    request now."""
    if _is_celerys_request(app.Task.Request):
        app.Task.Request = Request  # tasks registered later inherit it
    own = []
    for task in app.tasks.values():
        if _is_celerys_request(task.Request):
            type(task).Request = Request
        elif not _is_kits_request(task.Request):
            own.append(f"{task.name} ({task.Request!r})")
    if own:
        logger.warning(
            "obskit: tasks of Celery app %r use a request class of their own: a lost child or a hard time "
            "limit is reported without their tags (base it on workers.instrumentation.Request): %s",
            app.main,
            ", ".join(sorted(own)),
        )
        return False
    logger.info("obskit: the tasks of Celery app %r use workers.instrumentation.Request", app.main)
    return True


def _is_celerys_request(request_cls: object) -> bool:
    return request_cls == _CELERYS_REQUEST or request_cls is _CeleryRequest


def _is_kits_request(request_cls: object) -> bool:
    from celery.utils.imports import symbol_by_name

    try:
        return issubclass(symbol_by_name(request_cls), Request)
    except Exception:  # a name that does not import: Celery will say so itself
        return False


_REQUEUED = "_obskit_requeued"
_FAILED = "_obskit_failed"  # task_failure was sent for it in this (main) process
_CHECKED_IN = "_obskit_checked_in"
# The kit's Request whose failure or time limit the main process handles; None otherwise.
_handling: contextvars.ContextVar[Request | None] = contextvars.ContextVar("obskit_celery_handling", default=None)
# What celery.worker.request logs there that the kit reports itself (the task_failure event, the lost
# child's event). Its other lines (a failed ack, a failed retry) stay events.
_REPORTED_BY_KIT = frozenset({"Task handler raised error: %r", "Hard time limit (%ss) exceeded for %s[%s]"})


def _drop_celerys_duplicates(event: Any, hint: Any) -> Any:
    record = (hint or {}).get("log_record")
    if (
        record is not None
        and record.name == "celery.worker.request"
        and record.msg in _REPORTED_BY_KIT
        and _handling.get() is not None
    ):
        return None
    return event


def _unwrap(exc_info: Any) -> BaseException | None:
    exception = getattr(exc_info, "exception", None)
    return getattr(exception, "exc", exception)  # billiard's ExceptionWithTraceback wrapper


class _TaskIds:
    """Task ids the main process failed, each remembered for ``ttl_s`` at most (bounded)."""

    def __init__(self, size: int = 1024, ttl_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ids: dict[str, float] = {}
        self._size = size
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()

    def add(self, task_id: str) -> bool:
        """False when the id is already there."""
        now = self._clock()
        with self._lock:
            seen = self._ids.get(task_id)
            if seen is not None and now - seen < self._ttl_s:
                return False
            self._ids.pop(task_id, None)
            self._ids[task_id] = now
            if len(self._ids) > self._size:
                del self._ids[next(iter(self._ids))]
            return True

    def discard(self, task_id: str) -> None:
        with self._lock:
            self._ids.pop(task_id, None)

    def __contains__(self, task_id: object) -> bool:
        seen = self._ids.get(task_id)  # type: ignore[call-overload]
        return seen is not None and self._clock() - seen < self._ttl_s


# Celery sends task_failure twice for a hard time limit, from the pool's error callback and then from
# its timeout handler, in one call: the second is dropped. The kit's Request forgets the id when that
# call is over (a later failure of the same id is reported); for other tasks it expires.
_failed_in_main = _TaskIds()


def _report_lost_child(request: Any, exception: BaseException | None) -> None:
    """A child died under the task (or the task raised SystemExit) and Celery requeued it: one event, in
    the task's unit, and the attempt counted as retried (it runs again)."""
    from billiard.exceptions import WorkerLostError

    if not isinstance(exception, (WorkerLostError, SystemExit, KeyboardInterrupt)):
        return
    if getattr(request, "_already_revoked", False) or getattr(request, "_already_cancelled", False):
        return  # not every Celery 5.x has both
    kit = _active()
    if kit is None:
        return
    try:
        observability.capture_exception(exception, context={"celery_task": {"task": request.task_name}})
        kit.count(request.task_name, "retried")
        slo.record(Outcome.RETRIED)
    except Exception:
        kit.internal_error("celery_lost_child")


def _bind_message(request: Any) -> contextlib.AbstractContextManager[Any]:
    """The task's unit from its message (the main process has no unit of its own for it)."""
    try:
        headers = request.request_dict
        incoming = extract(_trace_carrier(headers.get))
        queue = (request.delivery_info or _EMPTY).get("routing_key") or "unknown"
        return bind_incoming(
            incoming, task=request.task_name, task_id=request.id, queue=queue, retries=headers.get("retries") or 0
        )
    except Exception:
        _count_internal("celery_request")
        return contextlib.nullcontext()


def _task_retry(sender: Any = None, request: Any = None, **_: Any) -> None:
    # An attempt that retries is counted at its postrun. Without one, this is the main process
    # cancelling a task on a lost broker connection: it runs again later.
    if request is None or _running(getattr(request, "id", None)):
        return
    kit = _active()
    if kit is None:
        return
    try:
        kit.count(getattr(sender, "name", None) or "unknown", "retried")
        slo.record(Outcome.RETRIED)
    except Exception:
        kit.internal_error("celery_retry")


def _task_revoked(sender: Any = None, **_: Any) -> None:
    _count_outcome(getattr(sender, "name", None) or "unknown", "revoked", Outcome.REVOKED, "celery_revoked")


def _task_unknown(sender: Any = None, **_: Any) -> None:
    # The name comes from the message, not the code: it never becomes a label.
    _count_outcome("unregistered", "rejected", Outcome.REJECTED, "celery_unknown")


def _task_rejected(sender: Any = None, **_: Any) -> None:
    _count_outcome("invalid", "rejected", Outcome.REJECTED, "celery_rejected")


def _count_outcome(task: str, outcome: str, slo_outcome: Outcome, component: str) -> None:
    kit = _active()
    if kit is None:
        return
    try:
        kit.count(task, outcome)
        slo.record(slo_outcome)
    except Exception:
        kit.internal_error(component)


def _task_internal_error(
    sender: Any = None,
    task_id: str | None = None,
    *,
    request: Any = None,
    exception: BaseException | None = None,
    args: Any = None,
    kwargs: Any = None,
    **_: Any,
) -> None:
    kit = _active()
    if kit is None or exception is None:
        return
    try:
        name = getattr(sender, "name", None) or "unknown"
        kit.count(name, "internal_error")
        if current() is not None:
            kit.report_failure(sender, exception, args, kwargs)
            return
        data = request if isinstance(request, Mapping) else {}
        incoming = extract(_trace_carrier(data.get))
        with bind_incoming(incoming, task=name, task_id=task_id or ""):
            kit.report_failure(sender, exception, args, kwargs)
    except Exception:
        kit.internal_error("celery_internal_error")


# -- processes -------------------------------------------------------------------------------------


def _worker_init(sender: Any = None, **_: Any) -> None:
    from workers import _process

    _process.worker_init(sender)


def _worker_process_init(**_: Any) -> None:
    from workers import _process

    _process.child_init()


def _worker_process_shutdown(**_: Any) -> None:
    from workers import _process

    _process.child_shutdown()


def _worker_ready(sender: Any = None, **_: Any) -> None:
    from workers import _process

    _process.worker_ready(sender)


def _worker_shutdown(sender: Any = None, **_: Any) -> None:
    from workers import _process

    _process.worker_shutdown(sender)


def _beat_init(sender: Any = None, **_: Any) -> None:
    from workers import _process

    _process.beat_init(sender)


_HANDLERS: tuple[tuple[Any, Callable[..., None]], ...] = (
    (signals.before_task_publish, _before_task_publish),
    (signals.task_prerun, _task_prerun),
    (signals.task_postrun, _task_postrun),
    (signals.task_failure, _task_failure),
    (signals.task_retry, _task_retry),
    (signals.task_revoked, _task_revoked),
    (signals.task_unknown, _task_unknown),
    (signals.task_rejected, _task_rejected),
    (signals.task_internal_error, _task_internal_error),
    (signals.worker_init, _worker_init),
    (signals.worker_process_init, _worker_process_init),
    (signals.worker_process_shutdown, _worker_process_shutdown),
    (signals.worker_ready, _worker_ready),
    (signals.worker_shutdown, _worker_shutdown),
    (signals.beat_init, _beat_init),
)

_installed = False


def setup() -> None:
    """Connect the kit's handlers to Celery's signals; idempotent. The Celery app of ``workers`` calls it
    when it is configured; call it yourself for an app of your own."""
    global _installed  # noqa: PLW0603
    if _installed:
        return
    from sentry_sdk.integrations.logging import ignore_logger
    from sentry_sdk.scope import add_global_event_processor

    for name in _NOISY_LOGGERS:
        ignore_logger(name)
    add_global_event_processor(_drop_celerys_duplicates)
    for signal, handler in _HANDLERS:
        signal.connect(handler, weak=False, dispatch_uid=f"obskit.{handler.__name__}")
    _installed = True
    logger.debug("obskit Celery instrumentation connected (pid %d)", os.getpid())

"""Per-unit-of-work context (a Celery task, a Kafka message) on contextvars.

Binding is cheap on purpose: it stores plain values in one small object. Nothing is copied into a
Sentry scope until an event is actually sent (see ``observability.sentry``), so a unit that succeeds
costs a contextvar set and reset (an outermost ``bind()`` also forks the SDK's isolation scope: see
``observability.scopes``).
"""

from __future__ import annotations

import logging
import random
import re
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any

from observability.scopes import Isolated
from observability.tags import check_key

__all__ = ["LazyUnit", "Unit", "activate", "bind", "current", "deactivate", "new_span_id", "new_trace_id"]

MAX_BREADCRUMBS = 100

logger = logging.getLogger(__name__)

_getrandbits = random.getrandbits
# W3C's and Sentry's form; all zeros is W3C's "no trace".
_is_trace_id = re.compile(r"(?!0{32})[0-9a-f]{32}").fullmatch
_warned_bad_trace_id = False


def new_trace_id() -> str:
    """A random 128-bit trace id, as 32 lowercase hex digits (Sentry's and W3C's format)."""
    return f"{_getrandbits(128):032x}"


def new_span_id() -> str:
    """A random 64-bit span id, as 16 lowercase hex digits."""
    return f"{_getrandbits(64):016x}"


def _checked_trace(
    trace_id: object, parent_span_id: str | None, baggage: str | None
) -> tuple[str | None, str | None, str | None]:
    """A ``bind(trace_id=...)`` not already in 32 lowercase hex digits: the same id lowercased, an empty
    one as none given; anything else starts a new trace, without the other's parent span and sampling
    context, logged once per process. Sentry and the next service would drop the trace of such an id,
    and bind() runs in the work's own path, where raising would fail the work over its monitoring."""
    global _warned_bad_trace_id  # noqa: PLW0603
    text = trace_id.strip().lower() if isinstance(trace_id, str) else None
    if text == "":
        return None, parent_span_id, baggage
    if text is not None and _is_trace_id(text):
        return text, parent_span_id, baggage
    if not _warned_bad_trace_id:
        _warned_bad_trace_id = True
        logger.warning(
            "bind(trace_id=%r) is not a trace id (32 hex digits): the unit starts a new trace; "
            "further ones are not logged",
            trace_id,
        )
    return new_trace_id(), None, None


class Unit:
    """One unit of work's identity: user, trace, tags and its own breadcrumbs."""

    __slots__ = (
        "_span_id",
        "_trace_id",
        "baggage",
        "breadcrumbs",
        "parent_span_id",
        "sampled",
        "spans",
        "tags",
        "user_fields",
        "user_id",
    )

    def __init__(  # noqa: PLR0917  (built only by bind(), positionally, on the hot path)
        self,
        parent: Unit | None,
        user_id: str | None,
        trace_id: str | None,
        parent_span_id: str | None,
        sampled: bool | None,
        baggage: str | None,
        tags: dict[str, Any],
    ) -> None:
        # Email / username, set only through set_user() when the app opted in to sending PII.
        self.user_fields: dict[str, str] | None = None if parent is None else parent.user_fields
        # Child spans of a sampled unit whose transaction the kit builds itself (send_transaction).
        self.spans: list[dict[str, Any]] | None = None if parent is None else parent.spans
        if parent is None:
            self.user_id = user_id
            self._trace_id = trace_id
            self._span_id: str | None = None
            self.parent_span_id = parent_span_id
            self.sampled = sampled
            self.baggage = baggage
            self.tags = tags
            self.breadcrumbs: deque[dict[str, Any]] | None = None
            return
        # A nested bind refines the unit it runs in: same breadcrumbs, trace unless given, merged tags.
        self.user_id = user_id if user_id is not None else parent.user_id
        if trace_id is None:
            self._trace_id = parent.trace_id
            self._span_id = parent.span_id
            self.parent_span_id = parent.parent_span_id
            self.sampled = parent.sampled if sampled is None else sampled
            self.baggage = parent.baggage
        else:
            self._trace_id = trace_id
            self._span_id = None
            self.parent_span_id = parent_span_id
            self.sampled = sampled
            self.baggage = baggage
        self.tags = {**parent.tags, **tags} if tags else parent.tags
        if parent.breadcrumbs is None:
            parent.breadcrumbs = deque(maxlen=MAX_BREADCRUMBS)
        self.breadcrumbs = parent.breadcrumbs

    @property
    def trace_id(self) -> str:
        """The unit's trace id: the incoming one, else a new one made on first use."""
        if self._trace_id is None:
            self._trace_id = new_trace_id()
        return self._trace_id

    @property
    def span_id(self) -> str:
        """The unit's own span id: the parent of whatever it sends on."""
        if self._span_id is None:
            self._span_id = new_span_id()
        return self._span_id

    @span_id.setter
    def span_id(self, value: str) -> None:
        self._span_id = value

    def add_breadcrumb(self, crumb: dict[str, Any]) -> None:
        if self.breadcrumbs is None:
            self.breadcrumbs = deque(maxlen=MAX_BREADCRUMBS)
        self.breadcrumbs.append(crumb)


# Unit's own slots behind LazyUnit's lazy properties, written directly where nothing is to resolve.
_USER_ID, _PARENT_SPAN_ID, _BAGGAGE, _TAGS = (
    Unit.__dict__[name] for name in ("user_id", "parent_span_id", "baggage", "tags")
)


def _lazy_slot(name: str) -> Any:
    """A property over Unit's slot ``name`` that first resolves the unit's source, if still pending."""
    slot = Unit.__dict__[name]

    def get(self: LazyUnit) -> Any:
        if self._pending:
            self._resolve_now()
        return slot.__get__(self, LazyUnit)

    def set_(self: LazyUnit, value: Any) -> None:
        slot.__set__(self, value)

    return property(get, set_)


class LazyUnit(Unit):
    """A unit whose user, trace and tags come from its source (a Kafka message, a task request), worked
    out only when something asks: an event, a log record, an outgoing message. Re-pointed at each new
    source with :meth:`rebind`, which costs three attribute writes while nothing was read or recorded
    for the previous source: the success path of a consumer pays that and nothing more.

    ``resolve(unit, source, extra)`` sets ``user_id``, the trace (``set_trace``), ``parent_span_id``,
    ``baggage`` and ``tags``.
    """

    __slots__ = ("_dirty", "_extra", "_pending", "_resolver", "_source")

    user_id = _lazy_slot("user_id")
    parent_span_id = _lazy_slot("parent_span_id")
    baggage = _lazy_slot("baggage")
    tags = _lazy_slot("tags")

    def __init__(self, resolve: Callable[[LazyUnit, Any, Any], None], source: Any = None, extra: Any = None) -> None:
        """A unit resolved by ``resolve``; given a ``source`` (not None), pointed at it as :meth:`rebind`
        would, else pointed at nothing until the first :meth:`rebind`."""
        # Unit's fields, as Unit(None, None, ...) sets them; the lazy ones straight into their slots, not
        # through the properties (one is made per Celery task).
        _USER_ID.__set__(self, None)
        _PARENT_SPAN_ID.__set__(self, None)
        _BAGGAGE.__set__(self, None)
        _TAGS.__set__(self, {})
        self.user_fields = None
        self.spans = None
        self._trace_id = None
        self._span_id = None
        self.sampled = None
        self.breadcrumbs = None
        self._resolver = resolve
        self._source: Any = source
        self._extra: Any = extra
        self._pending = source is not None
        self._dirty = False

    def rebind(self, source: Any, extra: Any = None, *, keep_breadcrumbs: bool = False) -> None:
        """Point the unit at a new unit of work; nothing is read from it yet."""
        self._source = source
        self._extra = extra
        self._pending = True
        if self._dirty:
            self._dirty = False
            self._trace_id = None
            self._span_id = None
            self.sampled = None
            self.user_fields = None
            self.spans = None
            if not keep_breadcrumbs:
                self.breadcrumbs = None

    def carry_breadcrumbs(self, breadcrumbs: Any) -> None:
        """Go on with the breadcrumbs of an earlier attempt of the same unit of work (a retry); the
        next rebind clears them."""
        self._dirty = True
        self.breadcrumbs = breadcrumbs

    def mark_sampled(self) -> None:
        """This unit is traced: its transaction collects child spans (see ``observability.span``)."""
        self._dirty = True
        self.sampled = True
        self.spans = []

    def _resolve_now(self) -> None:
        self._pending = False
        self._dirty = True
        self._resolver(self, self._source, self._extra)

    def set_trace(self, trace_id: str | None) -> None:
        self._trace_id = trace_id

    def add_breadcrumb(self, crumb: dict[str, Any]) -> None:
        self._dirty = True
        super().add_breadcrumb(crumb)

    @property
    def trace_id(self) -> str:
        if self._pending:
            self._resolve_now()
        return Unit.trace_id.fget(self)  # type: ignore[attr-defined,no-any-return]

    @property
    def span_id(self) -> str:
        # Resolved first, like the trace: a span id made for one source must not survive a rebind.
        if self._pending:
            self._resolve_now()
        return Unit.span_id.fget(self)  # type: ignore[attr-defined,no-any-return]

    @span_id.setter
    def span_id(self, value: str) -> None:
        self._span_id = value


_current: ContextVar[Unit | None] = ContextVar("obskit_unit", default=None)

# Tag names used by the kit itself, checked once here instead of on every bind.
_KNOWN_KEYS = frozenset(
    {"task", "task_id", "queue", "retries", "topic", "partition", "offset", "consumer_group", "rule", "component"}
)


def current() -> Unit | None:
    """The unit of work the caller runs in, or None outside any."""
    return _current.get()


class bind:
    """Bind a unit of work's user, trace and tags for the duration of a ``with`` block.

    Outside any unit it starts a new one (fresh breadcrumbs, the given trace or a new one); inside
    one it refines it. On exit everything is undone: nothing leaks into the next unit, neither what
    the block set on the SDK's scope (an outermost bind runs in an isolation scope of its own). Safe in
    threads and asyncio tasks (contextvars). A ``trace_id`` in capitals is lowercased; one that is not
    32 hex digits starts a new trace, with a warning logged once per process.
    """

    __slots__ = ("_scope", "_token", "_unit")

    def __init__(
        self,
        user_id: object = None,
        trace_id: str | None = None,
        *,
        parent_span_id: str | None = None,
        sampled: bool | None = None,
        baggage: str | None = None,
        **tags: Any,
    ) -> None:
        for key in tags.keys() - _KNOWN_KEYS:
            check_key(key)
        if trace_id is not None and not (type(trace_id) is str and _is_trace_id(trace_id)):
            trace_id, parent_span_id, baggage = _checked_trace(trace_id, parent_span_id, baggage)
        self._scope: Isolated | None = None
        self._unit = Unit(
            _current.get(),
            None if user_id is None else str(user_id),
            trace_id,
            parent_span_id,
            sampled,
            baggage,
            tags,
        )
        self._token: Token[Unit | None] | None = None

    def __enter__(self) -> Unit:
        if self._token is not None:
            raise RuntimeError("this bind() is in use already: make another for a block inside it")
        if _current.get() is None:
            # Outermost: the SDK's isolation scope of its own (a nested bind shares its unit's).
            self._scope = Isolated()
            self._scope.__enter__()
        self._token = _current.set(self._unit)
        return self._unit

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None
            if self._scope is not None:
                scope, self._scope = self._scope, None
                scope.__exit__(exc_type, exc, tb)


#: Make a unit current until ``deactivate(token)``: for a runner that reuses one :class:`LazyUnit` for a
#: whole batch instead of a ``with bind(...)`` per message; returns the token. Both are the context
#: variable's own methods (positional arguments only): C calls, run for every task and message.
activate: Callable[[Unit], Token[Unit | None]] = _current.set
deactivate: Callable[[Token[Unit | None]], None] = _current.reset

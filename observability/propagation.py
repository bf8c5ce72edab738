"""Trace and user propagation through message headers.

Writes and reads Sentry's ``sentry-trace`` and ``baggage`` and W3C ``traceparent`` (sentry-sdk 2.x
neither reads nor writes it), plus a user id header. Carriers are a dict (Celery headers) or a list
of ``(key, bytes)`` tuples (Kafka headers).
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from observability.context import Unit, bind, current

__all__ = [
    "BAGGAGE",
    "SENTRY_TRACE",
    "TRACEPARENT",
    "USER_ID",
    "Incoming",
    "bind_incoming",
    "extract",
    "inject",
    "outgoing_headers",
    "sampled_flag",
]

SENTRY_TRACE = "sentry-trace"
BAGGAGE = "baggage"
TRACEPARENT = "traceparent"
USER_ID = "x-user-id"

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")
# The form every Sentry SDK writes: trace, span, an optional sampled flag. Matched in one step; anything
# else takes the general parse, which reads this form the same way.
_SENTRY_TRACE = re.compile(r"[0-9a-f]{32}-[0-9a-f]{16}(?:-[01])?")
_ZERO_TRACE = "0" * 32
# The same form as bytes: what may appear in it, its dash and its two flags.
_TRACE_CHARS = b"0123456789abcdef-"
_DASH, _ONE = ord("-"), ord("1")
_FLAG_BYTES = (ord("0"), _ONE)
_ZERO_SPAN = "0" * 16

KafkaHeaders = list[tuple[str, bytes]]
Carrier = MutableMapping[str, Any] | KafkaHeaders

# Sentry baggage items that stay the same for every message a process sends; set by init().
_baggage_static = ""


def set_static_baggage(*, public_key: str | None, release: str | None, environment: str | None) -> None:
    """Remember the process-wide part of the baggage header (called by init)."""
    global _baggage_static  # noqa: PLW0603
    items = [
        f"sentry-{k}={v}"
        for k, v in (("public_key", public_key), ("release", release), ("environment", environment))
        if v
    ]
    _baggage_static = ",".join(item.replace(" ", "%20") for item in items)


@dataclass(frozen=True, slots=True)
class Incoming:
    """What a message carried: the trace to continue and the user it was for."""

    trace_id: str | None = None
    parent_span_id: str | None = None
    parent_sampled: bool | None = None
    baggage: str | None = None
    user_id: str | None = None


def _parse_sentry_trace(value: str) -> tuple[str, str, bool | None] | None:
    if _SENTRY_TRACE.fullmatch(value):
        return value[:32], value[33:49], None if len(value) == 49 else value[50] == "1"
    parts = value.strip().split("-")
    if len(parts) < 2 or not _HEX32.match(parts[0]) or not _HEX16.match(parts[1]):
        return None
    sampled = None
    if len(parts) > 2:
        sampled = True if parts[2] == "1" else False if parts[2] == "0" else None
    return parts[0], parts[1], sampled


def _parse_traceparent(value: str) -> tuple[str, str, bool | None] | None:
    parts = value.strip().split("-")
    if len(parts) < 4 or parts[0] == "ff" or len(parts[0]) != 2:
        return None
    trace_id, span_id, flags = parts[1], parts[2], parts[3]
    if not _HEX32.match(trace_id) or trace_id == _ZERO_TRACE or not _HEX16.match(span_id) or span_id == _ZERO_SPAN:
        return None
    try:
        sampled_flag = int(flags, 16) & 1
    except ValueError:
        return None
    # Flag 0 means "the caller did not record", not "never sample": leave the decision to us.
    return trace_id, span_id, True if sampled_flag else None


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            return None
    return str(value)


def extract(carrier: Carrier | None) -> Incoming:
    """Read trace and user headers; unknown or malformed headers are ignored (a new trace starts)."""
    if not carrier:
        return Incoming()
    sentry_trace = baggage = traceparent = user_id = None
    items = carrier.items() if isinstance(carrier, MutableMapping) else carrier
    for key, value in items:
        lowered = key.lower() if isinstance(key, str) else key
        if lowered == SENTRY_TRACE:
            sentry_trace = _text(value)
        elif lowered == BAGGAGE:
            baggage = _text(value)
        elif lowered == TRACEPARENT:
            traceparent = _text(value)
        elif lowered == USER_ID:
            user_id = _text(value)
    parsed = _parse_trace(sentry_trace, traceparent)
    if parsed is None:
        return Incoming(user_id=user_id or None)
    trace_id, span_id, sampled = parsed
    return Incoming(trace_id, span_id, sampled, baggage, user_id or None)


def _parse_trace(sentry_trace: str | None, traceparent: str | None) -> tuple[str, str, bool | None] | None:
    """Sentry's header when it is valid, else W3C's."""
    return (_parse_sentry_trace(sentry_trace) if sentry_trace else None) or (
        _parse_traceparent(traceparent) if traceparent else None
    )


def sampled_flag(sentry_trace: object, traceparent: object) -> bool | None:
    """The incoming trace's sampling decision alone, as :func:`extract` reads it from these two headers
    (text, or bytes as Kafka carries them)."""
    if type(sentry_trace) is bytes:  # Kafka's: the usual header checked without decoding it
        n = len(sentry_trace)
        if (
            (n == 51 or n == 49)  # noqa: PLR1714  (two int compares: cheaper than a tuple lookup)
            and sentry_trace[32] == _DASH
            and not sentry_trace.translate(None, _TRACE_CHARS)  # only hex digits and dashes
            and sentry_trace.count(_DASH) == (1 if n == 49 else 2)
        ):
            if n == 49:
                return None
            if sentry_trace[49] == _DASH and sentry_trace[50] in _FLAG_BYTES:
                return sentry_trace[50] == _ONE
        sentry_trace = _text(sentry_trace)
    elif type(sentry_trace) is not str:
        sentry_trace = _text(sentry_trace)
    if sentry_trace is not None and _SENTRY_TRACE.fullmatch(sentry_trace):  # the usual header, in one step
        return None if len(sentry_trace) == 49 else sentry_trace[50] == "1"
    parsed = _parse_trace(sentry_trace, _text(traceparent))
    return None if parsed is None else parsed[2]


def bind_incoming(incoming: Incoming, *, sampled: bool | None = None, **tags: Any) -> bind:
    """Bind a unit of work that continues the incoming trace and user."""
    return bind(
        user_id=incoming.user_id,
        trace_id=incoming.trace_id,
        parent_span_id=incoming.parent_span_id,
        sampled=incoming.parent_sampled if sampled is None else sampled,
        baggage=incoming.baggage,
        **tags,
    )


def outgoing_headers(unit: Unit | None = None) -> dict[str, str]:
    """The headers that carry the current unit's trace and user to the next unit of work."""
    unit = unit if unit is not None else current()
    if unit is None:
        return _sdk_headers()
    trace_id, span_id, sampled = unit.trace_id, unit.span_id, unit.sampled
    suffix = "" if sampled is None else ("-1" if sampled else "-0")
    headers = {
        SENTRY_TRACE: f"{trace_id}-{span_id}{suffix}",
        TRACEPARENT: f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}",
    }
    if unit.baggage and "sentry-trace_id=" in unit.baggage:
        # The trace's dynamic sampling context is frozen by its head: pass it on unchanged.
        headers[BAGGAGE] = unit.baggage
    else:
        sampled_item = "" if sampled is None else f",sentry-sampled={'true' if sampled else 'false'}"
        static = f",{_baggage_static}" if _baggage_static else ""
        headers[BAGGAGE] = f"sentry-trace_id={trace_id}{static}{sampled_item}"
    if unit.user_id is not None:
        headers[USER_ID] = unit.user_id
    return headers


def _sdk_headers() -> dict[str, str]:
    """Outside any unit, continue whatever trace the Sentry SDK has (a web request, a script)."""
    import sentry_sdk

    headers: dict[str, str] = {}
    traceparent = sentry_sdk.get_traceparent()
    if traceparent:
        headers[SENTRY_TRACE] = traceparent
        parsed = _parse_sentry_trace(traceparent)
        if parsed:
            trace_id, span_id, sampled = parsed
            headers[TRACEPARENT] = f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"
    baggage = sentry_sdk.get_baggage()
    if baggage:
        headers[BAGGAGE] = baggage
    return headers


def inject(carrier: Carrier, unit: Unit | None = None) -> Carrier:
    """Add the trace and user headers to ``carrier`` (replacing ours if present) and return it."""
    headers = outgoing_headers(unit)
    if isinstance(carrier, MutableMapping):
        carrier.update(headers)
        return carrier
    if any(key in headers for key, _ in carrier):
        carrier[:] = [(key, value) for key, value in carrier if key not in headers]
    carrier.extend((key, value.encode()) for key, value in headers.items())
    return carrier

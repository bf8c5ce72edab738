import pytest

from observability import bind
from observability.propagation import (
    BAGGAGE,
    SENTRY_TRACE,
    TRACEPARENT,
    USER_ID,
    bind_incoming,
    extract,
    inject,
    sampled_flag,
)

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"


def test_dict_round_trip_keeps_trace_and_user() -> None:
    with bind(user_id=42) as unit:
        carrier = inject({})
    incoming = extract(carrier)
    assert incoming.trace_id == unit.trace_id
    assert incoming.parent_span_id == unit.span_id
    assert incoming.user_id == "42"
    assert carrier[TRACEPARENT] == f"00-{unit.trace_id}-{unit.span_id}-00"
    assert f"sentry-trace_id={unit.trace_id}" in carrier[BAGGAGE]


def test_kafka_header_list_round_trip_and_no_duplicate_headers() -> None:
    headers: list[tuple[str, bytes]] = [("content-type", b"application/json"), (SENTRY_TRACE, b"stale")]
    with bind(user_id="u-1", sampled=True) as unit:
        inject(headers)
    keys = [k for k, _ in headers]
    assert keys.count(SENTRY_TRACE) == 1
    assert ("content-type", b"application/json") in headers
    incoming = extract(headers)
    assert (incoming.trace_id, incoming.user_id, incoming.parent_sampled) == (unit.trace_id, "u-1", True)


def test_w3c_traceparent_alone_is_continued() -> None:
    incoming = extract({TRACEPARENT: f"00-{TRACE}-{SPAN}-01"})
    assert (incoming.trace_id, incoming.parent_span_id, incoming.parent_sampled) == (TRACE, SPAN, True)
    # Flag 0 means "not recorded upstream", which leaves the decision to the consumer.
    assert extract([(TRACEPARENT, f"00-{TRACE}-{SPAN}-00".encode())]).parent_sampled is None


def test_sentry_trace_wins_over_traceparent() -> None:
    other = "1" * 32
    incoming = extract({SENTRY_TRACE: f"{TRACE}-{SPAN}-0", TRACEPARENT: f"00-{other}-{SPAN}-01"})
    assert (incoming.trace_id, incoming.parent_sampled) == (TRACE, False)


@pytest.mark.parametrize(
    "headers",
    [
        {SENTRY_TRACE: "garbage"},
        {TRACEPARENT: f"00-{'0' * 32}-{SPAN}-01"},
        {TRACEPARENT: f"ff-{TRACE}-{SPAN}-01"},
        {TRACEPARENT: f"00-{TRACE}-{'0' * 16}-01"},
        [(SENTRY_TRACE, b"\xff\xfe")],
        {},
    ],
)
def test_malformed_headers_start_a_new_trace(headers: dict[str, str] | list[tuple[str, bytes]]) -> None:
    assert extract(headers).trace_id is None


def test_incoming_baggage_is_passed_on_unchanged() -> None:
    baggage = f"sentry-trace_id={TRACE},sentry-public_key=k,sentry-sample_rate=1,other=x"
    with bind_incoming(extract({SENTRY_TRACE: f"{TRACE}-{SPAN}-1", BAGGAGE: baggage})) as unit:
        out = inject({})
    assert out[BAGGAGE] == baggage
    assert unit.trace_id == TRACE
    assert out[SENTRY_TRACE].startswith(f"{TRACE}-{unit.span_id}-1")


def test_two_units_without_headers_get_two_trace_ids() -> None:
    with bind() as first:
        a = inject({})
    with bind() as second:
        b = inject({})
    assert first.trace_id != second.trace_id
    assert extract(a).trace_id != extract(b).trace_id


def test_header_names_are_case_insensitive() -> None:
    assert extract({"X-User-Id": "7", "Sentry-Trace": f"{TRACE}-{SPAN}"}).user_id == "7"
    assert USER_ID == "x-user-id"


@pytest.mark.parametrize(
    ("sentry_trace", "traceparent", "trace_id", "sampled"),
    [
        (f"{TRACE}-{SPAN}-1", None, TRACE, True),
        (f"{TRACE}-{SPAN}-0", None, TRACE, False),
        (f"{TRACE}-{SPAN}", None, TRACE, None),
        (f"  {TRACE}-{SPAN}-1 ", None, TRACE, True),
        (f"{TRACE}-{SPAN}-1\n", None, TRACE, True),
        (f"{TRACE}-{SPAN}-1-extra", None, TRACE, True),
        (f"{TRACE}-{SPAN}-2", None, TRACE, None),
        (f"{TRACE}-{SPAN}-", None, TRACE, None),
        (f"{TRACE}-{SPAN}-1".encode(), None, TRACE, True),
        (f"{TRACE.upper()}-{SPAN}-1", f"00-{TRACE}-{SPAN}-00", TRACE, None),
        (f"{TRACE}-{SPAN}0-1", None, None, None),
        (None, f"00-{TRACE}-{SPAN}-01", TRACE, True),
        (None, f"00-{TRACE}-{SPAN}-03", TRACE, True),
        (None, f"01-{TRACE}-{SPAN}-01-extra", TRACE, True),
        (None, f"00-{TRACE}-{SPAN}-00", TRACE, None),
        ("not-a-trace-0", f"00-{TRACE}-{SPAN}-01", TRACE, True),
        ("garbage-1", None, None, None),
        (None, None, None, None),
        # Bytes of the usual form's length and shape that are not it.
        (f"{TRACE[:-1]}g-{SPAN}-1".encode(), None, None, None),
        (f"{TRACE}-{SPAN}--".encode(), None, TRACE, None),
        (f"{TRACE}-{SPAN}-a".encode(), None, TRACE, None),
        (f"{TRACE}-{SPAN[:-2]}-1-1".encode(), None, None, None),
        (f"{TRACE}-{SPAN}".encode(), f"00-{TRACE}-{SPAN}-01".encode(), TRACE, None),
        (b"\xff" * 51, f"00-{TRACE}-{SPAN}-01".encode(), TRACE, True),
    ],
)
def test_each_header_form_reads_the_same_in_full_and_for_the_sampling_flag(
    sentry_trace: object, traceparent: object, trace_id: str | None, sampled: bool | None
) -> None:
    carrier = {k: v for k, v in ((SENTRY_TRACE, sentry_trace), (TRACEPARENT, traceparent)) if v is not None}
    incoming = extract(carrier)
    assert (incoming.trace_id, incoming.parent_sampled) == (trace_id, sampled)
    if trace_id is not None:
        assert incoming.parent_span_id == SPAN
    assert sampled_flag(sentry_trace, traceparent) == extract(carrier).parent_sampled
    # As Kafka carries them (bytes, a list, other headers around, names in any case).
    for upper in (False, True):
        headers: list[tuple[str, bytes | None]] = [("x-user-id", b"u-1")]
        for key, value in carrier.items():
            raw = value if isinstance(value, bytes) else str(value).encode()
            headers += [(key.title() if upper else key, raw), ("baggage", b"sentry-sample_rate=0.1")]
        assert extract(headers).parent_sampled == sampled

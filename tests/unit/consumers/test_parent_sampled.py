"""The consumer's quick read of the producer's sampling decision agrees with ``extract`` on Kafka headers."""

import itertools

from consumers.runner import _parent_sampled
from observability.propagation import SENTRY_TRACE, TRACEPARENT, extract

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
SENTRY_TRACES = [
    f"{TRACE}-{SPAN}-1",
    f"{TRACE}-{SPAN}-0",
    f"{TRACE}-{SPAN}",
    f" {TRACE}-{SPAN}-1 ",
    f"{TRACE.upper()}-{SPAN}-1",
    "garbage-1",
    None,  # absent
]
TRACEPARENTS = [f"00-{TRACE}-{SPAN}-01", f"00-{TRACE}-{SPAN}-00", f"00-{TRACE}-{SPAN}-03", "00-garbage-01", None]
CASES = [str.lower, str.title, str.upper]


def headers_of(*pairs: tuple[str, str | None]) -> list[tuple[str, bytes | None]]:
    headers: list[tuple[str, bytes | None]] = [("x-user-id", b"u-1")]
    for key, value in pairs:
        if value is not None:
            headers += [(key, value.encode()), ("baggage", b"sentry-sample_rate=0.1")]
    return headers


def test_every_header_form_and_name_case_reads_as_extract_reads_it() -> None:
    checked = 0
    for st, tp, st_case, tp_case in itertools.product(SENTRY_TRACES, TRACEPARENTS, CASES, CASES):
        sentry_trace, traceparent = (st_case(SENTRY_TRACE), st), (tp_case(TRACEPARENT), tp)
        for pairs in ((sentry_trace, traceparent), (traceparent, sentry_trace)):
            headers = headers_of(*pairs)
            assert _parent_sampled(headers) == extract(headers).parent_sampled, headers
            checked += 1
    assert checked == len(SENTRY_TRACES) * len(TRACEPARENTS) * len(CASES) ** 2 * 2


def test_a_name_sent_twice_in_different_cases_reads_its_last_value_as_extract_does() -> None:
    for name, values in ((SENTRY_TRACE, SENTRY_TRACES), (TRACEPARENT, TRACEPARENTS)):
        for first, second in itertools.permutations([v for v in values if v is not None], 2):
            for first_case, second_case in itertools.product(CASES, CASES):
                headers = headers_of((first_case(name), first), (second_case(name), second))
                expected = extract(headers).parent_sampled
                assert _parent_sampled(headers) == expected, headers
    # The review's cases, stated: the last value of a name counts, whatever its case.
    assert (
        _parent_sampled(headers_of((SENTRY_TRACE, f"{TRACE}-{SPAN}-1"), ("Sentry-Trace", f"{TRACE}-{SPAN}-0"))) is False
    )
    assert (
        _parent_sampled(headers_of((TRACEPARENT, f"00-{TRACE}-{SPAN}-01"), ("Sentry-Trace", f"{TRACE}-{SPAN}-0")))
        is False
    )
    assert _parent_sampled(headers_of((SENTRY_TRACE, "garbage"), ("Traceparent", f"00-{TRACE}-{SPAN}-01"))) is True


def test_no_trace_headers_is_no_decision() -> None:
    assert _parent_sampled([]) is None
    assert _parent_sampled([("x-user-id", b"u-1"), ("sentry-tracf", b"x" * 49)]) is None

"""Scrubbing: secrets never leave, ordinary values survive; by example, and by generated event shapes."""

from __future__ import annotations

import base64
import functools
import json
import logging
import re
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import observability as obs
from observability.scrub import FILTERED, MAX_TEXT, Scrubber, scrub_text, scrub_value, split_patterns
from observability.testing import CapturedEvents, capture_transport

CUSTOM = r"ORD-SECRET-\d{6}"
SCRUBBER = Scrubber(keys=["badge"], patterns=[CUSTOM])


def luhn_check_digit(body: str) -> str:
    total = 0
    for position, char in enumerate(reversed(body)):
        digit = int(char)
        if position % 2 == 0:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return str((10 - total % 10) % 10)


def dumped(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


# -- keys ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "password", "Password", "DB_PASSWORD", "userPassword", "db.password", "password2", "passwords",
        "passwd", "pwd", "secret", "client_secret", "clientSecret", "token", "accessToken", "auth_token",
        "csrftoken", "CSRFToken", "X-CSRF-Token", "api_key", "apiKey", "APIKey", "X-Api-Key", "apikey",
        "access_key", "AWS_ACCESS_KEY", "authorization", "Proxy-Authorization", "cookie", "Cookies",
        "set-cookie", "Set-Cookie", "session", "sessionid", "session_id", "SESSION", "csrf", "card",
        "card_number", "cardNumber", "creditcard", "pan", "PAN", "pan_number", "cvv", "cvv2", "cvc", "iban",
        "credentials", "private_key", "passphrase", "ssn", "cc_number", "ccNumber", "pin", "user_pin", "PIN2",
        "passcode", "otp", "OTP_CODE", "jwt", "X-Amz-Signature", "signature", "sig", "badge",
    ],
)  # fmt: skip
def test_values_under_sensitive_keys_are_replaced_whatever_the_spelling(key: str) -> None:
    assert SCRUBBER.scrub_value({key: "s3cr3t-value"}) == {key: FILTERED}


@pytest.mark.parametrize(
    "key",
    [
        "company", "span", "expand", "pandas", "panel", "spanish", "japan", "discard", "cardinality",
        "scorecard", "keyboard", "public_key", "author", "authority", "trace_id", "span_id", "passenger",
        "compass", "id", "amount", "spinning", "pinned", "footprint", "classname", "design", "signal",
    ],
)  # fmt: skip
def test_look_alike_keys_keep_their_values(key: str) -> None:
    assert SCRUBBER.scrub_value({key: "harmless"}) == {key: "harmless"}


def test_sensitive_key_replaces_whole_subtrees_at_any_depth_but_keeps_empty_values() -> None:
    value = {"a": [{"b": {"session": {"id": "abc", "user": 1}}}], "token": None, "password": "", "secret": True}
    assert SCRUBBER.scrub_value(value) == {
        "a": [{"b": {"session": FILTERED}}],
        "token": None,
        "password": "",
        "secret": True,
    }


def test_name_value_pairs_are_scrubbed_like_keys() -> None:
    headers = [["Authorization", "Token abc"], ("X-Request-Id", "r-1"), ["Cookie", "a=1"]]
    assert SCRUBBER.scrub_value(headers) == [["Authorization", FILTERED], ["X-Request-Id", "r-1"], ["Cookie", FILTERED]]
    # A frame variable's strings and bytes as the SDK sends them: their repr.
    sent = [["'authorization'", "b'Token abc'"], ["b'x-api-key'", "b'k'"], ["'trace'", "b't-1'"]]
    assert SCRUBBER.scrub_value(sent) == [
        ["'authorization'", FILTERED],
        ["b'x-api-key'", FILTERED],
        ["'trace'", "b't-1'"],
    ]


# -- values inside strings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("card 4111111111111111 ok", f"card {FILTERED} ok"),
        ("card 4111 1111 1111 1111 ok", f"card {FILTERED} ok"),
        ("card 4111-1111-1111-1111 ok", f"card {FILTERED} ok"),
        ("mastercard 2223 0031 2200 3222", f"mastercard {FILTERED}"),
        (
            "GET /pay?n=4111111111111111&x=1 {'n': '4111-1111-1111-1111'}",
            f"GET /pay?n={FILTERED}&x=1 {{'n': '{FILTERED}'}}",
        ),
        ("amex 3782 822463 10005", f"amex {FILTERED}"),
        ("order 1234 4111 1111 1111 1111 shipped", f"order 1234 {FILTERED} shipped"),
        ("nineteen 6011000990139424123", "nineteen 6011000990139424123"),  # fails Luhn
        ("Authorization: Bearer abc.def-ghi", f"Authorization: {FILTERED}"),
        ("sent with bearer abc.def-ghi", f"sent with bearer {FILTERED}"),
        ("Basic dXNlcjpodW50ZXIy then", f"Basic {FILTERED} then"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl end", f"jwt {FILTERED} end"),
        ("db postgres://app:hunter2@db:5432/app", f"db postgres://{FILTERED}@db:5432/app"),
        ("redis://:p@ss@cache:6379/0", f"redis://{FILTERED}@cache:6379/0"),
        ("clone https://x7Tq2b@github.com/o/r.git", f"clone https://{FILTERED}@github.com/o/r.git"),
        ("dsn HTTP://key1@sentry.local/1", f"dsn HTTP://{FILTERED}@sentry.local/1"),
        ("GET /v1/items?api_key=abc123&page=2", f"GET /v1/items?api_key={FILTERED}&page=2"),
        ("GET /k?X-Amz-Date=20240501&X-Amz-Signature=4f2a9c", f"GET /k?X-Amz-Date=20240501&X-Amz-Signature={FILTERED}"),
        ("GET /blob?sv=2022-11-02&sig=a%2Bb%3D&se=1", f"GET /blob?sv=2022-11-02&sig={FILTERED}&se=1"),
        ("url=https://h/x?token=abc&page=2", f"url=https://h/x?token={FILTERED}&page=2"),
        ("login failed password=hunter2 user=bob", f"login failed password={FILTERED} user=bob"),
        ("run --db-password=hunter2 -v", f"run --db-password={FILTERED} -v"),
        ("mysql --password hunter2 -h db", f"mysql --password {FILTERED} -h db"),
        ("run --db-token 'a b c' --x", f"run --db-token '{FILTERED}' --x"),
        ("argv ['app.py', '--password', 'hunter2', '-v']", f"argv ['app.py', '--password', '{FILTERED}', '-v']"),
        ("true --password p,ss;w&rd now", f"true --password {FILTERED} now"),  # a space ends it, not punctuation
        ("{'password': 'hunter2', 'amount': 5}", f"{{'password': '{FILTERED}', 'amount': 5}}"),
        ("Config(password=b'hunter2', host='db')", f"Config(password=b'{FILTERED}', host='db')"),
        ("{'token': b'abc', 'api_key': rb\"x y\"}", f"{{'token': b'{FILTERED}', 'api_key': rb\"{FILTERED}\"}}"),
        ("[('password', 'hunter2'), ('page', 2)]", f"[('password', '{FILTERED}'), ('page', 2)]"),
        (
            "Request(headers=[('x-api-key', b'k1'), ('trace', b't')])",
            f"Request(headers=[('x-api-key', b'{FILTERED}'), ('trace', b't')])",
        ),
        ("Cookie: a=1; sessionid=xyz", f"Cookie: {FILTERED}"),
        ("key -----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- end", f"key {FILTERED} end"),
        ("cut -----BEGIN PRIVATE KEY-----\nMIIEvQ", f"cut {FILTERED}"),
        ("ghp_" + "a" * 36 + " sk_live_" + "b" * 24 + " AKIA" + "C" * 16, f"{FILTERED} {FILTERED} {FILTERED}"),
        ("shipped ORD-SECRET-123456 today", f"shipped {FILTERED} today"),
        ("card 4111111111111111\u0661\u0662", f"card {FILTERED}\u0661\u0662"),  # other digits: no crash
    ],
)
def test_secrets_inside_strings_are_cut_out(text: str, expected: str) -> None:
    assert SCRUBBER.scrub_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order 4111111111111112 shipped",  # a 16-digit order id that fails Luhn
        "uuid 12345678-1234-1234-1234-123456789012 and 550e8400-e29b-41d4-a716-446655440000",
        # Luhn-valid digit runs inside a trace id and a UUID, and a compact timestamp starting 20.
        "trace 2ed145f47998179883020cf694b19e9f, request 54a49a7b-5269-4070-9998-7630dfdef6e3",
        "batch-20260303214254.csv",
        "at 2024-05-01T10:20:30.123456+00:00 / 2024-05-01 10:20:30",
        "epoch 1714558830123 and 1714558830123456 and 1714558830123456789",  # ms, µs, ns: start with 1
        "amount 1234567.89 EUR, 99.90 USD, 4111111111",
        "a basic plan, the bearer of news",
        "company=acme span=3 expand: all",
        "ssh://git@github.com/org/repo.git and postgres://app@db/app",  # a user name alone, no password
        "Basic idea",
        "redacted fields ('token', 'session', 'cookie')",  # names, not a name and its value
        "run --password -v --company acme --span 3",  # a flag after a flag is no value
        "['--password', '--verbose'] a--token x",
        "usage: app [--db-password DB_PASSWORD] [--token TOKEN]",  # argparse's placeholders
        "app --no-password build",
        "\u0664\u0661\u0661\u0661" * 4,  # 16 Arabic-Indic digits: no card is written so
    ],
)
def test_ordinary_values_survive(text: str) -> None:
    assert SCRUBBER.scrub_text(text) == text


def test_json_inside_strings_is_scrubbed_as_a_structure() -> None:
    text = 'payload {"user": {"session": {"id": "abc"}, "name": "bob"}, "card": [1, 2]} and {"pan": "x"}'
    out = SCRUBBER.scrub_text(text)
    user = f'{{"user": {{"session": "{FILTERED}", "name": "bob"}}, "card": "{FILTERED}"}}'
    assert out == f'payload {user} and {{"pan": "{FILTERED}"}}'
    untouched = '{"company": "acme",   "n": 1}'
    assert SCRUBBER.scrub_text(untouched) == untouched  # no secret: kept byte for byte


def test_long_text_is_cut_before_a_word_so_no_half_secret_remains() -> None:
    text = "x " * (MAX_TEXT // 2 - 3) + "Bearer " + "t" * 100
    out = SCRUBBER.scrub_text(text)
    assert len(out) <= MAX_TEXT + 20
    assert "ttt" not in out
    assert out.endswith("…[truncated]")


def test_a_card_number_the_cut_falls_in_leaves_none_of_its_groups() -> None:
    text = "x" * (MAX_TEXT - 16) + " 4111 1111 1111 1111" + " more" * 1000
    out = SCRUBBER.scrub_text(text)
    assert "1111" not in out
    assert out.endswith("x…[truncated]")


def test_a_long_run_of_spaced_digits_is_cut_by_no_more_than_a_card_number() -> None:
    out = scrub_text("x " + "1 2 3 4 " * 3000)
    assert len(out) > MAX_TEXT - 4096  # not everything back to the first letter
    assert out.endswith("…[truncated]")


def test_scrub_value_returns_json_ready_copies_and_never_touches_its_input() -> None:
    class Account:
        def __repr__(self) -> str:
            return "Account(token=abc123)"

    value = {"args": ("pay", 4111111111111111, b"password=hunter2"), "when": datetime(2024, 5, 1, tzinfo=UTC)}
    value["obj"] = Account()  # type: ignore[assignment]
    before = repr(value)
    out = SCRUBBER.scrub_value(value)
    assert repr(value) == before
    assert out == {
        "args": ["pay", FILTERED, f"password={FILTERED}"],
        "when": "2024-05-01T00:00:00+00:00",
        "obj": f"Account(token={FILTERED})",
    }
    json.dumps(out)


def test_split_patterns_keeps_commas_inside_quantifiers_classes_and_escapes() -> None:
    assert split_patterns(r"ORD-\d{4,6}, [a,b]x ,a\,b,(x|y,z)") == [r"ORD-\d{4,6}", "[a,b]x", r"a\,b", "(x|y,z)"]


# -- through the SDK -----------------------------------------------------------------------------


def secret(name: str) -> str:
    """A secret made at run time: the test's source lines, sent as frame context, never hold it."""
    return f"{name}-{uuid.uuid4().hex[:10]}"


def test_every_place_of_a_real_event_is_scrubbed(obskit_events: CapturedEvents) -> None:
    log = logging.getLogger("app.scrub")
    log.setLevel(logging.INFO)
    # Named like what they are: the test's own frame (sent with the event) holds them too.
    secrets = {name: secret(name) for name in ("local", "frame", "message", "url", "query", "crumb", "chain", "log")}
    card, iban = "4111 1111 1111 1111", "DE89" + "3704 0044 0532 0130 00".replace(" ", "")

    def charge(cardNumber: str, apiKey: str) -> None:  # camelCase locals, as apps write them
        payload = {"order": 7, "auth": {"password": secrets["local"]}, "note": f"Bearer {apiKey}"}
        raise ValueError(f"declined {cardNumber} for {payload['order']} token={secrets['message']}")

    with obs.bind(user_id="u1", component="billing"):
        log.info("calling https://bob:%s@pay.example.com/charge?token=%s", secrets["url"], secrets["query"])
        obs.add_breadcrumb("http", "retrying", authorization=f"Bearer {secrets['crumb']}", attempt=2)
        try:
            try:
                charge(card, secrets["frame"])
            except ValueError as inner:
                raise RuntimeError(f"wrapped: session={secrets['chain']}") from inner
        except RuntimeError as exc:
            obs.capture_exception(exc, context={"customer": {"iban": iban}}, cvv="123")
        log.error("login failed for %s password=%s", "bob", secrets["log"])
    raw = dumped(list(obskit_events))
    for planted in [card, card.replace(" ", ""), iban, *secrets.values()]:
        assert planted not in raw, planted
    error, log_event = obskit_events
    assert error["extra"]["cvv"] == FILTERED
    assert error["tags"]["component"] == "billing"  # ordinary values survive
    assert log_event["logentry"]["params"] == ["bob", FILTERED]
    assert "bob" in log_event["logentry"]["formatted"]


def test_a_secret_given_as_the_argument_after_a_flag_is_scrubbed(
    obskit_events: CapturedEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK sends the process's argv with every event, and a logged command line with its parameters.
    monkeypatch.setattr("sys.argv", ["worker.py", "--db-password", "hunter2", "--pwd", "-v", "--queue", "q1"])
    logging.getLogger("app.scrub").error("mysql --password %s -h %s failed", "s3cret", "db1")
    logging.getLogger("app.scrub").error("mysql --password '%s' -h %s failed", "qu0ted", "db1")
    plain, quoted = obskit_events
    assert plain["extra"]["sys.argv"] == ["worker.py", "--db-password", FILTERED, "--pwd", "-v", "--queue", "q1"]
    assert plain["logentry"]["params"] == [FILTERED, "db1"]
    assert plain["logentry"]["formatted"] == f"mysql --password {FILTERED} -h db1 failed"
    assert quoted["logentry"]["params"] == [FILTERED, "db1"]
    for secret_value in ("hunter2", "s3cret", "qu0ted"):
        assert secret_value not in dumped(list(obskit_events))


def test_a_failed_command_leaves_its_password_in_no_frame_variable(obskit_events: CapturedEvents) -> None:
    # subprocess.run's own frame holds the argument list; the SDK sends each item as its repr ("'x'").
    password = secret("cli")
    try:
        subprocess.run(["false", "--password", password, b"--token", b"tok-bytes"], check=True)
    except subprocess.CalledProcessError as exc:
        obs.capture_exception(exc)
    (event,) = obskit_events
    frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
    assert any("popenargs" in frame.get("vars", {}) for frame in frames)  # the list is there, scrubbed
    assert password not in dumped(event)
    assert "tok-bytes" not in dumped(event)
    assert SCRUBBER.scrub_value(["'false'", "'--password'", "'x y'", "b'--token'", "b'z'", "'-v'"]) == [
        "'false'",
        "'--password'",
        f"'{FILTERED}'",
        "b'--token'",
        f"b'{FILTERED}'",
        "'-v'",
    ]


def test_bytes_in_a_repr_are_cut_out_of_the_message_and_the_variables(obskit_events: CapturedEvents) -> None:
    @dataclass
    class DbConfig:
        host: str
        password: bytes

    def connect(config: DbConfig) -> None:
        raise ConnectionError(f"cannot connect with {config}")

    password = secret("bytes")  # named so: the test's own frame is sent too
    try:
        connect(DbConfig("db", password.encode()))
    except ConnectionError as exc:
        obs.capture_exception(exc)
    (event,) = obskit_events
    assert password not in dumped(event)
    assert event["exception"]["values"][0]["value"].endswith(f"DbConfig(host='db', password=b'{FILTERED}')")


def test_header_lists_in_frame_variables_are_scrubbed_by_name(obskit_events: CapturedEvents) -> None:
    def handle(api_key: str) -> None:
        kafka_headers = [
            ("authorization", f"Token {api_key}".encode()),
            ("x-api-key", api_key.encode()),
            ("trace", b"t-1"),
        ]
        raise RuntimeError(f"handler failed for Request(headers={kafka_headers!r})")

    api_key = secret("header")
    try:
        handle(api_key)
    except RuntimeError as exc:
        obs.capture_exception(exc)
    (event,) = obskit_events
    assert api_key not in dumped(event)
    local_headers = event["exception"]["values"][0]["stacktrace"]["frames"][-1]["vars"]["kafka_headers"]
    assert local_headers == [["'authorization'", FILTERED], ["'x-api-key'", FILTERED], ["'trace'", "b't-1'"]]


def test_transactions_are_scrubbed_too() -> None:
    sink = CapturedEvents()
    try:
        obs.init("svc", environ={}, dsn="http://k@127.0.0.1:9/1", transport=capture_transport(sink),
                 registry=sink.registry, traces_sample_rate=1.0)  # fmt: skip
        password, token, header = secret("span"), secret("query"), secret("header")
        url = f"POST https://svc:{password}@api.example.com/pay?token={token}"
        with (
            obs.bind() as unit,
            obs.sentry.start_transaction(unit, op="task", name="task:pay"),
            obs.span("http.client", url) as span,
        ):
            span.set_data("headers", {"Authorization": f"Bearer {header}"})
    finally:
        obs.shutdown()
    (transaction,) = sink.transactions
    raw = dumped(transaction)
    for planted in (password, token, header):
        assert planted not in raw
    assert "api.example.com/pay" in raw


def test_log_breadcrumbs_of_a_unit_arrive_scrubbed_and_serialisable(obskit_events: CapturedEvents) -> None:
    log = logging.getLogger("app.crumbs")
    log.setLevel(logging.INFO)
    with obs.bind():
        log.info("token=tok-crumb-1 at %s", datetime(2024, 1, 1, tzinfo=UTC))
        obs.capture_message("m")
    (event,) = obskit_events
    (crumb,) = event["breadcrumbs"]["values"]
    assert crumb["message"].startswith(f"token={FILTERED} at 2024-01-01")
    assert isinstance(crumb["timestamp"], str)
    for envelope in obskit_events.envelopes:
        envelope.serialize()  # what the HTTP transport does: raises on a datetime left in the event


def test_scrub_text_and_value_use_the_rules_init_configured() -> None:
    assert scrub_text("badge=123") == "badge=123"
    try:
        obs.init("svc", environ={"OBSKIT_SCRUB_KEYS": "badge", "OBSKIT_SCRUB_PATTERNS": r"EMP-\d{3}"})
        assert scrub_text("badge=123 EMP-042") == f"badge={FILTERED} {FILTERED}"
        assert scrub_value({"badge": 1}) == {"badge": FILTERED}
    finally:
        obs.shutdown()


def test_an_event_that_cannot_be_scrubbed_is_dropped_and_counted(
    obskit_events: CapturedEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Scrubber, event: Any, hint: Any = None) -> Any:
        raise RuntimeError("scrubber bug")

    monkeypatch.setattr(Scrubber, "__call__", broken)
    obs.capture_message("password=hunter2")
    assert list(obskit_events) == []
    assert obskit_events.metric("obskit_internal_errors_total", {"service": "test", "component": "scrub"}) == 1


# -- generated: planted secrets and harmless look-alikes -------------------------------------------


@dataclass
class Planted:
    """What a generated value hides (must be gone) and shows (must stay)."""

    secrets: list[str] = field(default_factory=list)
    visible: list[str] = field(default_factory=list)

    def add(self, other: Planted) -> None:
        self.secrets += other.secrets
        self.visible += other.visible


SENSITIVE = [
    "password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "access_key", "authorization",
    "cookie", "set-cookie", "session", "csrf", "card", "pan", "cvv", "cvc", "iban", "credentials",
    "private_key", "ssn", "pin", "otp", "passcode", "jwt", "signature",
]  # fmt: skip
LONG = [name for name in SENSITIVE if len(name.replace("_", "").replace("-", "")) >= 5]
LOOKALIKE_KEYS = ["company", "span", "expand", "pandas", "panel", "discard", "cardinality", "keyboard", "author"]
NEUTRAL_KEYS = ["order", "items", "user", "amount", "status", "meta", "attempt", "note", "result", "payload"]
FILLERS = ["", "order", "shipped for", "retry the worker", "queue done", "charge step"]

# Strategies are built once here: building and validating one costs more than drawing from it, and a
# token or a card number is one integer draw, not one draw per character.
TOKEN = st.integers(16**11, 16**16).map(lambda n: f"Zq{n:x}")
COUNTER = st.integers(0, 10**9)
SMALL = st.integers(0, 2)
BOOL = st.booleans()
NON_KEYS = st.sampled_from(LOOKALIKE_KEYS + NEUTRAL_KEYS)
KEY_PARTS = st.tuples(
    st.sampled_from(SENSITIVE),
    st.sampled_from(["plain", "upper", "snake", "kebab", "dot", "camel", "glued", "digit", "plural"]),
    st.sampled_from(["db", "user", "x", "client", "old"]),
)


def spell(parts: tuple[str, str, str]) -> str:
    """A sensitive name written the ways code writes keys."""
    base, style, prefix = parts
    words = base.replace("-", "_").split("_")
    spellings = {
        "upper": base.upper(),
        "snake": "_".join([prefix, *words]),
        "kebab": "-".join(w.capitalize() for w in ["x", *words]),
        "dot": ".".join([prefix, *words]),
        "camel": prefix + "".join(w.capitalize() for w in words),
        "glued": prefix + "".join(words) if base in LONG else base,
        "digit": base + "2",
        "plural": base + "s",
    }
    return spellings.get(style, base)


SENSITIVE_KEY = KEY_PARTS.map(spell)
URL_KEY = SENSITIVE_KEY.filter(lambda k: "." not in k)
IDENTIFIER_KEY = SENSITIVE_KEY.filter(str.isidentifier)


def digits(prefix: int, number: int, size: int) -> str:
    rest = size - len(str(prefix))
    return str(prefix) + f"{number:0{rest}d}"[-rest:]


@st.composite
def _card(draw: st.DrawFn) -> tuple[str, str]:
    """A Luhn-valid card number as written (plain, spaced, dashed; Amex 4-6-5) and its digits."""
    length, first, number, separator = draw(CARD_PARTS)
    body = digits(first, number, length - 1)
    full = body + luhn_check_digit(body)
    if not separator or length == 13:
        return full, full
    sizes = [4, 6, 5] if length == 15 else [4, 4, 4, 4, 3][: 5 if length == 19 else 4]
    groups, at = [], 0
    for size in sizes:
        groups.append(full[at : at + size])
        at += size
    return separator.join(groups), full


CARD_PARTS = st.tuples(
    st.sampled_from([13, 15, 16, 16, 19]),
    st.one_of(st.integers(3, 6), st.integers(2221, 2720)),  # a leading 2 is Mastercard's 2-series
    st.integers(0, 10**18),
    st.sampled_from(["", " ", "-"]),
)
CARD = _card()
# 16 digits that look like a card but fail Luhn.
ORDER_ID = st.tuples(st.integers(2, 6), st.integers(0, 10**15)).map(
    lambda p: (body := digits(p[0], p[1], 15)) + str((int(luhn_check_digit(body)) + 1) % 10)
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


JWT_HEADER = b64url(b'{"alg":"HS256"}')
FRAGMENT_KINDS = st.sampled_from(
    ["card", "jwt", "bearer", "basic", "url", "query", "pem", "kv", "custom", "vendor", "header"]
)
CHOICES = st.integers(0, 5)  # picks a variant of a fragment


@st.composite
def _secret_fragment(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A piece of text with a secret in it, and the parts that must not survive."""
    kind, token, choice = draw(FRAGMENT_KINDS), draw(TOKEN), draw(CHOICES)
    if kind == "card":
        written, plain = draw(CARD)
        return f"paid with {written}", [written, plain]
    if kind == "jwt":
        payload = b64url(json.dumps({"sub": token}).encode())
        signature = b64url(token.encode() + b"-signature")
        return f"jwt {JWT_HEADER}.{payload}.{signature}", [payload, signature]
    if kind == "bearer":
        return f"{['Bearer', 'bearer', 'BEARER'][choice % 3]} {token}.x-y", [token]
    if kind == "basic":
        credential = base64.b64encode(f"user:{token}".encode()).decode()
        return f"Basic {credential}", [credential, token]
    if kind == "url":
        password = token[:6] + ["", "@", ":"][choice % 3] + token[6:]
        scheme = ["https", "postgres", "redis", "amqp"][choice % 4]
        return f"{scheme}://app:{password}@db.example.com:5432/app", [password, token]
    if kind == "query":
        return f"GET https://api.example.com/v1/items?{draw(URL_KEY)}={token}&page=2", [token]
    if kind == "pem":
        body = "\n".join(token[i : i + 8] for i in range(0, len(token), 8))
        # As the JSON of the scrubbed event would hold it (newlines escaped), and its first line.
        return f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----", [
            json.dumps(body)[1:-1],
            token[:8],
        ]
    if kind == "kv":
        form = ["{k}={v}", "{k}: {v}", '"{k}": "{v}"', "'{k}': '{v}'", "{k} = {v}", "--{k}={v}"][choice]
        return form.format(k=draw(SENSITIVE_KEY), v=token), [token]
    if kind == "custom":
        value = f"ORD-SECRET-{int(token[2:], 16) % 10**6:06d}"
        return f"ref {value}", [value]
    if kind == "header":
        name = ["Cookie", "Set-Cookie", "Authorization", "Proxy-Authorization"][choice % 4]
        return f"{name}: a=1; sid={token}", [token]
    vendor = ["ghp_" + (token * 3)[:36], "sk_live_" + token, "glpat-" + (token * 2)[:20], "xoxb-" + token][choice % 4]
    return f"using {vendor}", [vendor]


SECRET_FRAGMENT = _secret_fragment()
LOOKALIKE_KINDS = st.sampled_from(["order", "uuid", "trace", "iso", "stamp", "epoch", "amount", "word", "kv"])


@st.composite
def _lookalike(draw: st.DrawFn) -> str:
    kind, n = draw(LOOKALIKE_KINDS), draw(COUNTER)
    if kind == "order":
        return draw(ORDER_ID)
    if kind == "uuid":
        return str(uuid.UUID(int=draw(UUID_INT)))
    if kind == "trace":
        return f"{draw(UUID_INT):032x}"
    if kind == "iso":
        return datetime.fromtimestamp(1.7e9 + n % 10**8, UTC).isoformat(timespec="microseconds")
    if kind == "stamp":
        return datetime.fromtimestamp(1.7e9 + n, UTC).strftime("batch-%Y%m%d%H%M%S.csv")
    if kind == "epoch":
        return str((1_700_000_000_000, 1_700_000_000_000_000)[n % 2] + n)
    if kind == "amount":
        return f"{n}.{n % 100:02d}"
    if kind == "kv":
        return f"{LOOKALIKE_KEYS[n % len(LOOKALIKE_KEYS)]}=ok{n}"
    return f"ok-{n}"


UUID_INT = st.integers(0, 2**128 - 1)
LOOKALIKE = _lookalike()
VISIBLE = LOOKALIKE.map(lambda v: (v, Planted(visible=[v])))
LINES = st.lists(st.tuples(BOOL, st.sampled_from(FILLERS)), min_size=1, max_size=4)


@st.composite
def _text(draw: st.DrawFn) -> tuple[str, Planted]:
    """Lines of filler words, each with a secret or a look-alike."""
    planted = Planted()
    lines = []
    for hides, filler in draw(LINES):
        if hides:
            fragment, secrets = draw(SECRET_FRAGMENT)
            planted.secrets += secrets
        else:
            fragment = draw(LOOKALIKE)
            planted.visible.append(fragment)
        lines.append(f"{filler} {fragment}".strip())
    return "\n".join(lines), planted


TEXT = _text()
SECRET_VALUE_KINDS = st.sampled_from(["str", "int", "list", "dict"])


@st.composite
def _secret_value(draw: st.DrawFn) -> tuple[Any, Planted]:
    """What sits under a sensitive key: all of it must go."""
    kind, token = draw(SECRET_VALUE_KINDS), draw(TOKEN)
    if kind == "int":
        _, plain = draw(CARD)
        return int(plain), Planted(secrets=[plain])
    if kind == "list":
        return [token, "second" + token], Planted(secrets=[token])
    if kind == "dict":
        return {"id": token, "order": draw(LOOKALIKE)}, Planted(secrets=[token])
    return token, Planted(secrets=[token])


SECRET_VALUE = _secret_value()
NODE_KINDS = {
    True: st.sampled_from(["dict", "dict", "list", "text", "json", "int"]),
    False: st.sampled_from(["text", "int"]),
}
JSON_PREFIX = st.sampled_from(["", "payload ", "got: "])
ENTRIES = st.integers(1, 3)


@st.composite
def _tree(draw: st.DrawFn, depth: int) -> tuple[Any, Planted]:
    """Nested dicts and lists, JSON strings, ints and texts, with secrets and look-alikes planted."""
    kind = draw(NODE_KINDS[depth > 0])
    planted = Planted()
    if kind == "int":
        if draw(BOOL):
            _, plain = draw(CARD)
            return int(plain), Planted(secrets=[plain])
        number = int(draw(ORDER_ID))
        return number, Planted(visible=[str(number)])
    if kind == "text":
        return draw(TEXT)
    if kind == "json":
        inner, planted = draw(tree(depth - 1))
        encoded = json.dumps(inner)
        if draw(BOOL):
            encoded = json.dumps(encoded)  # JSON inside a JSON string
        return f"{draw(JSON_PREFIX)}{encoded}", planted
    if kind == "list":
        items = []
        for _ in range(draw(SMALL)):
            item, inner = draw(tree(depth - 1))
            items.append(item)
            planted.add(inner)
        return items, planted
    node = {}
    for n in range(draw(ENTRIES)):
        if draw(SMALL) == 0:
            key = draw(SENSITIVE_KEY)
            value, inner = draw(SECRET_VALUE)
        else:
            key = f"{draw(NON_KEYS)}{n}"
            value, inner = draw(tree(depth - 1))
        node[key] = value
        planted.add(inner)
    return node, planted


@functools.cache
def tree(depth: int = 3) -> st.SearchStrategy[tuple[Any, Planted]]:
    return _tree(depth)


LOG_PARTS = st.lists(st.tuples(BOOL, CHOICES), min_size=1, max_size=4)


@st.composite
def _log_entry(draw: st.DrawFn) -> tuple[dict[str, Any], Planted]:
    """A log record as the SDK sends it: template, parameters and the formatted message."""
    planted = Planted()
    parts, params = [], []
    for hides, choice in draw(LOG_PARTS):
        if hides:
            token = draw(TOKEN)
            parts.append(["{k}=%s", "{k}: %s", "{k}='%s'", "{k}=%r"][choice % 4].format(k=draw(SENSITIVE_KEY)))
            params.append(token)
            planted.secrets.append(token)
        else:
            value = draw(LOOKALIKE)
            parts.append(["order %s", "user=%s", "at %s", "%s"][choice % 4])
            params.append(value)
            planted.visible.append(value)
    message = " ".join(parts)
    return {"message": message, "params": params, "formatted": message % tuple(params)}, planted


LOG_ENTRY = _log_entry()


@st.composite
def _frame(draw: st.DrawFn) -> tuple[dict[str, Any], Planted]:
    planted = Planted()
    variables: dict[str, Any] = {}
    for n in range(draw(SMALL)):
        if draw(BOOL):
            token = draw(TOKEN)
            variables[draw(SENSITIVE_KEY)] = repr(token)
            planted.secrets.append(token)
        else:
            value, inner = draw(tree(2))
            variables[f"{draw(NON_KEYS)}{n}"] = repr(value) if isinstance(value, str) else value
            planted.add(inner)
    token, harmless, key = draw(TOKEN), f"ok-{draw(COUNTER)}", draw(IDENTIFIER_KEY)
    planted.secrets.append(token)
    planted.visible.append(harmless)
    return {
        "filename": "app/payments.py",
        "function": "charge",
        "module": "app.payments",
        "lineno": 42,
        "in_app": True,
        "pre_context": [f'    {key} = "{token}"', f"    {key} = read_{key.lower()}()"],
        "context_line": f'    company = "{harmless}"',
        "post_context": [""],
        "vars": variables,
    }, planted


FRAME = _frame()
QUERY = SECRET_FRAGMENT.map(lambda f: (f[0].rsplit("?", 1)[-1], Planted(secrets=f[1])))
ONE_OR_TWO = st.integers(1, 2)


@st.composite
def _event(draw: st.DrawFn) -> tuple[dict[str, Any], Planted]:
    """An event as the SDK hands it to before_send, with secrets planted in every place."""
    planted = Planted()

    def part(strategy: st.SearchStrategy[tuple[Any, Planted]]) -> Any:
        value, inner = draw(strategy)
        planted.add(inner)
        return value

    exceptions = [  # a chain: __cause__ / __context__
        {
            "type": "ValueError",
            "module": None,
            "value": part(TEXT),
            "mechanism": {"type": "generic", "handled": True},
            "stacktrace": {"frames": [part(FRAME) for _ in range(draw(ONE_OR_TWO))]},
        }
        for _ in range(draw(ONE_OR_TWO))
    ]
    crumbs = [
        {"type": "default", "category": "http", "message": part(TEXT), "data": part(tree(1)),
         "timestamp": datetime(2024, 5, 1, tzinfo=UTC)}
        for _ in range(draw(SMALL))
    ]  # fmt: skip
    tag_token = draw(TOKEN)
    planted.secrets.append(tag_token)
    result: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "level": "error",
        "platform": "python",
        "exception": {"values": exceptions},
        "logentry": part(LOG_ENTRY),
        "breadcrumbs": {"values": crumbs},
        "tags": {"service": "svc", "session_id": tag_token, "note": part(TEXT)},
        "user": {"id": part(VISIBLE), "data": part(tree(1))},
        "contexts": {"trace": {"trace_id": uuid.uuid4().hex}, "business_rule": part(tree(1))},
        "extra": part(tree(2)),
        "request": {
            "headers": [["Authorization", f"Token {tag_token}"], ["X-Request-Id", part(TEXT)]],
            "query_string": part(QUERY),
            "data": part(tree(1)),
        },
        "spans": [{"description": part(TEXT), "data": part(tree(1))}],
    }
    return result, planted


EVENT = _event()


def assert_scrubbed(out: Any, planted: Planted) -> None:
    raw = dumped(out)
    for secret in planted.secrets:
        # A card number counts as found only whole: not as the digits inside a longer order id.
        found = re.search(rf"(?<!\d){secret}(?!\d)", raw) if secret.isdigit() else None
        at = found.start() if found else (-1 if secret.isdigit() else raw.find(secret))
        assert at < 0, f"secret {secret!r} survived in ...{raw[max(0, at - 120) : at + 60]}..."
    for harmless in planted.visible:
        assert harmless in raw, f"look-alike {harmless!r} was removed"


HYPOTHESIS = {"deadline": None, "derandomize": True, "suppress_health_check": [HealthCheck.too_slow]}


@settings(max_examples=1500, **HYPOTHESIS)  # type: ignore[arg-type]
@given(EVENT)
def test_generated_events_keep_no_secret_and_every_look_alike(case: tuple[dict[str, Any], Planted]) -> None:
    generated, planted = case
    assert_scrubbed(SCRUBBER(generated, {}), planted)


@settings(max_examples=2500, **HYPOTHESIS)  # type: ignore[arg-type]
@given(tree(4))
def test_generated_nested_values_keep_no_secret_and_every_look_alike(case: tuple[Any, Planted]) -> None:
    value, planted = case
    assert_scrubbed(SCRUBBER.scrub_value(value), planted)


@settings(max_examples=4000, **HYPOTHESIS)  # type: ignore[arg-type]
@given(TEXT)
def test_generated_texts_keep_no_secret_and_every_look_alike(case: tuple[str, Planted]) -> None:
    value, planted = case
    assert_scrubbed(SCRUBBER.scrub_text(value), planted)


@settings(max_examples=2000, **HYPOTHESIS)  # type: ignore[arg-type]
@given(LOG_ENTRY)
def test_generated_log_formats_keep_no_secret_parameter(case: tuple[dict[str, Any], Planted]) -> None:
    entry, planted = case
    assert_scrubbed(SCRUBBER({"logentry": entry}, {}), planted)


def _key_cases() -> st.SearchStrategy[tuple[str, bool]]:
    lookalikes: Callable[[str], tuple[str, bool]] = lambda key: (key, False)  # noqa: E731
    return st.one_of(SENSITIVE_KEY.map(lambda key: (key, True)), st.sampled_from(LOOKALIKE_KEYS).map(lookalikes))


@settings(max_examples=1000, **HYPOTHESIS)  # type: ignore[arg-type]
@given(_key_cases())
def test_generated_key_spellings_are_decided_by_the_word_rule(case: tuple[str, bool]) -> None:
    key, sensitive = case
    assert SCRUBBER.sensitive_key(key) is sensitive


# Text made of the pieces the patterns look for, in any order: quotes, escapes, brackets, digits.
JUNK = st.lists(
    st.sampled_from(
        [*"0123456789 -=:'\"\\{}[]()&;,@/?.#_%\n\t\u0661", "password", "pan", "Cookie", "eyJ", "://", "Bearer ",
         "Basic ", "-----BEGIN PRIVATE KEY-----", "%s", "%(k)s"]
    ),
    max_size=60,
).map("".join)  # fmt: skip


@settings(max_examples=1000, **HYPOTHESIS)  # type: ignore[arg-type]
@given(st.one_of(JUNK, st.text(max_size=80)))
def test_scrubbing_never_fails_on_any_text(junk: str) -> None:
    # A failure would drop the event (the scrubber fails closed): no input may cause one.
    SCRUBBER.scrub_text(junk)
    frame = {"context_line": junk, "vars": {junk: junk}}
    exception = {"value": junk, "stacktrace": {"frames": [frame]}}
    SCRUBBER({"logentry": {"message": junk, "params": [junk]}, "exception": {"values": [exception]}}, {})

"""Scrubbing: secrets and card numbers never leave the process.

One :class:`Scrubber`, built once by ``init()``, runs last on every event and transaction (after
the enricher, so breadcrumbs, tags and user are covered). It replaces values by key, at any depth,
and cuts secrets out of any string. :func:`scrub_value` and :func:`scrub_text` give the rest of the
kit the same rules for DLQ headers, Kafka message snippets and Celery task arguments.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from datetime import time as time_of_day
from typing import Any

__all__ = ["DEFAULT_KEYS", "FILTERED", "MAX_TEXT", "Scrubber", "scrub_text", "scrub_value", "split_patterns"]

FILTERED = "[Filtered]"

# Values under these names are replaced wherever they appear. Names are compared lowercased with
# separators removed ("Set-Cookie" == "set_cookie" == "setCookie" == "setcookie").
DEFAULT_KEYS = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "authorization",
    "cookie",
    "set-cookie",
    "session",
    "csrf",
    "card",
    "pan",
    "cvv",
    "cvc",
    "iban",
    "cc_number",
    "pin",
    "ssn",
    "passcode",
    "otp",
    "jwt",
    # Presigned and shared-access URLs carry their credential as a signature (X-Amz-Signature, sig).
    "signature",
    "sig",
    # Spellings the words above miss when written as one word.
    "credentials",
    "private_key",
    "passphrase",
    "credit_card",
    "card_number",
)

# Names of at least this many characters also match as the start or end of a word ("dbpassword",
# "accesstoken", "sessionid"); shorter ones ("pan", "card", "pwd") only as a whole word, so "company",
# "span", "expand" and "discard" keep their values.
_AFFIX_MIN = 5
_MAX_DEPTH = 24
# Strings are cut to this length before scrubbing, so one huge value (the repr of a big local) keeps
# the cost of an event bounded; Sentry shows a value that long to nobody.
MAX_TEXT = 16_384
_TRUNCATED = "…[truncated]"
# JSON documents looked for in one string (each failed attempt parses a little of it).
_JSON_ATTEMPTS = 8
_DECODER = json.JSONDecoder()
_CACHE_MAX = 4096
_CACHED_TEXT_MAX = 512

Event = dict[str, Any]

# Top-level event fields that hold no user data: the SDK's own, ids, timestamps, the installed packages.
_PASS_THROUGH = frozenset(
    {
        "debug_meta",
        "dist",
        "environment",
        "event_id",
        "level",
        "modules",
        "platform",
        "release",
        "sdk",
        "server_name",
        "start_timestamp",
        "timestamp",
        "type",
        "_meta",
    }
)
# Frame fields that describe code, not data.
_FRAME_PLAIN = frozenset(
    {"abs_path", "colno", "filename", "function", "in_app", "instruction_addr", "lineno", "module", "package"}
)
_FRAME_CODE = frozenset({"context_line", "pre_context", "post_context"})
_EXCEPTION_PLAIN = frozenset({"module", "type"})


@dataclass(frozen=True)
class _Patterns:
    """The built-in value patterns, compiled once (on the first Scrubber) and shared."""

    camel: re.Pattern[str]
    digit_guard: re.Pattern[str]
    non_alnum: re.Pattern[str]
    private_key: re.Pattern[str]
    json_start: re.Pattern[str]
    json_or_string_start: re.Pattern[str]
    url_credentials: re.Pattern[str]
    header_line: re.Pattern[str]
    bearer: re.Pattern[str]
    basic: re.Pattern[str]
    jwt: re.Pattern[str]
    vendor_token: re.Pattern[str]
    key: re.Pattern[str]
    name: re.Pattern[str]
    pair: re.Pattern[str]
    pair_end: re.Pattern[str]
    value: re.Pattern[str]
    key_tail: re.Pattern[str]
    flag: re.Pattern[str]
    argument: re.Pattern[str]
    flag_value: re.Pattern[str]
    flag_argument: re.Pattern[str]
    flag_tail: re.Pattern[str]
    placeholder: re.Pattern[str]
    digit_run: re.Pattern[str]
    separator: re.Pattern[str]


# The start of a word, also right after an escaped newline or tab in a repr ("...\\nBearer x").
_START = r"(?:(?<![\w\\])|(?<=\\[nrt]))"
_KEY = r"(?:\\*[\"'])?(?P<key>[A-Za-z_][\w.-]{0,63})(?:\\*[\"'])?"
_SEP = r"(?P<sep>\s*[=:]{1,2}(?!//)\s*)"
# A Python string prefix (b'x', rb"x", u'x', f'x'): without it, a bytes value's "b" ended the value.
_PREFIX = r"(?:[rR][bBfF]?|[bBfF][rR]?|[uU])?"
_VALUE = (
    r"(?P<value>" + _PREFIX + r"\"(?:[^\"\\\n]|\\.)*\""  # "double quoted"
    r"|" + _PREFIX + r"'(?:[^'\\\n]|\\.)*'"  # 'single quoted'
    r"|" + _PREFIX + r"(?P<escape>\\+)[\"'](?:(?!(?P=escape)[\"']).)*(?P=escape)[\"']"  # \"quoted\" in encoded text
    # bare: up to a space, a separator or an escaped newline or quote (inside a repr), not taking
    # closing brackets that end it
    r"|(?P<bare>(?:[^\s&,;\"'<>\\]|\\(?![nrt\"']))+?)(?=[)\]}]*(?:[\s&,;\"'<>]|\\[nrt\"']|$)))"
)


@functools.cache
def _patterns() -> _Patterns:
    return _Patterns(
        camel=re.compile(r"([a-z0-9])([A-Z])"),
        # Cheaper than digit_run, and false for nearly every string: room for 13 digits.
        digit_guard=re.compile(r"[0-9][0-9 -]{11,}[0-9]"),
        non_alnum=re.compile(r"[^a-z0-9]+"),
        private_key=re.compile(
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
            re.DOTALL,
        ),
        json_start=re.compile(r"[\[{]\s*[\[{\"]"),
        # With escapes in the text, a JSON string can hide lines and quotes: decode it too.
        json_or_string_start=re.compile(r"[\[{]\s*[\[{\"]|\""),
        # scheme://user:password@ (the password may hold '@': the last one before the host counts), and
        # http(s)://token@, where a name alone is a credential (https://TOKEN@github.com/org/repo).
        url_credentials=re.compile(
            r"(?i)" + _START + r"([a-z][a-z0-9+.-]*://)(?:[^\s/?#@:]*:|(?<=http://)|(?<=https://))[^\s/?#]*@"
        ),
        # Header lines whose whole value is a credential ("Cookie: a=1; b=2", "Authorization: Token x").
        header_line=re.compile(
            r"(?i)(?:(?<![\w\\-])|(?<=\\[nrt]))((?:proxy-)?authorization|(?:set-)?cookie)(\s*[:=]\s*)(?![\"'])(?:[^\r\n\\]|\\(?![nr]))+"
        ),
        # A bearer token: long, or with a digit or punctuation in it ("the bearer of news" stays).
        bearer=re.compile(
            r"(?i)" + _START + r"(bearer)(\s+)(?=[\w.~+/-]*[\d.~+/=-]|[A-Za-z0-9]{16})[A-Za-z0-9._~+/-]+=*"
        ),
        basic=re.compile(r"(?i)" + _START + r"(basic)(\s+)([A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])"),
        jwt=re.compile(_START + r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
        vendor_token=re.compile(
            _START + r"(?:(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{10,}"  # Stripe
            r"|gh[pousr]_[A-Za-z0-9]{30,}"  # GitHub
            r"|glpat-[0-9A-Za-z_-]{20,}"  # GitLab
            r"|xox[abposr]-[0-9A-Za-z-]{10,}"  # Slack
            r"|(?:AKIA|ASIA)[0-9A-Z]{16}"  # AWS access key id
            r"|sntr[yus]_[0-9A-Za-z_=+/-]{20,})"  # Sentry auth tokens
        ),
        key=re.compile(r"(?:(?<![\w.\\-])|(?<=\\[nrt]))-{0,2}" + _KEY + _SEP),  # "--password=x" too
        value=re.compile(_VALUE),
        # A pair's name, also as the SDK sends a frame variable's string or bytes: "'x-api-key'", "b'x'".
        name=re.compile(r"(?:[bBuU]?(?P<quote>[\"']))?(?P<name>[A-Za-z_][\w.-]{0,63})(?(quote)(?P=quote))"),
        # The first item of a pair in a repr: [('password', 'x')], (b'token', b'x').
        pair=re.compile(r"(?<=[(\[])\s*[bBuU]?(?P<quote>[\"'])(?P<key>[A-Za-z_][\w.-]{0,63})(?P=quote)\s*,\s*"),
        pair_end=re.compile(r"\s*[)\]]"),
        key_tail=re.compile(_KEY + r"\s*[=:]{1,2}\s*(?:\\?[\"'])?$"),
        # A command line's flag and its value as the next argument: "--password x" ("--password=x" is a key),
        # also in the repr of an argument list: ['--password', 'x'] and as the SDK's subprocess breadcrumb
        # writes bytes arguments (b'--token' b'x'). A list item may be a repr itself (the SDK sends a frame's
        # variables so: "'--password'", "b'x'").
        flag=re.compile(r"[bBuU]?(?P<quote>[\"']?)-{1,2}(?P<key>[A-Za-z][\w.-]{0,63})(?P=quote)"),
        argument=re.compile(r"(?:[bBuU]?[\"'])?(?!-)"),
        flag_value=re.compile(
            r"(?:(?:(?<![\w\\-])|(?<=\\[nrt]))(?:[bB](?P<bq>[\"']))?--(?P<key>[A-Za-z][\w.-]{0,63})(?(bq)(?P=bq))"
            r"[ \t]+(?=[^\s-])"
            r"|(?P<quote>[\"'])--(?P<item>[A-Za-z][\w.-]{0,63})(?P=quote)\s*,\s*(?=[bBuU]?[\"'](?!-)))"
        ),
        # The argument itself: quoted, or anything up to a space or a quote ("p,ss;w&rd" whole), not the
        # closing brackets that end it ("[--password PASSWORD]").
        flag_argument=re.compile(
            r"(?P<value>[bBrRuU]?\"(?:[^\"\\\n]|\\.)*\"|[bBrRuU]?'(?:[^'\\\n]|\\.)*'"
            r"|(?P<bare>[^\s\"']+?)(?=[)\]}]*(?:[\s\"']|$)))"
        ),
        flag_tail=re.compile(r"(?<![\w-])--(?P<key>[A-Za-z][\w.-]{0,63})[ \t]+(?:\\?[\"'])?$"),
        placeholder=re.compile(
            r"%(?:\((?P<name>[^)]*)\))?[#0 +-]*(?P<width>\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?(?P<conv>[diouxXeEfFgGcrsa%])"
        ),
        # A run of at least 13 digits, single spaces or dashes between groups; cards are found inside it.
        # ASCII digits only: \d would also take other scripts' digits, which no card number is written in.
        # No letter or digit touches either end: digits inside a hex id (a trace id, a UUID's groups) are
        # no card, and one in 1000 random trace ids held a Luhn-valid run.
        digit_run=re.compile(r"(?<![0-9A-Za-z])[0-9](?:[ -]?[0-9]){12,}(?![0-9A-Za-z])"),
        separator=re.compile(r"[ -]"),
    )


_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        total += _DOUBLED[digit] if position & 1 else digit
    return total % 10 == 0


def _is_card(digits: str) -> bool:
    """13-19 digits, a major network's leading digit (2-6), and a valid Luhn check digit.

    Leading 0, 1, 7, 8 and 9 are left alone: epoch timestamps in ms, µs and ns start with 1. A leading
    2 is Mir (2200-2204) or Mastercard (2221-2720) only, so compact timestamps (20260303214254) stay.
    """
    if not 13 <= len(digits) <= 19 or digits[0] not in "23456":
        return False
    if digits[0] == "2" and not ("2200" <= digits[:4] <= "2204" or "2221" <= digits[:4] <= "2720"):
        return False
    return _luhn(digits)


def _card_shape(groups: list[str], separators: list[str]) -> bool:
    """How cards are written: one plain block, or 4-4-4-4(-3) with one kind of separator, or Amex and
    Diners' 4-6-5 and 4-6-4."""
    if len(groups) == 1:
        return True
    if len(set(separators)) != 1:
        return False
    sizes = [len(g) for g in groups]
    if sizes in ([4, 6, 5], [4, 6, 4]):
        return True
    return all(size == 4 for size in sizes[:-1]) and 1 <= sizes[-1] <= 4


class Scrubber:
    """The scrubbing rules, compiled once: sensitive key names and value patterns (built-in and extra)."""

    def __init__(self, *, keys: Iterable[str] = (), patterns: Iterable[str | re.Pattern[str]] = ()) -> None:
        self._p = _patterns()
        names = {_normalise(name) for name in (*DEFAULT_KEYS, *keys)} - {""}
        self._exact = frozenset(names | {name + "s" for name in names})
        affixes = sorted((n for n in names if len(n) >= _AFFIX_MIN), key=len, reverse=True)
        alternatives = "|".join(map(re.escape, affixes))
        self._affix = re.compile(f"^(?:{alternatives})|(?:{alternatives})s?$") if affixes else None
        self._extra = tuple(re.compile(p) if isinstance(p, str) else p for p in patterns)
        self._keys: dict[str, bool] = {}
        self._texts: dict[str, str] = {}
        self._lines: dict[str, str] = {}
        self._log_marks: dict[str, frozenset[int | str]] = {}
        p = self._p
        self._card_sub: Callable[[str], str] = functools.partial(p.digit_run.sub, self._cards)

    # -- keys ------------------------------------------------------------------------------------

    def sensitive_key(self, key: str) -> bool:
        """Whether values under ``key`` are replaced: a sensitive name as a word (or two or three
        adjacent words) of the key, ignoring case, separators, camelCase and a trailing number."""
        hit = self._keys.get(key)
        if hit is None:
            hit = self._match_key(key)
            if len(self._keys) < _CACHE_MAX:
                self._keys[key] = hit
        return hit

    def _match_key(self, key: str) -> bool:
        p = self._p
        words = [w.rstrip("0123456789") for w in p.non_alnum.split(p.camel.sub(r"\1_\2", key).lower())]
        words = [w for w in words if w]
        exact, affix = self._exact, self._affix
        for i, word in enumerate(words):
            if word in exact or (affix is not None and affix.search(word)):
                return True
            if i + 1 < len(words):
                pair = word + words[i + 1]
                if pair in exact or (i + 2 < len(words) and pair + words[i + 2] in exact):
                    return True
        return False

    # -- values ----------------------------------------------------------------------------------

    def scrub_value(self, value: Any) -> Any:
        """A scrubbed copy of ``value`` made of JSON types (dict, list, str, int, float, bool, None);
        other objects become their scrubbed ``repr``. The input is never modified."""
        return self._value(value, 0)

    def _value(self, obj: Any, depth: int) -> Any:
        kind = type(obj)
        if kind is str:
            return self.scrub_text(obj)
        if obj is None or kind is bool or kind is float:
            return obj
        if kind is int:
            return FILTERED if 10**12 <= abs(obj) < 10**19 and _is_card(str(abs(obj))) else obj
        if kind is dict:
            return self._mapping(obj, depth + 1)
        if kind is list:
            return self._sequence(obj, depth + 1)
        return self._other(obj, depth)

    def _other(self, obj: Any, depth: int) -> Any:  # noqa: PLR0911  (one return per kind of value)
        if isinstance(obj, str):
            return self.scrub_text(str(obj))
        if isinstance(obj, bool | float):
            return obj
        if isinstance(obj, int):
            return self._value(int(obj), depth)
        if isinstance(obj, Mapping):
            return self._mapping(obj, depth + 1)
        if isinstance(obj, list | tuple | set | frozenset):
            return self._sequence(obj, depth + 1)
        if isinstance(obj, bytes | bytearray | memoryview):
            return self.scrub_text(bytes(obj).decode("utf-8", "replace"))
        if isinstance(obj, date | time_of_day):
            return obj.isoformat()
        try:
            text = repr(obj)
        except Exception:  # a broken __repr__ must not break the event
            text = f"<{type(obj).__qualname__} object>"
        return self.scrub_text(text)

    def _mapping(self, obj: Mapping[Any, Any], depth: int) -> Any:
        if depth > _MAX_DEPTH:
            return FILTERED
        out: dict[str, Any] = {}
        keys, texts = self._keys, self._texts
        for k, v in obj.items():
            key = k if type(k) is str else str(k)
            sensitive = keys.get(key)
            if sensitive is None:
                sensitive = self.sensitive_key(key)
            if sensitive:
                out[key] = v if v is None or v is True or v is False or (type(v) is str and not v) else FILTERED
            elif type(v) is str:
                # The common case inlined: a string seen before is a dictionary lookup.
                done = texts.get(v)
                out[key] = done if done is not None else self.scrub_text(v)
            else:
                out[key] = self._value(v, depth)
        return out

    def _sequence(self, obj: Iterable[Any], depth: int) -> Any:
        if depth > _MAX_DEPTH:
            return FILTERED
        out: list[Any] = []
        flagged = False
        for item in obj:
            kind = type(item)
            # Bytes are decoded here only when they may be a flag or its argument (_value decodes the rest).
            argument = (
                item
                if kind is str
                else item.decode("utf-8", "replace")
                if kind is bytes and (flagged or b"-" in item[:3])
                else None
            )
            if flagged and argument is not None and self._p.argument.match(argument):
                # The argument after a sensitive flag (sys.argv: "--password", "x"; a frame's "'x'").
                out.append(_requote(argument) if argument else argument)
                flagged = False
                continue
            # A [name, value] pair (header lists, tag lists): the name decides like a key.
            if kind in (list, tuple) and len(item) == 2 and type(item[0]) is str and self._pair_name(item[0]):
                out.append([item[0], FILTERED])
            else:
                out.append(self._value(item, depth))
            flagged = argument is not None and "-" in argument[:3] and self._flag_name(argument)
        return out

    def _flag_name(self, argument: str) -> bool:
        flag = self._p.flag.fullmatch(argument)
        return flag is not None and self._sensitive_flag(flag.group("key"))

    def _sensitive_flag(self, name: str) -> bool:
        # --no-password says there is none.
        return name[:3].lower() not in ("no-", "no_") and self.sensitive_key(name)

    def _pair_name(self, name: str) -> bool:
        named = self._p.name.fullmatch(name)
        return named is not None and self.sensitive_key(named.group("name"))

    # -- text ------------------------------------------------------------------------------------

    def scrub_text(self, text: str) -> str:
        """``text`` with every secret it contains replaced by ``[Filtered]``; JSON inside is scrubbed
        like a structure (by key too). Text past :data:`MAX_TEXT` characters is cut off first."""
        if not text:
            return text
        done = self._texts.get(text)
        if done is None:
            done = self._text(text)
            self._remember(self._texts, text, done)
        return done

    def _text(self, text: str) -> str:
        if len(text) > MAX_TEXT:
            text = _cut(text)
        if "{" in text or "[" in text or ('"' in text and "\\" in text):
            found = self._json(text)
            if found is not None:
                return found
        return self._plain(text, code=False)

    @staticmethod
    def _remember(cache: dict[str, str], text: str, done: str) -> None:
        # Events of one failure repeat most of their strings (source lines, variables, log messages):
        # short ones are scrubbed once. Secrets in the keys stay in this process, as they already were.
        if len(text) <= _CACHED_TEXT_MAX:
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[text] = done

    def _json(self, text: str) -> str | None:
        """Scrub the JSON documents embedded in ``text`` as structures, and the text around them;
        None when there is none."""
        pieces: list[str] = []
        done = position = 0
        starts = self._p.json_or_string_start if "\\" in text else self._p.json_start
        for _ in range(_JSON_ATTEMPTS):
            start_match = starts.search(text, position)
            if start_match is None:
                break
            start = start_match.start()
            try:
                parsed, end = _DECODER.raw_decode(text, start)
            except (ValueError, RecursionError):
                position = start + 1
                continue
            if isinstance(parsed, str) and not self._whole_json_string(text, start, end):
                position = start + 1
                continue
            if start > done:
                pieces.append(self._plain(text[done:start], code=False))
            cleaned = self._value(parsed, 1)
            pieces.append(text[start:end] if cleaned == parsed else json.dumps(cleaned, ensure_ascii=False))
            done = position = end
        if not pieces:
            return None
        if done < len(text):
            pieces.append(self._plain(text[done:], code=False))
        return "".join(pieces)

    def _whole_json_string(self, text: str, start: int, end: int) -> bool:
        """A JSON-encoded string (``"{\\"password\\": ...}"``) is decoded only when it ends the text, holds
        escapes, and follows no ``key=`` (there the key/value rules see it whole)."""
        if end != len(text) or "\\" not in text[start:end]:
            return False
        if start == 0:
            return True
        after_key = self._p.key_tail.search(text, 0, start)
        return text[start - 1].isspace() and (after_key is None or not self.sensitive_key(after_key.group("key")))

    def _plain(self, text: str, *, code: bool) -> str:
        # Each pattern runs only where a substring test (far cheaper than a regex scan) says it could match.
        p = self._p
        has_separator = "=" in text or ":" in text
        if has_separator or len(text) >= 8:
            lowered = text.lower()
            if "private key" in lowered:
                text = p.private_key.sub(FILTERED, text)
            if has_separator and "@" in text and "://" in text:
                text = p.url_credentials.sub(r"\1" + FILTERED + "@", text)
            if has_separator and ("authorization" in lowered or "cookie" in lowered):
                text = p.header_line.sub(r"\1\2" + FILTERED, text)
            if "bearer" in lowered:
                text = p.bearer.sub(r"\1\2" + FILTERED, text)
            if "basic" in lowered:
                text = p.basic.sub(_basic, text)
            if "eyJ" in text:
                text = p.jwt.sub(FILTERED, text)
            if len(text) >= 20 and _vendor_prefix(text):
                text = p.vendor_token.sub(FILTERED, text)
            if has_separator:
                text = self._key_values(text, code=code)
            text = self._flags(text, code=code)
            if "," in text and ("(" in text or "[" in text):
                text = self._pairs(text, code=code)
            if len(text) >= 13 and p.digit_guard.search(text):
                text = self._card_sub(text)
        for pattern in self._extra:
            text = pattern.sub(FILTERED, text)
        return text

    def _key_values(self, text: str, *, code: bool) -> str:
        """``password=x``, ``"token": "x"``, ``?api_key=x&``: the value after a sensitive key. After any
        other key the search goes on inside its value, so ``url=https://h/?token=x`` is caught too. In
        source lines (``code``) only literals are data: ``password = "x"``, not ``password = read()``."""
        search, value_at = self._p.key.search, self._p.value.match
        pieces: list[str] = []
        done = position = 0
        # Values are read only after a sensitive key: reading every value would make this quadratic
        # in text made of nested quotes (the repr of a dict of strings).
        while (match := search(text, position)) is not None:
            position = match.end()
            if not self.sensitive_key(match.group("key")) or text.startswith(FILTERED, position):
                continue
            if not code and text[position : position + 1] in ("{", "["):
                # A structure under the key (a dict's repr, JSON that did not parse): all of it.
                pieces.append(text[done:position] + FILTERED)
                done = position = _closing(text, position)
                continue
            value = value_at(text, position)
            if value is None or (code and value.group("bare") is not None):
                continue
            pieces.append(text[done:position])
            pieces.append(_requote(value.group("value")))
            done = position = value.end()
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)

    def _flags(self, text: str, *, code: bool) -> str:
        """``--password x``: on a command line (a subprocess span, a logged command) the argument after a
        sensitive flag. A following flag (``--password -v``) is no value; in source lines only literals."""
        if "--" not in text:
            return text
        return self._values_after(self._p.flag_value, text, code=code, flags=True)

    def _pairs(self, text: str, *, code: bool) -> str:
        """``[('password', 'x')]``: the value of a two-item pair whose name is sensitive, as in the repr
        of a header list. A longer tuple (``('token', 'session', 'cookie')``) is a list of names."""
        return self._values_after(self._p.pair, text, code=code, closed_by=self._p.pair_end)

    def _values_after(
        self,
        names: re.Pattern[str],
        text: str,
        *,
        code: bool,
        closed_by: re.Pattern[str] | None = None,
        flags: bool = False,
    ) -> str:
        """The value right after each match of ``names`` whose name (group ``key``, else ``item``) is
        sensitive, replaced; with ``closed_by``, only a value that pattern matches right after. After
        ``flags``, a command line's argument, not when it is the flag's own name in capitals (argparse's
        usage line: ``--password PASSWORD``)."""
        pieces: list[str] = []
        done = 0
        sensitive = self._sensitive_flag if flags else self.sensitive_key
        values = self._p.flag_argument if flags else self._p.value
        for match in names.finditer(text):
            name = match["key"] or match["item"]
            if match.start() < done or not sensitive(name):
                continue
            if text.startswith(FILTERED, match.end()):
                continue
            value = values.match(text, match.end())
            if (
                value is None
                or (code and value.group("bare") is not None)
                or (closed_by is not None and not closed_by.match(text, value.end()))
                or (flags and value.group("bare") == name.upper().replace("-", "_"))
            ):
                continue
            pieces.append(text[done : match.end()])
            pieces.append(_requote(value.group("value")))
            done = value.end()
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)

    def _cards(self, match: re.Match[str]) -> str:
        run = match.group()
        groups = self._p.separator.split(run)
        separators = [run[m.start()] for m in self._p.separator.finditer(run)]
        hit = [False] * len(groups)
        for i in range(len(groups)):
            total = 0
            for j in range(i, len(groups)):
                total += len(groups[j])
                if total > 19:
                    break
                if (
                    total >= 13
                    and _card_shape(groups[i : j + 1], separators[i:j])
                    and _is_card("".join(groups[i : j + 1]))
                ):
                    hit[i : j + 1] = [True] * (j + 1 - i)
        if not any(hit):
            return run
        parts: list[str] = []
        for i, group in enumerate(groups):
            if i:
                if hit[i] and hit[i - 1]:
                    continue
                parts.append(separators[i - 1])
            parts.append(FILTERED if hit[i] else group)
        return "".join(parts)

    # -- events ----------------------------------------------------------------------------------

    def __call__(self, event: Event, hint: Any = None) -> Event:
        """The event processor: a scrubbed copy of the event (the SDK's dict is not modified)."""
        out: Event = {}
        for key, value in event.items():
            if key in _PASS_THROUGH:
                out[key] = value
            elif key in ("exception", "threads"):
                out[key] = self._exceptions(value)
            elif key == "logentry":
                out[key] = self._logentry(value)
            else:
                out[key] = self._value(value, 0)
        return out

    def _exceptions(self, container: Any) -> Any:
        values = container.get("values") if isinstance(container, dict) else None
        if not isinstance(values, list):
            return self._value(container, 0)
        cleaned = []
        for exc in values:
            if not isinstance(exc, dict):
                cleaned.append(self._value(exc, 2))
                continue
            item: dict[str, Any] = {}
            for key, value in exc.items():
                if key in _EXCEPTION_PLAIN:
                    item[key] = value
                elif key == "stacktrace" and isinstance(value, dict):
                    item[key] = self._stacktrace(value)
                else:
                    item[key] = self._value(value, 2)
            cleaned.append(item)
        return {**self._mapping({k: v for k, v in container.items() if k != "values"}, 1), "values": cleaned}

    def _stacktrace(self, stacktrace: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in stacktrace.items():
            if key == "frames" and isinstance(value, list):
                out[key] = [self._frame(frame) if isinstance(frame, dict) else self._value(frame, 4) for frame in value]
            else:
                out[key] = self._value(value, 3)
        return out

    def _frame(self, frame: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in frame.items():
            if key in _FRAME_PLAIN:
                out[key] = value
            elif key in _FRAME_CODE:
                out[key] = self._code(value)
            else:
                out[key] = self._value(value, 4)
        return out

    def _code(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self._code_line(line) if isinstance(line, str) else self._value(line, 6) for line in value]
        return self._code_line(value) if isinstance(value, str) else self._value(value, 5)

    def _code_line(self, line: str) -> str:
        done = self._lines.get(line)
        if done is None:
            done = self._plain(line[:MAX_TEXT], code=True) if line else line
            self._remember(self._lines, line, done)
        return done

    def _logentry(self, entry: Any) -> Any:
        """Log messages: besides the usual rules, a parameter that fills ``password=%s`` is replaced."""
        if not isinstance(entry, dict):
            return self._value(entry, 0)
        out = self._mapping(entry, 1)
        message, params = entry.get("message"), out.get("params")
        if isinstance(message, str) and params and isinstance(params, list | dict):
            marks = self._marks(message)
            if marks and isinstance(params, list):
                out["params"] = [FILTERED if i in marks else v for i, v in enumerate(params)]
            elif marks and isinstance(params, dict):
                out["params"] = {k: FILTERED if k in marks else v for k, v in params.items()}
        return out

    def _marks(self, message: str) -> frozenset[int | str]:
        """The %-placeholders of a log format that follow a sensitive ``key=`` / ``key:`` / ``--flag ``, by
        position or name."""
        marks = self._log_marks.get(message)
        if marks is not None:
            return marks
        found: set[int | str] = set()
        position = 0
        for match in self._p.placeholder.finditer(message):
            if match.group("conv") == "%":
                continue
            if match.group("width") == "*":
                position += 1
            begin = max(0, match.start() - 80)
            tail = self._p.key_tail.search(message, begin, match.start()) or self._p.flag_tail.search(
                message, begin, match.start()
            )
            if tail is not None and self.sensitive_key(tail.group("key")):
                found.add(match.group("name") if match.group("name") is not None else position)
            if match.group("name") is None:
                position += 1
        marks = frozenset(found)
        if len(self._log_marks) < _CACHE_MAX:
            self._log_marks[message] = marks
        return marks


_CARD_IN_GROUPS = 23


def _cut(text: str) -> str:
    """The first MAX_TEXT characters, ending before the word the cut falls in: half a secret is not
    recognisable, so it must not be kept. Nor are the first groups of a card number written in groups
    (``4111 1111 1111``), so digits, spaces and dashes at the end go too."""
    head = text[:MAX_TEXT]
    boundary = max(head.rfind(char) for char in " \n\t,;&")
    head = head[: boundary if boundary > MAX_TEXT - 4096 else MAX_TEXT - 4096]
    # At most a card number's length in groups (19 digits, 4 separators), not a whole run of digits.
    kept = head.rstrip("0123456789 -")
    return head[: max(len(kept), len(head) - _CARD_IN_GROUPS)] + _TRUNCATED


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _closing(text: str, start: int) -> int:
    """Where the bracket opened at ``start`` closes (quoted brackets do not count); the end of the
    text when it never does, as in a truncated repr."""
    depth, quote, escaped = 0, "", False
    for index in range(start, len(text)):
        char = text[index]
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
            if depth == 0:
                return index + 1
    return len(text)


def _requote(value: str) -> str:
    """The replacement for a value, quoted as it was (``"x"``, ``b'x'``, ``\\"x\\"``)."""
    quoted = value.lstrip("bBrRuUfF")
    unescaped = quoted.lstrip("\\")
    if unescaped[:1] in ("'", '"'):
        quote = quoted[: len(quoted) - len(unescaped) + 1]
        return value[: len(value) - len(quoted)] + quote + FILTERED + quote
    return FILTERED


def _vendor_prefix(text: str) -> bool:
    return (
        "k_live_" in text
        or "k_test_" in text
        or "gh" in text
        or "glpat-" in text
        or "xox" in text
        or "AKIA" in text
        or "ASIA" in text
        or "sntr" in text
    )


def _basic(match: re.Match[str]) -> str:
    """``Basic <base64 of user:password>``; other words after "basic" stay."""
    credential = match.group(3)
    try:
        decoded = base64.b64decode(credential + "=" * (-len(credential) % 4), validate=True)
    except (binascii.Error, ValueError):
        return match.group()
    if b":" not in decoded:
        return match.group()
    return match.group(1) + match.group(2) + FILTERED


def split_patterns(raw: str) -> list[str]:
    """Split ``OBSKIT_SCRUB_PATTERNS`` on the commas that separate patterns: not those inside
    ``(...)``, ``{...}`` or ``[...]``, nor an escaped ``\\,``; so ``ORD-\\d{4,6}`` stays one pattern."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    in_class = escaped = False
    for char in raw:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char in "({":
            depth += 1
        elif char in ")}" and depth:
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


@functools.cache
def _default() -> Scrubber:
    return Scrubber()


def _active() -> Scrubber:
    from observability.sentry import runtime

    try:
        scrubber = runtime().scrubber
    except RuntimeError:
        return _default()
    return scrubber if scrubber is not None else _default()


def scrub_text(text: str) -> str:
    """``text`` with secrets and card numbers replaced, by the rules ``init()`` configured (the
    built-in ones before it): for DLQ error headers, log lines and message snippets."""
    return _active().scrub_text(text)


def scrub_value(value: Any) -> Any:
    """A scrubbed, JSON-ready copy of ``value`` (task arguments, a decoded message), by the rules
    ``init()`` configured; the input is never modified."""
    return _active().scrub_value(value)

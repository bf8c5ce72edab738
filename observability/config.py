"""Settings from the environment, validated once: a bad value fails with one line naming it."""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from observability.errors import ConfigError

__all__ = [
    "LOG_LEVELS",
    "Settings",
    "parse_bool",
    "parse_choice",
    "parse_count",
    "parse_dsn",
    "parse_port",
    "parse_positive",
    "parse_redis_url",
]

T = TypeVar("T")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_SERVICE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_RATES_RE = re.compile(r"^\s*([^=,\s]+)\s*=\s*([^,]+?)\s*$")
_DOTTED_RE = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
# A key name: a letter or digit, and no space or ';' ("ssn;otp" would be the one name "ssnotp").
_KEY_NAME_RE = re.compile(r"^[\w.-]*[A-Za-z0-9][\w.-]*$")


def parse_dsn(value: str, variable: str = "SENTRY_DSN") -> str:
    """Check a DSN's shape (``scheme://public_key@host[:port]/project_id``) and return it stripped."""
    dsn = value.strip()
    expected = "a DSN like https://<public_key>@<host>/<project_id>"
    try:
        parts = urlsplit(dsn)
        parts.port  # noqa: B018  (raises ValueError on a malformed port)
    except ValueError:
        raise ConfigError(variable, value, expected) from None
    project = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if parts.scheme not in {"http", "https"} or not parts.username or not parts.hostname or not project.isdigit():
        raise ConfigError(variable, value, expected)
    return dsn


def _rate(variable: str, raw: str) -> float:
    try:
        rate = float(raw)
    except ValueError:
        raise ConfigError(variable, raw, "a number from 0.0 to 1.0") from None
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(variable, raw, "a number from 0.0 to 1.0")
    return rate


# The value parsers every settings class uses (the kit's, the workers', the consumers'): each takes the
# variable's name and its raw text and fails with a ConfigError naming both and the expected form.


def parse_positive(variable: str, raw: str) -> float:
    """A finite number > 0 (a duration, an interval, a rate per second)."""
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(variable, raw, "a number > 0") from None
    if not 0 < value < math.inf:
        raise ConfigError(variable, raw, "a number > 0")
    return value


def parse_count(variable: str, raw: str, *, minimum: int = 0) -> int:
    """A whole number >= ``minimum``."""
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(variable, raw, f"a whole number >= {minimum}") from None
    if value < minimum:
        raise ConfigError(variable, raw, f"a whole number >= {minimum}")
    return value


def parse_bool(variable: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(variable, raw, "one of 1/0, true/false, yes/no, on/off")


def parse_port(variable: str, raw: str) -> int:
    """A TCP port to listen on; 0 picks a free one."""
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(variable, raw, "a TCP port number (0 picks a free one)") from None
    if not 0 <= port <= 65535:
        raise ConfigError(variable, raw, "a TCP port number (0 picks a free one)")
    return port


def parse_choice(variable: str, raw: str, allowed: Sequence[str]) -> str:
    value = raw.strip().lower()
    if value not in allowed:
        raise ConfigError(variable, raw, " or ".join(allowed))
    return value


# The names Sentry refuses: an event's environment or release of another form is dropped at ingest (the
# event then counts under no environment or release), and sentry-cli cannot create such a release.
_ENVIRONMENT_BAD = frozenset("\r\n\f/")
_RELEASE_BAD = frozenset("\r\n\f\t/\\")
_RELEASE_RESTRICTED = frozenset({".", "..", "latest"})


def _environment(variable: str, raw: str) -> str:
    environment = raw.strip()
    if not 0 < len(environment) <= 64 or environment == "None" or not _ENVIRONMENT_BAD.isdisjoint(environment):
        raise ConfigError(
            variable, raw, "an environment name of 1-64 characters without '/' or line breaks, not 'None'"
        )
    return environment


def _release(variable: str, raw: str) -> str:
    release = raw.strip()
    if not 0 < len(release) <= 200 or release.lower() in _RELEASE_RESTRICTED or not _RELEASE_BAD.isdisjoint(release):
        raise ConfigError(
            variable,
            raw,
            "a release name of 1-200 characters without '/', '\\', tabs or line breaks, "
            "not '.', '..' or 'latest', e.g. payments-worker@1.2.3",
        )
    return release


def _level(variable: str, raw: str) -> str:
    level = raw.strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(variable, raw, f"one of {', '.join(LOG_LEVELS)}")
    return level


def _rates(variable: str, raw: str) -> dict[str, float]:
    """``task:workers.tasks.pay=1.0,topic:payments=0.5`` -> {"task:workers.tasks.pay": 1.0, ...}."""
    result: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        match = _RATES_RE.match(part)
        if not match:
            raise ConfigError(variable, raw, "comma-separated name=rate pairs, e.g. topic:payments=0.5")
        try:
            result[match.group(1)] = _rate(variable, match.group(2))
        except ConfigError:
            raise ConfigError(variable, raw, "name=rate pairs with rates from 0.0 to 1.0") from None
    return result


def _list(_variable: str, raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _names(variable: str, raw: str) -> tuple[str, ...]:
    """``badge, x-internal-token`` -> ("badge", "x-internal-token"): key names, each with a letter or digit."""
    names = _list(variable, raw)
    if not all(_KEY_NAME_RE.match(name) for name in names):
        raise ConfigError(variable, raw, "comma-separated key names, e.g. badge,x-internal-token")
    return names


def _patterns(variable: str, raw: str | Sequence[str]) -> tuple[str, ...]:
    """Extra scrubbing regexes, compiled here once so a bad one fails at start, naming itself."""
    from observability.scrub import split_patterns

    patterns = tuple(split_patterns(raw) if isinstance(raw, str) else raw)
    for pattern in patterns:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(
                variable, raw, f"comma-separated regular expressions ({pattern!r} does not compile: {exc})"
            ) from None
        if compiled.fullmatch(""):
            raise ConfigError(variable, raw, f"regular expressions that match some text ({pattern!r} matches nothing)")
    return patterns


def _dotted(variable: str, raw: str) -> tuple[str, ...]:
    """``KeyError, requests.exceptions.Timeout``: exception types by the module that defines them."""
    names = _list(variable, raw)
    if not all(_DOTTED_RE.match(name) for name in names):
        raise ConfigError(variable, raw, "comma-separated type names, e.g. KeyError,requests.exceptions.Timeout")
    return names


def _git_sha(cwd: str | None = None) -> str | None:
    """The checkout's commit cut to 8 characters, if there is one: exactly GitLab's CI_COMMIT_SHORT_SHA and
    ci/release-name.sh (``--short=8`` would give more where 8 are ambiguous)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=2, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    sha = out.stdout.strip()[:8]
    return sha if out.returncode == 0 and sha else None


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the kit reads from the environment. Build with :meth:`from_env`; it validates every value."""

    service: str
    environment: str = "development"
    dsn: str | None = None
    release: str | None = None
    traces_sample_rate: float = 0.0
    # Per transaction name ("task:<name>", "topic:<name>") overrides of traces_sample_rate.
    traces_sample_rates: Mapping[str, float] = field(default_factory=dict)
    # How many incoming already-sampled traces per second a process continues as sampled; past that the
    # local rate applies, so a producer sampling at 1.0 cannot force a transaction for every message.
    traces_incoming_max_per_s: float = 10.0
    profiles_sample_rate: float = 0.0
    debug: bool = False
    log_level: str = "INFO"
    log_event_level: str = "ERROR"
    log_breadcrumb_level: str = "INFO"
    send_default_pii: bool = False
    business_events_per_minute: int = 10
    sentry_queue_size: int = 100
    shutdown_timeout_s: float = 2.0
    # The Sentry-compatible server's web API (sentry-cli's variable names) and which API it speaks.
    sentry_url: str | None = None
    sentry_auth_token: str | None = field(default=None, repr=False)
    sentry_org: str | None = None
    sentry_project: str | None = None
    sentry_api: str = "sentry"
    # Where SLO outcome counts go (OBSKIT_SLO_REDIS_URL, else REDIS_URL); None: outcomes are not recorded.
    slo_redis_url: str | None = None
    slo_flush_interval_s: float = 1.0
    # How long outcome counts are kept in memory while Redis is unreachable before they are dropped.
    slo_buffer_s: float = 600.0
    # Scrubbing, noise and storm control (observability.scrub, .noise, .storm).
    scrub_keys: tuple[str, ...] = ()
    scrub_patterns: tuple[str, ...] = ()
    ignore_exceptions: tuple[str, ...] = ()
    ignore_loggers: tuple[str, ...] = ()
    send_client_errors: bool = False
    # Events per fingerprint per window before the rest are held back; 0 turns storm control off.
    storm_limit: int = 100
    storm_window_s: float = 60.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:  # noqa: PLR0915
        """Read and validate the settings; keyword overrides win over the environment."""
        env = os.environ if environ is None else environ
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            message = f"unknown setting {', '.join(unknown)}: expected some of {', '.join(sorted(known))}"
            raise TypeError(message)

        values: dict[str, Any] = {}

        def read(name: str, variable: str, parse: Callable[[str, str], T]) -> None:
            if name in overrides:
                return
            raw = env.get(variable)
            if raw is not None and raw.strip() != "":
                values[name] = parse(variable, raw)

        service = overrides.get("service") or env.get("SERVICE_NAME", "")
        if not service:
            raise ConfigError(
                "SERVICE_NAME", service, "the service's name, e.g. payments-worker (or init(service=...))"
            )
        if not _SERVICE_RE.match(service):
            raise ConfigError("SERVICE_NAME", service, "lowercase letters, digits, '.', '_' or '-', at most 63")
        values["service"] = service

        if "dsn" not in overrides:
            values["dsn"] = _dsn_from(env)
        read("environment", "SENTRY_ENVIRONMENT", _environment)
        read("release", "SENTRY_RELEASE", _release)
        read("traces_sample_rate", "SENTRY_TRACES_SAMPLE_RATE", _rate)
        read("traces_sample_rates", "OBSKIT_TRACES_SAMPLE_RATES", _rates)
        read("traces_incoming_max_per_s", "OBSKIT_TRACES_INCOMING_MAX_PER_S", parse_positive)
        read("profiles_sample_rate", "SENTRY_PROFILES_SAMPLE_RATE", _rate)
        read("debug", "SENTRY_DEBUG", parse_bool)
        read("log_level", "LOG_LEVEL", _level)
        read("log_event_level", "OBSKIT_LOG_EVENT_LEVEL", _level)
        read("log_breadcrumb_level", "OBSKIT_LOG_BREADCRUMB_LEVEL", _level)
        read("send_default_pii", "OBSKIT_SEND_PII", parse_bool)
        read("business_events_per_minute", "OBSKIT_BUSINESS_EVENTS_PER_MINUTE", parse_count)
        read("sentry_queue_size", "OBSKIT_SENTRY_QUEUE_SIZE", lambda v, raw: parse_count(v, raw, minimum=1))
        read("shutdown_timeout_s", "OBSKIT_SHUTDOWN_TIMEOUT_S", parse_positive)
        read("sentry_url", "SENTRY_URL", lambda _v, raw: raw.strip().rstrip("/"))
        read("sentry_auth_token", "SENTRY_AUTH_TOKEN", lambda _v, raw: raw.strip())
        read("sentry_org", "SENTRY_ORG", lambda _v, raw: raw.strip())
        read("sentry_project", "SENTRY_PROJECT", lambda _v, raw: raw.strip())
        read("sentry_api", "OBSKIT_SENTRY_API", _api_kind)
        read("slo_flush_interval_s", "OBSKIT_SLO_FLUSH_INTERVAL_S", parse_positive)
        read("slo_buffer_s", "OBSKIT_SLO_BUFFER_S", parse_positive)
        read("scrub_keys", "OBSKIT_SCRUB_KEYS", _names)
        read("scrub_patterns", "OBSKIT_SCRUB_PATTERNS", _patterns)
        read("ignore_exceptions", "OBSKIT_IGNORE_EXCEPTIONS", _dotted)
        read("ignore_loggers", "OBSKIT_IGNORE_LOGGERS", _list)
        read("send_client_errors", "OBSKIT_SEND_CLIENT_ERRORS", parse_bool)
        read("storm_limit", "OBSKIT_STORM_LIMIT", parse_count)
        read("storm_window_s", "OBSKIT_STORM_WINDOW_S", parse_positive)
        _check_overrides(overrides)
        if "slo_redis_url" not in overrides:
            for variable in ("OBSKIT_SLO_REDIS_URL", "REDIS_URL"):
                raw = env.get(variable, "").strip()
                if raw:
                    values["slo_redis_url"] = parse_redis_url(variable, raw)
                    break

        settings = cls(**{**values, **overrides})
        if settings.dsn is not None and "dsn" in overrides:
            parse_dsn(settings.dsn)
        if settings.release is None:
            sha = _git_sha()
            if sha:
                settings = replace(settings, release=f"{settings.service}@{sha}")
        return settings

    @property
    def masked_dsn(self) -> str | None:
        """The DSN with its public key cut to four characters, for printing."""
        if not self.dsn:
            return None
        parts = urlsplit(self.dsn)
        key = parts.username or ""
        return self.dsn.replace(f"{key}@", f"{key[:4]}…@", 1)

    def sample_rate_for(self, name: str) -> float:
        return self.traces_sample_rates.get(name, self.traces_sample_rate)

    @property
    def log_event_levelno(self) -> int:
        return int(logging.getLevelName(self.log_event_level))

    @property
    def log_breadcrumb_levelno(self) -> int:
        return int(logging.getLevelName(self.log_breadcrumb_level))


def _check_overrides(overrides: dict[str, Any]) -> None:
    """Check the init() keywords whose variables are checked, in place, failing as the variable would."""
    for name, variable, parse in (
        ("environment", "SENTRY_ENVIRONMENT", _environment),
        ("release", "SENTRY_RELEASE", _release),
    ):
        if isinstance(overrides.get(name), str):
            overrides[name] = parse(variable, overrides[name])
    if "scrub_patterns" in overrides:
        overrides["scrub_patterns"] = _patterns("OBSKIT_SCRUB_PATTERNS", overrides["scrub_patterns"])


def parse_redis_url(variable: str, raw: str) -> str:
    """Check a Redis URL's scheme; a ConfigError naming ``variable`` otherwise."""
    if urlsplit(raw).scheme not in {"redis", "rediss", "unix"}:
        raise ConfigError(variable, raw, "a Redis URL like redis://host:6379/0")
    return raw


def _api_kind(variable: str, raw: str) -> str:
    kind = raw.strip().lower()
    if kind not in {"sentry", "bugsink"}:
        raise ConfigError(variable, raw, "sentry or bugsink")
    return kind


def _dsn_from(env: Mapping[str, str]) -> str | None:
    """SENTRY_DSN, else the file named by SENTRY_DSN_FILE (secrets mounted from a vault)."""
    raw = env.get("SENTRY_DSN", "").strip()
    if raw:
        return parse_dsn(raw)
    path = env.get("SENTRY_DSN_FILE", "").strip()
    if not path:
        return None
    try:
        content = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError("SENTRY_DSN_FILE", path, f"a readable file holding the DSN ({exc.strerror})") from None
    if not content:
        raise ConfigError("SENTRY_DSN_FILE", path, "a file holding the DSN, not an empty one")
    return parse_dsn(content, "SENTRY_DSN_FILE")

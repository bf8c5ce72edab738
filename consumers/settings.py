"""A consumer's settings: arguments win over the environment; a bad value fails with one line naming it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from observability.config import parse_choice, parse_count, parse_port, parse_positive
from observability.errors import ConfigError

__all__ = ["ConsumerSettings"]

Decode = Literal["json", "bytes"]


@dataclass(frozen=True, kw_only=True)
class ConsumerSettings:
    """How one consumer runs. Build with :meth:`from_env`."""

    bootstrap_servers: str
    group_id: str
    topics: tuple[str, ...]
    decode: Decode = "json"
    # Handler attempts per message (1 = no retry) before it is parked in the dead-letter topic.
    attempts: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    # "<topic><suffix>" unless dlq_topic names one topic for all.
    dlq_suffix: str = ".dlq"
    dlq_topic: str | None = None
    # What a BusinessRuleError does to the message: move on (commit) or park it in the DLQ.
    business_failure: Literal["commit", "dlq"] = "commit"
    # Payload field that names the user when no x-user-id header does (JSON objects only).
    user_id_field: str | None = "user_id"
    commit_interval_s: float = 1.0
    batch_size: int = 500
    poll_timeout_s: float = 0.2
    # One message in this many has its handler time measured, plus every failed or traced one.
    duration_sample_every: int = 16
    lag_interval_s: float = 5.0
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    # /healthz fails once the poll loop has not come round for this long.
    stall_after_s: float = 60.0
    kafka: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ConsumerSettings:
        env = os.environ if environ is None else environ
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            message = f"unknown consumer setting {', '.join(unknown)}"
            raise TypeError(message)
        values: dict[str, Any] = {}
        values["bootstrap_servers"] = overrides.get("bootstrap_servers") or env.get("KAFKA_BOOTSTRAP_SERVERS", "")
        if not values["bootstrap_servers"]:
            raise ConfigError("KAFKA_BOOTSTRAP_SERVERS", "", "host:port[,host:port...] of the Kafka brokers")
        values["group_id"] = overrides.get("group_id") or env.get("KAFKA_GROUP_ID", "")
        if not values["group_id"]:
            raise ConfigError("KAFKA_GROUP_ID", "", "the consumer group's id (or --group)")
        topics = overrides.get("topics") or tuple(
            t.strip() for t in env.get("KAFKA_TOPICS", "").split(",") if t.strip()
        )
        if not topics:
            raise ConfigError("KAFKA_TOPICS", env.get("KAFKA_TOPICS", ""), "comma-separated topic names (or --topic)")
        values["topics"] = tuple(topics)

        readers = {
            "decode": ("OBSKIT_CONSUMER_DECODE", lambda v, raw: parse_choice(v, raw, ("json", "bytes"))),
            "attempts": ("OBSKIT_CONSUMER_ATTEMPTS", lambda v, raw: parse_count(v, raw, minimum=1)),
            "backoff_s": ("OBSKIT_CONSUMER_BACKOFF_S", parse_positive),
            "backoff_max_s": ("OBSKIT_CONSUMER_BACKOFF_MAX_S", parse_positive),
            "dlq_suffix": ("OBSKIT_CONSUMER_DLQ_SUFFIX", lambda _v, raw: raw),
            "dlq_topic": ("OBSKIT_CONSUMER_DLQ_TOPIC", lambda _v, raw: raw),
            "business_failure": (
                "OBSKIT_CONSUMER_BUSINESS_FAILURE",
                lambda v, raw: parse_choice(v, raw, ("commit", "dlq")),
            ),
            "user_id_field": ("OBSKIT_CONSUMER_USER_ID_FIELD", lambda _v, raw: raw),
            "commit_interval_s": ("OBSKIT_CONSUMER_COMMIT_INTERVAL_S", parse_positive),
            "batch_size": ("OBSKIT_CONSUMER_BATCH_SIZE", lambda v, raw: parse_count(v, raw, minimum=1)),
            "metrics_port": ("OBSKIT_CONSUMER_METRICS_PORT", parse_port),
            "metrics_host": ("OBSKIT_CONSUMER_METRICS_HOST", lambda _v, raw: raw),
            "stall_after_s": ("OBSKIT_CONSUMER_STALL_AFTER_S", parse_positive),
        }
        for name, (variable, parse) in readers.items():
            raw = env.get(variable, "").strip()
            if name not in overrides and raw:
                values[name] = parse(variable, raw)  # type: ignore[operator]
        values.update({k: v for k, v in overrides.items() if k not in ("bootstrap_servers", "group_id", "topics")})
        settings = cls(**values)
        if settings.backoff_max_s < settings.backoff_s:
            raise ConfigError(
                "OBSKIT_CONSUMER_BACKOFF_MAX_S", settings.backoff_max_s, f">= the backoff ({settings.backoff_s})"
            )
        return settings

    def dlq_for(self, topic: str) -> str:
        return self.dlq_topic or f"{topic}{self.dlq_suffix}"

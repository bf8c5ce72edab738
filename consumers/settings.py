"""A consumer's settings: arguments win over the environment; a bad value fails with one line naming it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from observability.config import parse_choice, parse_count, parse_port, parse_positive
from observability.errors import ConfigError

__all__ = ["ConsumerSettings", "connection_settings"]

Decode = Literal["json", "bytes"]

# librdkafka settings the runner sets itself and a ``kafka`` mapping may not change.
RUNNER_KAFKA_KEYS = frozenset(
    {
        "bootstrap.servers",
        "group.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "on_commit",
        "error_cb",
        "logger",
    }
)
# The ``kafka`` settings the dead-letter producer shares with the consumer: how to reach and
# authenticate to the brokers (and ``oauth_cb``, OAUTHBEARER's token callback).
CONNECTION_PREFIXES = ("security.", "sasl.", "ssl.", "enable.ssl.", "socket.", "client.", "broker.", "reconnect.")


def connection_settings(kafka: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in kafka.items() if key.startswith(CONNECTION_PREFIXES) or key == "oauth_cb"}


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
            if name in overrides:
                # Arguments (the CLI's --attempts, a runner built in code) are held to the same rules.
                if overrides[name] is not None:
                    parse(variable, str(overrides[name]))  # type: ignore[operator]
            elif raw := env.get(variable, "").strip():
                values[name] = parse(variable, raw)  # type: ignore[operator]
        values.update({k: v for k, v in overrides.items() if k not in ("bootstrap_servers", "group_id", "topics")})
        return cls(**values)

    def __post_init__(self) -> None:
        """What no single value shows: the settings that contradict each other or the runner."""
        if self.backoff_max_s < self.backoff_s:
            raise ConfigError("OBSKIT_CONSUMER_BACKOFF_MAX_S", self.backoff_max_s, f">= the backoff ({self.backoff_s})")
        for topic in self.topics:
            if topic.startswith("^"):
                raise ConfigError(
                    "KAFKA_TOPICS", topic, "topic names (no regex subscription: offsets and DLQs are per named topic)"
                )
            dlq = self.dlq_for(topic)
            if dlq in self.topics:
                variable = "OBSKIT_CONSUMER_DLQ_TOPIC" if self.dlq_topic else "OBSKIT_CONSUMER_DLQ_SUFFIX"
                raise ConfigError(
                    variable, self.dlq_topic or self.dlq_suffix, f"a dead-letter topic other than the consumed {dlq!r}"
                )
        taken = sorted(set(self.kafka) & RUNNER_KAFKA_KEYS)
        if taken:
            raise ConfigError(
                "kafka",
                ", ".join(taken),
                "no setting the runner owns (at-least-once needs its own offset store and commits; the group and "
                "brokers come from KAFKA_GROUP_ID and KAFKA_BOOTSTRAP_SERVERS)",
            )

    def dlq_for(self, topic: str) -> str:
        return self.dlq_topic or f"{topic}{self.dlq_suffix}"

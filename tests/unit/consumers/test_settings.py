"""Consumer settings that would lose or loop messages are refused; the DLQ producer connects as the
consumer does."""

from typing import Any

import pytest

from consumers.settings import ConsumerSettings, connection_settings
from observability.errors import ConfigError


@pytest.mark.parametrize(
    ("environ", "overrides", "variable"),
    [
        ({"OBSKIT_CONSUMER_DLQ_TOPIC": "t"}, {}, "OBSKIT_CONSUMER_DLQ_TOPIC"),
        ({}, {"dlq_suffix": ""}, "OBSKIT_CONSUMER_DLQ_SUFFIX"),
        ({}, {"topics": ("^pay.*",)}, "KAFKA_TOPICS"),
        ({}, {"attempts": 0}, "OBSKIT_CONSUMER_ATTEMPTS"),
        ({}, {"batch_size": 0}, "OBSKIT_CONSUMER_BATCH_SIZE"),
        ({}, {"backoff_s": -1.0}, "OBSKIT_CONSUMER_BACKOFF_S"),
        ({}, {"kafka": {"enable.auto.commit": True}}, "kafka"),
        ({}, {"kafka": {"group.id": "other"}}, "kafka"),
    ],
)
def test_settings_that_would_lose_or_loop_messages_are_refused(
    environ: dict[str, str], overrides: dict[str, Any], variable: str
) -> None:
    arguments: dict[str, Any] = {"bootstrap_servers": "127.0.0.1:9", "topics": ("t",), "group_id": "g"}
    with pytest.raises(ConfigError) as refused:
        ConsumerSettings.from_env(environ, **{**arguments, **overrides})
    assert refused.value.variable == variable


def test_the_dead_letter_producer_reaches_the_brokers_as_the_consumer_does() -> None:
    kafka = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "ssl.ca.location": "/etc/ca.pem",
        "auto.offset.reset": "latest",
        "fetch.min.bytes": 1024,
        "oauth_cb": print,
    }
    assert connection_settings(kafka) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "ssl.ca.location": "/etc/ca.pem",
        "oauth_cb": print,  # OAUTHBEARER's token callback: the producer authenticates as the consumer does
    }

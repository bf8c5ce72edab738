"""What the runner does with the broker's answer to an asynchronous offset commit."""

import pytest
from confluent_kafka import KafkaError

from consumers.runner import Runner
from consumers.settings import ConsumerSettings
from observability.testing import CapturedEvents


def runner() -> Runner:
    settings = ConsumerSettings.from_env({}, bootstrap_servers="127.0.0.1:9", topics=("t",), group_id="g")
    return Runner(lambda payload: None, settings, install_signals=False)


def test_a_failed_asynchronous_commit_is_sent_again(obskit_events: CapturedEvents) -> None:
    # The async commit cleared the flag when it was sent; the broker then refused it (a rebalance).
    # Without the flag back, the commit at shutdown would be skipped and everything since redelivered.
    r = runner()
    r._stored_since_commit = False
    r._on_commit(KafkaError(KafkaError.REBALANCE_IN_PROGRESS), [])
    assert r._stored_since_commit
    assert obskit_events.metric("obskit_kafka_commits_total", {"service": "test", "result": "error"}) == 1


def test_a_commit_with_nothing_stored_or_accepted_leaves_nothing_to_send(obskit_events: CapturedEvents) -> None:
    r = runner()
    r._stored_since_commit = False
    r._on_commit(None, [])
    r._on_commit(KafkaError(KafkaError._NO_OFFSET), [])
    assert not r._stored_since_commit


class Answer:
    """A partition in the broker's answer to a commit (librdkafka sets ``error``; Python cannot)."""

    def __init__(self, partition: int, error: KafkaError | None = None) -> None:
        self.topic, self.partition, self.offset, self.error = "t", partition, 10, error


def test_a_failed_commit_names_each_partition_the_broker_refused(
    obskit_events: CapturedEvents, caplog: pytest.LogCaptureFixture
) -> None:
    # librdkafka hands the callback one partition's error as the commit's, and every partition its own.
    r = runner()
    r._stored_since_commit = False
    refused = KafkaError(KafkaError.OFFSET_METADATA_TOO_LARGE)
    r._on_commit(refused, [Answer(0), Answer(1, refused), Answer(2, KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))])  # type: ignore[list-item]
    assert r._stored_since_commit
    assert obskit_events.metric("obskit_kafka_commits_total", {"service": "test", "result": "error"}) == 1
    assert "t[1]" in caplog.text
    assert "t[2]" in caplog.text
    assert "t[0]" not in caplog.text

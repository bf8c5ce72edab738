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


def test_a_partition_refused_in_an_accepted_commit_is_a_failure_and_sent_again(
    obskit_events: CapturedEvents, caplog: pytest.LogCaptureFixture
) -> None:
    r = runner()
    r._stored_since_commit = False
    r._on_commit(None, [Answer(0), Answer(1, KafkaError(KafkaError.OFFSET_METADATA_TOO_LARGE))])  # type: ignore[list-item]
    assert r._stored_since_commit
    assert obskit_events.metric("obskit_kafka_commits_total", {"service": "test", "result": "error"}) == 1
    assert obskit_events.metric("obskit_kafka_commits_total", {"service": "test", "result": "ok"}) == 0
    assert "t[1]" in caplog.text
    assert "t[0]" not in caplog.text


class Consumer:
    def __init__(self, answer: list[Answer]) -> None:
        self.answer = answer

    def commit(self, asynchronous: bool = True) -> list[Answer] | None:
        return None if asynchronous else self.answer


def test_a_synchronous_commit_reads_each_partitions_answer(obskit_events: CapturedEvents) -> None:
    r = runner()
    r.consumer = Consumer([Answer(0, KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))])  # type: ignore[assignment]
    r._stored_since_commit = True
    r._commit(asynchronous=False)
    assert r._stored_since_commit  # the shutdown's commit is tried again, not forgotten
    assert obskit_events.metric("obskit_kafka_commits_total", {"service": "test", "result": "error"}) == 1

    r.consumer = Consumer([Answer(0), Answer(1)])  # type: ignore[assignment]
    r._commit(asynchronous=False)
    assert not r._stored_since_commit
    assert obskit_events.metric("obskit_kafka_commits_total", {"service": "test", "result": "ok"}) == 1

"""The runner's edges, driven with a stand-in consumer and dead-letter producer: rebalances, the lag of
an unreachable coordinator, messages that are not JSON objects, and which message a log line or
breadcrumb belongs to."""

from collections.abc import Callable
from typing import Any

import pytest
import sentry_sdk
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

import observability as obs
from consumers.runner import Runner
from consumers.settings import ConsumerSettings
from observability.testing import CapturedEvents


class FakeConsumer:
    """What the runner calls on its consumer, recorded."""

    def __init__(self, high: int = 10, committed: Callable[[], int] | None = None) -> None:
        self.stored: list[tuple[str, int, int]] = []
        self.paused: list[tuple[str, int]] = []
        self.resumed: list[tuple[str, int]] = []
        self.commits = 0
        self.assigned = [TopicPartition("t", 0), TopicPartition("t", 1)]
        self.high = high
        self.committed_offset = committed or (lambda: 4)
        self.committed_calls = 0

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        self.stored += [(p.topic, p.partition, p.offset) for p in offsets]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused += [(p.topic, p.partition) for p in partitions]

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.resumed += [(p.topic, p.partition) for p in partitions]

    def seek(self, partition: TopicPartition) -> None:
        pass

    def commit(self, asynchronous: bool = True) -> None:
        self.commits += 1

    def assignment(self) -> list[TopicPartition]:
        return self.assigned

    def get_watermark_offsets(self, partition: TopicPartition, cached: bool = True) -> tuple[int, int]:
        return 0, self.high

    def committed(self, partitions: list[TopicPartition], timeout: float = 1.0) -> list[TopicPartition]:
        self.committed_calls += 1
        return [TopicPartition(p.topic, p.partition, self.committed_offset()) for p in partitions]


class FakeDeadLetters:
    """Parks messages; ``flush`` delivers what is in flight, as the real producer's reports would."""

    def __init__(self) -> None:
        self.in_flight: list[tuple[Message, dict[str, Any], Callable[[str | None], None]]] = []
        self.parked: list[tuple[Message, dict[str, Any]]] = []

    def park(self, message: Message, *, on_done: Callable[[str | None], None], **why: Any) -> None:
        self.in_flight.append((message, why, on_done))

    def poll(self, timeout: float = 0.0) -> None:
        pass

    def flush(self, timeout: float) -> int:
        for message, why, on_done in self.in_flight:
            self.parked.append((message, why))
            on_done(None)
        self.in_flight.clear()
        return 0


def message(offset: int, value: bytes | None, *, partition: int = 0, user: str | None = None) -> Message:
    headers = [("x-user-id", user.encode())] if user else []
    return Message(topic="t", partition=partition, offset=offset, value=value, headers=headers, timestamp=(1, 1000))


def runner(handler: Callable[..., Any], **settings: Any) -> tuple[Runner, FakeConsumer, FakeDeadLetters]:
    config = ConsumerSettings.from_env({}, bootstrap_servers="127.0.0.1:9", topics=("t",), group_id="g", **settings)
    r = Runner(handler, config, install_signals=False)
    consumer, dead_letters = FakeConsumer(), FakeDeadLetters()
    r.consumer, r._dlq = consumer, dead_letters  # type: ignore[assignment]
    return r, consumer, dead_letters


def lag(events: CapturedEvents, partition: int) -> float | None:
    labels = {"service": "test", "topic": "t", "partition": str(partition)}
    return events.registry.get_sample_value("obskit_kafka_consumer_lag_messages", labels)


def test_a_retried_message_that_succeeds_leaves_its_breadcrumbs_behind(obskit_events: CapturedEvents) -> None:
    attempts: list[str] = []

    def handler(payload: dict[str, Any]) -> None:
        attempts.append(payload["id"])
        if payload["id"] == "a" and attempts.count("a") == 1:
            raise ValueError("a transient failure")
        if payload["id"] == "b":
            obs.capture_message("b looks around")

    r, _, _ = runner(handler)
    r._handle([message(1, b'{"id": "a", "user_id": "alice"}')])
    r._retrying[("t", 0)].due = 0.0
    r._service_retries()  # a succeeds at its second attempt, with its first attempt's breadcrumb
    r._handle([message(7, b'{"id": "b", "user_id": "bob"}', partition=1)])
    (event,) = obskit_events.messages
    assert event["tags"]["user_id"] == "bob"
    assert [c.get("message") for c in event["breadcrumbs"]["values"]] == []


def test_the_unit_is_current_only_while_a_batch_is_handled(obskit_events: CapturedEvents) -> None:
    seen: list[str | None] = []

    def handler(payload: dict[str, Any]) -> None:
        unit = obs.current()
        seen.append(None if unit is None else unit.user_id)

    r, _, _ = runner(handler)
    r._handle([message(1, b'{"user_id": "alice"}'), message(2, b'{"user_id": "bob"}')])
    assert seen == ["alice", "bob"]
    # What the runner logs after the batch (a revocation, a failed commit) belongs to no message.
    assert obs.current() is None


@pytest.mark.parametrize("decode", ["json", "bytes"])
def test_a_tombstone_reaches_the_handler_as_none(obskit_events: CapturedEvents, decode: str) -> None:
    payloads: list[object] = []
    r, consumer, dead_letters = runner(payloads.append, decode=decode)
    r._handle([message(3, None)])
    assert payloads == [None]
    assert (dead_letters.in_flight, consumer.stored, obskit_events.errors) == ([], [("t", 0, 4)], [])


def test_deeply_nested_json_is_parked_not_raised(obskit_events: CapturedEvents) -> None:
    r, consumer, dead_letters = runner(lambda payload: None)
    r._handle([message(5, b"[" * 100_000)])
    ((_, why, _),) = dead_letters.in_flight
    assert (why["reason"], type(why["error"]).__name__) == ("undecodable", "RecursionError")
    assert consumer.stored == [("t", 0, 5)]  # not past it before the dead-letter topic has it


def test_a_revoked_partition_waiting_for_a_retry_is_resumed_and_its_lag_series_dropped(
    obskit_events: CapturedEvents,
) -> None:
    def handler(payload: dict[str, Any]) -> None:
        raise ValueError("down")

    r, consumer, _ = runner(handler)
    r._handle([message(1, b"{}")])
    assert consumer.paused == [("t", 0)]
    r._update_lag()
    assert lag(obskit_events, 0) == 6  # the group's committed 4 to the high watermark 10
    r._on_revoke(None, [TopicPartition("t", 0)])
    # librdkafka keeps an application's pause across a rebalance: handed back, it would never fetch.
    assert consumer.resumed == [("t", 0)]
    assert lag(obskit_events, 0) is None  # a revoked partition's lag is its next owner's to report
    assert lag(obskit_events, 1) == 6


def test_a_revocation_confirms_dead_letters_in_flight_before_it_commits(obskit_events: CapturedEvents) -> None:
    def handler(payload: dict[str, Any]) -> None:
        raise ValueError("broken for good")

    r, consumer, dead_letters = runner(handler, attempts=1)
    r._handle([message(1, b"{}")])
    assert consumer.stored == [("t", 0, 1)]  # parked, its delivery report not in yet: not past it
    r._on_revoke(None, [TopicPartition("t", 0)])
    assert len(dead_letters.parked) == 1
    assert consumer.stored[-1] == ("t", 0, 2)  # committed with the revocation: the next owner moves on
    assert consumer.commits == 1


def test_the_lag_waits_a_round_when_the_coordinator_is_unreachable(obskit_events: CapturedEvents) -> None:
    r, consumer, _ = runner(lambda payload: None)

    def unreachable() -> int:
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT))

    consumer.committed_offset = unreachable
    r._update_lag()  # does not raise into the poll loop
    assert (lag(obskit_events, 0), lag(obskit_events, 1)) == (None, None)
    consumer.committed_offset = lambda: 4
    r._update_lag()
    assert (lag(obskit_events, 0), lag(obskit_events, 1)) == (6, 6)
    assert consumer.committed_calls == 2  # one question a round for every partition not consumed from


def test_a_broker_error_in_a_batch_is_logged_outside_the_last_messages_unit(
    obskit_events: CapturedEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    r, _, _ = runner(lambda payload: None)
    seen: list[object] = []
    monkeypatch.setattr(r, "_on_error", lambda err: seen.append(obs.current()))
    failed = Message(topic="t", partition=0, offset=-1, error=KafkaError(KafkaError._TRANSPORT))
    r._handle([message(1, b'{"user_id": "alice"}'), failed, message(2, b'{"user_id": "bob"}')])
    assert seen == [None]
    assert r.consumer.stored[-1] == ("t", 0, 3)  # type: ignore[attr-defined]  # the batch goes on


def test_a_handler_stuck_on_a_partitions_first_message_shows_the_messages_age(obskit_events: CapturedEvents) -> None:
    # Before anything was settled from a partition the lag came from the group's committed offset and
    # its age read 0: a consumer stuck on its first message after an assignment never looked late.
    seen: dict[str, float | None] = {}

    def handler(payload: dict[str, Any]) -> None:
        r._update_lag()  # the poll loop's tick, as it would read while this handler runs
        labels = {"service": "test", "topic": "t", "partition": "0"}
        seen["messages"] = lag(obskit_events, 0)
        seen["seconds"] = obskit_events.registry.get_sample_value("obskit_kafka_consumer_lag_seconds", labels)

    r, consumer, _ = runner(handler)
    r._on_assign(None, consumer.assigned)
    r._handle([message(7, b"{}")])  # the group's committed offset says 4; the fetch starts at 7
    assert seen["messages"] == 3  # 7, 8, 9 before the high watermark 10
    assert seen["seconds"] is not None
    assert seen["seconds"] > 1_000_000  # the message's own timestamp (1 s after the epoch here)
    r._update_lag()
    assert lag(obskit_events, 0) == 2  # settled: from the newest consumed, as before
    assert lag(obskit_events, 1) == 6  # nothing fetched from partition 1: the committed offset


def test_what_a_handler_sets_on_the_sdks_scope_belongs_to_its_message(obskit_events: CapturedEvents) -> None:
    def handler(payload: dict[str, Any]) -> None:
        if payload["id"] in ("a", "retried"):
            sentry_sdk.set_user({"id": f"sdk-{payload['id']}"})
            sentry_sdk.set_tag("order_id", payload["id"])
            if payload["id"] == "retried" and not r._retrying:
                raise ValueError("a transient failure")  # its second attempt runs from the retry path
        obs.capture_message(payload["id"])

    r, _, _ = runner(handler)
    r._handle([message(1, b'{"id": "a"}'), message(2, b'{"id": "b"}')])
    r._handle([message(3, b'{"id": "retried"}', partition=1)])
    r._retrying[("t", 1)].due = 0.0
    r._service_retries()
    r._handle([message(4, b'{"id": "c"}')])
    events = {event["message"]: event for event in obskit_events.messages}
    for name in ("a", "retried"):
        assert events[name]["tags"]["user_id"] == f"sdk-{name}" == events[name]["user"]["id"]
        assert events[name]["tags"]["order_id"] == name
    for name in ("b", "c"):
        assert "id" not in events[name].get("user", {}), name
        assert "user_id" not in events[name]["tags"], name
        assert "order_id" not in events[name]["tags"], name


def test_assigned_partitions_are_counted_per_topic_from_zero(obskit_events: CapturedEvents) -> None:
    def assigned(topic: str) -> float | None:
        labels = {"service": "test", "topic": topic}
        return obskit_events.registry.get_sample_value("obskit_kafka_consumer_assigned_partitions", labels)

    r, consumer, _ = runner(lambda payload: None)
    assert assigned("t") == 0  # before any assignment: a missing topic reads 0, not nothing
    r._on_assign(consumer, [TopicPartition("t", 0), TopicPartition("t", 1)])
    assert assigned("t") == 2
    r._on_revoke(consumer, [TopicPartition("t", 1)])  # cooperative: one partition moves away
    assert assigned("t") == 1
    r._on_lost(consumer, [TopicPartition("t", 0)])
    assert assigned("t") == 0

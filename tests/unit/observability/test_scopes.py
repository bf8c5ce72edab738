"""What the app sets on the SDK's scope inside a unit of work (``sentry_sdk.set_user``, ``set_tag``, ...)
is that unit's: it is on the unit's events and on no later one's."""

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.feature_flags import add_feature_flag

import observability as obs
from observability.scopes import changed, hold, release
from observability.testing import CapturedEvents


@pytest.fixture(autouse=True)
def own_isolation_scope() -> Iterator[None]:
    """What a test sets before its units stays in the test."""
    with sentry_sdk.isolation_scope():
        yield


def set_everything() -> None:
    sentry_sdk.set_user({"id": "alice"})
    sentry_sdk.set_tag("order_id", "o-1")
    sentry_sdk.set_context("order", {"total": 10})
    sentry_sdk.set_extra("attempt", 3)
    sentry_sdk.set_level("warning")


def assert_everything(event: dict[str, Any]) -> None:
    assert event["user"]["id"] == "alice"
    assert event["tags"]["user_id"] == "alice"
    assert event["tags"]["order_id"] == "o-1"
    assert event["contexts"]["order"] == {"total": 10}
    assert event["extra"]["attempt"] == 3
    assert event["level"] == "warning"


def assert_nothing_left(event: dict[str, Any]) -> None:
    assert "user" not in event or "id" not in event["user"]
    assert "user_id" not in event["tags"]
    assert "order_id" not in event["tags"]
    assert "order" not in event["contexts"]
    assert "attempt" not in event.get("extra", {})
    assert event["level"] == "info"


def test_what_a_bind_block_sets_on_the_sdks_scope_is_undone_at_its_end(obskit_events: CapturedEvents) -> None:
    sentry_sdk.set_tag("site", "eu")
    with obs.bind():
        set_everything()
        obs.capture_message("inside")
    obs.capture_message("after")
    with obs.bind():
        obs.capture_message("the next unit")
    inside, after, following = obskit_events
    assert_everything(inside)
    for event in (after, following):
        assert_nothing_left(event)
        assert event["tags"]["site"] == "eu"  # set before the units: kept


def test_a_bind_sees_the_user_set_on_the_scope_before_it(obskit_events: CapturedEvents) -> None:
    sentry_sdk.set_user({"id": "web-user"})  # e.g. Sentry's own web integration, before the app binds
    with obs.bind(component="billing"):
        obs.capture_message("inside")
    (event,) = obskit_events
    assert (event["user"]["id"], event["tags"]["user_id"]) == ("web-user", "web-user")


def test_asyncio_tasks_binding_at_once_keep_their_own_scope_users(obskit_events: CapturedEvents) -> None:
    async def job(name: str, first: asyncio.Event, second: asyncio.Event) -> None:
        with obs.bind(job=name):
            sentry_sdk.set_user({"id": name})
            first.set()
            await second.wait()  # the other task sets its user in between
            obs.capture_message(name)

    async def both() -> None:
        a_set, b_set = asyncio.Event(), asyncio.Event()
        await asyncio.gather(job("a", a_set, b_set), job("b", b_set, a_set))

    asyncio.run(both())
    users = {event["message"]: (event["user"]["id"], event["tags"]["user_id"]) for event in obskit_events}
    assert users == {"a": ("a", "a"), "b": ("b", "b")}


def test_a_held_unit_sees_what_was_set_before_it_and_gives_the_scope_back_as_it_was(
    obskit_events: CapturedEvents,
) -> None:
    # As in a scope forked per task: e.g. an app's own task_prerun receiver set the user just before.
    sentry_sdk.set_user({"id": "set-before"})
    sentry_sdk.set_tag("site", "eu")
    held = hold()
    try:
        obs.capture_message("start")
        set_everything()
        obs.capture_message("inside")
    finally:
        release(held)
    obs.capture_message("after")
    start, inside, after = obskit_events
    assert (start["user"]["id"], start["tags"]["user_id"], start["tags"]["site"]) == ("set-before",) * 2 + ("eu",)
    assert_everything(inside)
    assert (after["user"]["id"], after["tags"]["site"], after["level"]) == ("set-before", "eu", "info")
    assert "order_id" not in after["tags"]
    assert "order" not in after["contexts"]


def _clear() -> None:
    sentry_sdk.get_isolation_scope().clear()


def _fingerprint() -> None:
    sentry_sdk.get_isolation_scope().fingerprint = ["one-group"]


def _attachment() -> None:
    sentry_sdk.add_attachment(bytes=b'{"card": "4111"}', filename="payload.json")


@pytest.mark.parametrize(
    "change",
    [
        lambda: sentry_sdk.set_user({"id": "x"}),
        lambda: sentry_sdk.set_tag("site", "us"),
        lambda: sentry_sdk.set_tags({"site": "us", "shard": "2"}),
        lambda: sentry_sdk.get_isolation_scope().remove_tag("site"),
        lambda: sentry_sdk.set_context("site", {"region": "us"}),
        lambda: sentry_sdk.set_extra("site", "us"),
        lambda: sentry_sdk.set_level("fatal"),
        _fingerprint,
        _attachment,
        lambda: sentry_sdk.set_attribute("site", "us"),
        lambda: add_feature_flag("new-checkout", True),
        _clear,
    ],
    ids=[
        "set_user",
        "set_tag",
        "set_tags",
        "remove_tag",
        "set_context",
        "set_extra",
        "set_level",
        "fingerprint",
        "add_attachment",
        "set_attribute",
        "add_feature_flag",
        "clear",
    ],
)
def test_each_of_the_sdks_scope_setters_is_undone_by_release(
    obskit_events: CapturedEvents, change: Callable[[], None]
) -> None:
    # The kit keeps the SDK scope's private fields: this checks them against the installed SDK.
    sentry_sdk.set_user({"id": "kept"})
    sentry_sdk.set_tag("site", "eu")
    sentry_sdk.set_context("site", {"region": "eu"})
    sentry_sdk.set_extra("site", "eu")
    sentry_sdk.set_attribute("site", "eu")
    add_feature_flag("old-checkout", True)
    obs.capture_message("before")
    attributes = dict(sentry_sdk.get_isolation_scope()._attributes)
    outer = hold()
    inner = hold()  # holds nest (a unit inside another): undone in order
    assert not changed(inner)
    change()
    assert changed(inner)  # what the Kafka runner asks after each message of a batch
    release(inner)
    release(outer)
    obs.capture_message("after")
    before, after = obskit_events
    assert after["user"] == before["user"]
    # (clear() also starts the scope's trace again: not a field the kit keeps.)
    after["tags"].pop("trace_id")
    before["tags"].pop("trace_id")
    assert after["tags"] == before["tags"]
    for name in ("site", "flags"):
        assert after["contexts"][name] == before["contexts"][name]
    assert (after["extra"], after["level"]) == (before["extra"], before["level"])
    assert after.get("fingerprint") == before.get("fingerprint")
    assert [item.type for item in obskit_events.envelopes[-1].items] == ["event"]  # no attachment
    assert sentry_sdk.get_isolation_scope()._attributes == attributes


def test_the_units_user_replaces_a_scope_user_of_another_or_no_id_whole(obskit_events: CapturedEvents) -> None:
    sentry_sdk.set_user({"email": "bob@example.com", "username": "bob"})
    with obs.bind(user_id=42):
        obs.capture_message("no id on the scope")
        sentry_sdk.set_user({"id": "42", "email": "carol@example.com"})
        obs.capture_message("the same id")
    other, same = obskit_events
    assert other["user"] == {"id": "42"}
    assert same["user"] == {"id": "42", "email": "carol@example.com"}  # the same person: kept


class Unequal:
    """A value whose == raises, as a numpy array's does."""

    def __eq__(self, other: object) -> bool:
        raise ValueError("the truth value of an array is ambiguous")

    __hash__ = object.__hash__


def test_a_value_that_cannot_be_compared_counts_as_a_change() -> None:
    sentry_sdk.set_context("model", {"weights": Unequal()})
    held = hold()
    try:
        sentry_sdk.set_context("model", {"weights": Unequal()})
        assert changed(held)  # not an exception out of the Kafka runner's loop
    finally:
        release(held)


@pytest.fixture
def tenant() -> Iterator[None]:
    sentry_sdk.set_tag("tenant", "t-1")
    yield
    sentry_sdk.get_isolation_scope().remove_tag("tenant")


def test_what_a_fixture_set_before_obskit_events_is_on_the_tests_events(
    tenant: None, obskit_events: CapturedEvents
) -> None:
    obs.capture_message("m")
    assert obskit_events[0]["tags"]["tenant"] == "t-1"


def test_a_bind_keeps_the_last_event_id_for_the_code_around_it(obskit_events: CapturedEvents) -> None:
    with obs.bind():
        event_id = obs.capture_message("shown on the error page")
    assert event_id is not None
    assert sentry_sdk.last_event_id() == event_id


def test_a_bind_entered_again_while_in_use_is_a_clear_error() -> None:
    block = obs.bind(user_id=1)
    with block, pytest.raises(RuntimeError, match="in use already"), block:
        pass
    with block:  # once left, it may be used again
        assert obs.current() is not None

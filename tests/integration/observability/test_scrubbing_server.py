"""What the Sentry-compatible server stored: not one planted secret, and no more than the storm limit."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator

import pytest
import sentry_sdk
from prometheus_client import CollectorRegistry

import observability as obs
from observability.sentry_api import Issue, ServerAPI, search_query
from tests.helpers import wait_for, wait_for_event


def planted(name: str) -> str:
    """A secret made at run time, so the test's own source lines (sent as frame context) never hold it."""
    return f"{name}{uuid.uuid4().hex[:12]}"


def luhn_valid(prefix: str) -> str:
    total = 0
    for position, char in enumerate(reversed(prefix)):
        digit = int(char)
        if position % 2 == 0:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return prefix + str((10 - total % 10) % 10)


def charge(card_number: str, order: dict[str, object], note: str) -> None:
    attempt = 3  # an ordinary local: it must arrive
    raise ValueError(f"card {card_number} declined for order {order['id']} (attempt {attempt}): {note}")


def test_not_one_planted_secret_reaches_the_server(kit: obs.sentry.Runtime, api: ServerAPI) -> None:
    secrets = {
        name: planted(name)
        for name in ("pw", "tok", "key", "sess", "url", "query", "crumb", "param", "jwtsig", "bearer", "tag", "ctx")
    }
    card = luhn_valid("4" + uuid.uuid4().int.__str__()[:14])
    spaced_card = " ".join(card[i : i + 4] for i in range(0, 16, 4))
    order_id = str(int(luhn_valid("5" + uuid.uuid4().int.__str__()[:14])) + 1)  # 16 digits, fails Luhn
    trace_marker = str(uuid.uuid4())
    jwt = f"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.{secrets['jwtsig']}"
    log = logging.getLogger("itest.scrub")
    log.setLevel(logging.INFO)

    ids = []
    with obs.bind(user_id=f"scrub-{uuid.uuid4().hex[:8]}", component=f"token={secrets['tag']}"):
        log.info("calling https://svc:%s@pay.example.com/v1?api_key=%s", secrets["url"], secrets["query"])
        obs.add_breadcrumb("http", "retry", authorization=f"Bearer {secrets['crumb']}", order=order_id)
        try:
            try:
                order = {"id": order_id, "auth": {"password": secrets["pw"], "session": secrets["sess"]}}
                charge(spaced_card, order, f"Authorization: Bearer {secrets['bearer']}")
            except ValueError as inner:
                raise RuntimeError(f"payment failed, api_key={secrets['key']} ref {trace_marker}") from inner
        except RuntimeError as exc:
            ids.append(obs.capture_exception(exc, context={"customer": {"iban": "DE" + secrets["ctx"]}}, jwt=jwt))
        ids.append(obs.capture_message(f"retrying with token={secrets['tok']} card {card}", "warning"))
        log.error("login failed for order %s password=%s", order_id, secrets["param"])
        ids.append(sentry_sdk.last_event_id())
    obs.flush(10)

    stored = [wait_for_event(api, event_id) for event_id in ids]
    everything = json.dumps([s.data for s in stored])
    for name, value in [*secrets.items(), ("card", card), ("spaced card", spaced_card)]:
        assert value not in everything, f"{name} reached the server"
    # The events arrived with their ordinary values: the test can see a leak when there is one.
    assert order_id in everything
    assert trace_marker in everything
    assert '"attempt": "3"' in everything
    assert "[Filtered]" in everything


@pytest.fixture
def storm_kit(server_env: dict[str, str]) -> Iterator[obs.sentry.Runtime]:
    # A queue large enough for every event storm control lets through: what the server stores is then
    # what the kit sent, not what a full queue happened to keep.
    environ = {**server_env, "OBSKIT_SENTRY_QUEUE_SIZE": "1000"}
    rt = obs.init("itest-storm", environ=environ, registry=CollectorRegistry())
    yield rt
    obs.shutdown(timeout_s=10)


def storm_issue(api: ServerAPI, marker: str) -> Issue | None:
    found = api.issues(search_query({"component": marker}))
    return found[0] if found else None


def test_ten_thousand_identical_failures_store_at_most_the_limit(storm_kit: obs.sentry.Runtime, api: ServerAPI) -> None:
    limit, window_s = storm_kit.settings.storm_limit, storm_kit.settings.storm_window_s
    marker = f"storm-{uuid.uuid4().hex[:10]}"
    failures = 10_000
    started = time.monotonic()
    with obs.bind(component=marker):
        for _ in range(failures):
            try:
                raise ConnectionError("payment broker unreachable")
            except ConnectionError as exc:
                obs.capture_exception(exc)
    elapsed = time.monotonic() - started
    obs.flush(30)

    registry = storm_kit.metrics.registry
    assert registry is not None
    held = registry.get_sample_value(
        "obskit_sentry_events_held_back_total", {"service": "itest-storm", "reason": "storm"}
    )
    dropped = sum(
        sample.value
        for metric in registry.collect()
        if metric.name == "obskit_sentry_events_dropped"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )
    sent = failures - int(held or 0)
    # Within one window, the limit; a slower run gets one more per window it spilled into.
    assert sent == limit + int(elapsed // window_s), (sent, elapsed)
    assert dropped == 0

    wait_for(
        lambda: (issue := storm_issue(api, marker)) is not None and issue.count >= sent,
        60,
        f"the server to digest the {sent} events sent",
        poll_s=0.5,
    )
    time.sleep(2)  # anything more would have been digested by now
    issue = storm_issue(api, marker)
    assert issue is not None
    assert issue.count == sent
    assert issue.count <= limit + int(elapsed // window_s)
    print(f"storm: {failures} failures in {elapsed:.1f} s, {sent} sent, {issue.count} stored, {held:.0f} held back")

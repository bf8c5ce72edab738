"""What the Sentry-compatible server stored, read back through its API."""

import os
import subprocess
import sys
import time
import uuid

import observability as obs
from observability.sentry_api import ServerAPI, search_query
from tests.helpers import wait_for_event


def test_a_plain_sdk_event_sent_to_the_dsn_is_stored(sentry_server, api: ServerAPI) -> None:
    import sentry_sdk

    sentry_sdk.init(dsn=sentry_server.dsn, default_integrations=False)
    try:
        event_id = sentry_sdk.capture_message("plain sentry-sdk event")
        sentry_sdk.flush(10)
    finally:
        sentry_sdk.get_client().close()
    assert wait_for_event(api, event_id).data["message"] == "plain sentry-sdk event"


def test_event_arrives_with_every_schema_tag_and_user_id(kit, api: ServerAPI) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    with obs.bind(user_id=user, component="billing") as unit:
        try:
            raise RuntimeError("payment backend exploded")
        except RuntimeError as exc:
            event_id = obs.capture_exception(exc)
    obs.flush(10)
    stored = wait_for_event(api, event_id)
    assert stored.tags["service"] == "itest"
    assert stored.tags["env"] == "itest"
    assert stored.tags["user_id"] == user
    assert stored.tags["trace_id"] == unit.trace_id == stored.data["contexts"]["trace"]["trace_id"]
    assert stored.tags["component"] == "billing"
    assert stored.data["user"]["id"] == user
    assert stored.data["release"] == "itest@1.0.0"
    assert stored.data["environment"] == "itest"


def test_issues_are_found_by_tag(kit, api: ServerAPI) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    with obs.bind(user_id=user):
        obs.capture_message(f"tag search probe {user}", "warning")
    with obs.bind(user_id="someone-else"):
        obs.capture_message(f"other user probe {user}", "warning")
    obs.flush(10)
    deadline = time.monotonic() + 30
    found = []
    while time.monotonic() < deadline and not found:
        found = api.issues(search_query({"user_id": user, "service": "itest"}))
        time.sleep(0.3)
    assert [issue.title for issue in found] == [f"tag search probe {user}"]


def test_two_rules_give_two_issues_and_one_rule_one(kit, api: ServerAPI) -> None:
    suffix = uuid.uuid4().hex[:8]
    rules = [f"limit_{suffix}", f"kyc_{suffix}"]
    ids = [
        obs.report_business_failure(rules[0], "over the daily limit", amount=100),
        obs.report_business_failure(rules[0], "over the daily limit again", amount=200),
        obs.report_business_failure(rules[1], "KYC not complete"),
    ]
    obs.flush(10)
    stored = [wait_for_event(api, event_id) for event_id in ids]
    assert [s.tags["rule"] for s in stored] == [rules[0], rules[0], rules[1]]
    assert stored[0].data["level"] == "warning"
    assert "exception" not in stored[0].data
    assert stored[0].issue_id == stored[1].issue_id != stored[2].issue_id
    assert stored[0].data["contexts"]["business_rule"]["amount"] == 100


def test_two_units_without_incoming_headers_get_two_trace_ids(kit, api: ServerAPI) -> None:
    ids = []
    for n in range(2):
        with obs.bind(user_id=f"trace-probe-{n}"):
            ids.append(obs.capture_message("trace probe", "info"))
    obs.flush(10)
    first, second = (wait_for_event(api, event_id) for event_id in ids)
    assert first.tags["trace_id"] != second.tags["trace_id"]
    for stored in (first, second):
        assert stored.tags["trace_id"] == stored.data["contexts"]["trace"]["trace_id"]


def test_obskit_test_sentry_all_prints_ids_and_confirms_arrival(server_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "observability.cli", "test-sentry", "all", "--service", "itest-cli"],
        env={**os.environ, **server_env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    arrived = [line.split()[0] for line in result.stdout.splitlines() if " arrived: " in line]
    assert arrived == ["error", "message", "breadcrumbs", "business", "api_error"]


def test_obskit_test_sentry_fails_when_events_do_not_arrive(server_env: dict[str, str]) -> None:
    # A DSN for a project that does not exist: the server refuses the events, the command must say so.
    bad_dsn = server_env["SENTRY_DSN"].rsplit("/", 1)[0] + "/999999"
    result = subprocess.run(
        [sys.executable, "-m", "observability.cli", "test-sentry", "message", "--timeout", "3"],
        env={**os.environ, **server_env, "SENTRY_DSN": bad_dsn, "SERVICE_NAME": "itest-cli"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "NOT FOUND at the server" in result.stdout

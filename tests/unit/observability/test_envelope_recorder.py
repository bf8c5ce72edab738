"""The local ingest endpoint keeps what the SDK sends, check-ins included (they arrive as bytes)."""

import sentry_sdk
from sentry_sdk.crons import capture_checkin

from observability.testing import EnvelopeRecorder


def test_events_and_check_ins_are_kept_and_counted(envelope_recorder: EnvelopeRecorder) -> None:
    client = sentry_sdk.Client(dsn=envelope_recorder.dsn, default_integrations=False)
    with sentry_sdk.isolation_scope() as scope:
        scope.set_client(client)
        sentry_sdk.capture_message("hello")
        capture_checkin(monitor_slug="nightly", status="ok", duration=1.5)
    client.flush(timeout=5)
    client.close()
    assert [e["message"] for e in envelope_recorder.of_type("event")] == ["hello"]
    (check_in,) = envelope_recorder.of_type("check_in")
    assert (check_in["monitor_slug"], check_in["status"], check_in["duration"]) == ("nightly", "ok", 1.5)
    assert envelope_recorder.counts["check_in"] == 1

"""The local ingest endpoint keeps what the SDK sends, check-ins included (they arrive as bytes)."""

from typing import Any

import pytest
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


def test_a_sender_keeps_one_connection_for_every_envelope(envelope_recorder: EnvelopeRecorder) -> None:
    """As with Sentry's ingest: HTTP/1.1 keep-alive, so a benchmark does not pay a connection per envelope."""
    import http.client
    import json
    from urllib.parse import urlsplit

    port = urlsplit(envelope_recorder.dsn).port
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    sockets = []
    for n in range(3):
        body = b'{"event_id":"%032x"}\n{"type":"event"}\n{"message":"m%d"}\n' % (n, n)
        connection.request("POST", "/api/1/envelope/", body=body)
        response = connection.getresponse()
        assert response.status == 200
        response.read()
        sockets.append(connection.sock)
    connection.request("GET", "/counts")
    assert json.loads(connection.getresponse().read()) == {"event": 3}
    assert sockets[0] is not None
    assert sockets == [sockets[0]] * 3, "one connection for every request"
    connection.close()


def _post(connection: Any, body: bytes) -> int:
    connection.request("POST", "/api/1/envelope/", body=body)
    response = connection.getresponse()
    response.read()
    return int(response.status)


def test_an_unreadable_envelope_is_answered_400_and_nothing_is_recorded() -> None:
    import http.client
    from urllib.parse import urlsplit

    recorder = EnvelopeRecorder()
    connection = http.client.HTTPConnection("127.0.0.1", urlsplit(recorder.dsn).port, timeout=5)
    try:
        assert _post(connection, b"not an envelope\n{{{") == 400
        assert _post(connection, b'{}\n{"type":"event"}\n{"message":"after"}\n') == 200  # the connection lives on
        assert recorder.counts == {"event": 1}
    finally:
        connection.close()
        recorder.close()


def test_closing_ends_the_connections_kept_alive() -> None:
    import http.client
    from urllib.parse import urlsplit

    recorder = EnvelopeRecorder()
    connection = http.client.HTTPConnection("127.0.0.1", urlsplit(recorder.dsn).port, timeout=5)
    assert _post(connection, b'{}\n{"type":"event"}\n{"message":"before"}\n') == 200
    recorder.close()
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        _post(connection, b'{}\n{"type":"event"}\n{"message":"after close"}\n')
    connection.close()
    assert recorder.counts == {"event": 1}

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from observability.alerts import bridge as bridge_module
from observability.alerts.bridge import Bridge, PayloadError, alerts_from_webhook, serve

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def issue_alert(**event: Any) -> dict[str, Any]:
    """Sentry's documented event_alert payload, cut down, with obskit's tags on the event."""
    return {
        "action": "triggered",
        "actor": {"id": "sentry", "name": "Sentry", "type": "application"},
        "data": {
            "event": {
                "event_id": "e4874d664c3540c1a32eab185f12c5ab",
                "issue_id": "1117540176",
                "level": "error",
                "culprit": "?(<anonymous>)",
                "title": "ReferenceError: heck is not defined",
                "environment": "prod",
                "web_url": "https://sentry.io/organizations/test-org/issues/1117540176/events/e4874d66/",
                "tags": [["level", "error"], ["service", "payments-worker"], ["env", "prod"], ["user_id", "42"]],
                **event,
            },
            "triggered_rule": "Very Important Alert Rule!",
            "issue_alert": {"title": "Very Important Alert Rule!", "settings": [{"name": "channel", "value": "#x"}]},
        },
        "installation": {"uuid": "a8e5d37a-696c-4c54-adb5-b3f28d64c7de"},
    }


def metric_alert(action: str, **rule: Any) -> dict[str, Any]:
    """Sentry's documented metric_alert payload."""
    return {
        "action": action,
        "actor": {"id": "sentry", "name": "Sentry", "type": "application"},
        "data": {
            "description_text": "1000 events in the last 10 minutes\nFilter: level:error",
            "description_title": "Resolved: Too many errors",
            "metric_alert": {
                "alert_rule": {
                    "aggregate": "count()",
                    "environment": None,
                    "id": "7",
                    "name": "Too many errors",
                    "projects": ["bar"],
                    "query": "level:error",
                    "time_window": 10,
                    "triggers": [],
                    **rule,
                },
                "id": "4",
                "identifier": "1",
                "projects": ["bar"],
                "status": 2,
                "title": "Sacred Marmot",
            },
            "web_url": "https://sentry.io/organizations/baz/alerts/1/",
        },
        "installation": {"uuid": "a8e5d37a-696c-4c54-adb5-b3f28d64c7de"},
    }


def test_issue_alert_becomes_an_alert_labelled_from_the_events_tags() -> None:
    (alert,), kind = alerts_from_webhook(issue_alert(), resource="event_alert", now=NOW)
    assert kind == "issue alert"
    assert alert["labels"] == {
        "alertname": "SentryIssueAlert",
        "source": "sentry",
        "service": "payments-worker",
        "env": "prod",
        "level": "error",
        "severity": "page",
        "issue_id": "1117540176",
        "rule": "Very Important Alert Rule!",
    }
    assert alert["annotations"]["summary"] == "payments-worker (prod): ReferenceError: heck is not defined"
    assert alert["annotations"]["sentry_url"].endswith("/issues/1117540176/events/e4874d66/")
    assert alert["startsAt"] == "2025-01-02T03:04:05Z"
    assert alert["endsAt"] == "2025-01-02T04:04:05Z"  # resolves by itself after an hour


@pytest.mark.parametrize(
    ("env", "level", "severity"),
    [
        ("prod", "fatal", "page"),
        ("staging", "error", "ticket"),
        ("prod", "warning", "ticket"),
        ("prod", "info", "info"),
    ],
)
def test_issue_alert_severity_pages_only_for_errors_in_an_env_that_pages(env: str, level: str, severity: str) -> None:
    payload = issue_alert(level=level, tags=[["service", "pay"], ["env", env]])
    (alert,), _ = alerts_from_webhook(payload, resource="event_alert", paging_envs=("prod",), now=NOW)
    assert (alert["labels"]["env"], alert["labels"]["level"], alert["labels"]["severity"]) == (env, level, severity)


@pytest.mark.parametrize("env", ["prod", "production"])
def test_errors_in_either_production_env_page_by_default(env: str) -> None:
    payload = issue_alert(level="error", tags=[["service", "pay"], ["env", env]])
    (alert,), _ = alerts_from_webhook(payload, resource="event_alert", now=NOW)
    assert alert["labels"]["severity"] == "page"
    assert env in Bridge(alertmanager_url="http://127.0.0.1:9").paging_envs


def test_issue_alert_without_obskit_tags_falls_back_to_sentrys_environment() -> None:
    payload = issue_alert(tags={"browser": "Chrome"}, environment="production")
    (alert,), _ = alerts_from_webhook(payload, resource=None, paging_envs=("production",), now=NOW)
    assert (alert["labels"]["service"], alert["labels"]["env"], alert["labels"]["severity"]) == (
        "unknown",
        "production",
        "page",
    )


def test_the_legacy_webhooks_plugin_payload_is_an_issue_alert() -> None:
    payload = {
        "id": "27379932",
        "project": "project-slug",
        "project_slug": "project-slug",
        "level": "error",
        "culprit": "raven.scripts.runner in main",
        "message": "This is an example Python exception",
        "url": "https://sentry.io/organizations/acme/issues/27379932/",
        "triggering_rules": ["notify on errors"],
        "event": {"tags": [["env", "prod"], ["service", "ledger"]], "title": "ValueError: nope"},
    }
    (alert,), kind = alerts_from_webhook(payload, resource=None, now=NOW)
    assert kind == "issue alert (WebHooks plugin)"
    assert alert["labels"]["service"] == "ledger"
    assert alert["labels"]["issue_id"] == "27379932"
    assert alert["labels"]["rule"] == "notify on errors"
    assert alert["generatorURL"] == "https://sentry.io/organizations/acme/issues/27379932/"


def test_metric_alert_posts_its_level_and_ends_the_other() -> None:
    alerts, kind = alerts_from_webhook(
        metric_alert("critical", environment="prod", query="level:error service:payments-worker"),
        resource="metric_alert",
        now=NOW,
    )
    assert kind == "metric alert"
    by_level = {a["labels"]["level"]: a for a in alerts}
    assert by_level["critical"]["labels"] == {
        "alertname": "SentryMetricAlert",
        "source": "sentry",
        "service": "payments-worker",
        "level": "critical",
        "severity": "page",
        "rule": "Too many errors",
        "env": "prod",
    }
    assert by_level["critical"]["endsAt"] == "2025-01-03T03:04:05Z"
    assert by_level["warning"]["endsAt"] == "2025-01-02T03:04:05Z"
    assert by_level["warning"]["labels"]["severity"] == "ticket"


def test_metric_alert_resolved_ends_both_levels() -> None:
    alerts, _ = alerts_from_webhook(metric_alert("resolved"), resource="metric_alert", now=NOW)
    assert {a["endsAt"] for a in alerts} == {"2025-01-02T03:04:05Z"}
    assert {a["labels"]["service"] for a in alerts} == {"bar"}  # no service term: the project
    assert all("env" not in a["labels"] for a in alerts)


def test_resources_that_are_not_alerts_are_ignored() -> None:
    assert alerts_from_webhook({"action": "created", "data": {}}, resource="installation") == (
        [],
        "ignored: Sentry-Hook-Resource installation is not an alert",
    )


@pytest.mark.parametrize(
    ("payload", "resource", "says"),
    [
        ([1, 2], None, "the body is list"),
        ({"action": "triggered"}, "event_alert", "data is missing"),
        ({"data": {"event": "x"}}, "event_alert", "data.event is str"),
        ({"data": {"event": {"tags": "service:x"}}}, "event_alert", "data.event.tags is str"),
        ({"action": "boom", "data": {"metric_alert": {}}}, "metric_alert", "action='boom'"),
        ({"action": "critical", "data": {"metric_alert": {"alert_rule": {}}}}, None, "alert_rule.name is missing"),
        ({"hello": "world"}, None, "not a Sentry alert webhook"),
    ],
)
def test_a_bad_payload_says_what_is_wrong(payload: Any, resource: str | None, says: str) -> None:
    with pytest.raises(PayloadError, match=says.replace("(", r"\(").replace("[", r"\[")):
        alerts_from_webhook(payload, resource=resource)


class RecordingBridge(Bridge):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(alertmanager_url="http://127.0.0.1:9", **kwargs)
        self.posted: list[list[dict[str, Any]]] = []

    def post(self, alerts: list[dict[str, Any]]) -> None:
        self.posted.append(alerts)


@pytest.fixture(scope="module")
def recording() -> Iterator[tuple[RecordingBridge, str]]:
    bridge = RecordingBridge(secret=None)
    server = serve(bridge, host="127.0.0.1", port=0)
    yield bridge, f"http://127.0.0.1:{server.port}"
    server.stop()


def test_http_forwards_a_webhook_and_answers_202(recording: tuple[RecordingBridge, str]) -> None:
    bridge, url = recording
    response = httpx.post(f"{url}/", json=issue_alert(), headers={"Sentry-Hook-Resource": "event_alert"})
    assert response.status_code == 202
    assert response.json() == {"forwarded": 1, "kind": "issue alert"}
    assert bridge.posted[-1][0]["labels"]["service"] == "payments-worker"
    assert httpx.get(f"{url}/healthz").text == "ok\n"


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/", b"not json", 400),
        ("POST", "/", b'{"action": "triggered", "data": {}}', 400),
        ("GET", "/", b"", 405),
        ("POST", "/elsewhere", b"{}", 404),
        ("POST", "/", b"x" * (bridge_module.MAX_BODY_BYTES + 1), 413),
    ],
)
def test_http_a_bad_request_gets_a_clear_4xx_and_the_bridge_goes_on(
    recording: tuple[RecordingBridge, str], method: str, path: str, body: bytes, status: int
) -> None:
    bridge, url = recording
    before = len(bridge.posted)
    response = httpx.request(method, f"{url}{path}", content=body)
    assert response.status_code == status
    assert response.json()["error"]
    assert len(bridge.posted) == before
    assert httpx.post(f"{url}/", json=issue_alert()).status_code == 202
    assert len(bridge.posted) == before + 1


def test_http_an_unexpected_failure_is_a_500_and_the_bridge_goes_on(
    recording: tuple[RecordingBridge, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = recording

    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(bridge_module, "alerts_from_webhook", boom)
    response = httpx.post(f"{url}/", json=issue_alert())
    assert response.status_code == 500
    assert response.json() == {"error": "RuntimeError: boom"}
    monkeypatch.undo()
    assert httpx.post(f"{url}/", json=issue_alert()).status_code == 202


def test_http_with_a_secret_only_signed_webhooks_pass() -> None:
    bridge = RecordingBridge(secret="client-secret")
    server = serve(bridge, host="127.0.0.1", port=0)
    url = f"http://127.0.0.1:{server.port}/"
    body = json.dumps(issue_alert()).encode()
    signature = hmac.new(b"client-secret", body, hashlib.sha256).hexdigest()
    try:
        assert httpx.post(url, content=body).status_code == 401
        assert httpx.post(url, content=body, headers={"Sentry-Hook-Signature": "0" * 64}).status_code == 401
        assert httpx.post(url, content=body, headers={"Sentry-Hook-Signature": signature}).status_code == 202
    finally:
        server.stop()


def test_http_alertmanager_unreachable_is_a_502() -> None:
    bridge = Bridge(alertmanager_url="http://127.0.0.1:9", timeout_s=2)  # nothing listens on port 9
    server = serve(bridge, host="127.0.0.1", port=0)
    try:
        response = httpx.post(f"http://127.0.0.1:{server.port}/", json=issue_alert())
        assert response.status_code == 502
        assert "unreachable" in response.json()["error"]
    finally:
        server.stop()

"""End to end on the devstack: outcomes recorded -> exporter -> Prometheus evaluating the generated rules
-> Alertmanager with the rendered routing -> the webhook receiver. See conftest.py for the time compression.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
import pytest
from alerting_helpers import JOB, SLOClock, Webhook, prometheus_query, wait_for

from observability.alerts.bridge import Bridge, serve
from observability.slo import Outcome, Recorder

# Generous bounds: an alert needs a scrape and an evaluation (1 s each), its `for:` (2 s for a page,
# 15 s for the slowest ticket) and Alertmanager's group wait; they are limits, not expectations.
PAGE_S = 60
TICKET_S = 120


def _burst(recorder: Recorder, *, errors: int, ok: int) -> None:
    recorder.record(Outcome.ERROR, errors)
    recorder.record(Outcome.OK, ok)
    recorder.flush()


def _alerts_in_alertmanager(url: str, **labels: str) -> list[dict[str, Any]]:
    matchers = [f'{k}="{v}"' for k, v in labels.items()]
    response = httpx.get(f"{url}/api/v2/alerts", params={"filter": matchers}, timeout=5)
    response.raise_for_status()
    return list(response.json())


def test_error_burst_pages_with_service_and_env_and_resolves_when_back_to_normal(
    exporter: Any, new_service: Any, redis_client: Any, webhook: Webhook, routing: Any
) -> None:
    service, clock = new_service(), SLOClock()
    exporter({service}, clock)
    recorder = Recorder(service=service, env="prod", client=redis_client, clock=clock)
    try:
        started = time.monotonic()
        _burst(recorder, errors=200, ok=800)  # 20% errors against a 0.1% budget: burn rate 200
        page = webhook.first(
            status="firing", timeout_s=PAGE_S, alertname="ObskitSLOErrorBudgetBurn", service=service, severity="page"
        )
        assert page.labels["env"] == "prod"
        assert page.labels["long_window"] in ("1h", "6h")
        assert page.annotations["summary"].startswith(f"{service} (prod) spends its error budget 200.0x")
        assert page.annotations["runbook_url"] == "README.md#obskitsloerrorbudgetburn"
        print(f"\npage arrived {page.at - started:.1f}s after the burst")

        # While the page fires, the tickets of the same service and env are held back by inhibition.
        threshold = wait_for(
            lambda: _alerts_in_alertmanager(routing.url, alertname="ObskitSLOThresholdExceeded", service=service),
            timeout_s=TICKET_S,
            what="the threshold ticket in Alertmanager",
        )
        assert threshold[0]["status"]["state"] == "suppressed"
        assert threshold[0]["status"]["inhibitedBy"]
        assert not [a for a in webhook.alerts(service=service) if a.labels["severity"] != "page"]

        # Back to normal: 31 minutes later only good units come in; the burst has left the 5m and 30m windows.
        clock.offset_s += 31 * 60
        back = time.monotonic()
        recorder.record(Outcome.OK, 5000)
        recorder.flush()
        fired = {a.labels["long_window"] for a in webhook.alerts(service=service, severity="page")}
        for window in sorted(fired):
            resolved = webhook.first(
                status="resolved",
                timeout_s=PAGE_S,
                alertname="ObskitSLOErrorBudgetBurn",
                service=service,
                severity="page",
                long_window=window,
            )
            print(f"page over {window} resolved {resolved.at - back:.1f}s after the errors aged out")
        # The 1d and 3d windows still hold the burst: with the page gone, its tickets are let through.
        ticket = webhook.first(
            status="firing",
            timeout_s=TICKET_S,
            alertname="ObskitSLOErrorBudgetBurn",
            service=service,
            severity="ticket",
        )
        assert ticket.labels["long_window"] in ("1d", "3d")
        assert ticket.labels["env"] == "prod"
    finally:
        recorder.close()


def test_staging_service_opens_tickets_and_never_pages(
    exporter: Any, new_service: Any, redis_client: Any, webhook: Webhook, prometheus: Any
) -> None:
    service, clock = new_service(), SLOClock()
    exporter({service}, clock)
    recorder = Recorder(service=service, env="staging", client=redis_client, clock=clock)
    try:
        _burst(recorder, errors=200, ok=800)
        # The same burn as the paging test, judged by the same 1h/5m rule, arrives as a ticket.
        ticket = webhook.first(
            status="firing",
            timeout_s=PAGE_S,
            alertname="ObskitSLOErrorBudgetBurn",
            service=service,
            long_window="1h",
        )
        assert ticket.labels["severity"] == "ticket"
        assert ticket.labels["env"] == "staging"
        assert not webhook.alerts(service=service, severity="page")
        assert not prometheus_query(prometheus.url, f'ALERTS{{service="{service}",severity="page"}}')
    finally:
        recorder.close()


def test_quiet_service_raises_nothing(
    exporter: Any, new_service: Any, redis_client: Any, webhook: Webhook, prometheus: Any
) -> None:
    quiet, loud, clock = new_service(), new_service(), SLOClock()
    exporter({quiet, loud}, clock)
    recorders = [Recorder(service=s, env="prod", client=redis_client, clock=clock) for s in (quiet, loud)]
    try:
        # Quiet: a quarter of its units fail, but 20 units are below min_events (100): never enough to alert.
        _burst(recorders[0], errors=5, ok=15)
        _burst(recorders[1], errors=200, ok=800)
        # The loud twin's slowest SLO alert (the 1d/2h ticket: the longest `for:`) fires first: by then
        # every rule has had time to fire for the quiet one too.
        wait_for(
            lambda: prometheus_query(
                prometheus.url,
                f'ALERTS{{service="{loud}",alertname="ObskitSLOErrorBudgetBurn",long_window="1d",alertstate="firing"}}',
            ),
            timeout_s=TICKET_S,
            what="the loud twin's 1d ticket",
        )
        burn = prometheus_query(prometheus.url, f'obskit_slo_burn_rate{{service="{quiet}",window="5m",job="{JOB}"}}')
        assert float(burn[0]["value"][1]) == pytest.approx(250.0)  # seen, and burning, but too few units
        assert not prometheus_query(prometheus.url, f'ALERTS{{service="{quiet}"}}')
        assert not webhook.alerts(service=quiet)
    finally:
        for recorder in recorders:
            recorder.close()


def _issue_alert(service: str, env: str) -> dict[str, Any]:
    """Sentry's documented issue alert webhook (event_alert), cut down, with obskit's tags on the event."""
    return {
        "action": "triggered",
        "actor": {"id": "sentry", "name": "Sentry", "type": "application"},
        "data": {
            "event": {
                "event_id": uuid.uuid4().hex,
                "issue_id": "1117540176",
                "issue_url": "https://sentry.example/api/0/issues/1117540176/",
                "web_url": "https://sentry.example/organizations/acme/issues/1117540176/events/e4874d66/",
                "level": "error",
                "culprit": "payments.charge",
                "title": "ReferenceError: heck is not defined",
                "environment": env,
                "tags": [["level", "error"], ["service", service], ["env", env], ["user_id", "42"]],
            },
            "triggered_rule": "Very Important Alert Rule!",
            "issue_alert": {"title": "Very Important Alert Rule!", "settings": []},
        },
        "installation": {"uuid": "a8e5d37a-696c-4c54-adb5-b3f28d64c7de"},
    }


def _metric_alert(action: str, service: str, env: str) -> dict[str, Any]:
    return {
        "action": action,
        "actor": {"id": "sentry", "name": "Sentry", "type": "application"},
        "data": {
            "description_text": "1000 events in the last 10 minutes\nFilter: level:error",
            "description_title": f"{action.title()}: Too many errors",
            "metric_alert": {
                "alert_rule": {
                    "aggregate": "count()",
                    "environment": env,
                    "name": "Too many errors",
                    "query": f"level:error service:{service}",
                    "projects": ["payments"],
                    "time_window": 10,
                    "triggers": [],
                },
                "id": "4",
                "identifier": "1",
                "status": 2,
                "title": "Sacred Marmot",
            },
            "web_url": "https://sentry.example/organizations/acme/alerts/1/",
        },
        "installation": {"uuid": "a8e5d37a-696c-4c54-adb5-b3f28d64c7de"},
    }


def test_sentry_webhooks_posted_to_the_bridge_arrive_at_the_receiver(webhook: Webhook, routing: Any) -> None:
    server = serve(Bridge(alertmanager_url=routing.url, paging_envs=("prod",)), host="127.0.0.1", port=0)
    bridge = f"http://127.0.0.1:{server.port}/"
    service = f"sentry-{uuid.uuid4().hex[:8]}"
    try:
        bad = httpx.post(bridge, content=b'{"action": "triggered"}', headers={"Sentry-Hook-Resource": "event_alert"})
        assert bad.status_code == 400
        assert "data" in bad.json()["error"]

        posted = time.monotonic()
        answer = httpx.post(
            bridge, json=_issue_alert(service, "prod"), headers={"Sentry-Hook-Resource": "event_alert"}, timeout=10
        )
        assert answer.status_code == 202, answer.text
        issue = webhook.first(status="firing", timeout_s=PAGE_S, alertname="SentryIssueAlert", service=service)
        print(f"\nSentry issue alert arrived {issue.at - posted:.1f}s after the webhook")
        assert issue.labels["env"] == "prod"
        assert issue.labels["level"] == "error"
        assert issue.labels["severity"] == "page"
        assert issue.annotations["sentry_url"].endswith("/issues/1117540176/events/e4874d66/")

        for action in ("critical", "resolved"):
            answer = httpx.post(
                bridge,
                json=_metric_alert(action, service, "staging"),
                headers={"Sentry-Hook-Resource": "metric_alert"},
                timeout=10,
            )
            assert answer.status_code == 202, answer.text
            metric = webhook.first(
                status="firing" if action == "critical" else "resolved",
                timeout_s=TICKET_S,
                alertname="SentryMetricAlert",
                service=service,
                level="critical",
            )
            assert metric.labels["env"] == "staging"
            assert metric.labels["severity"] == "ticket"  # staging does not page
    finally:
        server.stop()


def _test_alert(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "observability.cli", "test-alert", "--alertmanager-url", url, "--timeout", "30"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_test_alert_says_which_receiver_accepted(webhook: Webhook, routing: Any) -> None:
    before = len(webhook.alerts(alertname="ObskitTestAlert"))
    result = _test_alert(routing.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split()[:2] == ["webhook", "accepted"]
    assert len(webhook.alerts(alertname="ObskitTestAlert", obskit_receiver="webhook")) > before

    # A receiver whose endpoint refuses: Alertmanager gives up, and the command says so.
    routing.apply({"OBSKIT_ALERT_WEBHOOK_URL": webhook.url + "refuse"})
    try:
        result = _test_alert(routing.url)
    finally:
        routing.apply({"OBSKIT_ALERT_WEBHOOK_URL": webhook.url})
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.split()[:2] == ["webhook", "refused"]

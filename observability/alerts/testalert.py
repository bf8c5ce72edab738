"""``obskit test-alert``: one test alert through Alertmanager to each receiver, and which accepted it.

Alertmanager 0.25 reports nothing per notification over its API. What it does keep are counters per
integration type (``alertmanager_notifications_total``, ``..._failed_total``, and per attempt
``alertmanager_notification_requests_total`` / ``..._failed_total``) on its ``/metrics``. So a receiver
*accepted* the test alert when a request of its integration succeeded after the alert was sent: the
Slack, Telegram or PagerDuty API or the webhook answered 2xx, or the SMTP server took the mail. It is
*refused* when Alertmanager gave up on the notification (its log says why). Neither says a person saw
it; and as the counters are per integration type, another notification of the same type in the same
seconds can blur the answer. The alert goes through the test route that
``obskit alerts alertmanager-config`` renders (``alertname="ObskitTestAlert"``, label
``obskit_receiver`` naming the receiver), so it reaches that receiver only.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from observability.alerts.routing import TEST_ALERT, TEST_LABEL
from observability.errors import ConfigError, ObskitError

__all__ = ["Result", "receivers", "run"]

_COUNTERS = (
    "alertmanager_notifications",
    "alertmanager_notifications_failed",
    "alertmanager_notification_requests",
    "alertmanager_notification_requests_failed",
)


@dataclass(frozen=True)
class Result:
    receiver: str
    outcome: str  # "accepted", "refused" or "no answer"
    detail: str

    @property
    def accepted(self) -> bool:
        return self.outcome == "accepted"


class _Alertmanager:
    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def get(self, path: str) -> httpx.Response:
        try:
            response = self.http.get(path)
        except httpx.HTTPError as exc:
            message = f"Alertmanager at {self.url} unreachable: {exc}"
            raise ObskitError(message) from None
        if not response.is_success:
            message = f"GET {self.url}{path}: HTTP {response.status_code}"
            raise ObskitError(message)
        return response

    def config(self) -> dict[str, Any]:
        original = self.get("/api/v2/status").json()["config"]["original"]
        loaded = yaml.safe_load(original)
        return loaded if isinstance(loaded, dict) else {}

    def counters(self) -> dict[tuple[str, str], float]:
        """``(counter, integration) -> value`` for the notification counters."""
        values: dict[tuple[str, str], float] = {}
        for family in text_string_to_metric_families(self.get("/metrics").text):
            if family.name in _COUNTERS:
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        values[(family.name, sample.labels.get("integration", ""))] = sample.value
        return values

    def post(self, alerts: list[dict[str, Any]]) -> None:
        try:
            response = self.http.post("/api/v2/alerts", json=alerts)
        except httpx.HTTPError as exc:
            message = f"Alertmanager at {self.url} unreachable: {exc}"
            raise ObskitError(message) from None
        if not response.is_success:
            message = f"Alertmanager refused the test alert: HTTP {response.status_code} {response.text[:200]}"
            raise ObskitError(message)


def receivers(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """Each receiver's integration types (``slack``, ``webhook``, ...), from Alertmanager's config."""
    found: dict[str, list[str]] = {}
    for receiver in config.get("receivers") or []:
        kinds = [key.removesuffix("_configs") for key, value in receiver.items() if key.endswith("_configs") and value]
        found[str(receiver.get("name"))] = kinds
    return found


def _routes(route: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    yield route
    for child in route.get("routes") or []:
        yield from _routes(child)


def _has_test_route(config: Mapping[str, Any]) -> bool:
    wanted = f'alertname="{TEST_ALERT}"'
    return any(wanted in (r.get("matchers") or []) for r in _routes(config.get("route") or {}))


def _delta(
    now: Mapping[tuple[str, str], float], before: Mapping[tuple[str, str], float], name: str, kind: str
) -> float:
    return now.get((name, kind), 0.0) - before.get((name, kind), 0.0)


def _judge(
    now: Mapping[tuple[str, str], float], before: Mapping[tuple[str, str], float], kinds: list[str]
) -> str | None:
    """'accepted' when every integration had a successful request, 'refused' when one gave up, else None."""
    verdicts = []
    for kind in kinds:
        if _delta(now, before, "alertmanager_notifications_failed", kind) >= 1:
            return "refused"
        succeeded = _delta(now, before, "alertmanager_notification_requests", kind) - _delta(
            now, before, "alertmanager_notification_requests_failed", kind
        )
        verdicts.append(succeeded >= 1)
    return "accepted" if verdicts and all(verdicts) else None


def _alert(receiver: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "labels": {
            "alertname": TEST_ALERT,
            TEST_LABEL: receiver,
            "test_id": uuid.uuid4().hex[:12],
            "service": "obskit-test-alert",
        },
        "annotations": {
            "summary": f"obskit test alert for receiver {receiver}: if you read this, alerts reach you here",
            "description": "Sent by `obskit test-alert`; nothing is wrong. It resolves by itself in 5 minutes.",
        },
        "startsAt": now.isoformat().replace("+00:00", "Z"),
        "endsAt": (now + timedelta(minutes=5)).isoformat().replace("+00:00", "Z"),
    }


def run(
    alertmanager_url: str,
    *,
    receiver: str | None = None,
    timeout_s: float = 30.0,
    poll_s: float = 0.25,
    echo: Callable[[str], None] | None = None,
) -> list[Result]:
    """Send one test alert per receiver (or only ``receiver``), one at a time, and judge each."""
    am = _Alertmanager(alertmanager_url)
    try:
        config = am.config()
        known = {name: kinds for name, kinds in receivers(config).items() if kinds}
        if not _has_test_route(config):
            message = (
                f"Alertmanager at {am.url} has no route for {TEST_ALERT}: load a config rendered by"
                " `obskit alerts alertmanager-config`"
            )
            raise ObskitError(message)
        if receiver is not None and receiver not in known:
            raise ConfigError("--receiver", receiver, f"one of the receivers Alertmanager has: {', '.join(known)}")
        if not known:
            message = f"Alertmanager at {am.url} has no receiver with an integration"
            raise ObskitError(message)
        results = []
        for name in [receiver] if receiver else list(known):
            result = _probe(am, name, known[name], timeout_s=timeout_s, poll_s=poll_s)
            if echo is not None:
                echo(f"{result.receiver:<12} {result.outcome:<10} {result.detail}")
            results.append(result)
        return results
    finally:
        am.close()


def _probe(am: _Alertmanager, name: str, kinds: list[str], *, timeout_s: float, poll_s: float) -> Result:
    before = am.counters()
    am.post([_alert(name)])
    deadline = time.monotonic() + timeout_s
    via = "/".join(kinds)
    while time.monotonic() < deadline:
        time.sleep(poll_s)
        verdict = _judge(am.counters(), before, kinds)
        if verdict == "accepted":
            # A failed request is counted just after the request itself: look once more before believing it.
            time.sleep(poll_s)
            verdict = _judge(am.counters(), before, kinds)
        if verdict == "accepted":
            return Result(name, "accepted", f"{via}: the endpoint took the notification")
        if verdict == "refused":
            return Result(name, "refused", f"{via}: Alertmanager gave up on it (its log says why)")
    now = am.counters()
    retrying = any(_delta(now, before, "alertmanager_notification_requests_failed", k) for k in kinds)
    detail = "failed attempts, still retrying" if retrying else "no notification attempt seen"
    return Result(name, "no answer", f"{via}: {detail} after {timeout_s:g}s")

"""What the alerting tests share: the time scale, a webhook receiver that records notifications, waits."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.helpers import wait_for

TIME_SCALE = 1 / 60
JOB = "obskit-alerting-test"


@dataclass(frozen=True)
class Notified:
    """One alert of one notification the webhook received."""

    at: float  # time.monotonic() on arrival
    status: str  # "firing" or "resolved"
    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass
class Webhook:
    """Alertmanager's webhook receiver: records every notification; ``/refuse`` answers 400."""

    url: str = ""
    notifications: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def alerts(self, **labels: str) -> list[Notified]:
        with self.lock:
            received = list(self.notifications)
        found = []
        for at, body in received:
            for alert in body.get("alerts", []):
                if all(alert["labels"].get(k) == v for k, v in labels.items()):
                    found.append(Notified(at, alert["status"], alert["labels"], alert.get("annotations", {})))
        return found

    def first(self, *, status: str, timeout_s: float, **labels: str) -> Notified:
        def arrived() -> Notified | None:
            return next((a for a in self.alerts(**labels) if a.status == status), None)

        found: Notified = wait_for(arrived, timeout_s=timeout_s, what=f"a {status} notification with {labels}")
        return found


def prometheus_query(url: str, expr: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


class SLOClock:
    """The SLO recorder's and exporter's clock: real time plus an offset a test moves forward."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_s

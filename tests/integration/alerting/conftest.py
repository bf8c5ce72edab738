"""The alerting chain on the devstack's real services: SLO recorder -> Redis -> exporter -> Prometheus
evaluating the generated rules -> Alertmanager routing with the rendered config -> a webhook receiver
this module runs on 127.0.0.1.

Time is compressed where the generated config allows it: every rule's ``for:`` and every Alertmanager
interval is scaled by TIME_SCALE (1/60: a 2-minute ``for:`` is 2 seconds), and an exporter's SLO clock can
be moved forward (a burst ages out of the 5m window without waiting 5 minutes). The session's Prometheus
and Alertmanager are shared: the rules file, scrape targets and Alertmanager config written here are
removed or restored afterwards, and the alerts asserted on are those of this module's own services.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_lib
from alerting_helpers import JOB, TIME_SCALE, SLOClock, Webhook, wait_for

from observability._http import Server, respond
from observability.alerts.routing import render_config
from observability.alerts.rules import RuleOptions, render_rules
from observability.exporter import SLOSource, serve
from observability.slo import Spec
from observability.slo.store import INDEX_KEY, Store, snap_key, totals_key
from observability.slo.windows import TIERS


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        message = (
            f"{name} not found: run `obskit devstack install` (Debian package prometheus / prometheus-alertmanager)"
        )
        if os.environ.get("OBSKIT_REQUIRE_SERVICES") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def promtool() -> str:
    return _tool("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return _tool("amtool")


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    hook = Webhook()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        if environ.get("PATH_INFO") == "/refuse":
            return respond(start_response, "400 Bad Request", "text/plain", b"refused on purpose\n")
        with hook.lock:
            hook.notifications.append((time.monotonic(), json.loads(body)))
        return respond(start_response, "200 OK", "text/plain", b"ok\n")

    server = Server(app, host="127.0.0.1", port=0, name="test-webhook")
    hook.url = f"http://127.0.0.1:{server.port}/"
    yield hook
    server.stop()


def _alertmanager_config_path(services: Any) -> Path:
    if os.environ.get("OBSKIT_TEST_ALERTMANAGER_URL"):
        pytest.skip("a user-provided Alertmanager cannot be given a config by the test")
    return Path(services.context("alertmanager").dir) / "alertmanager.yml"


def reload_alertmanager(url: str) -> None:
    response = httpx.post(f"{url}/-/reload", timeout=10)
    assert response.status_code == 200, response.text


class Routing:
    """The devstack Alertmanager's config file: apply a rendered config, restore the original."""

    def __init__(self, url: str, path: Path) -> None:
        self.url = url
        self.path = path
        self.original = path.read_text()

    def apply(self, environ: dict[str, str]) -> None:
        text, _ = render_config(environ, spec=Spec(), interval_scale=TIME_SCALE)
        self.path.write_text(text)
        reload_alertmanager(self.url)
        names = {r["name"] for r in httpx.get(f"{self.url}/api/v2/receivers", timeout=5).json()}
        assert "webhook" in names, names

    def restore(self) -> None:
        self.path.write_text(self.original)
        reload_alertmanager(self.url)


@pytest.fixture(scope="module")
def routing(services: Any, alertmanager_url: str, webhook: Webhook) -> Iterator[Routing]:
    """The devstack's Alertmanager running `obskit alerts alertmanager-config`'s output, its one receiver
    this module's webhook; the original config comes back afterwards."""
    routing = Routing(alertmanager_url, _alertmanager_config_path(services))
    routing.apply({"OBSKIT_ALERT_WEBHOOK_URL": webhook.url})
    yield routing
    routing.restore()


def reload_prometheus(url: str) -> None:
    response = httpx.post(f"{url}/-/reload", timeout=10)
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def rules(prometheus: Any, routing: Routing) -> Iterator[Path]:
    """The generated rules, `for:` durations compressed, loaded by the devstack's Prometheus."""
    if prometheus.dir is None:
        pytest.skip("a user-provided Prometheus cannot be given rules by the test")
    path = Path(prometheus.dir) / "rules" / f"obskit-alerting-{uuid.uuid4().hex[:8]}.yml"
    path.write_text(render_rules(RuleOptions(for_scale=TIME_SCALE, expected_jobs=(JOB,))))
    reload_prometheus(prometheus.url)

    def loaded() -> bool:
        groups = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        return any(g["file"] == str(path) for g in groups)

    wait_for(loaded, timeout_s=30, what="Prometheus to load the generated rules")
    yield path
    path.unlink()
    reload_prometheus(prometheus.url)


class _OwnServices(Store):
    """The shared Redis holds other tests' services too: serve only this test's."""

    def __init__(self, client: Any, services: set[str]) -> None:
        super().__init__(client)
        self.only = services

    def services(self) -> list[tuple[str, str]]:
        return [pair for pair in super().services() if pair[0] in self.only]


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Any]:
    client = redis_lib.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def new_service(redis_client: Any) -> Iterator[Callable[[], str]]:
    """Names for this test's services; their SLO keys are removed afterwards."""
    names: list[str] = []

    def make() -> str:
        names.append(f"alrt-{uuid.uuid4().hex[:10]}")
        return names[-1]

    yield make
    for member in redis_client.smembers(INDEX_KEY):
        service, _, env = member.decode().partition("|")
        if service in names:
            redis_client.delete(totals_key(service, env), *(snap_key(service, env, t.step_s) for t in TIERS))
            redis_client.srem(INDEX_KEY, member)


@pytest.fixture
def exporter(prometheus: Any, redis_client: Any, rules: Path) -> Iterator[Callable[..., Any]]:
    """Start an SLO exporter for some services on a clock, scraped by the devstack's Prometheus as JOB."""
    stops: list[Callable[[], None]] = []

    def start(services: set[str], clock: SLOClock) -> None:
        source = SLOSource(_OwnServices(redis_client, services), Spec(), clock=clock)
        server = serve(source, host="127.0.0.1", port=0)
        target = Path(prometheus.dir) / "targets" / f"alerting-{uuid.uuid4().hex[:8]}.json"
        target.write_text(json.dumps([{"targets": [f"127.0.0.1:{server.port}"], "labels": {"job": JOB}}]))

        def stop() -> None:
            target.unlink()
            server.stop()

        stops.append(stop)

    yield start
    for stop in stops:
        stop()

"""The exporter scraped by the devstack's real Prometheus: PromQL returns the expected ratio."""

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from observability.exporter import SLOSource, serve
from observability.slo import Outcome, Recorder, load_spec
from observability.slo.store import Store


@pytest.fixture
def exporter(store: Store, tmp_path: Path) -> Iterator[str]:
    spec_file = tmp_path / "slo.yaml"
    spec_file.write_text("defaults: {objective: 99.0, min_events: 50}\n")
    server = serve(SLOSource(store, load_spec(spec_file)), host="127.0.0.1", port=0)
    yield f"127.0.0.1:{server.port}"
    server.stop()


def query(prometheus_url: str, expr: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_prometheus_reads_the_exporters_error_ratio(prometheus, exporter: str, redis_client: Any, service: str) -> None:
    if prometheus.dir is None:
        pytest.skip("a user-provided Prometheus cannot be given a scrape target by the test")
    now = time.time()
    # Flushes happen in time order (the snapshots assume it): three hours ago first, then two minutes ago.
    recorder = Recorder(service=service, env="prod", client=redis_client, clock=lambda: now - 3 * 3600)
    recorder.record(Outcome.ERROR, 1000)  # in 6h and 30d, not in 10m or 1h
    recorder.close()
    recorder = Recorder(service=service, env="prod", client=redis_client, clock=lambda: now - 120)
    recorder.record(Outcome.OK, 990)
    recorder.record(Outcome.ERROR, 10)
    recorder.close()
    target = prometheus.dir / "targets" / f"{service}.json"
    target.write_text(json.dumps([{"targets": [exporter], "labels": {"job": "obskit-slo"}}]))
    try:
        selector = f'service="{service}",env="prod"'
        deadline = time.monotonic() + 30
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not result:
            result = query(
                prometheus.url, f'max without (instance) (obskit_slo_error_ratio{{{selector},window="10m"}})'
            )
            time.sleep(0.5)
        assert result, "Prometheus never scraped the exporter"
        assert float(result[0]["value"][1]) == pytest.approx(0.01)
        burn = query(prometheus.url, f'obskit_slo_burn_rate{{{selector},window="1h"}}')
        assert float(burn[0]["value"][1]) == pytest.approx(1.0)  # 1% errors against a 1% budget
        six = query(prometheus.url, f'obskit_slo_error_ratio{{{selector},window="6h"}}')
        assert float(six[0]["value"][1]) == pytest.approx(1010 / 2000)
        guard = query(prometheus.url, f'obskit_slo_traffic_sufficient{{{selector},window="5m"}}')
        assert guard[0]["value"][1] == "1"
    finally:
        target.unlink()


def test_status_command_and_page_show_the_service(
    redis_url: str, redis_client: Any, service: str, exporter: str
) -> None:
    recorder = Recorder(service=service, env="prod", client=redis_client)
    recorder.record(Outcome.OK, 999)
    recorder.record(Outcome.ERROR, 1)
    recorder.close()
    result = subprocess.run(
        [sys.executable, "-m", "observability.cli", "slo", "status", "--json", "--redis-url", redis_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (row,) = [r for r in json.loads(result.stdout) if r["service"] == service]
    assert row["error_ratio_10m"] == pytest.approx(0.001)
    assert row["burn_rate_10m"] == pytest.approx(1.0)
    page = httpx.get(f"http://{exporter}/", timeout=10)
    assert page.status_code == 200
    assert service in page.text
    assert "<svg" in page.text
    assert httpx.get(f"http://{exporter}/healthz", timeout=5).text == "ok\n"

"""The web UI links the kit hands out, opened in Bugsink by a logged-in person: each shows exactly the issues
of its filter, with the titles `obskit issues` prints."""

from __future__ import annotations

import html
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable

import pytest

from observability.sentry_api import ServerAPI
from tests.helpers import wait_for
from tests.integration.issues.conftest import ROOT, Browser, Run, Scenario, clean_env
from tests.integration.workers.conftest import free_port

FILTERS: list[tuple[str, Callable[[Scenario], list[str]]]] = [
    ("user", lambda s: ["--user-id", s.users[0]]),
    ("service", lambda s: ["--service", s.worker_service]),
    ("trace", lambda s: ["--trace-id", s.traces[1]]),
    ("rule", lambda s: ["--rule", s.rule]),
    ("service and env", lambda s: ["--service", s.consumer_service, "--env", s.consumer_env]),
]


@pytest.mark.parametrize("args", [f[1] for f in FILTERS], ids=[f[0] for f in FILTERS])
def test_the_search_link_shows_exactly_the_issues_listed_with_their_titles(
    obskit: Callable[..., Run], scenario: Scenario, browser: Browser, args: Callable[[Scenario], list[str]]
) -> None:
    found = obskit("issues", *args(scenario), "--json").json()
    assert found["issues"]
    assert browser.issues_on(found["link"]) == {issue["id"]: issue["title"] for issue in found["issues"]}


def test_the_dlq_headers_link_shows_the_issues_of_the_messages_trace(
    scenario: Scenario, browser: Browser, server_api: ServerAPI
) -> None:
    link = scenario.dlq_links[scenario.traces[0]]
    shown = browser.issues_on(link)
    assert set(shown) == {scenario.flagged_issue, scenario.declined_issue}
    assert shown[scenario.flagged_issue] == server_api.issue(scenario.flagged_issue).title


def test_an_error_log_records_issue_url_shows_the_issues_of_its_trace(
    scenario: Scenario, browser: Browser, server_api: ServerAPI
) -> None:
    (event,) = server_api.events(scenario.log_issue)
    issue_url = event.data["extra"]["issue_url"]
    assert issue_url.endswith(f"trace_id%3A{scenario.traces[1]}")
    assert set(browser.issues_on(issue_url)) == {scenario.crash_issue, scenario.log_issue}


def test_slo_status_links_each_service_to_exactly_its_issues(
    obskit: Callable[..., Run], scenario: Scenario, browser: Browser
) -> None:
    rows = wait_for(
        lambda: [
            r
            for r in obskit("slo", "status", "--json", env={"REDIS_URL": scenario.redis_url}).json()
            if r["service"] in (scenario.worker_service, scenario.consumer_service)
        ],
        30,
        "both services' SLO rows",
    )
    links = {(r["service"], r["env"]): r["issues_url"] for r in rows}
    assert set(browser.issues_on(links[scenario.worker_service, scenario.worker_env])) == scenario.worker_issues
    consumer = browser.issues_on(links[scenario.consumer_service, scenario.consumer_env])
    assert set(consumer) == {scenario.declined_issue}


def test_slo_status_has_no_links_without_a_server(obskit: Callable[..., Run], scenario: Scenario) -> None:
    unset: dict[str, str | None] = {"SENTRY_URL": None, "REDIS_URL": scenario.redis_url}
    rows = obskit("slo", "status", "--json", env=unset).json()
    assert rows
    assert all("issues_url" not in row for row in rows)


def test_the_exporter_page_links_each_service_to_exactly_its_issues(
    server_vars: dict[str, str], scenario: Scenario, browser: Browser
) -> None:
    port = free_port()
    env = clean_env(**server_vars, REDIS_URL=scenario.redis_url)
    exporter = subprocess.Popen(
        [sys.executable, "-m", "observability.cli", "exporter", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def page() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    return str(response.read().decode())
            except OSError:
                time.sleep(0.2)
                return ""

        text = wait_for(page, 30, "the exporter's page")
    finally:
        exporter.terminate()
        exporter.wait(10)
    row = next(r for r in text.split("<tr") if f"<td>{scenario.worker_service}</td>" in r)
    (link,) = re.findall(r"<a href='([^']+)'>issues</a>", row)
    assert set(browser.issues_on(html.unescape(link))) == scenario.worker_issues

"""`obskit issues` against the devstack's server: each tag filter returns exactly the issues carrying it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from observability import issues
from observability.sentry_api import ServerAPI
from tests.integration.issues.conftest import Run, Scenario


def ids(run: Run) -> set[str]:
    return {issue["id"] for issue in run.json()["issues"]}


CASES: list[tuple[str, Callable[[Scenario], list[str]], Callable[[Scenario], set[str]]]] = [
    ("service of the worker", lambda s: ["--service", s.worker_service], lambda s: s.worker_issues),
    ("service of the consumer", lambda s: ["--service", s.consumer_service], lambda s: {s.declined_issue}),
    ("env of the worker", lambda s: ["--env", s.worker_env], lambda s: s.worker_issues),
    ("env of the consumer", lambda s: ["--env", s.consumer_env], lambda s: {s.declined_issue}),
    ("user of trace 1", lambda s: ["--user-id", s.users[0]], lambda s: {s.flagged_issue, s.declined_issue}),
    ("user of trace 2", lambda s: ["--user-id", s.users[1]], lambda s: {s.crash_issue, s.log_issue}),
    ("user of trace 3", lambda s: ["--user-id", s.users[2]], lambda s: {s.declined_issue}),
    ("trace 1", lambda s: ["--trace-id", s.traces[0]], lambda s: {s.flagged_issue, s.declined_issue}),
    ("trace 2", lambda s: ["--trace-id", s.traces[1]], lambda s: {s.crash_issue, s.log_issue}),
    ("release of the worker", lambda s: ["--release", s.worker_release], lambda s: s.worker_issues),
    ("release of the consumer", lambda s: ["--release", s.consumer_release], lambda s: {s.declined_issue}),
    ("rule", lambda s: ["--rule", s.rule], lambda s: {s.flagged_issue}),
    ("celery queue as --tag", lambda s: ["--tag", f"queue={s.queue}"], lambda s: s.worker_issues),
    ("kafka group as --tag", lambda s: ["--tag", f"consumer_group={s.group}"], lambda s: {s.declined_issue}),
    (
        "every tag must match",
        lambda s: ["--service", s.consumer_service, "--user-id", s.users[0]],
        lambda s: {s.declined_issue},
    ),
    ("no issue has both", lambda s: ["--service", s.worker_service, "--user-id", s.users[2]], lambda s: set()),
    ("level warning", lambda s: ["--service", s.worker_service, "--level", "warning"], lambda s: {s.flagged_issue}),
    (
        "level error",
        lambda s: ["--service", s.worker_service, "--level", "error"],
        lambda s: {s.crash_issue, s.log_issue},
    ),
]


@pytest.mark.parametrize(("args", "expected"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_a_tag_filter_returns_exactly_the_issues_carrying_it(
    obskit: Callable[..., Run],
    scenario: Scenario,
    args: Callable[[Scenario], list[str]],
    expected: Callable[[Scenario], set[str]],
) -> None:
    assert ids(obskit("issues", *args(scenario), "--json")) == expected(scenario)


def test_the_table_shows_level_count_the_tags_asked_for_and_links(
    obskit: Callable[..., Run], scenario: Scenario, sentry_server: Any
) -> None:
    run = obskit("issues", "--user-id", scenario.users[1])
    assert run.code == 0, run.stderr
    header, *rows, footer = run.stdout.splitlines()
    assert header.split()[:8] == ["last", "seen", "first", "seen", "level", "events", "user_id", "title"]
    assert len(rows) == 2
    assert all(row.split()[4:7] == ["error", "1", scenario.users[1]] for row in rows)
    titles = {f"ledger lookup failed {scenario.word}", f"LedgerUnavailable: ledger unavailable {scenario.word}"}
    assert {title for title in titles for row in rows if title in row} == titles
    assert {row.split()[-1] for row in rows} == {
        f"{sentry_server.url}/issues/issue/{issue}/" for issue in (scenario.crash_issue, scenario.log_issue)
    }
    assert footer.startswith(f"web UI: {sentry_server.url}/issues/")


def test_json_gives_each_issue_its_level_count_times_tags_and_link(
    obskit: Callable[..., Run], scenario: Scenario
) -> None:
    found = obskit("issues", "--rule", scenario.rule, "--json").json()
    (issue,) = found["issues"]
    assert issue["id"] == scenario.flagged_issue
    assert (issue["level"], issue["count"], issue["title"]) == (
        "warning",
        1,
        f"payment flagged for review {scenario.word}",
    )
    assert issue["tags"] == {"rule": scenario.rule}
    assert issue["first_seen"] <= issue["last_seen"]
    assert found["query"] == f"rule:{scenario.rule}"


def test_since_keeps_only_the_issues_seen_that_recently(obskit: Callable[..., Run], scenario: Scenario) -> None:
    assert ids(obskit("issues", "--service", scenario.worker_service, "--since", "1h", "--json")) == (
        scenario.worker_issues
    )
    time.sleep(2.5)  # the worker's issues were last seen before this: none is left within the last 2 seconds
    assert ids(obskit("issues", "--service", scenario.worker_service, "--since", "2s", "--json")) == set()


def test_limit_keeps_the_most_recently_seen(obskit: Callable[..., Run], scenario: Scenario) -> None:
    everything = obskit("issues", "--service", scenario.worker_service, "--json").json()["issues"]
    limited = obskit("issues", "--service", scenario.worker_service, "--limit", "2", "--json").json()["issues"]
    assert [i["id"] for i in limited] == [i["id"] for i in everything][:2]
    assert [i["last_seen"] for i in everything] == sorted((i["last_seen"] for i in everything), reverse=True)


def test_requests_are_one_list_and_two_per_issue_shown(server_api: ServerAPI, scenario: Scenario) -> None:
    asked: list[str] = []
    server_api._http.event_hooks["request"].append(lambda request: asked.append(request.url.path))
    try:
        shown = issues.find(server_api, issues.Search(filters={"service": scenario.worker_service}))["issues"]
        all_shown = len(asked)
        asked.clear()
        issues.find(server_api, issues.Search(filters={"service": scenario.worker_service}, limit=1))
        one_shown = len(asked)
        asked.clear()
        issues.find(server_api, issues.Search(filters={"service": scenario.worker_service}, levels=("warning",)))
        by_level = len(asked)
    finally:
        server_api._http.event_hooks["request"].pop()
    assert len(shown) == 3
    assert (all_shown, one_shown) == (1 + 2 * 3, 1 + 2 * 1)
    assert by_level == 1 + 2 * 3  # the level of each candidate is read once, no more

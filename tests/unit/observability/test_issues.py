"""`obskit issues`: query building, link formats for Sentry and Bugsink, the requests each client makes,
the tables, the exit codes, and the links on log records and on the SLO page."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from click.testing import CliRunner

import observability as obs
from observability import issues
from observability.cli import main
from observability.errors import ConfigError
from observability.exporter import SLOSource, render_page, status_rows
from observability.sentry_api import (
    BugsinkAPI,
    SentryAPI,
    ServerAPI,
    StoredEvent,
    issues_link,
    search_query,
    stats_period,
)
from observability.slo import Outcome, Spec
from observability.slo.report import build_reports
from observability.slo.store import Reading
from observability.slo.windows import WINDOWS
from observability.testing import CapturedEvents, capture_transport
from tests.helpers import wire as _wired

# -- query building ------------------------------------------------------------------------------


def test_each_tag_option_becomes_one_search_term_in_the_schemas_order() -> None:
    named = dict.fromkeys(issues.TAG_OPTIONS) | {"user_id": "42", "service": "payments-worker"}
    filters = issues.parse_tags(named, ["queue=payments", "feature_flag=new checkout"])
    assert search_query(filters) == 'service:payments-worker user_id:42 queue:payments feature_flag:"new checkout"'


def test_a_quote_in_a_value_is_escaped_as_the_servers_parse_it() -> None:
    assert search_query({"rule": 'say "no"'}) == 'rule:"say \\"no\\""'


@pytest.mark.parametrize("pair", ["service", "=x", "service=", "a b=c", "k" * 33 + "=v"])
def test_a_malformed_tag_is_a_config_error_naming_the_option(pair: str) -> None:
    with pytest.raises(ConfigError, match=r"^--tag="):
        issues.parse_tags({}, [pair])


def test_a_tag_given_twice_with_two_values_is_refused_and_once_more_with_the_same_value_is_fine() -> None:
    assert issues.parse_tags({"service": "a"}, ["service=a"]) == {"service": "a"}
    with pytest.raises(ConfigError, match="no second value for service"):
        issues.parse_tags({"service": "a"}, ["service=b"])


@pytest.mark.parametrize(
    ("text", "seconds"), [("45s", 45), ("30m", 1800), ("1h", 3600), ("2d", 172800), ("1w", 604800), (" 3h ", 10800)]
)
def test_since_takes_a_number_and_a_unit(text: str, seconds: int) -> None:
    assert issues.parse_since(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["yesterday", "1", "h", "0h", "1.5h", "-1h", "1y", ""])
def test_a_bad_since_is_a_config_error_naming_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--since=.*expected a duration like 30m, 1h, 2d or 1w$"):
        issues.parse_since(text)


@pytest.mark.parametrize(("seconds", "period"), [(3600, "1h"), (86400, "1d"), (5400, "90m"), (1209600, "2w")])
def test_sentry_stats_period_uses_the_largest_whole_unit(seconds: int, period: str) -> None:
    assert stats_period(timedelta(seconds=seconds)) == period


# -- link formats --------------------------------------------------------------------------------


def test_bugsink_link_is_the_projects_list_of_all_states_with_the_same_search_as_its_api() -> None:
    link = issues_link(
        api="bugsink", url="http://127.0.0.1:8000/", project="1", filters={"service": "pay", "rule": "daily limit"}
    )
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "127.0.0.1:8000", "/issues/1/all/")
    assert parse_qs(parts.query) == {"q": ['service:pay rule:"daily limit"']}


def test_bugsink_link_has_no_time_or_level_filter_to_carry() -> None:
    plain = issues_link(api="bugsink", url="http://b", project="1", filters={"user_id": "42"})
    narrowed = issues_link(
        api="bugsink", url="http://b", project="1", filters={"user_id": "42"}, since=timedelta(days=1), levels=["error"]
    )
    assert narrowed == plain == "http://b/issues/1/all/?q=user_id%3A42"


def test_sentry_link_carries_query_level_project_and_time_range() -> None:
    link = issues_link(
        api="sentry",
        url="https://sentry.example.com",
        project="5",
        org="acme",
        filters={"user_id": "42", "env": "prod"},
        since=timedelta(days=1),
        levels=["error", "fatal"],
    )
    parts = urlsplit(link)
    assert parts.path == "/organizations/acme/issues/"
    assert parse_qs(parts.query) == {
        "query": ["user_id:42 env:prod level:[error,fatal]"],
        "project": ["5"],
        "statsPeriod": ["1d"],
    }
    assert "%20" in parts.query  # Sentry's UI wants %20, not +, between terms


def test_sentry_link_with_a_project_slug_is_the_organizations_list() -> None:
    link = issues_link(api="sentry", url="https://s", project="payments", org="acme", filters={"trace_id": "ab"})
    assert link == "https://s/organizations/acme/issues/?query=trace_id%3Aab"


def test_the_command_and_the_link_ask_the_same_search() -> None:
    api = BugsinkAPI(url="http://b", token="t", project="3", org=None)
    search = issues.Search(filters={"service": "s", "env": "prod"})
    assert issues.link(api, search) == f"http://b/issues/3/all/?q={search.query.replace(':', '%3A').replace(' ', '+')}"


# -- the requests each client makes -----------------------------------------------------------------


def _bugsink_issue(n: int, *, now: datetime, minutes_ago: float) -> dict[str, Any]:
    seen = (now - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")
    kind, value = ("Log Message", f"message {n}") if n % 2 else ("KeyError", f"'k{n}'")
    return {
        "id": f"issue-{n}",
        "friendly_id": f"OBSKIT-{n}",
        "last_seen": seen,
        "first_seen": seen,
        "digested_event_count": n,
        "calculated_type": kind,
        "calculated_value": value,
        "is_resolved": False,
    }


class FakeBugsink:
    """Bugsink's issue list (two pages, sorted by last seen), event lists and event details."""

    root = "/api/canonical/0"

    def __init__(self, count: int, levels: Callable[[int], str]) -> None:
        now = datetime.now(UTC)  # the client compares last seen with its own clock
        self.rows = [_bugsink_issue(n, now=now, minutes_ago=n * 10) for n in range(count)]
        self.levels = levels

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, params = request.url.path, request.url.params
        if path == f"{self.root}/issues/":
            start = int(params.get("cursor", "0"))
            page = self.rows[start : start + 3]
            following = (
                f"{request.url.copy_merge_params({'cursor': start + 3})}" if start + 3 < len(self.rows) else None
            )
            return httpx.Response(200, json={"results": page, "next": following})
        if path == f"{self.root}/events/":
            n = int(params["issue"].removeprefix("issue-"))
            return httpx.Response(200, json={"results": [{"id": f"event-{n}"}], "next": None})
        if path.startswith(f"{self.root}/events/event-"):
            n = int(path.rstrip("/").rsplit("-", 1)[1])
            data = {"level": self.levels(n), "tags": {"service": "s"}}
            return httpx.Response(200, json={"event_id": f"{n:032x}", "issue": f"issue-{n}", "data": data})
        return httpx.Response(404)


def test_bugsink_search_asks_one_list_page_and_two_requests_per_issue_shown() -> None:
    api = BugsinkAPI(url="http://b", token="t", project="1", org=None)
    seen = _wired(api, FakeBugsink(9, lambda n: "error"))
    found = api.find_issues("service:s", limit=2)
    assert [(i.id, i.level) for i in found] == [("issue-0", "error"), ("issue-1", "error")]
    assert len(seen) == 1 + 2 * 2
    listing = seen[0].url.params
    assert (listing["q"], listing["sort"], listing["order"], listing["state"]) == (
        "service:s",
        "last_seen",
        "desc",
        "all",
    )
    assert {r.url.params.get("q") for r in seen[1:] if r.url.path.endswith("/events/")} == {"service:s"}


def test_bugsink_since_stops_paging_at_the_first_issue_seen_before_it() -> None:
    api = BugsinkAPI(url="http://b", token="t", project="1", org=None)
    seen = _wired(api, FakeBugsink(9, lambda n: "error"))
    found = api.find_issues("", since=timedelta(minutes=15), limit=20)
    assert [i.id for i in found] == ["issue-0", "issue-1"]  # seen 0 and 10 minutes ago; issue-2 20 minutes ago
    assert sum(r.url.path.endswith("/issues/") for r in seen) == 1  # the second page is never asked for


def test_bugsink_level_filter_checks_issues_until_the_limit_matches() -> None:
    api = BugsinkAPI(url="http://b", token="t", project="1", org=None)
    seen = _wired(api, FakeBugsink(9, lambda n: "warning" if n % 3 == 0 else "error"))
    found = api.find_issues("", levels=["warning"], limit=2)
    assert [(i.id, i.level) for i in found] == [("issue-0", "warning"), ("issue-3", "warning")]
    details = [r for r in seen if "/events/event-" in r.url.path]
    assert len(details) <= 5  # issues 0-4 at most: no level is fetched past the last one needed


def test_bugsink_issue_titles_are_the_ones_its_pages_show() -> None:
    api = BugsinkAPI(url="http://b", token="t", project="1", org=None)
    _wired(api, FakeBugsink(2, lambda n: "error"))
    assert [i.title for i in api.find_issues("")] == ["KeyError: 'k0'", "message 1"]


def test_sentry_search_is_the_organizations_issue_search_with_documented_params() -> None:
    api = SentryAPI(url="https://s", token="t", project="payments", org="acme")

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/0/projects/acme/payments/":
            return httpx.Response(200, json={"id": "7", "slug": "payments"})
        row = {"id": "1", "title": "KeyError: 'k'", "level": "error", "count": "3", "lastSeen": "2026-01-01T00:00:00Z"}
        return httpx.Response(200, json=[row])

    seen = _wired(api, answer)
    (issue,) = api.find_issues("user_id:42", since=timedelta(hours=2), levels=["error"], limit=5)
    assert (issue.level, issue.count) == ("error", 3)
    api.find_issues("user_id:43")
    assert [r.url.path for r in seen] == [
        "/api/0/projects/acme/payments/",  # the slug's id, once per client
        "/api/0/organizations/acme/issues/",
        "/api/0/organizations/acme/issues/",
    ]
    params = seen[1].url.params
    assert dict(params) == {
        "project": "7",
        "query": "user_id:42 level:error",
        "sort": "date",
        "limit": "5",
        "statsPeriod": "2h",
    }
    assert "statsPeriod" not in seen[2].url.params


def test_sentry_search_follows_link_cursors_only_while_there_are_results() -> None:
    api = SentryAPI(url="https://s", token="t", project="7", org="acme")

    def answer(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        rows = [{"id": f"{cursor or 'a'}{n}", "title": "t"} for n in range(2)]
        results = "true" if cursor is None else "false"
        link = f'<https://s/api/0/organizations/acme/issues/?cursor=next>; rel="next"; results="{results}"'
        return httpx.Response(200, json=rows, headers={"Link": link})

    seen = _wired(api, answer)
    assert [i.id for i in api.find_issues("", limit=10)] == ["a0", "a1", "next0", "next1"]
    assert len(seen) == 2


def test_sentry_trace_events_are_one_events_table_query_oldest_first() -> None:
    api = SentryAPI(url="https://s", token="t", project="7", org="acme")
    row = {
        "id": "ABCDEF",
        "issue.id": 12,
        "timestamp": "2026-01-01T00:00:01+00:00",
        "title": "Declined: no",
        "level": "error",
        "tags[service]": "payments-consumer",
        "tags[topic]": "payments",
        "tags[task]": None,
    }
    seen = _wired(api, lambda request: httpx.Response(200, json={"data": [row], "meta": {}}))
    (event,) = api.find_events("trace_id:abc", limit=50)
    assert (event.event_id, event.issue_id, event.title, event.level) == ("abcdef", "12", "Declined: no", "error")
    assert event.tags == {"service": "payments-consumer", "topic": "payments"}
    (request,) = seen
    assert request.url.path == "/api/0/organizations/acme/events/"
    params = request.url.params
    assert params["query"] == "trace_id:abc !event.type:transaction"
    assert (params["sort"], params["per_page"], params["project"]) == ("timestamp", "50", "7")
    assert {"id", "timestamp", "title", "level", "tags[service]", "tags[task]", "tags[topic]"} <= set(
        params.get_list("field")
    )


def test_stored_event_title_and_level_from_the_sdks_payload() -> None:
    error = StoredEvent(
        "1", None, None, {"level": "error", "exception": {"values": [{"type": "A"}, {"type": "B", "value": "x\ny"}]}}
    )
    message = StoredEvent(
        "2", None, None, {"logentry": {"message": "m %s", "formatted": "m 1"}, "tags": {"level": "info"}}
    )
    assert (error.title, error.level) == ("B: x", "error")
    assert (message.title, message.level) == ("m 1", "info")


# -- the tables and the command ---------------------------------------------------------------------


class FakeServer(ServerAPI):
    """Answers find_issues / find_events from memory."""

    kind = "bugsink"

    def __init__(self, issues_: list[Any] | None = None, events: list[StoredEvent] | None = None) -> None:
        self.url, self.project, self.org = "http://b", "1", None
        self._issues, self._events = issues_ or [], events or []

    def find_issues(self, query: str = "", **kwargs: Any) -> list[Any]:
        return self._issues

    def find_events(self, query: str, **kwargs: Any) -> list[StoredEvent]:
        return self._events

    def describe(self) -> str: ...  # type: ignore[empty-body]
    def issues(self, query: str = "", *, limit: int = 100) -> list[Any]: ...  # type: ignore[empty-body]
    def events(self, issue_id: str, query: str = "", *, limit: int = 100) -> list[StoredEvent]: ...  # type: ignore[empty-body]
    def event(self, event_id: str) -> StoredEvent | None: ...
    def event_url(self, event_id: str) -> str: ...  # type: ignore[empty-body]
    def issue(self, issue_id: str) -> Any: ...
    def tag_values(self, issue_id: str, key: str) -> list[str]: ...  # type: ignore[empty-body]
    def comments(self, issue_id: str) -> list[str]: ...  # type: ignore[empty-body]
    def resolve(self, issue_id: str) -> None: ...
    def delete(self, issue_id: str) -> None: ...


def test_the_table_shows_level_count_seen_the_tags_asked_for_and_each_issues_link() -> None:
    from observability.sentry_api import Issue

    when = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    issue = Issue("9", "KeyError: 'k'", 4, when, when, "http://b/issues/issue/9/", False, level="error")
    found = issues.find(FakeServer([issue]), issues.Search(filters={"user_id": "42"}, since=timedelta(days=1)))
    header, row, footer = issues.format_issues(found).splitlines()
    assert header.split() == ["last", "seen", "first", "seen", "level", "events", "user_id", "title", "link"]
    assert row.split() == [
        "2026-03-01",
        "12:30",
        "2026-03-01",
        "12:30",
        "error",
        "4",
        "42",
        "KeyError:",
        "'k'",
        issue.url,
    ]
    assert footer == "web UI (tags only: its list has no time or level filter): http://b/issues/1/all/?q=user_id%3A42"
    assert found["issues"][0]["tags"] == {"user_id": "42"}
    assert found["issues"][0]["last_seen"] == "2026-03-01T12:30:00+00:00"


def test_the_trace_view_names_the_task_or_topic_of_each_event() -> None:
    stamp = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    task = StoredEvent(
        "a" * 32, "1", stamp, {"level": "warning", "message": "flagged", "tags": {"service": "w", "task": "pay"}}
    )
    topic = StoredEvent(
        "b" * 32, "2", stamp, {"level": "error", "message": "declined", "tags": {"service": "c", "topic": "payments"}}
    )
    found = issues.trace(FakeServer(events=[task, topic]), issues.Search(filters={"trace_id": "t1"}))
    lines = issues.format_events(found).splitlines()
    assert lines[1].split() == ["2026-03-01", "12:00:00.123", "w", "pay", "warning", "a" * 32, "flagged"]
    assert lines[2].split() == ["2026-03-01", "12:00:00.123", "c", "topic", "payments", "error", "b" * 32, "declined"]
    assert [e["event_id"] for e in found["events"]] == ["a" * 32, "b" * 32]


@pytest.fixture
def server_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SENTRY_DSN", "SENTRY_ORG", "SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SENTRY_URL", "http://127.0.0.1:1")  # nothing listens on port 1
    monkeypatch.setenv("SENTRY_AUTH_TOKEN", "t")
    monkeypatch.setenv("SENTRY_PROJECT", "1")
    monkeypatch.setenv("OBSKIT_SENTRY_API", "bugsink")


@pytest.mark.usefixtures("server_variables")
@pytest.mark.parametrize(
    ("args", "unset", "code", "message"),
    [
        (["--since", "yesterday"], None, 2, "obskit: --since='yesterday' is invalid: expected a duration"),
        (["--tag", "service"], None, 2, "obskit: --tag='service' is invalid: expected key=value"),
        (["--user-id", "42"], "SENTRY_AUTH_TOKEN", 2, "obskit: SENTRY_AUTH_TOKEN='' is invalid"),
        (["--user-id", "42"], "SENTRY_URL", 2, "obskit: SENTRY_URL='' is invalid"),
        (["--user-id", "42"], None, 1, "obskit: http://127.0.0.1:1 unreachable:"),
    ],
)
def test_errors_are_one_line_with_exit_2_for_usage_and_config_and_1_for_the_server(
    monkeypatch: pytest.MonkeyPatch, args: list[str], unset: str | None, code: int, message: str
) -> None:
    if unset:
        monkeypatch.delenv(unset)
    result = CliRunner().invoke(main, ["issues", *args])
    assert result.exit_code == code
    assert result.output.count("\n") == 1
    assert result.output.startswith(message)


def test_events_without_a_trace_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["issues", "--events", "--user-id", "42"])
    assert result.exit_code == 2
    assert "--events lists one trace: give --trace-id" in result.output


def test_json_output_is_the_same_document_the_table_is_made_from() -> None:
    found = issues.find(FakeServer([]), issues.Search(filters={"service": "s"}))
    assert json.loads(json.dumps(found))["issues"] == []
    assert issues.format_issues(found).splitlines()[0] == "no issues match service:s"


# -- links on log records and on the SLO page ----------------------------------------------------------


@pytest.fixture
def kit_with_server() -> Iterator[CapturedEvents]:
    sink = CapturedEvents()
    environ = {
        "SENTRY_DSN": "http://k@127.0.0.1:9/1",
        "SENTRY_URL": "http://bugsink.example",
        "SENTRY_PROJECT": "1",
        "OBSKIT_SENTRY_API": "bugsink",
    }
    obs.init("svc", environ=environ, transport=capture_transport(sink), registry=sink.registry)
    try:
        yield sink
    finally:
        obs.shutdown(timeout_s=1.0)


def test_error_records_link_their_traces_issues_and_lower_records_are_left_alone(
    kit_with_server: CapturedEvents,
) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    log = logging.getLogger("app.links")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with obs.bind(user_id=3) as unit:
            log.info("charging")
            log.error("charge failed")
        log.error("outside any unit")
    finally:
        log.removeHandler(handler)
    inside_info, inside_error, outside = records
    assert not hasattr(inside_info, "issue_url")
    assert inside_error.issue_url == f"http://bugsink.example/issues/1/all/?q=trace_id%3A{unit.trace_id}"  # type: ignore[attr-defined]
    assert outside.issue_url == "-"  # type: ignore[attr-defined]
    event = next(e for e in kit_with_server if e.get("logentry", {}).get("message") == "charge failed")
    assert event["extra"]["issue_url"] == inside_error.issue_url  # type: ignore[attr-defined]


def test_error_records_have_no_link_without_a_configured_server() -> None:
    sink = CapturedEvents()
    obs.init(
        "svc",
        environ={"SENTRY_DSN": "http://k@127.0.0.1:9/1"},
        transport=capture_transport(sink),
        registry=sink.registry,
    )
    try:
        with obs.bind(user_id=3):
            record = logging.getLogger("app.links").makeRecord("app.links", logging.ERROR, "f", 1, "boom", (), None)
    finally:
        obs.shutdown(timeout_s=1.0)
    assert record.issue_url == "-"  # type: ignore[attr-defined]


class _NoHistory:
    def history(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []


def _reports() -> Any:
    windows = {window: {Outcome.OK: 10} for window in WINDOWS}
    return build_reports([Reading("payments-worker", "prod", 1000.0, 990.0, windows)], Spec())


def test_slo_status_rows_and_page_link_each_services_issues_when_a_server_is_configured() -> None:
    def link(filters: Any) -> str:
        return issues_link(api="bugsink", url="http://b", project="1", filters=filters)

    (row,) = status_rows(_reports(), issues_link=link)
    assert row["issues_url"] == "http://b/issues/1/all/?q=service%3Apayments-worker+env%3Aprod"
    page = render_page(SLOSource(_NoHistory(), Spec(), issues_link=link), _reports())  # type: ignore[arg-type]
    assert "<th>issues</th>" in page
    assert f"<a href='{row['issues_url']}'>issues</a>" in page


def test_slo_status_has_no_link_column_without_a_server() -> None:
    (row,) = status_rows(_reports())
    assert "issues_url" not in row
    assert "<th>issues</th>" not in render_page(SLOSource(_NoHistory(), Spec()), _reports())  # type: ignore[arg-type]

"""Cleanup's decisions on an in-memory server, and the web-API calls each client makes for it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from click.testing import CliRunner

from observability import cleanup
from observability.cli import main
from observability.errors import ServerAPIError
from observability.sentry_api import BugsinkAPI, Issue, SentryAPI, ServerAPI
from tests.helpers import wire as _wired

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class FakeServer(ServerAPI):
    """Issues with tags and comments in memory; records what was asked of it."""

    kind = "fake"

    def __init__(self) -> None:
        self.url, self.project, self.org = "http://fake", "1", None
        self.store: dict[str, Issue] = {}
        self.tags: dict[str, dict[str, list[str]]] = {}
        self.notes: dict[str, list[str]] = {}
        self.queries: list[str] = []
        self.actions: list[tuple[str, str]] = []
        self.fail_on: str | None = None

    def add(self, issue_id: str, *, days_ago: float = 10, resolved: bool = False, comments: int = 0, **tags: str):
        self.store[issue_id] = Issue(
            id=issue_id,
            title=f"issue {issue_id}",
            count=1,
            first_seen=NOW - timedelta(days=days_ago),
            last_seen=NOW - timedelta(days=days_ago),
            url=f"http://fake/{issue_id}",
            resolved=resolved,
        )
        self.tags[issue_id] = {key: [value] for key, value in tags.items()}
        self.notes[issue_id] = [f"note {n}" for n in range(comments)]

    def issues(self, query: str = "", *, limit: int = 100) -> list[Issue]:
        self.queries.append(query)
        terms = dict(term.split(":", 1) for term in query.split())
        return [i for i in self.store.values() if all(v in self.tags[i.id].get(k, []) for k, v in terms.items())]

    def issue(self, issue_id: str) -> Issue:
        if issue_id not in self.store:
            message = f"no issue {issue_id}"
            raise ServerAPIError(message)
        return self.store[issue_id]

    def tag_values(self, issue_id: str, key: str) -> list[str]:
        return self.tags[issue_id].get(key, [])

    def comments(self, issue_id: str) -> list[str]:
        return self.notes[issue_id]

    def resolve(self, issue_id: str) -> None:
        self._act("resolve", issue_id)

    def delete(self, issue_id: str) -> None:
        self._act("delete", issue_id)

    def _act(self, action: str, issue_id: str) -> None:
        if issue_id == self.fail_on:
            message = f"{action} {issue_id} failed"
            raise ServerAPIError(message)
        self.actions.append((action, issue_id))

    def describe(self) -> str:
        return "fake"

    def events(self, issue_id: str, query: str = "", *, limit: int = 100) -> list:
        return []

    def event(self, event_id: str) -> None:
        return None

    def event_url(self, event_id: str) -> str:
        return ""


def decided(decisions: list[cleanup.Decision]) -> dict[str, str]:
    return {d.issue.id: d.action for d in decisions}


def test_test_only_searches_for_the_test_tag_and_service() -> None:
    server = FakeServer()
    server.add("a", test="true", service="pay", environment="staging")
    server.add("b", service="pay", environment="staging")
    server.add("c", test="true", service="other", environment="staging")
    decisions = cleanup.plan(server, test_only=True, service="pay", now=NOW)
    assert server.queries == ["service:pay test:true"]
    assert decided(decisions) == {"a": "resolve"}


def test_old_keeps_issues_seen_within_the_last_n_days() -> None:
    server = FakeServer()
    server.add("stale", days_ago=8, environment="staging")
    server.add("fresh", days_ago=6, environment="staging")
    decisions = cleanup.plan(server, older_than_days=7, now=NOW)
    assert decided(decisions) == {"stale": "resolve", "fresh": "skip"}
    assert next(d for d in decisions if d.issue.id == "fresh").reason == "seen too recently"


@pytest.mark.parametrize("environment", ["prod", "production", "Production"])
def test_an_unresolved_production_issue_is_never_touched(environment: str) -> None:
    server = FakeServer()
    server.add("p", environment=environment, test="true")
    for delete in (False, True):
        (decision,) = cleanup.plan(server, test_only=True, delete=delete, now=NOW)
        assert decision.action == "skip"
        assert "production issue, unresolved" in decision.reason


def test_a_commented_production_issue_is_never_deleted_but_an_uncommented_resolved_one_is() -> None:
    server = FakeServer()
    server.add("talked-about", environment="prod", resolved=True, comments=2)
    server.add("quiet", environment="prod", resolved=True)
    decisions = cleanup.plan(server, older_than_days=1, delete=True, now=NOW)
    assert decided(decisions) == {"talked-about": "skip", "quiet": "delete"}
    assert "2 comment(s)" in decisions[0].reason


def test_naming_an_issue_lifts_the_production_guard_for_it_alone() -> None:
    server = FakeServer()
    server.add("p1", environment="prod", test="true")
    server.add("p2", environment="prod", test="true")
    decisions = cleanup.plan(server, test_only=True, issue_ids=["p1"], now=NOW)
    assert decided(decisions) == {"p1": "resolve"}
    assert server.queries == []


def test_a_named_issue_still_has_to_pass_the_filters() -> None:
    server = FakeServer()
    server.add("real", environment="staging")
    (decision,) = cleanup.plan(server, test_only=True, issue_ids=["real"], now=NOW)
    assert decision.action == "skip"
    assert "test=true" in decision.reason


def test_resolving_skips_resolved_issues_and_deleting_takes_them() -> None:
    server = FakeServer()
    server.add("done", environment="staging", resolved=True, test="true")
    assert decided(cleanup.plan(server, test_only=True, now=NOW)) == {"done": "skip"}
    assert decided(cleanup.plan(server, test_only=True, delete=True, now=NOW)) == {"done": "delete"}


def test_the_dry_run_changes_nothing_and_execute_acts_in_order() -> None:
    server = FakeServer()
    server.add("a", environment="staging", test="true")
    server.add("p", environment="prod", test="true")
    server.add("b", environment="staging", test="true")
    decisions = cleanup.plan(server, test_only=True, delete=True, now=NOW)
    lines = cleanup.render(decisions)
    assert [line.split()[0:2] for line in lines[:3]] == [["would", "delete"], ["skip", "p"], ["would", "delete"]]
    assert lines[-1] == "2 issue(s) to clean up, 1 skipped; dry run: add --execute to act"
    assert server.actions == []
    echoed: list[str] = []
    done = cleanup.execute(server, decisions, echo=echoed.append)
    assert server.actions == [("delete", "a"), ("delete", "b")]
    assert [d.issue.id for d in done] == ["a", "b"]
    assert echoed[-1] == "2 issue(s) cleaned up, 1 skipped"


def test_execute_stops_at_the_first_failure_after_saying_what_it_did() -> None:
    server = FakeServer()
    for name in ("a", "b", "c"):
        server.add(name, environment="staging", test="true")
    server.fail_on = "b"
    echoed: list[str] = []
    with pytest.raises(ServerAPIError, match="resolve b failed"):
        cleanup.execute(server, cleanup.plan(server, test_only=True, now=NOW), echo=echoed.append)
    assert server.actions == [("resolve", "a")]
    assert echoed[0].startswith("resolved")


def test_cleanup_without_any_filter_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["cleanup", "--execute"])
    assert result.exit_code == 2
    assert "say what to clean up" in result.output


# -- the clients' calls ----------------------------------------------------------------------------


def test_sentry_client_resolves_deletes_and_reads_comments_and_environments() -> None:
    api = SentryAPI(url="https://sentry.example.com", token="t", project="payments", org="acme")

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/0/issues/42/comments/":
            notes = [{"data": {"text": "second"}}, {"data": {"text": "first"}}]  # newest first, as Sentry lists them
            return httpx.Response(200, json=notes)
        if request.url.path == "/api/0/issues/42/tags/environment/":
            return httpx.Response(200, json={"key": "environment", "topValues": [{"value": "prod", "count": 3}]})
        if request.url.path == "/api/0/issues/42/tags/test/":
            return httpx.Response(404, json={"detail": "not found"})
        if request.method == "DELETE":
            return httpx.Response(202)
        return httpx.Response(200, json={"id": "42", "status": "resolved"})

    seen = _wired(api, answer)
    assert api.comments("42") == ["first", "second"]
    assert api.environments("42") == ["prod"]
    assert api.tag_values("42", "test") == []
    api.resolve("42")
    api.delete("42")
    assert [(r.method, r.url.path) for r in seen[3:]] == [("PUT", "/api/0/issues/42/"), ("DELETE", "/api/0/issues/42/")]
    assert json.loads(seen[3].content) == {"status": "resolved"}
    assert seen[3].headers["Authorization"] == "Bearer t"


def test_sentry_client_says_which_issue_is_missing() -> None:
    api = SentryAPI(url="https://sentry.example.com", token="t", project="payments", org="acme")
    _wired(api, lambda request: httpx.Response(404, json={"detail": "not found"}))
    with pytest.raises(ServerAPIError, match="no issue 7"):
        api.issue("7")


def test_bugsink_client_resolves_deletes_and_pages_through_tags_and_history() -> None:
    api = BugsinkAPI(url="http://127.0.0.1:8000", token="t", project="1", org=None)
    root = "/api/canonical/0"

    def answer(request: httpx.Request) -> httpx.Response:
        path, params = request.url.path, request.url.params
        if path == f"{root}/issues/abc/tags/" and "cursor" not in params:
            assert params["key"] == "environment"
            page = {"results": [{"key": "environment", "value": "prod"}], "next": f"{request.url}&cursor=2"}
            return httpx.Response(200, json=page)
        if path == f"{root}/issues/abc/tags/":
            return httpx.Response(200, json={"results": [{"key": "environment", "value": "staging"}], "next": None})
        if path == f"{root}/issue-history/":
            assert params["issue"] == "abc"
            rows = [{"kind": "manual_annotation", "comment": "later"}, {"kind": "resolved", "comment": ""}]
            rows.append({"kind": "manual_annotation", "comment": "earlier"})
            return httpx.Response(200, json={"results": rows, "next": None})
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(200, json={"id": "abc", "is_resolved": True})

    seen = _wired(api, answer)
    assert api.environments("abc") == ["prod", "staging"]
    assert api.comments("abc") == ["earlier", "later"]
    api.resolve("abc")
    api.delete("abc")
    assert [(r.method, r.url.path) for r in seen[-2:]] == [
        ("POST", f"{root}/issues/abc/resolve/"),
        ("DELETE", f"{root}/issues/abc/"),
    ]

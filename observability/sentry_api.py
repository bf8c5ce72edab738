"""One small client for the Sentry-compatible server's web API: Sentry's ``/api/0/`` (sentry.io,
self-hosted) and Bugsink's ``/api/canonical/0/`` (the devstack), behind one interface.

Both search issues and events with ``key:value`` tag terms; both answer with the event as the SDK
sent it. Configured with sentry-cli's variables: ``SENTRY_URL``, ``SENTRY_AUTH_TOKEN``,
``SENTRY_ORG``, ``SENTRY_PROJECT``, plus ``OBSKIT_SENTRY_API`` (``sentry`` or ``bugsink``).
"""

from __future__ import annotations

import itertools
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

from observability.config import Settings
from observability.errors import ConfigError, ServerAPIError

__all__ = [
    "BugsinkAPI",
    "Issue",
    "SentryAPI",
    "ServerAPI",
    "StoredEvent",
    "client",
    "issues_link",
    "issues_link_for",
    "level_term",
    "ping_dsn",
    "search_query",
    "stats_period",
]

logger = logging.getLogger(__name__)

_PLAIN_VALUE = re.compile(r"^[^\s\"]+$")
_PERIOD_UNITS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
# Bugsink: issues whose level is checked (two requests each) before a --level search stops looking.
_LEVEL_CHECKS_MAX = 200
# Requests for per-issue details that run at once.
_PARALLEL = 8


def search_query(filters: Mapping[str, str] | None = None, text: str | None = None) -> str:
    """The servers' search syntax: ``key:value`` terms (values with spaces quoted) and free text."""
    terms = []
    for key, value in (filters or {}).items():
        shown = value if _PLAIN_VALUE.match(value) else '"' + value.replace('"', '\\"') + '"'
        terms.append(f"{key}:{shown}")
    if text:
        terms.append(text)
    return " ".join(terms)


def stats_period(since: timedelta) -> str:
    """Sentry's ``statsPeriod`` for a duration: ``1h``, ``2d``, ``90m`` (the largest unit that divides it)."""
    seconds = max(1, round(since.total_seconds()))
    unit, size = next((u, n) for u, n in _PERIOD_UNITS if seconds % n == 0)
    return f"{seconds // size}{unit}"


def level_term(levels: Sequence[str]) -> str:
    """Sentry's search term for event levels: ``level:error`` or ``level:[error,fatal]``."""
    if not levels:
        return ""
    return f"level:{levels[0]}" if len(levels) == 1 else f"level:[{','.join(levels)}]"


def issues_link(
    *,
    api: str,
    url: str,
    project: str | None,
    filters: Mapping[str, str] | None = None,
    org: str | None = None,
    since: timedelta | None = None,
    levels: Sequence[str] = (),
) -> str:
    """The web UI's issue list filtered by tags, for Sentry and for Bugsink alike (no network).

    Bugsink's list (all states, as ``obskit issues`` lists them) takes the same ``q`` search as its API
    and has no time range or level filter, so ``since`` and ``levels`` only reach Sentry's link (its time
    range and a ``level:`` term). Bugsink can filter only within a project: without one the link is its
    global list, unfiltered.
    """
    base = url.rstrip("/")
    if api == "bugsink":
        query = search_query(filters)
        path = f"{base}/issues/{project}/all/" if project else f"{base}/issues/all/"
        return f"{path}?{urlencode({'q': query})}" if query else path
    query = " ".join(filter(None, (search_query(filters), level_term(levels))))
    params = {"query": query} if query else {}
    if project and project.isdigit():
        params["project"] = project
    if since is not None:
        params["statsPeriod"] = stats_period(since)
    suffix = f"?{urlencode(params, quote_via=quote)}" if params else ""
    return f"{base}/organizations/{org}/issues/{suffix}"


def issues_link_for(settings: Settings) -> Callable[[Mapping[str, str]], str] | None:
    """:func:`issues_link` bound to the configured server, or None when ``SENTRY_URL`` is not set."""
    if not settings.sentry_url:
        return None
    api, url, project, org = settings.sentry_api, settings.sentry_url, settings.sentry_project, settings.sentry_org

    def link(filters: Mapping[str, str]) -> str:
        return issues_link(api=api, url=url, project=project, filters=filters, org=org)

    return link


@dataclass(frozen=True)
class Issue:
    id: str
    title: str
    count: int
    first_seen: datetime | None
    last_seen: datetime | None
    url: str
    resolved: bool
    level: str | None = None
    short_id: str | None = None


@dataclass(frozen=True)
class StoredEvent:
    """An event as the server stored it: ``data`` is the payload the SDK sent."""

    event_id: str
    issue_id: str | None
    timestamp: datetime | None
    data: dict[str, Any] = field(repr=False)

    @property
    def tags(self) -> dict[str, str]:
        tags = self.data.get("tags") or {}
        if isinstance(tags, list):  # Sentry's API: [{"key": ..., "value": ...}] or [[key, value]]
            pairs = (t if isinstance(t, list | tuple) else (t.get("key"), t.get("value")) for t in tags)
            return {str(k): str(v) for k, v in pairs}
        return {str(k): str(v) for k, v in tags.items()}

    @property
    def level(self) -> str | None:
        level = self.data.get("level") or self.tags.get("level")
        return str(level) if level else None

    @property
    def title(self) -> str:
        """Sentry's title when the API gives one, else the last exception's ``Type: value`` or the message."""
        if self.data.get("title"):
            return str(self.data["title"])
        exceptions = (self.data.get("exception") or {}).get("values") or []
        if exceptions:
            last = exceptions[-1]
            value = str(last.get("value") or "").split("\n", 1)[0]
            return f"{last.get('type')}: {value}" if value else str(last.get("type"))
        entry = self.data.get("logentry") or {}
        message = entry.get("formatted") or entry.get("message") or self.data.get("message") or ""
        return str(message).split("\n", 1)[0]


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _hex_id(event_id: str) -> str:
    return event_id.replace("-", "").lower()


class ServerAPI(ABC):
    """What obskit asks of the server; one subclass per API dialect."""

    def __init__(self, *, url: str, token: str, project: str, org: str | None, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.project = project
        self.org = org
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout_s,
        )

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, params: Mapping[str, Any] | None = None, *, allow_404: bool = False) -> Any:
        return self._request("GET", path, params=params, allow_404=allow_404)

    def _request(self, method: str, path: str, *, allow_404: bool = False, **kwargs: Any) -> Any:
        response = self._send(method, path, allow_404=allow_404, **kwargs)
        if response is None:
            return None
        return response.json() if response.content else None

    def _send(self, method: str, path: str, *, allow_404: bool = False, **kwargs: Any) -> httpx.Response | None:
        """The response, once it is a success (None for an allowed 404); a one-line ServerAPIError otherwise."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            message = f"{self.url} unreachable: {exc}"
            raise ServerAPIError(message) from None
        if allow_404 and response.status_code == 404:
            return None
        if response.status_code in (401, 403):
            message = f"{self.url} refused the API token (HTTP {response.status_code}): check SENTRY_AUTH_TOKEN"
            raise ServerAPIError(message)
        if response.status_code == 404:
            message = f"{self.url}{path}: not found (HTTP 404): check SENTRY_ORG / SENTRY_PROJECT"
            raise ServerAPIError(message)
        if not response.is_success:
            message = f"{method} {self.url}{path} failed: HTTP {response.status_code} {response.text[:200]}"
            raise ServerAPIError(message)
        return response

    def link(self, filters: Mapping[str, str] | None = None) -> str:
        return issues_link(api=self.kind, url=self.url, project=self.project, filters=filters, org=self.org)

    kind: str

    @abstractmethod
    def describe(self) -> str:
        """One line: the server answers, and for which project; raises ServerAPIError otherwise."""

    @abstractmethod
    def issues(self, query: str = "", *, limit: int = 100) -> list[Issue]:
        """Issues matching the search, most recently seen first."""

    @abstractmethod
    def events(self, issue_id: str, query: str = "", *, limit: int = 100) -> list[StoredEvent]:
        """An issue's events (with their full payload), matching the search."""

    def find_issues(
        self, query: str = "", *, since: timedelta | None = None, levels: Sequence[str] = (), limit: int = 100
    ) -> list[Issue]:
        """Issues matching the search, seen within ``since``, at one of ``levels``, most recently seen first,
        each with its level."""
        raise NotImplementedError

    def find_events(self, query: str, *, since: timedelta | None = None, limit: int = 100) -> list[StoredEvent]:
        """Events matching the search across issues, oldest first: the matching issues, then each one's matching
        events (one request per issue and, on Bugsink, per event)."""
        cutoff = None if since is None else datetime.now(UTC) - since
        found: list[StoredEvent] = []
        for issue in self.issues(query, limit=limit):
            if cutoff is not None and (issue.last_seen is None or issue.last_seen < cutoff):
                continue
            found.extend(self.events(issue.id, query, limit=limit - len(found)))
            if len(found) >= limit:
                break
        recent = (e for e in found if cutoff is None or (e.timestamp is not None and e.timestamp >= cutoff))
        return sorted(recent, key=lambda e: e.timestamp or datetime.min.replace(tzinfo=UTC))

    @abstractmethod
    def event(self, event_id: str) -> StoredEvent | None:
        """The stored event with the id the SDK returned, or None when the server has none."""

    @abstractmethod
    def event_url(self, event_id: str) -> str:
        """The web UI page of one event."""

    @abstractmethod
    def issue(self, issue_id: str) -> Issue:
        """One issue by its id; a ServerAPIError when the server has none."""

    @abstractmethod
    def tag_values(self, issue_id: str, key: str) -> list[str]:
        """The values an issue's events carry for the tag ``key``, e.g. ``environment`` or ``test``."""

    def environments(self, issue_id: str) -> list[str]:
        """The environments an issue's events were sent from."""
        return self.tag_values(issue_id, "environment")

    @abstractmethod
    def comments(self, issue_id: str) -> list[str]:
        """The comments people left on an issue, oldest first."""

    @abstractmethod
    def resolve(self, issue_id: str) -> None:
        """Mark an issue resolved (it reopens as a regression if it happens again)."""

    @abstractmethod
    def delete(self, issue_id: str) -> None:
        """Delete an issue with its events."""


class BugsinkAPI(ServerAPI):
    """Bugsink's ``/api/canonical/0/`` (2.6.2 and later: search, lookup and tags)."""

    kind = "bugsink"
    _root = "/api/canonical/0"

    def _pages(self, path: str, params: dict[str, Any], limit: int) -> Iterator[dict[str, Any]]:
        seen = 0
        url: str | None = f"{self._root}/{path}"
        while url and seen < limit:
            # The next link carries the query; httpx drops a URL's query when given params={}, so pass None.
            body = self._get(url, params or None)
            params = {}
            for row in body.get("results", []):
                yield row
                seen += 1
                if seen >= limit:
                    return
            url = body.get("next")

    def describe(self) -> str:
        project = self._get(f"{self._root}/projects/{self.project}/")
        return f"Bugsink at {self.url}, project {project['name']} (id {project['id']}), token accepted"

    def issues(self, query: str = "", *, limit: int = 100) -> list[Issue]:
        params = {"project": self.project, "state": "all", "sort": "last_seen", "order": "desc"}
        if query:
            params["q"] = query
        return [self._issue(row) for row in self._pages("issues/", params, limit)]

    def find_issues(
        self, query: str = "", *, since: timedelta | None = None, levels: Sequence[str] = (), limit: int = 100
    ) -> list[Issue]:
        """Bugsink's issue list is sorted by last seen, so ``since`` stops the paging; its rows have no level:
        that is the level of each issue's latest matching event (two requests an issue), asked only for the
        issues returned, or with ``levels`` for those checked until ``limit`` match (at most 200)."""
        params = {"project": self.project, "state": "all", "sort": "last_seen", "order": "desc"}
        if query:
            params["q"] = query
        cutoff = None if since is None else datetime.now(UTC) - since
        rows = (self._issue(row) for row in self._pages("issues/", params, 1 << 62))
        recent = itertools.takewhile(lambda i: cutoff is None or (i.last_seen or cutoff) >= cutoff, rows)
        found: list[Issue] = []
        checked = 0
        while len(found) < limit:
            batch = list(itertools.islice(recent, limit - len(found)))
            if not batch:
                break
            checked += len(batch)
            found.extend(i for i in self._with_levels(batch, query) if not levels or i.level in levels)
            if levels and checked >= _LEVEL_CHECKS_MAX and len(found) < limit:
                logger.warning("checked the level of %d issues and stopped: narrow the search", checked)
                break
        return found

    def _with_levels(self, issues: Sequence[Issue], query: str) -> list[Issue]:
        with ThreadPoolExecutor(max_workers=min(_PARALLEL, len(issues))) as pool:
            levels = list(pool.map(lambda issue: self._latest_level(issue.id, query), issues))
        return [replace(issue, level=level) for issue, level in zip(issues, levels, strict=True)]

    def _latest_level(self, issue_id: str, query: str) -> str | None:
        params = {"issue": issue_id, "order": "desc"}
        if query:
            params["q"] = query
        rows = (self._get(f"{self._root}/events/", params) or {}).get("results") or []
        return self._full(rows[0]["id"]).level if rows else None

    @staticmethod
    def _title(kind: str, value: str) -> str:
        """The title Bugsink's pages show: a log message's first line; an exception's ``Type: first line``."""
        line = value.splitlines()[0] if value else ""
        if not line:
            return kind
        return line if kind == "Log Message" else f"{kind}: {line}"

    def _issue(self, row: Mapping[str, Any]) -> Issue:
        title = self._title(str(row.get("calculated_type") or ""), str(row.get("calculated_value") or ""))
        return Issue(
            id=str(row["id"]),
            title=title,
            count=int(row.get("digested_event_count") or 0),
            first_seen=_time(row.get("first_seen")),
            last_seen=_time(row.get("last_seen")),
            url=f"{self.url}/issues/issue/{row['id']}/",
            resolved=bool(row.get("is_resolved")),
            short_id=row.get("friendly_id"),
        )

    def events(self, issue_id: str, query: str = "", *, limit: int = 100) -> list[StoredEvent]:
        params: dict[str, Any] = {"issue": issue_id, "order": "asc"}
        if query:
            params["q"] = query
        rows = list(self._pages("events/", params, limit))
        return [self._full(row["id"]) for row in rows]

    def _full(self, bugsink_id: str) -> StoredEvent:
        return self._event(self._get(f"{self._root}/events/{bugsink_id}/"))

    @staticmethod
    def _event(body: Mapping[str, Any]) -> StoredEvent:
        return StoredEvent(
            event_id=_hex_id(str(body["event_id"])),
            issue_id=str(body.get("issue")) if body.get("issue") else None,
            timestamp=_time(body.get("timestamp")),
            data=dict(body.get("data") or {}),
        )

    def _lookup(self, event_id: str) -> Mapping[str, Any] | None:
        params = {"project": self.project, "event_id": _hex_id(event_id)}
        body = self._get(f"{self._root}/events/lookup/", params, allow_404=True)
        return None if body is None else dict(body)

    def event(self, event_id: str) -> StoredEvent | None:
        body = self._lookup(event_id)
        return None if body is None else self._event(body)

    def event_url(self, event_id: str) -> str:
        body = self._lookup(event_id)
        if body is None:
            return self.link()
        return f"{self.url}/issues/issue/{body['issue']}/event/{body['id']}/"

    def issue(self, issue_id: str) -> Issue:
        body = self._get(f"{self._root}/issues/{quote(issue_id, safe='')}/", allow_404=True)
        if body is None:
            message = f"{self.url}: no issue {issue_id} (HTTP 404)"
            raise ServerAPIError(message)
        return self._issue(body)

    def tag_values(self, issue_id: str, key: str) -> list[str]:
        rows = self._pages(f"issues/{quote(issue_id, safe='')}/tags/", {"key": key}, 1000)
        return [str(row["value"]) for row in rows if row.get("key") == key]

    def comments(self, issue_id: str) -> list[str]:
        # Bugsink keeps comments as turning points of the issue's history (an annotation, or a note on a
        # state change); the history lists them newest first.
        rows = list(self._pages("issue-history/", {"issue": issue_id}, 1000))
        return [str(row["comment"]) for row in reversed(rows) if row.get("comment")]

    def resolve(self, issue_id: str) -> None:
        self._request("POST", f"{self._root}/issues/{quote(issue_id, safe='')}/resolve/")

    def delete(self, issue_id: str) -> None:
        self._request("DELETE", f"{self._root}/issues/{quote(issue_id, safe='')}/")


class SentryAPI(ServerAPI):
    """Sentry's ``/api/0/`` (sentry.io and self-hosted)."""

    kind = "sentry"

    def describe(self) -> str:
        project = self._get(f"/api/0/projects/{self.org}/{self.project}/")
        return f"Sentry at {self.url}, project {self.org}/{project['slug']} (id {project['id']}), token accepted"

    def issues(self, query: str = "", *, limit: int = 100) -> list[Issue]:
        params = {"query": query, "limit": min(limit, 100), "sort": "date", "statsPeriod": "14d"}
        rows = self._get(f"/api/0/projects/{self.org}/{self.project}/issues/", params)
        return [self._issue(row) for row in rows[:limit]]

    def events(self, issue_id: str, query: str = "", *, limit: int = 100) -> list[StoredEvent]:
        params = {"query": query, "full": "true"}
        rows = self._get(f"/api/0/issues/{issue_id}/events/", params)
        return [self._event(row, issue_id) for row in rows[:limit]]

    # Tags the trace view shows, asked of Sentry's events table.
    _EVENT_TAGS = ("service", "env", "user_id", "trace_id", "task", "topic", "rule")

    @cached_property
    def project_id(self) -> str:
        """The organization-wide endpoints take the project's numeric id; SENTRY_PROJECT is usually its slug."""
        if self.project.isdigit():
            return self.project
        return str(self._get(f"/api/0/projects/{self.org}/{self.project}/")["id"])

    def _paged(self, path: str, params: Mapping[str, Any], limit: int, key: str | None = None) -> Iterator[Any]:
        """Rows of a list endpoint, following Sentry's ``Link: <...>; rel="next"; results="true"`` cursors."""
        url: str | None = path
        query: Mapping[str, Any] | None = params
        seen = 0
        while url:
            response = self._send("GET", url, params=query)
            assert response is not None
            body = response.json()
            for row in (body.get(key) or []) if key else body:
                yield row
                seen += 1
                if seen >= limit:
                    return
            following = response.links.get("next") or {}
            url, query = (following.get("url"), None) if following.get("results") == "true" else (None, None)

    def find_issues(
        self, query: str = "", *, since: timedelta | None = None, levels: Sequence[str] = (), limit: int = 100
    ) -> list[Issue]:
        """The organization's issue search for this project: ``query`` with a ``level:`` term, ``statsPeriod``
        for ``since`` (Sentry's default range otherwise), newest first. The rows carry each issue's level."""
        params: dict[str, Any] = {
            "project": self.project_id,
            "query": " ".join(filter(None, (query, level_term(levels)))),
            "sort": "date",
            "limit": min(limit, 100),
        }
        if since is not None:
            params["statsPeriod"] = stats_period(since)
        rows = self._paged(f"/api/0/organizations/{self.org}/issues/", params, limit)
        return [self._issue(row) for row in rows]

    def find_events(self, query: str, *, since: timedelta | None = None, limit: int = 100) -> list[StoredEvent]:
        """One request to the events table (Discover): error and message events matching the search, oldest
        first, with the fields and tags the trace view shows."""
        fields = ["id", "issue.id", "timestamp", "title", "level", "release", *(f"tags[{k}]" for k in self._EVENT_TAGS)]
        params: dict[str, Any] = {
            "field": fields,
            "query": f"{query} !event.type:transaction".strip(),
            "sort": "timestamp",
            "per_page": min(limit, 100),
            "project": self.project_id,
        }
        if since is not None:
            params["statsPeriod"] = stats_period(since)
        rows = self._paged(f"/api/0/organizations/{self.org}/events/", params, limit, key="data")
        return [self._table_event(row) for row in rows]

    def _table_event(self, row: Mapping[str, Any]) -> StoredEvent:
        tags = {k: str(row[f"tags[{k}]"]) for k in self._EVENT_TAGS if row.get(f"tags[{k}]")}
        data = {"title": row.get("title"), "level": row.get("level"), "release": row.get("release"), "tags": tags}
        return StoredEvent(
            event_id=_hex_id(str(row["id"])),
            issue_id=str(row["issue.id"]) if row.get("issue.id") else None,
            timestamp=_time(row.get("timestamp")),
            data=data,
        )

    @staticmethod
    def _event(row: Mapping[str, Any], issue_id: str | None) -> StoredEvent:
        return StoredEvent(
            event_id=_hex_id(str(row.get("eventID") or row.get("id"))),
            issue_id=str(row.get("groupID") or issue_id) if (row.get("groupID") or issue_id) else None,
            timestamp=_time(row.get("dateCreated")),
            data=dict(row),
        )

    def event(self, event_id: str) -> StoredEvent | None:
        body = self._get(f"/api/0/projects/{self.org}/{self.project}/events/{_hex_id(event_id)}/", allow_404=True)
        return None if body is None else self._event(body, None)

    def event_url(self, event_id: str) -> str:
        return f"{self.url}/organizations/{self.org}/projects/{self.project}/events/{_hex_id(event_id)}/"

    def _issue(self, row: Mapping[str, Any]) -> Issue:
        return Issue(
            id=str(row["id"]),
            title=str(row.get("title", "")),
            count=int(row.get("count") or 0),
            first_seen=_time(row.get("firstSeen")),
            last_seen=_time(row.get("lastSeen")),
            url=str(row.get("permalink") or f"{self.url}/organizations/{self.org}/issues/{row['id']}/"),
            resolved=row.get("status") == "resolved",
            level=row.get("level"),
            short_id=row.get("shortId"),
        )

    def issue(self, issue_id: str) -> Issue:
        body = self._get(f"/api/0/issues/{quote(issue_id, safe='')}/", allow_404=True)
        if body is None:
            message = f"{self.url}: no issue {issue_id} (HTTP 404)"
            raise ServerAPIError(message)
        return self._issue(body)

    def tag_values(self, issue_id: str, key: str) -> list[str]:
        path = f"/api/0/issues/{quote(issue_id, safe='')}/tags/{quote(key, safe='')}/"
        body = self._get(path, allow_404=True)  # 404: no event of the issue has the tag
        return [] if body is None else [str(v["value"]) for v in body.get("topValues") or []]

    def comments(self, issue_id: str) -> list[str]:
        rows = self._get(f"/api/0/issues/{quote(issue_id, safe='')}/comments/") or []
        texts = (str((row.get("data") or {}).get("text") or "") for row in reversed(rows))
        return [text for text in texts if text]

    def resolve(self, issue_id: str) -> None:
        self._request("PUT", f"/api/0/issues/{quote(issue_id, safe='')}/", json={"status": "resolved"})

    def delete(self, issue_id: str) -> None:
        self._request("DELETE", f"/api/0/issues/{quote(issue_id, safe='')}/")


def client(settings: Settings) -> ServerAPI:
    """The web-API client for the configured server; a ConfigError naming what is missing."""
    if not settings.sentry_url:
        raise ConfigError("SENTRY_URL", "", "the server's base URL, e.g. https://sentry.io or http://127.0.0.1:8000")
    if not settings.sentry_auth_token:
        raise ConfigError("SENTRY_AUTH_TOKEN", "", "an API token with read access to the project")
    if not settings.sentry_project:
        raise ConfigError("SENTRY_PROJECT", "", "the project's slug (Sentry) or id (Bugsink)")
    if settings.sentry_api == "bugsink":
        return BugsinkAPI(
            url=settings.sentry_url, token=settings.sentry_auth_token, project=settings.sentry_project, org=None
        )
    if not settings.sentry_org:
        raise ConfigError("SENTRY_ORG", "", "the organization's slug")
    return SentryAPI(
        url=settings.sentry_url,
        token=settings.sentry_auth_token,
        project=settings.sentry_project,
        org=settings.sentry_org,
    )


def ping_dsn(dsn: str, timeout_s: float = 3.0) -> bool:
    """Whether the DSN's ingest host answers HTTP at all (any status counts: it is there)."""
    parts = urlsplit(dsn)
    try:
        httpx.get(
            f"{parts.scheme}://{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}/",
            timeout=timeout_s,
        )
    except httpx.HTTPError:
        return False
    return True

"""One small client for the Sentry-compatible server's web API: Sentry's ``/api/0/`` (sentry.io,
self-hosted) and Bugsink's ``/api/canonical/0/`` (the devstack), behind one interface.

Both search issues and events with ``key:value`` tag terms; both answer with the event as the SDK
sent it. Configured with sentry-cli's variables: ``SENTRY_URL``, ``SENTRY_AUTH_TOKEN``,
``SENTRY_ORG``, ``SENTRY_PROJECT``, plus ``OBSKIT_SENTRY_API`` (``sentry`` or ``bugsink``).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
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
    "ping_dsn",
    "search_query",
]

_PLAIN_VALUE = re.compile(r"^[^\s\"]+$")


def search_query(filters: Mapping[str, str] | None = None, text: str | None = None) -> str:
    """The servers' search syntax: ``key:value`` terms (values with spaces quoted) and free text."""
    terms = []
    for key, value in (filters or {}).items():
        shown = value if _PLAIN_VALUE.match(value) else '"' + value.replace('"', '\\"') + '"'
        terms.append(f"{key}:{shown}")
    if text:
        terms.append(text)
    return " ".join(terms)


def issues_link(
    *,
    api: str,
    url: str,
    project: str | None,
    filters: Mapping[str, str] | None = None,
    org: str | None = None,
) -> str:
    """The web UI's issue list filtered by tags, for Sentry and for Bugsink alike (no network)."""
    query = search_query(filters)
    base = url.rstrip("/")
    if api == "bugsink":
        path = f"{base}/issues/{project}/all/" if project else f"{base}/issues/all/"
        return f"{path}?{urlencode({'q': query})}" if query else path
    params = {"query": query} if query else {}
    if project and project.isdigit():
        params["project"] = project
    suffix = f"?{urlencode(params, quote_via=quote)}" if params else ""
    return f"{base}/organizations/{org}/issues/{suffix}"


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
        return response.json() if response.content else None

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

    def _issue(self, row: Mapping[str, Any]) -> Issue:
        title = ": ".join(part for part in (row.get("calculated_type"), row.get("calculated_value")) if part)
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
        return [
            Issue(
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
            for row in rows[:limit]
        ]

    def events(self, issue_id: str, query: str = "", *, limit: int = 100) -> list[StoredEvent]:
        params = {"query": query, "full": "true"}
        rows = self._get(f"/api/0/issues/{issue_id}/events/", params)
        return [self._event(row, issue_id) for row in rows[:limit]]

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

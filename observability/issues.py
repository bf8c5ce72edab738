"""``obskit issues``: the issues that carry the kit's tags, or every event of one trace, from the server's search.

Filters are the tags every event of the kit carries (``service``, ``env``, ``user_id``, ``trace_id``, ``rule``;
see DESIGN.md), Sentry's ``release``, and any other tag as ``key=value``; the server's own search matches them
(``key:value`` terms, all must match). An issue matches when any of its events carries every tag asked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from observability.errors import ConfigError
from observability.sentry_api import Issue, ServerAPI, StoredEvent, issues_link, search_query, stats_period

__all__ = [
    "DEFAULT_EVENTS",
    "DEFAULT_ISSUES",
    "TAG_OPTIONS",
    "Search",
    "find",
    "format_events",
    "format_issues",
    "link",
    "parse_since",
    "parse_tags",
    "trace",
]

# The tags with an option of their own, in the order the table shows them.
TAG_OPTIONS = ("service", "env", "user_id", "trace_id", "release", "rule")
DEFAULT_ISSUES = 20
DEFAULT_EVENTS = 200

_SINCE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Sentry's tag keys: at most 32 of letters, digits, '_', '.', ':' and '-'.
_TAG_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,32}$")
_TITLE_WIDTH = 70


def parse_since(text: str) -> timedelta:
    """``30m``, ``1h``, ``2d``, ``1w`` (also ``45s``) as a duration; a ConfigError naming ``--since`` otherwise."""
    match = _SINCE.match(text)
    if not match or int(match.group(1)) == 0:
        raise ConfigError("--since", text, "a duration like 30m, 1h, 2d or 1w")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def parse_tags(named: Mapping[str, str | None], pairs: Iterable[str] = ()) -> dict[str, str]:
    """The tag filters: the named options that were given, then each ``key=value`` of ``--tag``."""
    filters = {key: value for key, value in named.items() if value}
    for pair in pairs:
        key, sep, value = (part.strip() for part in pair.partition("="))
        if not sep or not value or not _TAG_KEY.match(key):
            raise ConfigError("--tag", pair, "key=value, the key at most 32 letters, digits, '_', '.', ':' or '-'")
        if filters.get(key, value) != value:
            raise ConfigError("--tag", pair, f"no second value for {key} (already {key}={filters[key]})")
        filters[key] = value
    return filters


@dataclass(frozen=True)
class Search:
    """What to look for: tag filters (all must match), how recent, which levels, how many."""

    filters: Mapping[str, str] = field(default_factory=dict)
    since: timedelta | None = None
    levels: tuple[str, ...] = ()
    limit: int = DEFAULT_ISSUES

    @property
    def query(self) -> str:
        return search_query(self.filters)

    def describe(self) -> str:
        parts = [self.query or "any tags"]
        if self.levels:
            parts.append(f"level {' or '.join(self.levels)}")
        if self.since is not None:
            parts.append(f"seen in the last {stats_period(self.since)}")
        return ", ".join(parts)


def link(api: ServerAPI, search: Search) -> str:
    """The server's web UI showing the search's issues (Bugsink's page filters by tags only)."""
    return issues_link(
        api=api.kind,
        url=api.url,
        project=api.project,
        org=api.org,
        filters=search.filters,
        since=search.since,
        levels=search.levels,
    )


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _issue_row(issue: Issue, search: Search) -> dict[str, Any]:
    return {
        "id": issue.id,
        "short_id": issue.short_id,
        "title": issue.title,
        "level": issue.level,
        "count": issue.count,
        "first_seen": _time(issue.first_seen),
        "last_seen": _time(issue.last_seen),
        "resolved": issue.resolved,
        # Every issue listed has an event carrying each tag asked for, with the value asked for.
        "tags": dict(search.filters),
        "url": issue.url,
    }


def find(api: ServerAPI, search: Search) -> dict[str, Any]:
    """The issues matching the search, most recently seen first, as plain data (also the ``--json`` output)."""
    issues = api.find_issues(search.query, since=search.since, levels=search.levels, limit=search.limit)
    return {
        "query": search.query,
        "search": search.describe(),
        "since": None if search.since is None else stats_period(search.since),
        "levels": list(search.levels),
        "limit": search.limit,
        "link": link(api, search),
        "link_filters_tags_only": api.kind == "bugsink" and bool(search.since or search.levels),
        "issues": [_issue_row(issue, search) for issue in issues],
    }


def _event_row(event: StoredEvent) -> dict[str, Any]:
    tags = event.tags
    return {
        "time": _time(event.timestamp),
        "service": tags.get("service"),
        "task": tags.get("task"),
        "topic": tags.get("topic"),
        "event_id": event.event_id,
        "level": event.level,
        "title": event.title,
        "issue_id": event.issue_id,
        "user_id": tags.get("user_id"),
    }


def trace(api: ServerAPI, search: Search) -> dict[str, Any]:
    """Every event of the search's ``trace_id`` across services, oldest first, as plain data."""
    trace_id = search.filters.get("trace_id")
    if not trace_id:
        raise ConfigError("--trace-id", "", "the trace whose events to list (with --events)")
    events = api.find_events(search.query, since=search.since, limit=search.limit)
    if search.levels:
        events = [e for e in events if e.level in search.levels]
    return {
        "trace_id": trace_id,
        "query": search.query,
        "search": search.describe(),
        "limit": search.limit,
        "link": link(api, search),
        "events": [_event_row(event) for event in events],
    }


def _when(value: str | None, *, precise: bool = False) -> str:
    if value is None:
        return "-"
    moment = datetime.fromisoformat(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if precise else moment.strftime("%Y-%m-%d %H:%M")


def _cut(text: str, width: int = _TITLE_WIDTH) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def format_issues(found: Mapping[str, Any]) -> str:
    """The table `obskit issues` prints: one line per issue, then where to see them all in the web UI."""
    issues: list[dict[str, Any]] = found["issues"]
    keys = list(next(iter(issues))["tags"]) if issues else []
    header = ["last seen", "first seen", "level", "events", *keys, "title", "link"]
    rows = [
        [
            _when(i["last_seen"]),
            _when(i["first_seen"]),
            i["level"] or "-",
            str(i["count"]),
            *(i["tags"][key] for key in keys),
            _cut(i["title"]),
            i["url"],
        ]
        for i in issues
    ]
    lines = _table(header, rows) if issues else [f"no issues match {found['search']}"]
    if len(issues) >= found["limit"]:
        lines.append(f"(the {found['limit']} most recently seen; --limit N for more)")
    note = " (tags only: its list has no time or level filter)" if found["link_filters_tags_only"] else ""
    lines.append(f"web UI{note}: {found['link']}")
    return "\n".join(lines)


def format_events(found: Mapping[str, Any]) -> str:
    """The trace view: one line per event, oldest first, with the service and the task or topic."""
    events: list[dict[str, Any]] = found["events"]
    header = ["time (UTC)", "service", "task / topic", "level", "event id", "title"]
    rows = [
        [
            _when(e["time"], precise=True),
            e["service"] or "-",
            e["task"] or (f"topic {e['topic']}" if e["topic"] else "-"),
            e["level"] or "-",
            e["event_id"],
            _cut(e["title"]),
        ]
        for e in events
    ]
    lines = _table(header, rows) if events else [f"no events of trace {found['trace_id']}"]
    if len(events) >= found["limit"]:
        lines.append(f"(the first {found['limit']} events; --limit N for more)")
    lines.append(f"web UI: {found['link']}")
    return "\n".join(lines)

"""Sentry's alerts into Alertmanager: ``obskit sentry-bridge``.

A small HTTP receiver for the webhooks Sentry sends when an alert rule fires: issue alerts (an internal
integration's ``event_alert``, or the legacy WebHooks plugin) and metric alerts (``metric_alert``:
critical, warning, resolved). Each becomes an Alertmanager alert (API v2) with the labels ``service``,
``env`` and ``level`` from the event's tags, and a ``severity`` like the rules' (page only in an env that
pages), so one routing tree pages for Prometheus and Sentry alike.

A bad payload gets a 4xx with one line saying what is wrong; nothing a client sends stops the bridge.
With a secret (the integration's client secret), a request must carry Sentry's ``Sentry-Hook-Signature``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from observability._http import Server, respond
from observability.errors import ObskitError
from observability.slo.spec import DEFAULT_PAGING_ENVS

__all__ = ["Bridge", "PayloadError", "UpstreamError", "alerts_from_webhook", "make_app", "serve"]

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
# Sentry resends nothing while a metric alert stays critical; a lost "resolved" clears after this long.
METRIC_ALERT_TTL_S = 86400
_LABEL_MAX = 200
_SERVICE_TERM = re.compile(r'(?:^|\s)service:(?:"([^"]*)"|(\S+))')
_ENV_TERM = re.compile(r'(?:^|\s)(?:env|environment):(?:"([^"]*)"|(\S+))')


class PayloadError(ObskitError, ValueError):
    """The request is not a Sentry alert webhook the bridge understands; the message says why."""


def _fail(message: str) -> PayloadError:
    return PayloadError(message)


def _text(value: object, limit: int = _LABEL_MAX) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text[:limit] or None


def _tags(event: Mapping[str, Any]) -> dict[str, str]:
    """Sentry sends tags as ``[[key, value], ...]`` (also ``[{"key": k, "value": v}]`` or a mapping)."""
    raw = event.get("tags") or []
    pairs: list[tuple[object, object]] = []
    if isinstance(raw, Mapping):
        pairs = list(raw.items())
    elif isinstance(raw, list):
        for item in raw:
            if isinstance(item, list | tuple) and len(item) == 2:
                pairs.append((item[0], item[1]))
            elif isinstance(item, Mapping):
                pairs.append((item.get("key"), item.get("value")))
    else:
        message = f"data.event.tags is {type(raw).__name__}: expected a list of [key, value] pairs"
        raise _fail(message)
    return {str(k): str(v) for k, v in pairs if k is not None and v is not None}


def _severity(level: str, env: str | None, paging_envs: Collection[str]) -> str:
    if level in ("fatal", "error", "critical"):
        return "page" if env in paging_envs else "ticket"
    if level == "warning":
        return "ticket"
    return "info"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        message = f"{where} is {'missing' if value is None else type(value).__name__}: expected an object"
        raise _fail(message)
    return value


def _issue_alert(
    event: Mapping[str, Any],
    *,
    rule: str | None,
    url: str | None,
    project: str | None,
    paging_envs: Collection[str],
    now: datetime,
    resolve_after_s: float,
) -> dict[str, Any]:
    tags = _tags(event)
    service = _text(tags.get("service")) or _text(project) or "unknown"
    env = _text(tags.get("env")) or _text(event.get("environment")) or _text(tags.get("environment"))
    level = (_text(event.get("level")) or _text(tags.get("level")) or "error").lower()
    issue = _text(event.get("issue_id")) or _text(event.get("group_id"))
    title = _text(event.get("title"), 500) or _text(event.get("message"), 500) or "Sentry issue alert"
    labels = {
        "alertname": "SentryIssueAlert",
        "source": "sentry",
        "service": service,
        "level": level,
        "severity": _severity(level, env, paging_envs),
    }
    if env:
        labels["env"] = env
    if issue:
        labels["issue_id"] = issue
    if rule:
        labels["rule"] = rule
    annotations = {
        "summary": f"{service}{f' ({env})' if env else ''}: {title}",
        "description": f"Sentry alert rule {rule or '(unnamed)'} fired"
        + (f" on issue {issue}" if issue else "")
        + (f" at {_text(event.get('culprit'), 300)}" if event.get("culprit") else "")
        + ".",
    }
    return _alert(labels, annotations, url=url, starts=now, ends=now + timedelta(seconds=resolve_after_s))


def _alert(
    labels: dict[str, str], annotations: dict[str, str], *, url: str | None, starts: datetime, ends: datetime
) -> dict[str, Any]:
    """An Alertmanager alert; a link back to Sentry, when there is one, as annotation and generator URL."""
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": annotations if not url else {**annotations, "sentry_url": url},
        "startsAt": _iso(starts),
        "endsAt": _iso(ends),
    }
    if url:
        alert["generatorURL"] = url
    return alert


def _query_term(pattern: re.Pattern[str], query: str) -> str | None:
    match = pattern.search(query)
    return _text(match.group(1) or match.group(2)) if match else None


def _metric_alerts(payload: Mapping[str, Any], *, paging_envs: Collection[str], now: datetime) -> list[dict[str, Any]]:
    action = payload.get("action")
    if action not in ("critical", "warning", "resolved"):
        message = f"action={action!r}: a metric alert's action is critical, warning or resolved"
        raise _fail(message)
    data = _mapping(payload.get("data"), "data")
    incident = _mapping(data.get("metric_alert"), "data.metric_alert")
    rule = _mapping(incident.get("alert_rule"), "data.metric_alert.alert_rule")
    name = _text(rule.get("name"))
    if name is None:
        message = "data.metric_alert.alert_rule.name is missing: expected the alert rule's name"
        raise _fail(message)
    query = str(rule.get("query") or "")
    projects = rule.get("projects") or incident.get("projects") or []
    project = _text(projects[0]) if isinstance(projects, list) and projects else None
    service = _query_term(_SERVICE_TERM, query) or project or "unknown"
    env = _text(rule.get("environment")) or _query_term(_ENV_TERM, query)
    url = _text(data.get("web_url"), 2000)
    title = _text(data.get("description_title"), 500) or _text(incident.get("title"), 500) or name
    # The alert's labels differ between critical and warning; post one alert per level so that a change
    # of level, or "resolved", ends the other (Alertmanager tells alerts apart by their labels).
    alerts = []
    for level in ("critical", "warning"):
        labels = {
            "alertname": "SentryMetricAlert",
            "source": "sentry",
            "service": service,
            "level": level,
            "severity": _severity(level, env, paging_envs),
            "rule": name,
        }
        if env:
            labels["env"] = env
        firing = action == level
        ends = now + timedelta(seconds=METRIC_ALERT_TTL_S) if firing else now
        annotations = {
            "summary": f"{service}{f' ({env})' if env else ''}: {title}",
            "description": _text(data.get("description_text"), 1000) or f"Sentry metric alert {name}: {action}.",
        }
        alerts.append(_alert(labels, annotations, url=url, starts=now, ends=ends))
    return alerts


def alerts_from_webhook(
    payload: object,
    *,
    resource: str | None,
    paging_envs: Collection[str] = DEFAULT_PAGING_ENVS,
    now: datetime | None = None,
    resolve_after_s: float = 3600.0,
) -> tuple[list[dict[str, Any]], str]:
    """Alertmanager alerts for one Sentry webhook, and a word on what it was; PayloadError when malformed.

    ``resource`` is the ``Sentry-Hook-Resource`` header (None for the legacy WebHooks plugin). Resources
    that are not alerts (``installation``, ``issue``, ...) give no alerts.
    """
    moment = now or datetime.now(UTC)
    body = _mapping(payload, "the body")
    # Without the header (a proxy dropped it, a hand-made test), the payload's shape says what it is.
    data = body.get("data")
    if resource is None and isinstance(data, Mapping):
        resource = "metric_alert" if "metric_alert" in data else "event_alert"
    if resource == "metric_alert":
        return _metric_alerts(body, paging_envs=paging_envs, now=moment), "metric alert"
    if resource == "event_alert":
        fields = _mapping(data, "data")
        event = _mapping(fields.get("event"), "data.event")
        issue_alert = fields.get("issue_alert")
        rule = _text(fields.get("triggered_rule")) or _text(
            issue_alert.get("title") if isinstance(issue_alert, Mapping) else None
        )
        alert = _issue_alert(
            event,
            rule=rule,
            url=_text(event.get("web_url"), 2000),
            project=None,
            paging_envs=paging_envs,
            now=moment,
            resolve_after_s=resolve_after_s,
        )
        return [alert], "issue alert"
    if resource is None and "event" in body:
        # The legacy WebHooks plugin: the event at the top level, next to the project and the issue's URL.
        event = _mapping(body.get("event"), "event")
        rules = body.get("triggering_rules")
        alert = _issue_alert(
            {
                **event,
                "level": event.get("level") or body.get("level"),
                "issue_id": event.get("issue_id") or body.get("id"),
            },
            rule=", ".join(str(r) for r in rules) if isinstance(rules, list) and rules else None,
            url=_text(body.get("url"), 2000),
            project=_text(body.get("project_slug")) or _text(body.get("project")),
            paging_envs=paging_envs,
            now=moment,
            resolve_after_s=resolve_after_s,
        )
        return [alert], "issue alert (WebHooks plugin)"
    if resource is not None:
        return [], f"ignored: Sentry-Hook-Resource {resource} is not an alert"
    message = (
        "not a Sentry alert webhook: expected data.event (issue alert), data.metric_alert or event (WebHooks plugin)"
    )
    raise _fail(message)


class UpstreamError(ObskitError):
    """Alertmanager refused the alerts or could not be reached."""


@dataclass
class Bridge:
    """Where alerts go and how they are judged; ``forward`` turns one webhook into posted alerts."""

    alertmanager_url: str
    paging_envs: Collection[str] = DEFAULT_PAGING_ENVS
    secret: str | None = None
    resolve_after_s: float = 3600.0
    timeout_s: float = 5.0

    def verify(self, body: bytes, signature: str | None) -> bool:
        if self.secret is None:
            return True
        if not signature:
            return False
        expected = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature.strip().lower())

    def post(self, alerts: list[dict[str, Any]]) -> None:
        url = f"{self.alertmanager_url.rstrip('/')}/api/v2/alerts"
        try:
            response = httpx.post(url, json=alerts, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            message = f"Alertmanager at {self.alertmanager_url} unreachable: {exc}"
            raise UpstreamError(message) from None
        if not response.is_success:
            message = f"Alertmanager refused the alerts: HTTP {response.status_code} {response.text[:200].strip()}"
            raise UpstreamError(message)


def _json(start_response: Callable[..., Any], status: str, body: Mapping[str, Any]) -> list[bytes]:
    return respond(start_response, status, "application/json", (json.dumps(body) + "\n").encode())


def make_app(bridge: Bridge) -> Callable[..., Iterator[bytes]]:
    """The bridge's WSGI application: POST / (or /sentry) takes webhooks, GET /healthz answers ok."""

    def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:  # noqa: PLR0911
        path, method = environ.get("PATH_INFO", "/"), environ.get("REQUEST_METHOD", "GET")
        if path == "/healthz":
            return respond(start_response, "200 OK", "text/plain; charset=utf-8", b"ok\n")
        if path not in ("/", "/sentry"):
            return _json(start_response, "404 Not Found", {"error": "not found: POST Sentry webhooks to /"})
        if method != "POST":
            return _json(start_response, "405 Method Not Allowed", {"error": "POST Sentry's webhooks here"})
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            return _json(start_response, "413 Content Too Large", {"error": f"body over {MAX_BODY_BYTES} bytes"})
        body = environ["wsgi.input"].read(length) if length else b""
        if not bridge.verify(body, environ.get("HTTP_SENTRY_HOOK_SIGNATURE")):
            return _json(
                start_response, "401 Unauthorized", {"error": "Sentry-Hook-Signature missing or not for this secret"}
            )
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            return _json(start_response, "400 Bad Request", {"error": f"the body is not JSON: {exc}"})
        try:
            alerts, kind = alerts_from_webhook(
                payload,
                resource=environ.get("HTTP_SENTRY_HOOK_RESOURCE") or None,
                paging_envs=bridge.paging_envs,
                resolve_after_s=bridge.resolve_after_s,
            )
        except PayloadError as exc:
            return _json(start_response, "400 Bad Request", {"error": str(exc)})
        if alerts:
            try:
                bridge.post(alerts)
            except UpstreamError as exc:
                logger.warning("sentry-bridge: %s", exc)
                return _json(start_response, "502 Bad Gateway", {"error": str(exc)})
            logger.info("sentry-bridge: forwarded %s for %s", kind, alerts[0]["labels"].get("service"))
        return _json(start_response, "202 Accepted", {"forwarded": len(alerts), "kind": kind})

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        try:
            return iter(handle(environ, start_response))
        except Exception as exc:  # one bad request never takes the bridge down
            logger.exception("sentry-bridge: request failed")
            return iter(_json(start_response, "500 Internal Server Error", {"error": f"{type(exc).__name__}: {exc}"}))

    return app


def serve(bridge: Bridge, *, host: str = "127.0.0.1", port: int = 9095) -> Server:
    """Start the bridge in a daemon thread; ``stop()`` on the result ends it. Port 0 picks a free port."""
    return Server(make_app(bridge), host=host, port=port, name="obskit-sentry-bridge")

"""A recorder of Sentry's release API on 127.0.0.1, for the pipeline tests.

The recorder implements just the endpoints sentry-cli 2.x calls for ``releases new``, ``releases
set-commits`` (``--auto`` and ``--local``), ``releases finalize`` and ``deploys new``, answers them the
way Sentry does, and records every request in order. Anything else (another endpoint, a proxy
``CONNECT`` to the internet, a bad token) is recorded too, so a test can assert it never happened.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "sntrys_recorder_token"
ORG = "acme"
PROJECT = "payments"


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # unquoted, without the query
    query: dict[str, list[str]]
    body: Any
    user_agent: str

    @property
    def line(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class _State:
    calls: list[Call] = field(default_factory=list)
    releases: dict[str, dict[str, Any]] = field(default_factory=dict)
    deploys: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    repos: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        call = Call(self.command, unquote(parts.path), parse_qs(parts.query), body, self.headers.get("User-Agent", ""))
        state = self.server.state
        with state.lock:
            state.calls.append(call)
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._reply(401, {"detail": "Invalid token"})
                return
            status, answer = _route(state, call)
        self._reply(status, answer)

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def do_CONNECT(self) -> None:
        # A proxied request to the internet (HTTPS_PROXY points here in the tests): recorded, refused.
        with self.server.state.lock:
            self.server.state.calls.append(Call("CONNECT", self.path, {}, None, self.headers.get("User-Agent", "")))
        self.close_connection = True
        self._reply(403, {"detail": "no internet in tests"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = _State()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up after a refused CONNECT is expected; anything else is printed as usual.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _release_info(release: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": release["version"],
        "url": None,
        "dateCreated": release["dateCreated"],
        "dateReleased": release.get("dateReleased"),
        "lastEvent": None,
        "newGroups": 0,
        "lastCommit": release.get("lastCommit"),
        "projects": [{"slug": p, "name": p} for p in release["projects"]],
    }


_ORG = re.escape(ORG)
_ROUTES = (
    ("POST", re.compile(rf"^/api/0/projects/{_ORG}/(?P<project>[^/]+)/releases/$"), "new_release"),
    ("POST", re.compile(rf"^/api/0/organizations/{_ORG}/releases/$"), "new_release"),
    ("GET", re.compile(rf"^/api/0/organizations/{_ORG}/repos/$"), "repos"),
    ("GET", re.compile(rf"^/api/0/organizations/{_ORG}/releases/(?P<version>.+)/previous-with-commits/$"), "previous"),
    ("POST", re.compile(rf"^/api/0/organizations/{_ORG}/releases/(?P<version>.+)/deploys/$"), "new_deploy"),
    ("PUT", re.compile(rf"^/api/0/projects/{_ORG}/(?P<project>[^/]+)/releases/(?P<version>.+)/$"), "update_release"),
    ("PUT", re.compile(rf"^/api/0/organizations/{_ORG}/releases/(?P<version>.+)/$"), "update_release"),
    ("GET", re.compile(rf"^/api/0/organizations/{_ORG}/releases/(?P<version>.+)/$"), "get_release"),
)


def _route(state: _State, call: Call) -> tuple[int, Any]:
    for method, pattern, name in _ROUTES:
        match = pattern.match(call.path)
        if match and call.method == method:
            return _ANSWERS[name](state, call, match.groupdict())
    return 404, {"detail": "The requested resource does not exist"}


def _new_release(state: _State, call: Call, args: dict[str, str]) -> tuple[int, Any]:
    project = args.get("project")
    if project is not None and project != PROJECT:
        return 404, {"detail": "The requested resource does not exist"}
    body = call.body or {}
    version = body.get("version")
    if not version:
        return 400, {"version": ["This field is required."]}
    existing = state.releases.get(version)
    if existing is not None:
        return 208, _release_info(existing)
    release = {"version": version, "projects": body.get("projects") or [project], "dateCreated": _now()}
    state.releases[version] = release
    return 201, _release_info(release)


def _repos(state: _State, call: Call, args: dict[str, str]) -> tuple[int, Any]:
    return 200, state.repos


def _previous(state: _State, call: Call, args: dict[str, str]) -> tuple[int, Any]:
    # Sentry's answer (OrganizationReleasePreviousCommitsEndpoint): the latest release with commits dated
    # (released, else created) no later than this one, this one included. sentry-cli sends the local
    # commits after that release's last commit; none (an empty answer): the last 20.
    release = state.releases.get(args["version"])
    if release is None:
        return 404, {"detail": "The requested resource does not exist"}

    def date(r: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(r.get("dateReleased") or r["dateCreated"])

    start = date(release)
    with_commits = [r for r in state.releases.values() if r.get("lastCommit") and date(r) <= start]
    if not with_commits:
        return 200, {}
    return 200, _release_info(max(with_commits, key=date))


def _update_release(state: _State, call: Call, args: dict[str, str]) -> tuple[int, Any]:
    release = state.releases.get(args["version"])
    if release is None or args.get("project", PROJECT) != PROJECT:
        return 404, {"detail": "The requested resource does not exist"}
    body = call.body or {}
    for key in ("refs", "commits", "dateReleased"):
        if key in body:
            release[key] = body[key]
    if body.get("commits"):
        release["lastCommit"] = {"id": body["commits"][0]["id"]}  # the newest, as Sentry keeps it
    return 200, _release_info(release)


def _get_release(state: _State, call: Call, args: dict[str, str]) -> tuple[int, Any]:
    release = state.releases.get(args["version"])
    return (404, {"detail": "not found"}) if release is None else (200, _release_info(release))


def _new_deploy(state: _State, call: Call, args: dict[str, str]) -> tuple[int, Any]:
    if args["version"] not in state.releases:
        return 404, {"detail": "The requested resource does not exist"}
    deploy = {"id": str(sum(map(len, state.deploys.values())) + 1), **(call.body or {})}
    state.deploys.setdefault(args["version"], []).append(deploy)
    return 201, deploy


_ANSWERS = {
    "new_release": _new_release,
    "repos": _repos,
    "previous": _previous,
    "update_release": _update_release,
    "get_release": _get_release,
    "new_deploy": _new_deploy,
}


class SentryRecorder:
    """The running recorder: its URL, what it was asked, and the releases and deploys it now holds."""

    def __init__(self) -> None:
        self._server = _Server()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="sentry-recorder", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def calls(self) -> list[Call]:
        with self._server.state.lock:
            return list(self._server.state.calls)

    @property
    def releases(self) -> dict[str, dict[str, Any]]:
        return self._server.state.releases

    @property
    def deploys(self) -> dict[str, list[dict[str, Any]]]:
        return self._server.state.deploys

    def add_repository(self, name: str, url: str) -> None:
        """Stand for Sentry's repository integration (GitLab, GitHub) knowing this repository."""
        self._server.state.repos.append(
            {
                "id": str(len(self._server.state.repos) + 1),
                "name": name,
                "url": url,
                "provider": {"id": "integrations:gitlab", "name": "GitLab"},
                "status": "active",
                "dateCreated": _now(),
            }
        )

    def env(self) -> dict[str, str]:
        """sentry-cli's variables pointed at the recorder."""
        return {"SENTRY_URL": self.url, "SENTRY_AUTH_TOKEN": TOKEN, "SENTRY_ORG": ORG, "SENTRY_PROJECT": PROJECT}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` as a fixed author, untouched by the user's git config; its stdout."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Ada Lovelace",
        "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada Lovelace",
        "GIT_COMMITTER_EMAIL": "ada@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True, env=env).stdout.strip()

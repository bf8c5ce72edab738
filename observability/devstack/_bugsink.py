"""Bugsink, the devstack's Sentry-compatible error tracker, run from its own virtualenv on SQLite."""

from __future__ import annotations

import functools
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from observability.devstack._base import ServiceContext, ServiceDef, http_ok
from observability.errors import DevstackError

if TYPE_CHECKING:
    import httpx

__all__ = ["BUGSINK_VERSION", "SERVICE", "command", "env", "install", "missing", "provision", "ready"]

BUGSINK_VERSION = "2.6.2"
ADMIN_USER = "admin@localhost"  # Bugsink's CREATE_SUPERUSER wants an e-mail address as the username
ADMIN_PASSWORD = "admin"  # noqa: S105 - a throwaway local devstack login
PROJECT_NAME = "obskit"
UNLIMITED = 1_000_000_000  # Bugsink's ingest quotas, set out of reach so tests and benchmarks never lose events
RETENTION = 1_000_000  # stored events kept per project before Bugsink evicts the oldest

_CONF = """\
# Written by obskit's devstack on every start; edits are lost.
from bugsink.settings.default import *  # noqa: F403

SECRET_KEY = {secret!r}
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
TIME_ZONE = "UTC"
DATABASES["default"]["NAME"] = {db!r}  # noqa: F405
DATABASES["default"]["TEST"]["NAME"] = {test_db!r}  # noqa: F405
DATABASES["snappea"]["NAME"] = {snappea_db!r}  # noqa: F405
SENTRY_DSN = None
# Digest each event inside its ingest request: no snappea worker, and events are queryable once the SDK's POST returns.
SNAPPEA = {{"TASK_ALWAYS_EAGER": True, "WAKEUP_CALLS_DIR": {wakeup!r}, "NUM_WORKERS": 1}}
EMAIL_BACKEND = "bugsink.email_backends.QuietConsoleEmailBackend"
BUGSINK = {{
    "BASE_URL": {base_url!r},
    "SINGLE_USER": True,
    "SINGLE_TEAM": True,
    "USER_REGISTRATION": "CB_NOBODY",
    "PHONEHOME": False,
    "ALERTS_WEBHOOK_OUTBOUND_MODE": "allowlist_only",
    "ALERTS_WEBHOOK_ALLOW_LIST": ["127.0.0.1"],
    "INGEST_STORE_BASE_DIR": {ingest!r},
    "MAX_EVENTS_PER_PROJECT_PER_5_MINUTES": {unlimited},
    "MAX_EVENTS_PER_PROJECT_PER_HOUR": {unlimited},
    "MAX_EVENTS_PER_PROJECT_PER_MONTH": {unlimited},
    "MAX_EVENTS_PER_5_MINUTES": {unlimited},
    "MAX_EVENTS_PER_HOUR": {unlimited},
    "MAX_EVENTS_PER_MONTH": {unlimited},
}}
"""

_REQUIRES = "import importlib.metadata as m; print(*(m.requires('bugsink') or []), sep='\\n')"


def _venv(cache: Path) -> Path:
    return cache / "bugsink-venv"


def _bin(cache: Path, name: str) -> Path:
    return _venv(cache) / "bin" / name


def _marker(cache: Path) -> Path:
    return _venv(cache) / ".obskit-installed"


def _run(argv: list[str], *, what: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run ``argv`` and return its stdout; a DevstackError with the output's last lines when it fails."""
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr.strip() or result.stdout.strip()).splitlines()[-10:])
        message = f"bugsink: {what} failed ({result.returncode}):\n{tail}"
        raise DevstackError(message)
    return result.stdout


def missing(cache: Path) -> str | None:
    """None when the virtualenv holds a complete install of the pinned Bugsink, else how to get it."""
    marker = _marker(cache)
    if marker.is_file() and marker.read_text().strip() == BUGSINK_VERSION and _bin(cache, "gunicorn").exists():
        return None
    return f"Bugsink {BUGSINK_VERSION} is not installed: run `obskit devstack install`"


def install(cache: Path) -> None:
    """Install the pinned Bugsink and its pinned dependencies (gunicorn among them) into a virtualenv of its own."""
    if missing(cache) is None:
        return
    python = str(_bin(cache, "python"))
    _run([sys.executable, "-m", "venv", "--clear", str(_venv(cache))], what="creating its virtualenv")
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, "--no-deps", f"bugsink=={BUGSINK_VERSION}"], what="pip install bugsink")
    # Bugsink 2.6.2 asks for certifi>=2026.10.19, newer than any certifi on PyPI; any certifi serves its CA bundle.
    requires = _run([python, "-I", "-c", _REQUIRES], what="reading bugsink's requirements").split("\n")
    deps = ["certifi" if re.match(r"certifi\b", req) else req for req in requires if req and "extra ==" not in req]
    _run([*pip, *deps], what="pip install bugsink's dependencies")
    _marker(cache).write_text(BUGSINK_VERSION + "\n")


def _manage(ctx: ServiceContext, *args: str, **extra_env: str) -> str:
    """Run a ``bugsink-manage`` command with the venv's python against this instance's conf (found in the cwd)."""
    argv = [str(_bin(ctx.cache, "python")), "-I", str(_bin(ctx.cache, "bugsink-manage")), *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DJANGO_", "VIRTUAL_ENV"))}
    env |= {"DJANGO_SETTINGS_MODULE": "bugsink_conf", **extra_env}
    return _run(argv, what=f"bugsink-manage {' '.join(args)}", cwd=ctx.dir, env=env)


def _write_conf(ctx: ServiceContext) -> None:
    """Write ``bugsink_conf.py`` with every path under ``ctx.dir``; the secret key is made once and kept."""
    ctx.dir.mkdir(parents=True, exist_ok=True)
    secret_path = ctx.dir / "secret_key"
    if not secret_path.is_file():
        secret_path.write_text(secrets.token_urlsafe(50))
        secret_path.chmod(0o600)
    conf = _CONF.format(
        secret=secret_path.read_text().strip(),
        db=str(ctx.dir / "db.sqlite3"),
        test_db=str(ctx.dir / "test.sqlite3"),
        snappea_db=str(ctx.dir / "snappea.sqlite3"),
        wakeup=str(ctx.dir / "snappea.wakeup"),
        ingest=str(ctx.dir / "ingestion"),
        base_url=f"http://{ctx.address}",
        unlimited=UNLIMITED,
    )
    (ctx.dir / "bugsink_conf.py").write_text(conf)


def command(ctx: ServiceContext) -> list[str]:
    """Write the conf, migrate both databases (a no-op when current) and return gunicorn's argv on 127.0.0.1."""
    _write_conf(ctx)
    _manage(ctx, "migrate", "--no-input")
    _manage(ctx, "migrate", "snappea", "--database=snappea", "--no-input")
    return [
        str(_bin(ctx.cache, "python")),
        "-I",  # keep the caller's PYTHONPATH and user site-packages out of Bugsink's interpreter
        str(_bin(ctx.cache, "gunicorn")),
        f"--bind={ctx.address}",
        "--workers=2",
        "--timeout=60",
        "--no-control-socket",
        f"--chdir={ctx.dir}",
        f"--pythonpath={ctx.dir}",
        "--env=DJANGO_SETTINGS_MODULE=bugsink_conf",
        "bugsink.wsgi",
    ]


def ready(ctx: ServiceContext) -> bool:
    """Bugsink's own readiness probe answers 2xx."""
    return http_ok(f"http://{ctx.address}/health/ready")


def _api_call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    """One call to Bugsink's canonical API; a DevstackError carrying the response when it is not 2xx."""
    response = client.request(method, path, **kwargs)
    if not response.is_success:
        message = f"bugsink: {method} {path} answered {response.status_code}: {response.text[:500]}"
        raise DevstackError(message)
    return response.json()


def _named(client: httpx.Client, path: str, name: str, **params: str) -> dict[str, Any] | None:
    results: list[dict[str, Any]] = _api_call(client, "GET", path, params=params)["results"]
    return next((item for item in results if item.get("name") == name), None)


def provision(ctx: ServiceContext, *, manage: Callable[..., str] | None = None) -> dict[str, str]:
    """Create (or find again) the superuser, an API token, the team and the "obskit" project; return them.

    ``manage(*args, **env)`` runs a ``bugsink-manage`` command; by default the devstack's (the test
    containers pass one that runs it inside Bugsink's container).
    """
    import httpx

    run = manage or functools.partial(_manage, ctx)
    api_url = f"http://{ctx.address}"
    run("prestart", CREATE_SUPERUSER=f"{ADMIN_USER}:{ADMIN_PASSWORD}")  # creates the user only if none exist
    token = ctx.state.get("api_token", "")
    with httpx.Client(base_url=f"{api_url}/api/canonical/0/", timeout=30.0) as client:
        if not token or client.get("teams/", headers={"Authorization": f"Bearer {token}"}).status_code in (401, 403):
            token = run("create_auth_token").strip().splitlines()[-1]
        client.headers["Authorization"] = f"Bearer {token}"
        team = _named(client, "teams/", PROJECT_NAME) or _api_call(
            client, "POST", "teams/", json={"name": PROJECT_NAME}
        )
        project = _named(client, "projects/", PROJECT_NAME, team=str(team["id"]))
        if project is None:
            body = {
                "team": team["id"],
                "name": PROJECT_NAME,
                "retention_max_event_count": RETENTION,
                "alert_on_new_issue": False,
                "alert_on_regression": False,
                "alert_on_unmute": False,
            }
            _api_call(client, "POST", "projects/", json=body)
            project = _named(client, "projects/", PROJECT_NAME, team=str(team["id"]))
        if project is None:
            message = "bugsink: the project was created but does not show up in projects/"
            raise DevstackError(message)
    return {
        "dsn": str(project["dsn"]),
        "api_url": api_url,
        "api_token": token,
        "project_id": str(project["id"]),
        "admin_user": ADMIN_USER,
        "admin_password": ADMIN_PASSWORD,
    }


def env(ctx: ServiceContext) -> Mapping[str, str]:
    """The variables that point the app's Sentry SDK and obskit's API client at this Bugsink."""
    return {
        "SENTRY_DSN": ctx.state.get("dsn", ""),
        # sentry-cli's names for the web API, which obskit's client reads too.
        "SENTRY_URL": ctx.state.get("api_url", f"http://{ctx.address}"),
        "SENTRY_AUTH_TOKEN": ctx.state.get("api_token", ""),
        "SENTRY_PROJECT": ctx.state.get("project_id", ""),
        "OBSKIT_SENTRY_API": "bugsink",
    }


SERVICE = ServiceDef(
    name="bugsink",
    port_names=("port",),
    missing=missing,
    install=install,
    command=command,
    ready=ready,
    env=env,
    provision=provision,
    start_timeout_s=90,
)

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

import observability as obs
from observability.config import Settings
from observability.sentry_api import ServerAPI, client


@pytest.fixture
def server_env(sentry_server) -> dict[str, str]:
    return {
        "SENTRY_DSN": sentry_server.dsn,
        "SENTRY_URL": sentry_server.url,
        "SENTRY_AUTH_TOKEN": sentry_server.token,
        "SENTRY_PROJECT": sentry_server.project,
        "OBSKIT_SENTRY_API": sentry_server.api,
        "SENTRY_ENVIRONMENT": "itest",
        "SENTRY_RELEASE": "itest@1.0.0",
    }


@pytest.fixture
def api(server_env: dict[str, str]) -> Iterator[ServerAPI]:
    server = client(Settings.from_env(server_env, service="itest"))
    yield server
    server.close()


@pytest.fixture
def kit(server_env: dict[str, str]) -> Iterator[obs.sentry.Runtime]:
    """The kit initialised against the real server, with a fresh metrics registry."""
    rt = obs.init("itest", environ=server_env, registry=CollectorRegistry())
    yield rt
    obs.shutdown(timeout_s=10)

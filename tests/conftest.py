"""Session fixtures that hand tests real services.

For each service, in order: test-only variables (``OBSKIT_TEST_REDIS_URL`` and the like, printed by
``obskit devstack env --prefix OBSKIT_TEST_``) when a user points the suite at services of their own;
else a container (testcontainers, on the host's network: ``tests/_containers.py``) when a Docker engine
answers; else the devstack, started for the session in a temporary directory. What the session started
it stops at its end. ``OBSKIT_TEST_CONTAINERS=0`` or ``1`` forces the devstack or the containers; 1 with
no engine answering fails. The app's own variables (``REDIS_URL``, ``SENTRY_DSN``) are never read here,
so a test cannot reach a user's real services by accident. With ``OBSKIT_REQUIRE_SERVICES=1`` (set by
``.ci/run``) a missing service fails the test instead of skipping it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests._services import Services


@dataclass(frozen=True)
class SentryServer:
    dsn: str
    url: str
    token: str
    project: str
    api: str  # "bugsink" or "sentry": which web API the server speaks


@dataclass(frozen=True)
class PrometheusServer:
    url: str
    # Where file-discovered targets and rule files go; None for a user's own Prometheus.
    dir: Path | None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in item.nodeid.replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    svc = Services(tmp_path_factory.mktemp("obskit"))
    yield svc
    svc.close()


@pytest.fixture(scope="session")
def redis_url(services: Services) -> str:
    return services.get("redis")["REDIS_URL"]


@pytest.fixture(scope="session")
def kafka_bootstrap(services: Services) -> str:
    return services.get("kafka")["KAFKA_BOOTSTRAP_SERVERS"]


@pytest.fixture(scope="session")
def sentry_server(services: Services) -> SentryServer:
    env = services.get("bugsink")
    return SentryServer(
        dsn=env["SENTRY_DSN"],
        url=env["SENTRY_URL"],
        token=env["SENTRY_AUTH_TOKEN"],
        project=env["SENTRY_PROJECT"],
        api=env["OBSKIT_SENTRY_API"],
    )


@pytest.fixture(scope="session")
def prometheus(services: Services, alertmanager_url: str) -> PrometheusServer:
    # Asking for Alertmanager first means the devstack's (or the containers') Prometheus starts wired to it.
    env = services.get("prometheus")
    own_dir = None if os.environ.get("OBSKIT_TEST_PROMETHEUS_URL") else services.context("prometheus").dir
    return PrometheusServer(url=env["PROMETHEUS_URL"], dir=own_dir)


@pytest.fixture(scope="session")
def alertmanager_url(services: Services) -> str:
    return services.get("alertmanager")["ALERTMANAGER_URL"]

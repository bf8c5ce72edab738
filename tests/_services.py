"""Where the session fixtures of ``tests/conftest.py`` get each service from, and the Docker engine probe.

For each service, the first source that has it: the user's ``OBSKIT_TEST_*`` variables; else a container
(``tests/_containers.py``) when a Docker engine answers; else the devstack. ``OBSKIT_TEST_CONTAINERS=0``
or ``1`` forces the choice between the last two; 1 without an engine fails rather than falling back.
"""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import pytest

from observability.devstack import Devstack, ServiceContext
from observability.errors import DevstackError

# The variables that point the suite at a user's own service, per devstack service.
TEST_VARIABLES = {
    "redis": ("OBSKIT_TEST_REDIS_URL",),
    "kafka": ("OBSKIT_TEST_KAFKA_BOOTSTRAP_SERVERS",),
    "bugsink": (
        "OBSKIT_TEST_SENTRY_DSN",
        "OBSKIT_TEST_SENTRY_URL",
        "OBSKIT_TEST_SENTRY_AUTH_TOKEN",
        "OBSKIT_TEST_SENTRY_PROJECT",
        "OBSKIT_TEST_OBSKIT_SENTRY_API",
    ),
    "prometheus": ("OBSKIT_TEST_PROMETHEUS_URL",),
    "alertmanager": ("OBSKIT_TEST_ALERTMANAGER_URL",),
}

CONTAINERS_VARIABLE = "OBSKIT_TEST_CONTAINERS"


class ContainerProvider(Protocol):
    """What the fixtures need of the containers: the devstack's variables, contexts and restarts, per service."""

    def up(self, name: str) -> dict[str, str]: ...
    def context(self, name: str) -> ServiceContext: ...
    def stop(self, name: str) -> None: ...
    def start(self, name: str) -> None: ...
    def down(self) -> None: ...


def docker_engine_answers(timeout_s: float = 3.0) -> bool:
    """True when the Docker engine named by ``DOCKER_HOST`` (else the current Docker context) answers a ping."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            import docker

            client = docker.from_env(timeout=timeout_s)
            try:
                answered = bool(client.ping())
            finally:
                client.close()
        except Exception:  # no docker package, nothing listening, a timeout, not an engine: all mean no engine
            answered = False
        # A failed connection (a missing unix socket) leaves its socket in a reference cycle; collected later,
        # its ResourceWarning would fail whichever test was running (filterwarnings = error). Collect it now.
        gc.collect()
    return answered


def _containers(directory: Path) -> ContainerProvider:
    from tests._containers import Containers  # testcontainers is imported only once an engine has answered

    return Containers(directory)


class Services:
    """Starts each service the first time a test asks for it, from the first source that has it."""

    def __init__(
        self,
        tmp: Path,
        *,
        engine_answers: Callable[[], bool] = docker_engine_answers,
        containers: Callable[[Path], ContainerProvider] = _containers,
    ) -> None:
        self.stack = Devstack(tmp / "devstack")
        self.containers: ContainerProvider | None = None  # set once the containers are chosen
        self._tmp = tmp
        self._engine_answers = engine_answers
        self._make_containers = containers
        self._engine: bool | None = None  # the probe's answer, asked at most once a session

    def get(self, name: str) -> dict[str, str]:
        variables = TEST_VARIABLES[name]
        given = {v.removeprefix("OBSKIT_TEST_"): os.environ[v] for v in variables if os.environ.get(v)}
        if len(given) == len(variables):
            return given
        try:
            if self._use_containers():
                if self.containers is None:
                    self.containers = self._make_containers(self._tmp / "containers")
                return self.containers.up(name)
            self.stack.up([name])
        except DevstackError as exc:
            message = f"{name} unavailable: {exc}"
            if os.environ.get("OBSKIT_REQUIRE_SERVICES") == "1":
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        return self.stack.env([name])

    def _use_containers(self) -> bool:
        forced = os.environ.get(CONTAINERS_VARIABLE, "")
        if forced not in ("", "0", "1"):
            message = f"{CONTAINERS_VARIABLE}={forced!r} is invalid: expected 0 (the devstack) or 1 (containers)"
            pytest.fail(message, pytrace=False)
        if forced == "0":
            return False
        if self._engine is None:
            self._engine = self._engine_answers()
        if forced == "1" and not self._engine:
            where = os.environ.get("DOCKER_HOST") or "the default socket or Docker context (DOCKER_HOST is unset)"
            pytest.fail(
                f"{CONTAINERS_VARIABLE}=1 but no Docker engine answers at {where}: "
                f"start one, point DOCKER_HOST at it, or unset {CONTAINERS_VARIABLE}",
                pytrace=False,
            )
        return self._engine

    def context(self, name: str) -> ServiceContext:
        """The started service's directory, ports and provisioned values (Bugsink's admin login)."""
        return self.containers.context(name) if self.containers is not None else self.stack.context(name)

    def stop(self, name: str) -> None:
        """Stop one started service, keeping its address and data for `start`."""
        if self.containers is not None:
            self.containers.stop(name)
        else:
            self.stack.down([name])

    def start(self, name: str) -> None:
        """Start a service `stop` stopped, on the same address; return once it is ready."""
        if self.containers is not None:
            self.containers.start(name)
        else:
            self.stack.up([name])

    def close(self) -> None:
        try:
            self.stack.down()
        finally:
            if self.containers is not None:
                self.containers.down()

"""Where the session fixtures of ``tests/conftest.py`` get each service from.

For each service, the first source that has it: the user's ``OBSKIT_TEST_*`` variables; else the devstack.
"""

from __future__ import annotations

import os
from pathlib import Path

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


class Services:
    """Starts each service the first time a test asks for it, from the first source that has it."""

    def __init__(self, tmp: Path) -> None:
        self.stack = Devstack(tmp / "devstack")

    def get(self, name: str) -> dict[str, str]:
        variables = TEST_VARIABLES[name]
        given = {v.removeprefix("OBSKIT_TEST_"): os.environ[v] for v in variables if os.environ.get(v)}
        if len(given) == len(variables):
            return given
        try:
            self.stack.up([name])
        except DevstackError as exc:
            message = f"{name} unavailable: {exc}"
            if os.environ.get("OBSKIT_REQUIRE_SERVICES") == "1":
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        return self.stack.env([name])

    def context(self, name: str) -> ServiceContext:
        """The started service's directory, ports and provisioned values (Bugsink's admin login)."""
        return self.stack.context(name)

    def stop(self, name: str) -> None:
        """Stop one started service, keeping its address and data for `start`."""
        self.stack.down([name])

    def start(self, name: str) -> None:
        """Start a service `stop` stopped, on the same address; return once it is ready."""
        self.stack.up([name])

    def close(self) -> None:
        self.stack.down()

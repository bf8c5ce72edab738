"""The pipeline tests' recorder and tools. With OBSKIT_REQUIRE_SERVICES=1 (CI) a missing tool fails the
test instead of skipping it, like a missing service in tests/conftest.py."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sentry_recorder import SentryRecorder

from observability.devstack import cache_root


@pytest.fixture
def recorder() -> Iterator[SentryRecorder]:
    rec = SentryRecorder()
    yield rec
    rec.close()


def _missing(name: str, how: str) -> str:
    message = f"{name} not found: {how}"
    if os.environ.get("OBSKIT_REQUIRE_SERVICES") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def sentry_cli() -> str:
    """The sentry-cli the dev extra installs (the version the pipeline's image pins)."""
    beside = Path(sys.executable).parent / "sentry-cli"
    found = str(beside) if beside.is_file() else shutil.which("sentry-cli")
    return found or _missing("sentry-cli", "pip install -e '.[dev]'")


@pytest.fixture(scope="session")
def gitlab_ci_local() -> str:
    """gitlab-ci-local where `make tools` installs it (else on PATH), and rsync, which it copies a job's files with."""
    cached = cache_root() / "gitlab-ci-local" / "node_modules" / ".bin" / "gitlab-ci-local"
    found = str(cached) if cached.is_file() else shutil.which("gitlab-ci-local")
    if found is None:
        return _missing("gitlab-ci-local", "run `make tools`")
    if shutil.which("rsync") is None:
        return _missing("rsync", "run `make tools` (Debian package rsync)")
    return found

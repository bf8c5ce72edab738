"""`obskit cleanup` against the real Sentry-compatible server: the dry run lists, --execute acts on
exactly what it listed, and production issues that people still care about stay."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from contextlib import nullcontext

import httpx
import pytest
from prometheus_client import CollectorRegistry

import observability as obs
from observability.errors import ServerAPIError
from observability.sentry_api import ServerAPI


def send(server_env: dict[str, str], service: str, title: str, *, environment: str, test: bool) -> str:
    """One message from ``service`` in ``environment``, tagged test=true when ``test``; its event id."""
    obs.init(service, environ={**server_env, "SENTRY_ENVIRONMENT": environment}, registry=CollectorRegistry())
    try:
        with obs.bind(test="true") if test else nullcontext():
            event_id = obs.capture_message(title, "warning")
        obs.flush(10)
    finally:
        obs.shutdown(timeout_s=10)
    assert event_id, "the SDK did not send the event"
    return event_id


def issue_of(api: ServerAPI, event_id: str, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stored = api.event(event_id)
        if stored is not None and stored.issue_id:
            return stored.issue_id
        time.sleep(0.3)
    raise AssertionError(f"event {event_id} not stored within {timeout_s} s")


def obskit_cleanup(server_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "observability.cli", "cleanup", *args],
        env={**os.environ, **server_env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def lines_about(output: str, title: str) -> list[str]:
    return [line for line in output.splitlines() if title in line]


@pytest.fixture
def service() -> str:
    """A service of its own per test: cleanup is scoped to it, so other tests' issues are never touched."""
    return f"cleanup-{uuid.uuid4().hex[:8]}"


def test_dry_run_lists_test_issues_and_execute_resolves_exactly_those(
    server_env: dict[str, str], api: ServerAPI, service: str
) -> None:
    staging_test = issue_of(api, send(server_env, service, "staging test probe", environment="staging", test=True))
    staging_real = issue_of(api, send(server_env, service, "staging real error", environment="staging", test=False))
    prod_test = issue_of(api, send(server_env, service, "prod test probe", environment="prod", test=True))

    dry = obskit_cleanup(server_env, "--test-only", "--service", service)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    (planned,) = lines_about(dry.stdout, "staging test probe")
    assert planned.startswith("would resolve")
    (guarded,) = lines_about(dry.stdout, "prod test probe")
    assert guarded.startswith("skip")
    assert "production issue, unresolved" in guarded
    assert lines_about(dry.stdout, "staging real error") == []
    assert dry.stdout.splitlines()[-1] == "1 issue(s) to clean up, 1 skipped; dry run: add --execute to act"
    assert not api.issue(staging_test).resolved  # the dry run changed nothing

    recent = obskit_cleanup(server_env, "--test-only", "--service", service, "--old", "1")
    assert recent.returncode == 0, recent.stdout + recent.stderr
    assert all("seen too recently" in line for line in lines_about(recent.stdout, "probe"))

    done = obskit_cleanup(server_env, "--test-only", "--service", service, "--execute")
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines_about(done.stdout, "staging test probe")[0].startswith("resolved")
    assert api.issue(staging_test).resolved
    assert not api.issue(staging_real).resolved
    assert not api.issue(prod_test).resolved


def test_a_commented_production_issue_stays_until_named_then_is_deleted(
    server_env: dict[str, str], api: ServerAPI, service: str, sentry_server
) -> None:
    if sentry_server.api != "bugsink":
        pytest.skip("adds the comment through Bugsink's API")
    staging = issue_of(api, send(server_env, service, "staging leftover", environment="staging", test=True))
    prod = issue_of(api, send(server_env, service, "prod leftover", environment="production", test=True))
    api.resolve(prod)
    response = httpx.post(
        f"{sentry_server.url}/api/canonical/0/issue-comments/",
        headers={"Authorization": f"Bearer {sentry_server.token}"},
        json={"issue": prod, "comment": "customer ticket 4711: keep"},
        timeout=10,
    )
    assert response.status_code == 201, response.text

    done = obskit_cleanup(server_env, "--test-only", "--service", service, "--delete", "--execute")
    assert done.returncode == 0, done.stdout + done.stderr
    (kept,) = lines_about(done.stdout, "prod leftover")
    assert "production issue with 1 comment(s)" in kept
    with pytest.raises(ServerAPIError, match="no issue"):
        api.issue(staging)
    assert api.issue(prod).resolved

    named = obskit_cleanup(server_env, "--issue", prod, "--delete", "--execute")
    assert named.returncode == 0, named.stdout + named.stderr
    assert lines_about(named.stdout, "prod leftover")[0].startswith("deleted")
    with pytest.raises(ServerAPIError, match="no issue"):
        api.issue(prod)


def test_naming_an_issue_the_server_does_not_have_fails_with_one_line(server_env: dict[str, str]) -> None:
    result = obskit_cleanup(server_env, "--issue", str(uuid.uuid4()))
    assert result.returncode == 1
    assert result.stderr.startswith("obskit: ")
    assert "no issue" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

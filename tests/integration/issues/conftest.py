"""One scenario of real work for the issue-search tests: a Celery worker and a Kafka consumer, each a process
of its own, report to the devstack's Sentry-compatible server with tags unique to this session.

- trace 1 (user 1): the task ``issues.flag_and_publish`` reports a business-rule failure and publishes a
  payment; the consumer fails to charge it (PaymentGatewayError) and parks it in the DLQ.
- trace 2 (user 2): the task ``issues.crash`` logs an error, then fails.
- trace 3 (user 3): the test publishes a payment the consumer fails to charge.

What is expected comes from the server's own records, not from its tag search: the issues of the events
whose ids the task and the DLQ headers give, and the issues whose titles hold this session's word.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import random
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import observability as obs
from observability.config import Settings
from observability.propagation import inject
from observability.sentry_api import ServerAPI, client
from tests.helpers import wait_for
from tests.integration.consumers.kafka_helpers import create_topics, produce, read_all
from tests.integration.workers.conftest import ROOT, Workers
from workers import WorkerSettings, make_app

PROBES = "tests.integration.workers.probe_tasks,tests.integration.issues.probe_tasks"
_APP_VARIABLES = ("SENTRY_", "OBSKIT_", "REDIS_URL", "KAFKA_", "PROMETHEUS_MULTIPROC_DIR", "SERVICE_NAME", "CELERY_")


def unique_word() -> str:
    """Letters Bugsink's grouping keeps as they are (no digits, no hex), so titles stay unique to a session."""
    return "".join(random.choices("ghjkmnpqrstvwxyz", k=10))


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_APP_VARIABLES)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def server_vars(sentry_server: Any) -> dict[str, str]:
    """The variables `obskit` commands read to reach the server's web API."""
    return {
        "SENTRY_URL": sentry_server.url,
        "SENTRY_AUTH_TOKEN": sentry_server.token,
        "SENTRY_PROJECT": sentry_server.project,
        "OBSKIT_SENTRY_API": sentry_server.api,
    }


@pytest.fixture(scope="session")
def server_api(server_vars: dict[str, str]) -> Iterator[ServerAPI]:
    api = client(Settings.from_env(server_vars, service="itest"))
    yield api
    api.close()


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.code == 0, self.stderr
        return json.loads(self.stdout)


@pytest.fixture(scope="session")
def obskit(server_vars: dict[str, str]) -> Callable[..., Run]:
    """Run the `obskit` command line as a user would, against the server (``env`` adds or overrides variables;
    a variable set to None is left out)."""

    def run(*args: str, env: dict[str, str | None] | None = None) -> Run:
        merged = {**server_vars, **(env or {})}
        variables = clean_env(**{k: v for k, v in merged.items() if v is not None})
        result = subprocess.run(
            [sys.executable, "-m", "observability.cli", *args],
            cwd=ROOT,
            env=variables,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return Run(result.returncode, result.stdout, result.stderr)

    return run


# -- a logged-in browser -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bugsink_login(services: Any, sentry_server: Any) -> tuple[str, str]:
    """The devstack's admin login; ``OBSKIT_TEST_BUGSINK_LOGIN=user:password`` for a Bugsink of your own."""
    given = os.environ.get("OBSKIT_TEST_BUGSINK_LOGIN")
    if given:
        user, _, password = given.partition(":")
        return user, password
    state = services.context("bugsink").state
    if state.get("admin_user"):
        return str(state["admin_user"]), str(state["admin_password"])
    message = "no Bugsink login: set OBSKIT_TEST_BUGSINK_LOGIN=user:password for your own server"
    if os.environ.get("OBSKIT_REQUIRE_SERVICES") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


_ISSUE_LINK = re.compile(r'<a href="[^"]*/issues/issue/([0-9a-f-]{36})/event/last/[^"]*"[^>]*>(.*?)</a>', re.S)


class Browser:
    """An HTTP client logged in to Bugsink's web UI with a Django session, as a person would be."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.http = httpx.Client(base_url=url, follow_redirects=True, timeout=30)
        form = self.http.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert token, "no CSRF token on Bugsink's login page"
        response = self.http.post(
            "/accounts/login/",
            data={"username": user, "password": password, "csrfmiddlewaretoken": token.group(1)},
            headers={"Referer": f"{url}/accounts/login/"},
        )
        assert response.status_code == 200
        assert "/accounts/login/" not in str(response.url), "Bugsink refused the login"

    def issues_on(self, link: str) -> dict[str, str]:
        """The issues the page at ``link`` lists: id -> title as shown."""
        page = self.http.get(link)
        assert page.status_code == 200, page.text[:300]
        assert "/accounts/login/" not in str(page.url)
        return {
            issue_id: html.unescape(re.sub(r"<[^>]+>", "", title)).strip()
            for issue_id, title in _ISSUE_LINK.findall(page.text)
        }

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="session")
def browser(sentry_server: Any, bugsink_login: tuple[str, str]) -> Iterator[Browser]:
    if sentry_server.api != "bugsink":
        pytest.skip("the web UI check logs in to Bugsink")
    logged_in = Browser(sentry_server.url, *bugsink_login)
    yield logged_in
    logged_in.close()


# -- the scenario ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    word: str
    worker_service: str
    consumer_service: str
    worker_env: str
    consumer_env: str
    worker_release: str
    consumer_release: str
    queue: str
    group: str
    topic: str
    rule: str
    users: tuple[str, str, str]
    traces: tuple[str, str, str]
    flagged_event: str  # the task's business-rule message (trace 1)
    declined_events: tuple[str, str]  # the consumer's failures (traces 1 and 3), from the DLQ headers
    dlq_links: dict[str, str]  # trace id -> the DLQ header's link
    flagged_issue: str
    declined_issue: str
    crash_issue: str  # the task's failure (trace 2)
    log_issue: str  # the task's error log record (trace 2)
    redis_url: str

    @property
    def worker_issues(self) -> set[str]:
        return {self.flagged_issue, self.crash_issue, self.log_issue}


def _start_consumer(directory: Path, topic: str, group: str, service: str, env: dict[str, str]) -> Any:
    command = [
        sys.executable, "-m", "consumers", "run", "consumers.examples:handle_payment",
        "--topic", topic, "--group", group, "--service", service, "--attempts", "1",
    ]  # fmt: skip
    with (directory / "consumer.log").open("wb") as log:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(proc: Any) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


@pytest.fixture(scope="session")
def scenario(
    tmp_path_factory: pytest.TempPathFactory,
    sentry_server: Any,
    server_vars: dict[str, str],
    server_api: ServerAPI,
    redis_url: str,
    kafka_bootstrap: str,
) -> Scenario:
    word = unique_word()
    directory = tmp_path_factory.mktemp("issues")
    topic, group, rule = f"payments-{word}", f"payments-{word}", f"review_{word}"
    users = (f"u1-{word}", f"u2-{word}", f"u3-{word}")
    create_topics(kafka_bootstrap, [topic, f"{topic}.dlq"])
    common = {**server_vars, "SENTRY_DSN": sentry_server.dsn, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}

    consumer_service = f"ic-{word}"
    consumer_env = clean_env(
        **common,
        SENTRY_ENVIRONMENT=f"ienv-{word}-c",
        SENTRY_RELEASE=f"{consumer_service}@2.0.0",
        REDIS_URL=redis_url,
        OBSKIT_SLO_FLUSH_INTERVAL_S="0.2",
    )
    consumer = _start_consumer(directory, topic, group, consumer_service, consumer_env)
    workers = Workers(directory, redis_url)
    try:
        worker = workers.start(
            "-I",
            PROBES,
            service=f"iw-{word}",
            SENTRY_ENVIRONMENT=f"ienv-{word}-w",
            SENTRY_RELEASE=f"iw-{word}@1.0.0",
            **common,
        )
        app = make_app(WorkerSettings(redis_url=redis_url, queue=worker.queue), set_as_current=False)
        payment = {"payment_id": uuid.uuid4().hex, "user_id": users[0], "amount": 12.5, "fail": True}
        with obs.bind(user_id=users[0]) as first:
            sent = app.send_task("issues.flag_and_publish", args=[payment, topic, rule, word])
        flagged_event = sent.get(timeout=60)
        assert flagged_event, "the task reported no event"
        with obs.bind(user_id=users[1]) as second:
            crashed = app.send_task("issues.crash", args=[word])
        crashed.get(timeout=60, propagate=False)
        assert crashed.state == "FAILURE"
        with obs.bind(user_id=users[2]) as third:
            headers = inject([])
        declined_payment = {"payment_id": uuid.uuid4().hex, "user_id": users[2], "amount": 3, "fail": True}
        produce(kafka_bootstrap, topic, [declined_payment], headers=headers)

        parked = read_all(kafka_bootstrap, f"{topic}.dlq", expected=2, timeout_s=60)
        by_trace = {dict(m.headers())["obskit-trace-id"].decode(): dict(m.headers()) for m in parked}
        assert set(by_trace) == {first.trace_id, third.trace_id}, by_trace
        declined = tuple(by_trace[t]["obskit-sentry-event-id"].decode() for t in (first.trace_id, third.trace_id))
        links = {t: h["obskit-sentry-link"].decode() for t, h in by_trace.items() if "obskit-sentry-link" in h}

        stored = {e: wait_for(lambda e=e: server_api.event(e), 30, f"event {e}") for e in (flagged_event, *declined)}

        def titled_with_word() -> list[Any]:
            found = server_api.issues(word)  # plain text: titles holding the word, whatever their tags
            return found if len(found) >= 3 else []

        titled = wait_for(titled_with_word, 30, "the worker's three issues")
    finally:
        workers.stop_all()
        _stop(consumer)
    by_title = {issue.title: issue.id for issue in titled}
    crash_issue = next(i for t, i in by_title.items() if t.endswith(f"ledger unavailable {word}"))
    log_issue = next(i for t, i in by_title.items() if t == f"ledger lookup failed {word}")
    declined_issues = {stored[e].issue_id for e in declined}
    assert len(declined_issues) == 1, "the consumer's two failures should be one issue"
    return Scenario(
        word=word,
        worker_service=worker.service,
        consumer_service=consumer_service,
        worker_env=f"ienv-{word}-w",
        consumer_env=f"ienv-{word}-c",
        worker_release=f"iw-{word}@1.0.0",
        consumer_release=f"{consumer_service}@2.0.0",
        queue=worker.queue,
        group=group,
        topic=topic,
        rule=rule,
        users=users,
        traces=(first.trace_id, second.trace_id, third.trace_id),
        flagged_event=flagged_event,
        declined_events=declined,  # type: ignore[arg-type]
        dlq_links=links,
        flagged_issue=str(stored[flagged_event].issue_id),
        declined_issue=str(declined_issues.pop()),
        crash_issue=crash_issue,
        log_issue=log_issue,
        redis_url=redis_url,
    )

"""Fixtures that run the consumer runner against the devstack's Kafka, Redis and Sentry-compatible server."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import observability as obs
from consumers.runner import Runner
from consumers.settings import ConsumerSettings
from tests.integration.consumers.kafka_helpers import Running, create_topics


@pytest.fixture
def topic(kafka_bootstrap: str) -> str:
    """A fresh topic (and its .dlq) with one partition, unless a test asks for more."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    create_topics(kafka_bootstrap, [name, f"{name}.dlq"])
    return name


@pytest.fixture
def kit_env(sentry_server, redis_url: str) -> dict[str, str]:
    return {
        "SENTRY_DSN": sentry_server.dsn,
        "SENTRY_URL": sentry_server.url,
        "SENTRY_AUTH_TOKEN": sentry_server.token,
        "SENTRY_PROJECT": sentry_server.project,
        "OBSKIT_SENTRY_API": sentry_server.api,
        "SENTRY_ENVIRONMENT": "itest",
        "REDIS_URL": redis_url,
    }


@pytest.fixture
def start_consumer(kit_env: dict[str, str], kafka_bootstrap: str) -> Iterator[Callable[..., Running]]:
    """Start a runner in a thread, with the kit initialised against the real server and Redis."""
    started: list[Running] = []
    registry = CollectorRegistry()

    def start(
        handler: Callable[..., Any],
        topic: str,
        *,
        service: str = "itest-consumer",
        env: dict[str, str] | None = None,
        **settings: Any,
    ) -> Running:
        obs.init(service, environ={**kit_env, **(env or {})}, registry=registry)
        defaults = {"group_id": f"g-{topic}", "backoff_s": 0.05, "backoff_max_s": 0.2, "commit_interval_s": 0.2}
        config = ConsumerSettings.from_env(
            {}, bootstrap_servers=kafka_bootstrap, topics=(topic,), **{**defaults, **settings}
        )
        running = Running(Runner(handler, config, install_signals=False))
        started.append(running)
        return running

    start.registry = registry  # type: ignore[attr-defined]
    yield start
    for running in started:
        running.stop()
    obs.shutdown(timeout_s=10)

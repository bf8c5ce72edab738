import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib

from observability.slo.store import INDEX_KEY, Store, snap_key, totals_key
from observability.slo.windows import TIERS


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Any]:
    client = redis_lib.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def service(redis_client: Any) -> Iterator[str]:
    """A service name of this test's own; its keys are removed afterwards."""
    name = f"svc-{uuid.uuid4().hex[:10]}"
    yield name
    for member in redis_client.smembers(INDEX_KEY):
        text = member.decode()
        if text.startswith(f"{name}|"):
            env = text.split("|", 1)[1]
            redis_client.delete(totals_key(name, env), *(snap_key(name, env, t.step_s) for t in TIERS))
            redis_client.srem(INDEX_KEY, text)


@pytest.fixture
def store(redis_client: Any) -> Store:
    return Store(redis_client)

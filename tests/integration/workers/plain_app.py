"""A Celery app of a user's own with the kit connected by ``setup()`` alone (no ``task_cls``), for
``celery -A tests.integration.workers.plain_app worker``."""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

from workers.instrumentation import setup

app = Celery("plain", broker=os.environ["REDIS_URL"], backend=os.environ["REDIS_URL"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue=os.environ["OBSKIT_CELERY_QUEUE"],
)
setup()


@app.task(name="plain.block")
def block(key: str) -> int:
    """Note the attempt and this process's pid, then wait until the test sets ``<key>:release``."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    attempt = int(client.incr(f"{key}:attempts"))
    client.rpush(f"{key}:pids", os.getpid())
    deadline = time.monotonic() + 120
    while not client.exists(f"{key}:release") and time.monotonic() < deadline:
        time.sleep(0.05)
    return attempt

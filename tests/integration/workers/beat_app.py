"""The kit's Celery app with a beat schedule, for ``celery -A tests.integration.workers.beat_app beat``."""

from workers import app

app.conf.beat_schedule = {"probe every second": {"task": "probe.noop", "schedule": 1.0, "args": (7,)}}

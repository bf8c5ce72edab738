"""The Celery app (Redis broker) wired onto ``observability``.

``celery -A workers worker`` and ``celery -A workers beat`` find :data:`app`; it reads its settings
from the environment only when Celery first needs them (see :mod:`workers.settings`).
"""

from workers.app import WorkerApp, make_app
from workers.settings import WorkerSettings

__all__ = ["WorkerApp", "WorkerSettings", "app", "celery", "make_app"]

app = make_app()
celery = app

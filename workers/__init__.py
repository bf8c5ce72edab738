"""The Celery app (Redis broker) wired onto ``observability``."""

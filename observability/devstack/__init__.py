"""The devstack: real Redis, Apache Kafka, Bugsink, Prometheus and Alertmanager on 127.0.0.1, no Docker.

Used by ``obskit devstack``, by the test fixtures and by the demo. Each service runs as a child
process of its own session; ``up`` records its pid, ``down`` stops exactly those processes.
"""

from observability.devstack._base import HOST, ServiceContext, cache_root
from observability.devstack._stack import SERVICE_NAMES, Devstack, ServiceStatus

__all__ = ["HOST", "SERVICE_NAMES", "Devstack", "ServiceContext", "ServiceStatus", "cache_root"]

"""obskit's observability package: one place that sets up Sentry, metrics and SLO recording for workers
and consumers.

Importing it does nothing; ``init()`` starts the work::

    import observability as obs

    obs.init(service="payments-worker")
    with obs.bind(user_id=42):
        ...
"""

from observability.business import BusinessRuleError, report_business_failure
from observability.capture import add_breadcrumb, capture_exception, capture_message, set_user, span
from observability.config import Settings
from observability.context import bind, current
from observability.errors import ConfigError, ObskitError
from observability.noise import ClientError
from observability.propagation import extract, inject
from observability.scrub import scrub_text, scrub_value
from observability.sentry import flush, init, runtime, shutdown

__all__ = [
    "BusinessRuleError",
    "ClientError",
    "ConfigError",
    "ObskitError",
    "Settings",
    "add_breadcrumb",
    "bind",
    "capture_exception",
    "capture_message",
    "current",
    "extract",
    "flush",
    "init",
    "inject",
    "report_business_failure",
    "runtime",
    "scrub_text",
    "scrub_value",
    "set_user",
    "shutdown",
    "span",
]

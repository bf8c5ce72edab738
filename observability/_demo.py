"""``obskit demo``: the stack on its embedded defaults, a tagged event, and where to look."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from observability.devstack import Devstack


def run_demo(directory: Path, *, keep: bool, echo: Callable[[str], None]) -> None:
    """Start the stack, send tagged test events through the kit, confirm they arrived, print the URLs."""
    from observability import _selftest, shutdown

    stack = Devstack(directory)
    echo("starting the devstack (Redis, Kafka, Bugsink, Alertmanager, Prometheus) ...")
    statuses = stack.up()
    for status in statuses:
        echo(f"  {status.name:<13} {status.address}  pid {status.pid}")
    env = stack.env()
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    os.environ.setdefault("SENTRY_ENVIRONMENT", "demo")
    try:
        echo("\nsending tagged test events (service=obskit-demo, user_id=demo-user, test=true) ...")
        ok = _selftest.run("all", service="obskit-demo", user_id="demo-user", timeout_s=30, echo=echo)
        shutdown()
        bugsink = stack.context("bugsink").state
        echo("\nwhere to look:")
        login = f"{bugsink['admin_user']} / {bugsink['admin_password']}"
        echo(f"  Sentry-compatible server  {env['SENTRY_URL']}  (login {login})")
        echo(f"  Prometheus                {env['PROMETHEUS_URL']}")
        echo(f"  Alertmanager              {env['ALERTMANAGER_URL']}")
        if not ok:
            message = "some test events did not arrive at the Sentry-compatible server"
            from observability.errors import ObskitError

            raise ObskitError(message)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if keep:
            echo(f"\nthe stack keeps running: `obskit devstack down --dir {directory}` stops it")
        else:
            stack.down()
            echo("\nstack stopped (run with --keep to leave it running)")

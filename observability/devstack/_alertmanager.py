"""Alertmanager from Debian's ``prometheus-alertmanager``, on loopback, clustering off."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from observability.devstack._base import HOST, ServiceContext, ServiceDef, apt_install, binary_path, http_ok, which

__all__ = ["SERVICE"]

# Until a route is configured (the alerting issue renders the real one), every alert goes to a
# receiver with no integrations: Alertmanager accepts and lists it, nothing is sent anywhere.
_DEFAULT_CONFIG = {
    "route": {"receiver": "devnull", "group_wait": "1s", "group_interval": "5s", "repeat_interval": "1h"},
    "receivers": [{"name": "devnull"}],
}


def _missing(cache: Path) -> str | None:
    return which("prometheus-alertmanager", package="prometheus-alertmanager")


def _install(cache: Path) -> None:
    apt_install("prometheus-alertmanager")


def _command(ctx: ServiceContext) -> list[str]:
    config = ctx.dir / "alertmanager.yml"
    if not config.exists():
        config.write_text(yaml.safe_dump(_DEFAULT_CONFIG, sort_keys=False))
    return [
        binary_path("prometheus-alertmanager"),
        f"--config.file={config}",
        f"--storage.path={ctx.dir / 'data'}",
        f"--web.listen-address={ctx.address}",
        f"--web.external-url=http://{ctx.address}",
        # The default gossip listener binds 0.0.0.0:9094; an empty address switches clustering off.
        "--cluster.listen-address=",
        "--log.level=warn",
    ]


def _ready(ctx: ServiceContext) -> bool:
    return http_ok(f"http://{HOST}:{ctx.port}/-/ready")


def _env(ctx: ServiceContext) -> Mapping[str, str]:
    return {"ALERTMANAGER_URL": f"http://{ctx.address}"}


SERVICE = ServiceDef(
    name="alertmanager",
    port_names=("port",),
    missing=_missing,
    install=_install,
    command=_command,
    ready=_ready,
    env=_env,
    start_timeout_s=30,
)

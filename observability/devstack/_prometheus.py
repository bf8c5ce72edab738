"""Prometheus from Debian's ``prometheus``, on loopback.

Scrape targets and rule files are picked up from ``targets/*.json`` (file service discovery) and
``rules/*.yml`` under its state directory, so tests and the demo add what they run without editing
the config; alerts go to the devstack's Alertmanager when it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from observability.devstack._base import HOST, ServiceContext, ServiceDef, apt_install, binary_path, http_ok, which

__all__ = ["SERVICE", "config_for"]


def config_for(ctx: ServiceContext, *, alertmanager: str | None, interval_s: float = 1.0) -> dict[str, object]:
    """The devstack's Prometheus config: short intervals so tests see results in seconds."""
    interval = f"{interval_s:g}s"
    config: dict[str, object] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": [str(ctx.dir / "rules" / "*.yml")],
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [ctx.address]}]},
            {
                "job_name": "obskit",
                "file_sd_configs": [{"files": [str(ctx.dir / "targets" / "*.json")], "refresh_interval": "1s"}],
                # A target's `env` label (Kafka and Celery metrics have none) never shadows a scraped one.
                "honor_labels": True,
            },
        ],
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return config


def _missing(cache: Path) -> str | None:
    return which("prometheus", package="prometheus")


def _install(cache: Path) -> None:
    apt_install("prometheus")


def _command(ctx: ServiceContext) -> list[str]:
    return [binary_path("prometheus"), *arguments(ctx, alertmanager=ctx.state.get("alertmanager"))]


def arguments(ctx: ServiceContext, *, alertmanager: str | None) -> list[str]:
    """Prometheus's flags, its config written to the service's directory (the test containers use them too)."""
    for sub in ("rules", "targets"):
        (ctx.dir / sub).mkdir(exist_ok=True)
    config = ctx.dir / "prometheus.yml"
    config.write_text(yaml.safe_dump(config_for(ctx, alertmanager=alertmanager), sort_keys=False))
    return [
        f"--config.file={config}",
        f"--storage.tsdb.path={ctx.dir / 'data'}",
        f"--web.listen-address={ctx.address}",
        f"--web.external-url=http://{ctx.address}",
        "--web.enable-lifecycle",
        "--web.enable-admin-api",
        "--log.level=warn",
    ]


def _ready(ctx: ServiceContext) -> bool:
    return http_ok(f"http://{HOST}:{ctx.port}/-/ready")


def _env(ctx: ServiceContext) -> Mapping[str, str]:
    return {"PROMETHEUS_URL": f"http://{ctx.address}"}


SERVICE = ServiceDef(
    name="prometheus",
    port_names=("port",),
    missing=_missing,
    install=_install,
    command=_command,
    ready=_ready,
    env=_env,
    start_timeout_s=30,
)

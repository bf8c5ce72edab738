"""Redis from Debian's ``redis-server``, on loopback, persistence off."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from observability.devstack._base import HOST, ServiceContext, ServiceDef, apt_install, binary_path, which

__all__ = ["SERVICE"]


def _missing(cache: Path) -> str | None:
    return which("redis-server", package="redis-server")


def _install(cache: Path) -> None:
    apt_install("redis-server")


def _command(ctx: ServiceContext) -> list[str]:
    # Config on the command line: no file to drift, no RDB/AOF (the devstack is disposable),
    # protected mode on and bound to loopback only.
    return [
        binary_path("redis-server"),
        "--bind", HOST,
        "--port", str(ctx.port),
        "--dir", str(ctx.dir),
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--protected-mode", "yes",
        "--loglevel", "warning",
    ]  # fmt: skip


def _ready(ctx: ServiceContext) -> bool:
    import redis

    try:
        client = redis.Redis(host=HOST, port=ctx.port, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def _env(ctx: ServiceContext) -> Mapping[str, str]:
    return {"REDIS_URL": f"redis://{ctx.address}/0"}


SERVICE = ServiceDef(
    name="redis",
    port_names=("port",),
    missing=_missing,
    install=_install,
    command=_command,
    ready=_ready,
    env=_env,
    start_timeout_s=20,
)

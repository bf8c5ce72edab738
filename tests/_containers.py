"""The test services in Docker containers (testcontainers), used by the session fixtures when an engine answers.

Every container runs on the host's network, so each service listens on 127.0.0.1 on a free port exactly as
the devstack's does: Prometheus scrapes the exporters tests start on the host's 127.0.0.1 and sends alerts
to Alertmanager there, Alertmanager and Bugsink reach the tests' webhooks, and Kafka advertises an address
that clients on the host can use and that survives a restart. Mapped ports could do none of this without
rewriting addresses, and host networking needs a Linux engine on this machine (Docker Desktop: enable it).

Configs come from the devstack's own builders and readiness from its own probes, so the two paths cannot
drift. A service that has files (configs, Prometheus' targets and rules, Bugsink's SQLite) gets its
directory bind-mounted at the same path and runs as the current user, so paths written in configs and by
tests mean the same on both sides and every file stays writable by both.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from testcontainers.core.container import DockerContainer

from observability.devstack import (
    HOST,
    ServiceContext,
    _alertmanager,
    _bugsink,
    _kafka,
    _prometheus,
    _redis,
    cache_root,
)
from observability.devstack._base import ServiceDef, free_port
from observability.errors import DevstackError

__all__ = ["IMAGES", "Containers"]

# docker-compose.yml's images; Kafka and Bugsink at the devstack's versions.
IMAGES = {
    "redis": "redis:7.4",
    "kafka": f"apache/kafka:{_kafka.KAFKA_VERSION}",
    "bugsink": f"bugsink/bugsink:{_bugsink.BUGSINK_VERSION}",
    "prometheus": "prom/prometheus:v2.53.3",
    "alertmanager": "prom/alertmanager:v0.27.0",
}

_DEFS: dict[str, ServiceDef] = {
    s.name: s for s in (_redis.SERVICE, _kafka.SERVICE, _bugsink.SERVICE, _alertmanager.SERVICE, _prometheus.SERVICE)
}


def _on_host_network(image: str) -> DockerContainer:
    return DockerContainer(image).with_kwargs(network="host")


def _with_own_dir(image: str, ctx: ServiceContext) -> DockerContainer:
    """On the host's network, as the current user, with the service's directory at the same path."""
    ctx.dir.mkdir(parents=True, exist_ok=True)
    container = DockerContainer(image).with_volume_mapping(str(ctx.dir), str(ctx.dir), "rw")
    return container.with_kwargs(network="host", user=f"{os.getuid()}:{os.getgid()}", working_dir=str(ctx.dir))


def _redis_container(ctx: ServiceContext, others: dict[str, ServiceContext]) -> DockerContainer:
    argv = [
        "redis-server", "--bind", HOST, "--port", str(ctx.port), "--save", "", "--appendonly", "no",
        "--protected-mode", "yes", "--loglevel", "warning",
    ]  # fmt: skip
    return _on_host_network(IMAGES["redis"]).with_command(argv)


def _kafka_env_name(prop: str) -> str:
    """The image's variable for a broker property: `.` is `_`, `_` is `__`, `-` is `___`."""
    return "KAFKA_" + prop.replace("_", "__").replace("-", "___").replace(".", "_").upper()


def _kafka_container(ctx: ServiceContext, others: dict[str, ServiceContext]) -> DockerContainer:
    props = dict(line.split("=", 1) for line in _kafka._server_properties(ctx).splitlines())
    # The image formats its own data directory, with a static voter set where the devstack uses --standalone.
    del props["log.dirs"], props["controller.quorum.bootstrap.servers"]
    props["controller.quorum.voters"] = f"1@{HOST}:{ctx.ports['controller_port']}"
    container = _on_host_network(IMAGES["kafka"]).with_env("KAFKA_HEAP_OPTS", "-Xms256m -Xmx512m")
    for prop, value in props.items():
        container.with_env(_kafka_env_name(prop), value)
    return container


def _bugsink_container(ctx: ServiceContext, others: dict[str, ServiceContext]) -> DockerContainer:
    # The devstack's bugsink_conf.py (events digested in the ingest request, quotas out of reach), not the
    # image's, whose settings come from variables and digest events later in a separate worker.
    _bugsink._write_conf(ctx)
    d = shlex.quote(str(ctx.dir))
    script = (
        "bugsink-manage migrate --no-input"
        " && bugsink-manage migrate snappea --database=snappea --no-input"
        f" && exec gunicorn --bind={ctx.address} --workers=2 --timeout=60 --no-control-socket"
        f" --chdir={d} --pythonpath={d} bugsink.wsgi"
    )
    container = _with_own_dir(IMAGES["bugsink"], ctx).with_env("DJANGO_SETTINGS_MODULE", "bugsink_conf")
    return container.with_command(["sh", "-c", script])


def _alertmanager_container(ctx: ServiceContext, others: dict[str, ServiceContext]) -> DockerContainer:
    config = ctx.dir / "alertmanager.yml"
    container = _with_own_dir(IMAGES["alertmanager"], ctx)
    config.write_text(yaml.safe_dump(_alertmanager._DEFAULT_CONFIG, sort_keys=False))
    return container.with_command(
        [
            f"--config.file={config}",
            f"--storage.path={ctx.dir / 'data'}",
            f"--web.listen-address={ctx.address}",
            f"--web.external-url=http://{ctx.address}",
            "--cluster.listen-address=",  # clustering off, as in the devstack
            "--log.level=warn",
        ]
    )


def _prometheus_container(ctx: ServiceContext, others: dict[str, ServiceContext]) -> DockerContainer:
    container = _with_own_dir(IMAGES["prometheus"], ctx)
    alertmanager = others["alertmanager"].address if "alertmanager" in others else None
    return container.with_command(_prometheus.arguments(ctx, alertmanager=alertmanager))


_BUILD: dict[str, Callable[[ServiceContext, dict[str, ServiceContext]], DockerContainer]] = {
    "redis": _redis_container,
    "kafka": _kafka_container,
    "bugsink": _bugsink_container,
    "alertmanager": _alertmanager_container,
    "prometheus": _prometheus_container,
}


def _manage_in(container: DockerContainer, ctx: ServiceContext) -> Callable[..., str]:
    """Runs ``bugsink-manage`` inside Bugsink's container, as ``_bugsink.provision`` runs it in the devstack."""

    def manage(*args: str, **env: str) -> str:
        result = container.get_wrapped_container().exec_run(
            ["bugsink-manage", *args],
            environment={"DJANGO_SETTINGS_MODULE": "bugsink_conf", **env},
            workdir=str(ctx.dir),
            demux=True,
        )
        stdout, stderr = (part.decode(errors="replace") if part else "" for part in result.output)
        if result.exit_code != 0:
            tail = "\n".join((stderr.strip() or stdout.strip()).splitlines()[-10:])
            message = f"bugsink: bugsink-manage {' '.join(args)} failed ({result.exit_code}) in its container:\n{tail}"
            raise DevstackError(message)
        return stdout

    return manage


class Containers:
    """One container per service, started the first time a test asks for it and removed by `down`."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._running: dict[str, tuple[DockerContainer, ServiceContext]] = {}

    def up(self, name: str) -> dict[str, str]:
        """Start the service unless it runs; its variables, as ``obskit devstack env`` prints them."""
        if name not in self._running:
            self._start_new(name)
        return dict(_DEFS[name].env(self._running[name][1]))

    def _start_new(self, name: str) -> None:
        svc = _DEFS[name]
        ports = {port: free_port() for port in svc.port_names}
        ctx = ServiceContext(name=name, dir=self.dir / name, ports=ports, cache=cache_root())
        others = {other: running[1] for other, running in self._running.items()}
        container = None
        try:
            container = _BUILD[name](ctx, others)
            container.start()  # pulls the image first when it is missing
            self._running[name] = (container, ctx)
            self._wait_ready(name)
            if name == "bugsink":
                ctx.state.update(_bugsink.provision(ctx, manage=_manage_in(container, ctx)))
        except Exception as exc:
            self._running.pop(name, None)
            logs = _tail(container) if container is not None else ""
            if container is not None:
                with contextlib.suppress(Exception):  # the error to report is the one being handled
                    container.stop()
            if isinstance(exc, DevstackError):
                raise
            message = f"{name} container ({IMAGES[name]}) failed: {type(exc).__name__}: {exc}\n{logs}"
            raise DevstackError(message) from exc

    def _wait_ready(self, name: str) -> None:
        container, ctx = self._running[name]
        svc = _DEFS[name]
        # Twice the devstack's: inside the timeout, the container also migrates (Bugsink) or formats (Kafka).
        timeout_s = 2 * svc.start_timeout_s
        deadline = time.monotonic() + timeout_s
        while not svc.ready(ctx):
            wrapped = container.get_wrapped_container()
            wrapped.reload()
            if wrapped.status in ("exited", "dead"):
                code = wrapped.attrs.get("State", {}).get("ExitCode")
                message = f"{name} container ({IMAGES[name]}) exited with code {code}; {_tail(container)}"
                raise DevstackError(message)
            if time.monotonic() > deadline:
                message = (
                    f"{name} container ({IMAGES[name]}) not ready on {ctx.address} after {timeout_s:g} s "
                    f"(the containers use the host's network: the engine must run on this machine, "
                    f"with host networking on; OBSKIT_TEST_CONTAINERS=0 uses the devstack); {_tail(container)}"
                )
                raise DevstackError(message)
            time.sleep(0.2)

    def context(self, name: str) -> ServiceContext:
        """The running service's context; like the devstack's, an empty one for a service not started."""
        if name in self._running:
            return self._running[name][1]
        return ServiceContext(name=name, dir=self.dir / name, ports={}, cache=cache_root())

    def stop(self, name: str) -> None:
        """Stop the service's container, keeping it (its data, its ports) for `start`."""
        self._running[name][0].get_wrapped_container().stop(timeout=int(_DEFS[name].stop_timeout_s))

    def start(self, name: str) -> None:
        self._running[name][0].get_wrapped_container().start()
        self._wait_ready(name)

    def down(self) -> None:
        """Remove every container, the last started first."""
        for name in reversed(list(self._running)):
            container, _ = self._running.pop(name)
            container.stop()


def _tail(container: DockerContainer, lines: int = 15) -> str:
    try:
        text = container.get_wrapped_container().logs(tail=lines).decode(errors="replace").rstrip()
    except Exception as exc:  # the container may be gone or never created
        return f"(no container log: {exc})"
    return f"last lines of its log:\n{text or '(log is empty)'}"

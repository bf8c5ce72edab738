"""Start, track and stop the devstack's processes; state lives in one JSON file under the stack's directory."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from observability.devstack._base import HOST, ServiceContext, ServiceDef, cache_root, free_port, port_open
from observability.errors import DevstackError

__all__ = ["SERVICE_NAMES", "Devstack", "ServiceStatus"]

logger = logging.getLogger(__name__)

# Start order: Alertmanager before Prometheus, so Prometheus is configured to send alerts to it.
SERVICE_NAMES = ("redis", "kafka", "bugsink", "alertmanager", "prometheus")


def _services() -> dict[str, ServiceDef]:
    from observability.devstack import _alertmanager, _bugsink, _kafka, _prometheus, _redis

    return {
        s.name: s
        for s in (_redis.SERVICE, _kafka.SERVICE, _bugsink.SERVICE, _alertmanager.SERVICE, _prometheus.SERVICE)
    }


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    address: str | None
    running: bool
    healthy: bool
    log: str | None


# The services this process started, kept so that a long-running one is never garbage-collected while
# it runs (Popen warns) and so that stopping it can reap it.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _proc_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot: with the pid, it identifies one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) may hold spaces and parentheses: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2 :].split()[0] == "Z"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(log is empty)"


class Devstack:
    """The set of real services that tests and the demo run against, all on 127.0.0.1."""

    def __init__(self, directory: Path | str = ".devstack", *, cache: Path | None = None) -> None:
        self.dir = Path(directory).resolve()
        self.cache = cache or cache_root()
        self._defs = _services()

    # -- state -----------------------------------------------------------------------------------

    @property
    def _state_path(self) -> Path:
        return self.dir / "state.json"

    def _load(self) -> dict[str, dict[str, object]]:
        try:
            return dict(json.loads(self._state_path.read_text()))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            message = f"{self._state_path} is unreadable ({exc}): remove it and stop leftover processes by hand"
            raise DevstackError(message) from exc

    def _save(self, state: Mapping[str, object]) -> None:
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.replace(self._state_path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, object]]]:
        """Hold the stack's lock while reading, changing and writing its state."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self._load()
            try:
                yield state
            finally:
                self._save(state)

    def _select(self, only: Iterable[str] | None) -> list[ServiceDef]:
        if only is None:
            return [self._defs[name] for name in SERVICE_NAMES]
        wanted = list(only)
        unknown = [name for name in wanted if name not in self._defs]
        if unknown:
            message = f"unknown service {', '.join(unknown)}: expected some of {', '.join(SERVICE_NAMES)}"
            raise DevstackError(message)
        return [self._defs[name] for name in SERVICE_NAMES if name in wanted]

    def _context(self, svc: ServiceDef, entry: Mapping[str, object]) -> ServiceContext:
        ports = {str(k): int(v) for k, v in dict(entry.get("ports") or {}).items()}  # type: ignore[call-overload]
        saved = {str(k): str(v) for k, v in dict(entry.get("state") or {}).items()}  # type: ignore[call-overload]
        return ServiceContext(name=svc.name, dir=self.dir / svc.name, ports=ports, cache=self.cache, state=saved)

    @staticmethod
    def _alive(entry: Mapping[str, object]) -> bool:
        pid, ticks = entry.get("pid"), entry.get("start_ticks")
        if not isinstance(pid, int):
            return False
        return _proc_start_ticks(pid) == ticks and not _is_zombie(pid)

    # -- commands --------------------------------------------------------------------------------

    def missing(self, only: Iterable[str] | None = None) -> dict[str, str]:
        """What each selected service still lacks, as the line that says how to get it."""
        result = {}
        for svc in self._select(only):
            line = svc.missing(self.cache)
            if line:
                result[svc.name] = line
        return result

    def install(self, only: Iterable[str] | None = None) -> list[str]:
        """Install whatever the selected services lack; returns the names of those it installed."""
        installed = []
        for svc in self._select(only):
            if svc.missing(self.cache) is None:
                continue
            logger.info("installing %s", svc.name)
            svc.install(self.cache)
            line = svc.missing(self.cache)
            if line:
                message = f"{svc.name}: still missing after install: {line}"
                raise DevstackError(message)
            installed.append(svc.name)
        return installed

    def up(self, only: Iterable[str] | None = None) -> list[ServiceStatus]:
        """Start the selected services that are not already running and healthy; wait until each is ready."""
        selected = self._select(only)
        lacking = {svc.name: line for svc in selected if (line := svc.missing(self.cache))}
        if lacking:
            message = "; ".join(f"{name}: {line}" for name, line in lacking.items())
            raise DevstackError(message)
        with self._locked() as state:
            for svc in selected:
                self._up_one(svc, state)
        return self.status(svc.name for svc in selected)

    def _up_one(self, svc: ServiceDef, state: dict[str, dict[str, object]]) -> None:
        entry = state.get(svc.name, {})
        ctx = self._context(svc, entry)
        if self._alive(entry) and svc.ready(ctx):
            logger.info("%s already running (pid %s)", svc.name, entry["pid"])
            return
        if self._alive(entry):
            self._stop(svc, entry)
        ctx.dir.mkdir(parents=True, exist_ok=True)
        ctx.ports = self._ports(svc, ctx.ports)
        if svc.name == "prometheus" and "alertmanager" in state and self._alive(state["alertmanager"]):
            ctx.state["alertmanager"] = f"{HOST}:{dict(state['alertmanager']['ports'])['port']}"  # type: ignore[call-overload]
        argv = svc.command(ctx)
        with open(ctx.log_path, "ab") as log:
            log.write(f"\n--- obskit devstack: starting {svc.name} at {time.strftime('%F %T')}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                argv,
                cwd=ctx.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _children[proc.pid] = proc
        entry = {"pid": proc.pid, "start_ticks": _proc_start_ticks(proc.pid), "ports": ctx.ports, "state": ctx.state}
        state[svc.name] = entry
        self._save(state)
        deadline = time.monotonic() + svc.start_timeout_s
        while not svc.ready(ctx):
            if proc.poll() is not None:
                _children.pop(proc.pid, None)
                state.pop(svc.name)
                message = self._failed(svc, ctx, f"exited with code {proc.returncode}")
                raise DevstackError(message)
            if time.monotonic() > deadline:
                self._stop(svc, entry)
                state.pop(svc.name)
                message = self._failed(svc, ctx, f"not ready after {svc.start_timeout_s:g} s")
                raise DevstackError(message)
            time.sleep(0.2)
        if svc.provision is not None:
            ctx.state.update(svc.provision(ctx))
            entry["state"] = ctx.state
        logger.info("%s ready on %s (pid %s)", svc.name, ctx.address, proc.pid)

    def _ports(self, svc: ServiceDef, previous: Mapping[str, int]) -> dict[str, int]:
        """Reuse the previous ports when they are free; an explicit port that is taken is an error."""
        ports: dict[str, int] = {}
        for name in svc.port_names:
            variable = f"OBSKIT_DEVSTACK_{svc.name.upper()}_{name.upper()}"
            explicit = os.environ.get(variable)
            if explicit:
                try:
                    port = int(explicit)
                except ValueError:
                    message = f"{variable}={explicit!r} is invalid: expected a TCP port number"
                    raise DevstackError(message) from None
                if port_open(port):
                    message = (
                        f"{svc.name}: port {port} on {HOST} is already in use ({variable}): "
                        f"stop what listens there or unset {variable} to pick a free port"
                    )
                    raise DevstackError(message)
            else:
                port = previous.get(name, 0)
                if not port or port_open(port) or port in ports.values():
                    port = free_port()
            ports[name] = port
        return ports

    @staticmethod
    def _failed(svc: ServiceDef, ctx: ServiceContext, why: str) -> str:
        tail = _tail(ctx.log_path)
        hint = ""
        if "address already in use" in tail.lower() or ("bind" in tail.lower() and "in use" in tail.lower()):
            hint = " (a port was taken meanwhile: run `obskit devstack up` again to pick free ports)"
        return f"{svc.name} {why}{hint}; last lines of {ctx.log_path}:\n{tail}"

    def _stop(self, svc: ServiceDef, entry: Mapping[str, object]) -> None:
        """Stop the process group `up` started for this service, and nothing else."""
        pid = entry.get("pid")
        if not isinstance(pid, int) or not self._alive(entry):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + svc.stop_timeout_s
        while time.monotonic() < deadline:
            if not self._alive(entry):
                break
            time.sleep(0.1)
        else:
            logger.warning("%s (pid %s) ignored SIGTERM for %g s: killing it", svc.name, pid, svc.stop_timeout_s)
        # Also whatever the leader left behind in its group (gunicorn workers, a JVM's children).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        child = _children.pop(pid, None)
        if child is not None:
            child.wait()

    def down(self, only: Iterable[str] | None = None) -> list[str]:
        """Stop the selected services that `up` started; returns the names of those it stopped."""
        stopped = []
        with self._locked() as state:
            for svc in reversed(self._select(only)):
                entry = state.pop(svc.name, None)
                if entry is None:
                    continue
                # Keep provisioned values (tokens, DSN) and ports for the next `up` of the same directory.
                state[svc.name] = {"ports": entry.get("ports", {}), "state": entry.get("state", {})}
                if self._alive(entry):
                    self._stop(svc, entry)
                    stopped.append(svc.name)
        return stopped

    def status(self, only: Iterable[str] | None = None) -> list[ServiceStatus]:
        state = self._load()
        result = []
        for svc in self._select(only):
            entry = state.get(svc.name, {})
            ctx = self._context(svc, entry)
            running = self._alive(entry)
            result.append(
                ServiceStatus(
                    name=svc.name,
                    pid=int(entry["pid"]) if running else None,  # type: ignore[call-overload]
                    address=ctx.address if "port" in ctx.ports else None,
                    running=running,
                    healthy=running and svc.ready(ctx),
                    log=str(ctx.log_path) if ctx.log_path.exists() else None,
                )
            )
        return result

    def env(self, only: Iterable[str] | None = None) -> dict[str, str]:
        """The variables that point an app (or, with a prefix, the tests) at the running services."""
        state = self._load()
        result: dict[str, str] = {}
        for svc in self._select(only):
            entry = state.get(svc.name, {})
            if self._alive(entry):
                result.update(svc.env(self._context(svc, entry)))
        return result

    def context(self, name: str) -> ServiceContext:
        """The running service's context (ports, directory, provisioned values)."""
        svc = self._select([name])[0]
        return self._context(svc, self._load().get(name, {}))

    @staticmethod
    def as_dict(statuses: Iterable[ServiceStatus]) -> list[dict[str, object]]:
        return [asdict(s) for s in statuses]

"""What a devstack service is: how to install it, the command that runs it, how to tell it is ready."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from observability.errors import DevstackError

HOST = "127.0.0.1"


def cache_root() -> Path:
    """Where downloaded artifacts (Kafka jars, Bugsink's virtualenv) live, outside any checkout."""
    base = os.environ.get("OBSKIT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "obskit"
    )
    return Path(base)


@dataclass
class ServiceContext:
    """Everything a service's hooks may use: its own state directory, its ports, and what provisioning stored."""

    name: str
    dir: Path
    ports: dict[str, int]
    cache: Path
    state: dict[str, str] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.ports["port"]

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.dir / f"{self.name}.log"


@dataclass(frozen=True)
class ServiceDef:
    """One service of the devstack.

    ``command`` writes the service's config files under ``ctx.dir`` and returns the argv to run in the
    foreground; ``ready`` is one quick, non-blocking probe; ``provision`` runs once it is ready (create
    users, tokens, projects) and returns values to keep in the state file; ``env`` returns the variables
    that ``obskit devstack env`` prints for it.
    """

    name: str
    port_names: tuple[str, ...]
    missing: Callable[[Path], str | None]
    install: Callable[[Path], None]
    command: Callable[[ServiceContext], list[str]]
    ready: Callable[[ServiceContext], bool]
    env: Callable[[ServiceContext], Mapping[str, str]]
    provision: Callable[[ServiceContext], Mapping[str, str]] | None = None
    start_timeout_s: float = 60.0
    stop_timeout_s: float = 15.0


def which(binary: str, *, package: str) -> str | None:
    """None if ``binary`` is on PATH (or in /usr/sbin), else a line saying how to get it."""
    if shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin:/bin"):
        return None
    return f"{binary} not found: run `obskit devstack install` (Debian package {package})"


def binary_path(binary: str) -> str:
    found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        message = f"{binary} not found: run `obskit devstack install`"
        raise DevstackError(message)
    return found


def apt_install(*packages: str) -> None:
    """Install Debian packages without prompts; a clear error when apt-get is unavailable or fails."""
    if shutil.which("apt-get") is None:
        message = f"apt-get not found: install {' '.join(packages)} with your system's package manager"
        raise DevstackError(message)
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        [*prefix, "apt-get", "update", "-qq"],
        [*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
            message = f"`{' '.join(argv)}` failed ({result.returncode}):\n{tail}"
            raise DevstackError(message)


def port_open(port: int, host: str = HOST, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    """True when ``url`` answers 2xx."""
    import httpx

    try:
        return httpx.get(url, timeout=timeout_s).is_success
    except httpx.HTTPError:
        return False

"""The worker main process's /metrics: prefork children's values summed, and the queue backlog sampled.

Under the prefork pool each child writes its metrics to files in ``PROMETHEUS_MULTIPROC_DIR``
(prometheus_client's multiprocess mode) and the main process serves their sum. A child that exits
keeps its counters in the sum, so Prometheus never reads a reset; only its *live* gauges are removed
(``mark_process_dead``), at its shutdown or, for a child that was killed, at the next scrape.

A child's counter and histogram files would outlive it: with ``max_tasks_per_child`` a busy worker
leaves thousands a day, and every scrape reads them all. At each scrape the main process folds the
files of children that are gone into one archive file per type (``counter_archive.db``: values added
key by key, as the collector would add them) and deletes them, so the directory holds the live
children's files and the archive, and the sum served is the same before and after.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from observability.errors import ConfigError

__all__ = [
    "BacklogSampler",
    "MetricsServer",
    "compact_dead_processes",
    "mark_dead",
    "prepare_multiprocess_dir",
    "prune_dead_processes",
]

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# prometheus_client's file names: <type>[_<mode>]_<pid>.db
_DB_FILE = re.compile(r"^(counter|gauge|histogram|summary)(_[a-z]+)?_(\d+|archive)\.db(\.tmp)?$")
_LIVE_GAUGE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")
# The files whose values add up across processes (the collector sums them per key).
_ADDITIVE = re.compile(r"^(counter|histogram|summary)_(\d+)\.db$")

# kombu's Redis transport keeps priorities 3, 6 and 9 in lists of their own next to the queue's.
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)


def multiprocess_dir() -> str | None:
    """The directory prometheus_client's multiprocess mode writes to, when it is on."""
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess_dir(path: str) -> int:
    """Create the directory and remove metric files of an earlier run (prometheus_client's rule: the
    directory is emptied between runs). Returns how many files were removed."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ConfigError(MULTIPROC_ENV, path, f"a writable directory ({exc.strerror})") from None
    removed = 0
    for name in os.listdir(path):
        if _DB_FILE.match(name):
            os.remove(os.path.join(path, name))
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_dead(pid: int) -> None:
    """Drop a process's live gauges (never its counters or histograms)."""
    path = multiprocess_dir()
    if path is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path)


def prune_dead_processes(path: str, alive: Callable[[int], bool] = _alive) -> list[int]:
    """Drop the live gauges of processes that are gone (a SIGKILLed child runs no shutdown hook)."""
    from prometheus_client import multiprocess

    dead = set()
    for name in os.listdir(path):
        match = _LIVE_GAUGE.match(name)
        if match and not alive(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in dead:
        multiprocess.mark_process_dead(pid, path)
    return sorted(dead)


def compact_dead_processes(path: str, alive: Callable[[int], bool] = _alive) -> list[int]:
    """Fold the counter, histogram and summary files of processes that are gone into one archive file
    per type and delete them; returns the pids folded. Only the main process calls this, one call at a
    time (a dead process writes nothing, and no one else writes the archive).

    Per type: the archive plus the dead files' values go to a new file that replaces the archive in one
    rename, and only then are the dead files deleted, so a failure leaves every value counted once. A
    file that cannot be read is left as it is (the collector reads it as before) and skipped."""
    files: dict[str, list[tuple[int, str]]] = {}
    for name in os.listdir(path):
        match = _ADDITIVE.match(name)
        if match and not alive(int(match.group(2))):
            files.setdefault(match.group(1), []).append((int(match.group(2)), os.path.join(path, name)))
    folded: set[int] = set()
    for kind, dead in files.items():
        archive = os.path.join(path, f"{kind}_archive.db")
        totals: dict[str, tuple[float, float]] = {}
        if os.path.exists(archive):
            _add_values(totals, archive)
        readable = []
        for pid, file in dead:
            try:
                _add_values(totals, file)
            except Exception as exc:
                logger.warning("obskit: cannot read the metric file %s (%s); left as it is", file, exc)
                continue
            readable.append((pid, file))
        if readable:
            _replace(archive, totals)
        for pid, file in readable:
            os.remove(file)
            folded.add(pid)
    return sorted(folded)


def _add_values(totals: dict[str, tuple[float, float]], file: str) -> None:
    """Add the file's values to ``totals`` key by key, keeping the last timestamp seen. The file is read
    whole first: one that cannot be read adds nothing."""
    from prometheus_client.mmap_dict import MmapedDict

    for key, value, timestamp, _ in list(MmapedDict.read_all_values_from_file(file)):
        totals[key] = (totals.get(key, (0.0, 0.0))[0] + value, timestamp)


def _replace(archive: str, values: dict[str, tuple[float, float]]) -> None:
    """Write the values to a new file and rename it onto the archive (all or nothing)."""
    from prometheus_client.mmap_dict import MmapedDict

    tmp = f"{archive}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.remove(tmp)  # a left-over of a failed fold: MmapedDict would add to what it holds
    try:
        new = MmapedDict(tmp)
        try:
            for key, (value, timestamp) in values.items():
                new.write_value(key, value, timestamp)
        finally:
            new.close()
        os.replace(tmp, archive)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


class _MultiProcessCollector:
    """prometheus_client's multiprocess collector; dead processes' live gauges dropped and their other
    files folded into the archive first."""

    def __init__(self, path: str) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        self._path = path
        self._inner = MultiProcessCollector(None, path)
        self._lock = threading.Lock()  # scrapes run on threads of their own; folding is one at a time

    def collect(self) -> Iterable[Any]:
        with self._lock:
            prune_dead_processes(self._path)
            try:
                compact_dead_processes(self._path)
            except Exception as exc:
                # The scrape goes on over the files as they are; folding is tried again at the next one.
                logger.warning("obskit: cannot fold exited children's metric files in %s: %s", self._path, exc)
            return list(self._inner.collect())


class MetricsServer:
    """``/metrics`` and ``/healthz`` of the worker's main process, on a thread of their own."""

    def __init__(self, *, host: str, port: int, ready: Callable[[], bool]) -> None:
        from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        from observability._http import Server, respond

        path = multiprocess_dir()
        if path is None:
            registry = REGISTRY
        else:
            registry = CollectorRegistry()
            registry.register(_MultiProcessCollector(path))

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            route = environ.get("PATH_INFO", "/")
            if route == "/metrics":
                return respond(start_response, "200 OK", CONTENT_TYPE_LATEST, generate_latest(registry))
            if route == "/healthz":
                ok = ready()
                body = b"ok\n" if ok else b"not consuming\n"
                return respond(start_response, "200 OK" if ok else "503 Service Unavailable", "text/plain", body)
            return respond(start_response, "404 Not Found", "text/plain", b"try /metrics or /healthz\n")

        try:
            self._server = Server(app, host=host, port=port, name="obskit-worker-http")
        except OSError as exc:
            raise ConfigError("OBSKIT_WORKER_METRICS_PORT", port, f"a free port on {host} ({exc.strerror})") from None
        self.host = host
        self.port = self._server.port

    def close_inherited(self) -> None:
        """In a forked child: close the copy of the listening socket (the thread did not survive the fork)."""
        self._server._server.socket.close()

    def stop(self) -> None:
        self._server.stop()


class BacklogSampler:
    """Queue lengths read from Redis (LLEN of the queue and its priority lists) in one round trip."""

    def __init__(self, *, redis_url: str, queues: Sequence[str], key_prefix: str = "") -> None:
        self.queues = tuple(queues)
        self._redis_url = redis_url
        self._prefix = key_prefix
        self._client: Any = None

    def _keys(self, queue: str) -> list[str]:
        base = f"{self._prefix}{queue}"
        return [base, *(f"{base}{_PRIORITY_SEP}{step}" for step in _PRIORITY_STEPS)]

    def sample(self) -> dict[str, int]:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self._redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        pipe = self._client.pipeline(transaction=False)
        for queue in self.queues:
            for key in self._keys(queue):
                pipe.llen(key)
        lengths = pipe.execute()
        per_queue = len(_PRIORITY_STEPS) + 1
        return {q: int(sum(lengths[n * per_queue : (n + 1) * per_queue])) for n, q in enumerate(self.queues)}

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def live_gauge_files(path: str) -> list[str]:
    """The live-gauge files in the directory (for tests and diagnostics)."""
    return sorted(os.path.basename(f) for f in glob.glob(os.path.join(path, "gauge_live*_*.db")))

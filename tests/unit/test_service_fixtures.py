"""Where the session fixtures get a service from: the user's variables, else containers when a Docker engine
answers, else the devstack; and the engine probe itself, against fake engines on 127.0.0.1."""

from __future__ import annotations

import gc
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from observability.devstack import ServiceContext
from observability.errors import DevstackError
from tests._services import CONTAINERS_VARIABLE, TEST_VARIABLES, Services, docker_engine_answers


class FakeStack:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def up(self, names: list[str]) -> None:
        self.calls.append(("up", list(names)))

    def env(self, names: list[str]) -> dict[str, str]:
        self.calls.append(("env", list(names)))
        return {"REDIS_URL": "redis://devstack"}

    def down(self, names: list[str] | None = None) -> None:
        self.calls.append(("down", names))

    def context(self, name: str) -> str:
        self.calls.append(("context", name))
        return f"devstack {name}"


class FakeContainers:
    def __init__(self, directory: Path, *, fail: bool = False) -> None:
        self.directory = directory
        self.fail = fail
        self.calls: list[tuple[str, str | None]] = []

    def up(self, name: str) -> dict[str, str]:
        self.calls.append(("up", name))
        if self.fail:
            raise DevstackError("redis container (redis:7.4) not ready")
        return {"REDIS_URL": "redis://container"}

    def context(self, name: str) -> str:
        self.calls.append(("context", name))
        return f"container {name}"

    def stop(self, name: str) -> None:
        self.calls.append(("stop", name))

    def start(self, name: str) -> None:
        self.calls.append(("start", name))

    def down(self) -> None:
        self.calls.append(("down", None))


class Setup:
    """A Services whose devstack, engine probe and container provider are fakes that record their calls."""

    def __init__(self, tmp_path: Path, *, engine: bool, containers_fail: bool = False) -> None:
        self.probes = 0
        self.made: list[FakeContainers] = []

        def engine_answers() -> bool:
            self.probes += 1
            return engine

        def containers(directory: Path) -> FakeContainers:
            self.made.append(FakeContainers(directory, fail=containers_fail))
            return self.made[-1]

        self.services = Services(tmp_path, engine_answers=engine_answers, containers=containers)
        self.stack = FakeStack()
        self.services.stack = self.stack


@pytest.fixture(autouse=True)
def no_choice_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variables in TEST_VARIABLES.values():
        for variable in variables:
            monkeypatch.delenv(variable, raising=False)
    for variable in (CONTAINERS_VARIABLE, "OBSKIT_REQUIRE_SERVICES", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(variable, raising=False)


def test_test_variables_win_and_the_engine_is_not_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSKIT_TEST_REDIS_URL", "redis://mine:6379/0")
    setup = Setup(tmp_path, engine=True)
    assert setup.services.get("redis") == {"REDIS_URL": "redis://mine:6379/0"}
    assert (setup.probes, setup.made, setup.stack.calls) == (0, [], [])


def test_some_of_a_services_variables_are_not_enough(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSKIT_TEST_SENTRY_DSN", "http://key@mine/1")
    setup = Setup(tmp_path, engine=True)
    setup.services.get("bugsink")
    assert setup.made[0].calls == [("up", "bugsink")]


def test_containers_serve_every_service_when_an_engine_answers(tmp_path: Path) -> None:
    setup = Setup(tmp_path, engine=True)
    assert setup.services.get("redis") == {"REDIS_URL": "redis://container"}
    setup.services.get("kafka")
    assert setup.services.context("kafka") == "container kafka"
    setup.services.stop("kafka")
    setup.services.start("kafka")
    setup.services.close()
    (containers,) = setup.made
    assert containers.directory == tmp_path / "containers"
    assert containers.calls == [
        ("up", "redis"),
        ("up", "kafka"),
        ("context", "kafka"),
        ("stop", "kafka"),
        ("start", "kafka"),
        ("down", None),
    ]
    assert setup.probes == 1, "the engine is asked once a session"
    assert setup.stack.calls == [("down", None)], "the devstack is only told to stop what it never started"


def test_the_devstack_serves_when_no_engine_answers(tmp_path: Path) -> None:
    setup = Setup(tmp_path, engine=False)
    assert setup.services.get("redis") == {"REDIS_URL": "redis://devstack"}
    setup.services.get("kafka")
    assert setup.services.context("kafka") == "devstack kafka"
    setup.services.stop("kafka")
    setup.services.start("kafka")
    setup.services.close()
    assert setup.stack.calls == [
        ("up", ["redis"]),
        ("env", ["redis"]),
        ("up", ["kafka"]),
        ("env", ["kafka"]),
        ("context", "kafka"),
        ("down", ["kafka"]),
        ("up", ["kafka"]),
        ("down", None),
    ]
    assert (setup.probes, setup.made) == (1, [])


def test_forcing_containers_without_an_engine_fails_instead_of_using_the_devstack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONTAINERS_VARIABLE, "1")
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    setup = Setup(tmp_path, engine=False)
    with pytest.raises(pytest.fail.Exception, match=r"OBSKIT_TEST_CONTAINERS=1 but no Docker engine answers at tcp://"):
        setup.services.get("redis")
    assert (setup.made, setup.stack.calls) == ([], [])


def test_forcing_containers_with_an_engine_uses_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONTAINERS_VARIABLE, "1")
    setup = Setup(tmp_path, engine=True)
    assert setup.services.get("redis") == {"REDIS_URL": "redis://container"}


def test_forcing_the_devstack_does_not_ask_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONTAINERS_VARIABLE, "0")
    setup = Setup(tmp_path, engine=True)
    assert setup.services.get("redis") == {"REDIS_URL": "redis://devstack"}
    assert (setup.probes, setup.made) == (0, [])


def test_an_unknown_choice_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONTAINERS_VARIABLE, "yes")
    with pytest.raises(pytest.fail.Exception, match=r"OBSKIT_TEST_CONTAINERS='yes' is invalid: expected 0"):
        Setup(tmp_path, engine=True).services.get("redis")


@pytest.mark.parametrize(("required", "outcome"), [("", pytest.skip.Exception), ("1", pytest.fail.Exception)])
def test_a_container_that_cannot_start_skips_or_fails_like_the_devstack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, required: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv("OBSKIT_REQUIRE_SERVICES", required)
    setup = Setup(tmp_path, engine=True, containers_fail=True)
    with pytest.raises(outcome, match=r"redis unavailable: redis container \(redis:7.4\) not ready"):
        setup.services.get("redis")
    assert setup.stack.calls == [], "no silent fallback to the devstack"


# -- the probe ------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _FakeEngine(BaseHTTPRequestHandler):
    """Answers the two calls a ping makes: the API version, then /_ping."""

    def do_GET(self) -> None:
        if self.path == "/version":
            body, kind = json.dumps({"ApiVersion": "1.45", "Version": "27.0.0"}).encode(), "application/json"
        elif self.path.endswith("/_ping"):
            body, kind = b"OK", "text/plain"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def fake_engine() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeEngine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


def test_probe_finds_the_engine_docker_host_names(fake_engine: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{fake_engine}")
    assert docker_engine_answers(timeout_s=5) is True


def test_probe_says_no_at_once_when_docker_host_is_a_closed_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{_closed_port()}")
    started = time.monotonic()
    assert docker_engine_answers(timeout_s=30) is False
    assert time.monotonic() - started < 5, "a refused connection needs no timeout"


def test_probe_gives_up_on_a_listener_that_never_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the connection; nothing ever reads or answers
        monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        assert docker_engine_answers(timeout_s=0.5) is False
        assert time.monotonic() - started < 10, "the probe's timeout bounds the wait"


def test_probe_of_a_missing_socket_leaves_no_unclosed_socket_to_warn_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'docker.sock'}")
    assert docker_engine_answers() is False
    gc.collect()  # a leaked socket would warn here, failing the test (filterwarnings = error)


# -- the containers' configuration (built, not started: there may be no engine) ----------------------


@pytest.fixture
def no_docker_client(monkeypatch: pytest.MonkeyPatch) -> None:
    import testcontainers.core.container

    monkeypatch.setattr(testcontainers.core.container, "DockerClient", lambda **kwargs: None)


def _image_property(variable: str) -> str:
    """The apache/kafka image's rule from variable to broker property (its utility's ConvertKey)."""
    key = re.sub(r"[^_]_[^_]", lambda m: m.group().replace("_", "."), variable.removeprefix("KAFKA_"))
    return key.replace("___", "-").replace("__", "_").lower()


def test_kafka_container_gets_the_devstack_broker_on_the_same_loopback_ports(
    tmp_path: Path, no_docker_client: None
) -> None:
    from observability.devstack import _kafka
    from tests._containers import _kafka_container

    ctx = ServiceContext(name="kafka", dir=tmp_path, ports={"port": 19092, "controller_port": 19093}, cache=tmp_path)
    env = _kafka_container(ctx, {}).env
    given = {_image_property(k): v for k, v in env.items() if k != "KAFKA_HEAP_OPTS"}
    devstack = dict(line.split("=", 1) for line in _kafka._server_properties(ctx).splitlines())
    assert given.pop("controller.quorum.voters") == "1@127.0.0.1:19093"
    assert given == {k: v for k, v in devstack.items() if k not in ("log.dirs", "controller.quorum.bootstrap.servers")}
    assert given["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"


def test_containers_with_files_see_their_directory_at_the_same_path_as_the_tests(
    tmp_path: Path, no_docker_client: None
) -> None:
    from tests._containers import _BUILD

    alertmanager = ServiceContext(name="alertmanager", dir=tmp_path / "am", ports={"port": 19301}, cache=tmp_path)
    for name in ("bugsink", "alertmanager", "prometheus"):
        ctx = ServiceContext(name=name, dir=tmp_path / name, ports={"port": 19300}, cache=tmp_path)
        container = _BUILD[name](ctx, {"alertmanager": alertmanager})
        assert container.volumes == {str(ctx.dir): {"bind": str(ctx.dir), "mode": "rw"}}, name
        assert container._kwargs["network"] == "host", name
    prometheus = yaml.safe_load((tmp_path / "prometheus" / "prometheus.yml").read_text())
    assert prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:19301"]
    assert prometheus["rule_files"] == [str(tmp_path / "prometheus" / "rules" / "*.yml")]
    # A target's env label (Kafka and Celery metrics have none) must not rename a scraped env.
    assert [job.get("honor_labels") for job in prometheus["scrape_configs"]] == [None, True]


def test_the_demo_gives_its_consumer_and_worker_targets_the_env() -> None:
    from observability._demo import ENVIRONMENT, scrape_targets

    targets = {t["labels"]["job"]: t for t in scrape_targets(1, 2, 3)}
    assert targets["obskit-slo"]["labels"] == {"job": "obskit-slo"}  # its series carry their own env
    assert targets["demo-consumer"]["labels"]["env"] == targets["demo-worker"]["labels"]["env"] == ENVIRONMENT
    assert targets["demo-worker"]["targets"] == ["127.0.0.1:3"]

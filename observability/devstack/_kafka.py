"""Apache Kafka 4.x, one KRaft node (broker and controller) on loopback, run from the official jars on Maven Central.

A real broker rather than a Kafka-compatible one: rebalances, commits and crash recovery must be tested against the
semantics of the real thing. Maven resolves the jars once into the cache; no Docker, no tarball mirror.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path

from observability.devstack._base import HOST, ServiceContext, ServiceDef, apt_install, port_open
from observability.errors import DevstackError

__all__ = ["KAFKA_VERSION", "SERVICE"]

KAFKA_VERSION = "4.4.0"
_LOG4J_VERSION = "2.25.5"
_SLF4J_VERSION = "1.7.36"  # Kafka's own; an slf4j 2.x would ignore the log4j 1.7-style binding and drop all logs.
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"  # Debian's Maven defaults to an old one.
_MARKER = ".complete"
_JVM_OPTIONS = ("-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")

_POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>obskit.devstack</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>{_SLF4J_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{_LOG4J_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{_LOG4J_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId><version>{_LOG4J_VERSION}</version></dependency>
  </dependencies>
</project>
"""

# Broker output goes to the console, which the runner sends to the service's log; INFO only for the startup line.
_LOG4J2 = """status = warn
shutdownHook = disable
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""


def _home(cache: Path) -> Path:
    return cache / f"kafka-{KAFKA_VERSION}"


def _missing(cache: Path) -> str | None:
    """None when Java and a complete copy of the jars are present, else the one thing to do about it."""
    if shutil.which("java") is None:
        return "java not found: install Java 17 or later (Debian package openjdk-17-jre-headless)"
    if not (_home(cache) / _MARKER).is_file():
        return f"Kafka {KAFKA_VERSION} jars not in {_home(cache)}: run `obskit devstack install`"
    return None


def _install(cache: Path) -> None:
    """Resolve Kafka and a log4j2 binding with Maven into a staging directory, then rename it into place."""
    home = _home(cache)
    if (home / _MARKER).is_file():
        return
    if shutil.which("mvn") is None:
        apt_install("maven")
    staging = cache / f".kafka-{KAFKA_VERSION}.partial"
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted install
    staging.mkdir(parents=True)
    try:
        (staging / "pom.xml").write_text(_POM)
        argv = [
            "mvn", "-B", "-q", "-U", f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={staging / 'lib'}",
        ]  # fmt: skip
        result = subprocess.run(argv, cwd=staging, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)  # Debian's Maven colours even with -B
            output = output.split("[ERROR] To see the full stack trace")[0]
            tail = "\n".join(output.strip().removesuffix("[ERROR]").strip().splitlines()[-15:])
            message = f"Maven could not fetch Kafka {KAFKA_VERSION} ({result.returncode}):\n{tail}"
            raise DevstackError(message)
        (staging / _MARKER).write_text(f"kafka {KAFKA_VERSION}\n")
        shutil.rmtree(home, ignore_errors=True)  # an incomplete copy without the marker
        staging.rename(home)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _cluster_id() -> str:
    """A random Kafka cluster id, as ``kafka-storage.sh random-uuid`` makes it, without starting a JVM for it."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _server_properties(ctx: ServiceContext) -> str:
    """One combined broker and controller on loopback; the ports may change between runs, the data dir stays."""
    port, cport = ctx.ports["port"], ctx.ports["controller_port"]
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{HOST}:{cport}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{cport}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(ctx.dir / "data"),
        "auto.create.topics.enable": "true",
        # Sized for one node on a small box: single-partition internal topics, no rebalance delay, small buffers.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.cleaner.dedupe.buffer.size": str(2 * 1024 * 1024),
        "num.network.threads": "2",
        "num.io.threads": "2",
    }
    return "".join(f"{key}={value}\n" for key, value in props.items())


def _format_storage(ctx: ServiceContext, java: list[str], properties: Path) -> None:
    """Format the data directory once; later starts reuse it and its topics, even on other ports.

    Kafka 4.4 updates the single voter's controller endpoint itself when the controller port changes (verified),
    so a port change needs no reformat.
    """
    if (ctx.dir / "data" / "meta.properties").is_file():
        return
    id_file = ctx.dir / "cluster.id"
    if not id_file.is_file():
        id_file.write_text(_cluster_id() + "\n")
    cluster_id = id_file.read_text().strip()
    argv = [*java, "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id, "-c", str(properties)]
    result = subprocess.run(argv, cwd=ctx.dir, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        message = f"formatting Kafka storage in {ctx.dir / 'data'} failed ({result.returncode}):\n{tail}"
        raise DevstackError(message)


def _command(ctx: ServiceContext) -> list[str]:
    """Write the configs, format the storage on first use, and return the broker's foreground java argv."""
    problem = _missing(ctx.cache)
    if problem is not None:
        raise DevstackError(problem)
    ctx.dir.mkdir(parents=True, exist_ok=True)
    properties, log4j = ctx.dir / "server.properties", ctx.dir / "log4j2.properties"
    properties.write_text(_server_properties(ctx))
    log4j.write_text(_LOG4J2)
    java = [
        str(shutil.which("java")), *_JVM_OPTIONS, f"-Dlog4j2.configurationFile={log4j}",
        "-cp", str(_home(ctx.cache) / "lib" / "*"),
    ]  # fmt: skip
    _format_storage(ctx, java, properties)
    return [*java, "kafka.Kafka", str(properties)]


def _ready(ctx: ServiceContext) -> bool:
    """True once the broker answers a metadata request; a closed port fails fast, before librdkafka waits 2 s."""
    if not port_open(ctx.port, timeout_s=0.2):
        return False
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    # log_level 0: librdkafka would otherwise print every refused connection to stderr.
    client = AdminClient({"bootstrap.servers": ctx.address, "log_level": 0})
    try:
        metadata = client.list_topics(timeout=2)
    except KafkaException:
        return False
    return bool(metadata.brokers)


def _env(ctx: ServiceContext) -> Mapping[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": ctx.address}


SERVICE = ServiceDef(
    name="kafka",
    port_names=("port", "controller_port"),
    missing=_missing,
    install=_install,
    command=_command,
    ready=_ready,
    env=_env,
    start_timeout_s=90,
)

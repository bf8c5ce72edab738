"""``obskit demo``: the whole kit on the devstack, then a summary a person can act on.

It starts the stack, a Celery worker, a Kafka consumer and the SLO exporter (each its own process, so
``observability`` imports neither ``workers`` nor ``consumers``), sends a mix of good work, errors and
business-rule failures for eight users, waits for it to settle, and prints the events at the
Sentry-compatible server grouped by tag, the SLO table, the alerts that fired and the URLs to open.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from observability.devstack import Devstack
from observability.devstack._base import free_port
from observability.errors import ObskitError

Echo = Callable[[str], None]

SERVICES = ("demo-worker", "demo-consumer")
ENVIRONMENT = "demo"


def _spawn(argv: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            message = f"{what} exited with code {proc.returncode}; last lines of {log}:\n{tail}"
            raise ObskitError(message)
        try:
            if httpx.get(url, timeout=1).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    message = f"{what} did not answer {url} within {timeout_s:g} s (see {log})"
    raise ObskitError(message)


def _settled(source: Any, echo: Echo, timeout_s: float = 90) -> None:
    """Wait until both services' outcome counts stop moving for a few seconds (retries take ~7 s)."""
    last: tuple[int, ...] = ()
    still_since = time.monotonic()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reports = {(r.service, r.env): r for r in source.reports()}
        totals = tuple(
            sum(reports[(s, ENVIRONMENT)].windows[600].outcomes.values()) if (s, ENVIRONMENT) in reports else 0
            for s in SERVICES
        )
        if totals != last:
            last, still_since = totals, time.monotonic()
            echo(f"  units counted so far: {dict(zip(SERVICES, totals, strict=True))}")
        elif all(totals) and time.monotonic() - still_since > 10:
            return
        time.sleep(1)


def run_demo(directory: Path, *, keep: bool, echo: Echo) -> None:  # noqa: PLR0915  (one story, told in order)
    from observability import sentry_api
    from observability.config import Settings
    from observability.exporter import SLOSource, format_table, status_rows
    from observability.slo import load_spec
    from observability.slo.store import Store

    stack = Devstack(directory)
    echo("starting the devstack (Redis, Kafka, Bugsink, Alertmanager, Prometheus) ...")
    for status in stack.up():
        echo(f"  {status.name:<13} {status.address}  pid {status.pid}")
    env = {**os.environ, **stack.env(), "SENTRY_ENVIRONMENT": ENVIRONMENT, "LOG_LEVEL": "WARNING"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    logs = directory.resolve() / "demo"
    logs.mkdir(exist_ok=True)
    prometheus_dir = stack.context("prometheus").dir
    exporter_port, consumer_port, worker_port = free_port(), free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        echo("\nstarting the SLO exporter, a Celery worker and a Kafka consumer ...")
        _create_topics(env["KAFKA_BOOTSTRAP_SERVERS"], ("payments", "payments.dlq"))
        multiproc = logs / "prometheus-multiproc"
        if multiproc.exists():
            for stale in multiproc.iterdir():
                stale.unlink()
        multiproc.mkdir(exist_ok=True)
        exporter = _spawn(
            [sys.executable, "-m", "observability.cli", "exporter", "--port", str(exporter_port)],
            env,
            logs / "exporter.log",
        )
        procs.append(exporter)
        worker = _spawn(
            [sys.executable, "-m", "celery", "-A", "workers", "worker", "--pool", "prefork", "--concurrency", "2",
             "--loglevel", "WARNING"],
            {
                **env,
                "SERVICE_NAME": "demo-worker",
                "OBSKIT_WORKER_METRICS_PORT": str(worker_port),
                "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
            },
            logs / "worker.log",
        )  # fmt: skip
        procs.append(worker)
        consumer = _spawn(
            [sys.executable, "-m", "consumers", "run", "consumers.examples:handle_payment", "--topic", "payments",
             "--group", "demo-payments", "--service", "demo-consumer", "--metrics-port", str(consumer_port),
             "--attempts", "2"],
            env,
            logs / "consumer.log",
        )  # fmt: skip
        procs.append(consumer)
        _wait_http(f"http://127.0.0.1:{exporter_port}/healthz", exporter, logs / "exporter.log", "the exporter")
        _wait_http(f"http://127.0.0.1:{consumer_port}/healthz", consumer, logs / "consumer.log", "the consumer")
        _wait_http(f"http://127.0.0.1:{worker_port}/metrics", worker, logs / "worker.log", "the Celery worker")
        (prometheus_dir / "targets" / "obskit-demo.json").write_text(
            json.dumps(scrape_targets(exporter_port, consumer_port, worker_port))
        )
        rules = _load_rules(prometheus_dir, env, echo)

        echo("\nsending work: 40 checkouts, 6 payments over the limit, 2 flaky calls, 24 payment events ...")
        sent = subprocess.run(
            [sys.executable, "-m", "workers._demo_traffic"], env=env, capture_output=True, text=True, check=False
        )
        if sent.returncode != 0:
            message = f"sending the demo's traffic failed: {sent.stderr.strip().splitlines()[-1:]}"
            raise ObskitError(message)
        echo(f"  sent: {sent.stdout.strip()}")
        import redis

        source = SLOSource(Store(redis.Redis.from_url(env["REDIS_URL"])), load_spec(None))
        echo("\nwaiting for the worker and the consumer to settle (retries take a few seconds) ...")
        _settled(source, echo)

        settings = Settings.from_env(env, service="obskit-demo")
        api = sentry_api.client(settings)
        echo("\n== events at the Sentry-compatible server, grouped by tag ==")
        for service in SERVICES:
            issues = api.issues(sentry_api.search_query({"service": service, "env": ENVIRONMENT}))
            echo(f"service={service} env={ENVIRONMENT}: {len(issues)} issue(s)")
            for issue in issues:
                echo(f"  {issue.count:>3} x {issue.title}")
            echo(f"  {api.link({'service': service, 'env': ENVIRONMENT})}")
        rule_issues = api.issues(sentry_api.search_query({"rule": "daily_limit", "env": ENVIRONMENT}))
        echo(f"rule=daily_limit: {sum(i.count for i in rule_issues)} business-rule message(s)")
        by_user = []
        for user in (f"user-{n}" for n in range(1, 9)):
            found = api.issues(sentry_api.search_query({"user_id": user, "env": ENVIRONMENT}))
            by_user.append(f"{user}={len(found)}")
        echo(f"issues per user_id: {' '.join(by_user)}")

        echo("\n== error-rate SLOs (obskit slo status) ==")
        echo(format_table([r for r in status_rows(source.reports()) if r["service"] in SERVICES]))

        echo("\n== alerts (Alertmanager) ==")
        _print_alerts(env["ALERTMANAGER_URL"], rules, echo)

        bugsink = stack.context("bugsink").state
        echo("\n== where to look ==")
        login = f"{bugsink['admin_user']} / {bugsink['admin_password']}"
        echo(f"  Sentry-compatible server  {env['SENTRY_URL']}  (login {login})")
        echo(f"  SLO status page           http://127.0.0.1:{exporter_port}/")
        echo(f"  Prometheus                {env['PROMETHEUS_URL']}/alerts")
        echo(f"  Alertmanager              {env['ALERTMANAGER_URL']}")
        echo(f"  consumer metrics          http://127.0.0.1:{consumer_port}/metrics")
        echo(f"  worker metrics            http://127.0.0.1:{worker_port}/metrics")
        echo(f"  logs                      {logs}")
    finally:
        if keep:
            pids = " ".join(str(p.pid) for p in procs if p.poll() is None)
            echo(
                f"\nleft running: the stack (`obskit devstack down --dir {directory}`) and pids {pids} (`kill {pids}`)"
            )
        else:
            for proc in reversed(procs):
                _stop(proc)
            (prometheus_dir / "targets" / "obskit-demo.json").unlink(missing_ok=True)
            stack.down()
            echo("\neverything the demo started is stopped (run with --keep to leave it running)")


def scrape_targets(exporter_port: int, consumer_port: int, worker_port: int) -> list[dict[str, Any]]:
    """Prometheus's file-discovered targets for the demo. The consumer's and the worker's carry the env,
    which their Kafka and Celery metrics do not (the README's advice, followed here: the devstack's
    Prometheus honours the scraped `env` of `obskit_errors_total`)."""
    return [
        {"targets": [f"127.0.0.1:{exporter_port}"], "labels": {"job": "obskit-slo"}},
        {"targets": [f"127.0.0.1:{consumer_port}"], "labels": {"job": "demo-consumer", "env": ENVIRONMENT}},
        {"targets": [f"127.0.0.1:{worker_port}"], "labels": {"job": "demo-worker", "env": ENVIRONMENT}},
    ]


def _create_topics(bootstrap: str, names: tuple[str, ...]) -> None:
    """Create the demo's topics up front: a consumer subscribed to a missing topic only sees it appear at
    its next metadata refresh (minutes)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(n, num_partitions=1, replication_factor=1) for n in names]).values():
        try:
            future.result(30)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def _load_rules(prometheus_dir: Path, env: Mapping[str, str], echo: Echo) -> bool:
    """Generate the alert rules into the devstack's Prometheus and reload it; False when not available."""
    out = prometheus_dir / "rules" / "obskit.yml"
    made = subprocess.run(
        [sys.executable, "-m", "observability.cli", "alerts", "rules", "--out", str(out)],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        echo(f"  (alert rules not loaded: {made.stderr.strip().splitlines()[-1:] or made.returncode})")
        return False
    httpx.post(f"{env['PROMETHEUS_URL']}/-/reload", timeout=10).raise_for_status()
    return True


def _print_alerts(alertmanager_url: str, rules: bool, echo: Echo) -> None:
    alerts = httpx.get(f"{alertmanager_url}/api/v2/alerts", timeout=10).json()
    if not alerts:
        note = "the SLO page alerts need minutes of sustained burn" if rules else "no rules loaded"
        echo(f"  none firing yet ({note}); see Prometheus's /alerts for pending ones")
    for alert in alerts:
        labels = alert.get("labels", {})
        echo(
            f"  {labels.get('severity', '?'):<7} {labels.get('alertname', '?')} "
            f"service={labels.get('service', '-')} env={labels.get('env', '-')}"
        )

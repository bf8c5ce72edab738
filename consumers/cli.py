"""``python -m consumers run module:handler`` and the ``obskit dlq`` commands."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any

import click

from observability.errors import ConfigError, ObskitError

__all__ = ["dlq", "main"]


def _load(spec: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError("HANDLER", spec, "module:function, e.g. consumers.examples:handle_payment")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError("HANDLER", spec, f"an importable module ({exc})") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError("HANDLER", spec, f"a function {attribute!r} in {module_name}") from None


def _fail(exc: ObskitError) -> None:
    click.echo(f"consumers: {exc}", err=True)
    sys.exit(2 if isinstance(exc, ConfigError) else 1)


@click.group()
def main() -> None:
    """Kafka consumers wired onto obskit."""


@main.command()
@click.argument("handler")
@click.option("--topic", "topics", multiple=True, help="Topic to consume (repeatable; default: KAFKA_TOPICS).")
@click.option("--group", "group_id", help="Consumer group (default: KAFKA_GROUP_ID).")
@click.option("--service", help="Service name (default: SERVICE_NAME).")
@click.option("--bootstrap-servers", help="Brokers (default: KAFKA_BOOTSTRAP_SERVERS).")
@click.option(
    "--metrics-port", type=int, help="Serve /metrics and /healthz here (default: OBSKIT_CONSUMER_METRICS_PORT)."
)
@click.option("--dlq-topic", help="One dead-letter topic for all (default: <topic>.dlq).")
@click.option("--attempts", type=int, help="Handler attempts per message before the DLQ.")
@click.option("--decode", type=click.Choice(["json", "bytes"]), help="Payload decoding.")
def run(handler: str, topics: tuple[str, ...], group_id: str | None, service: str | None, **options: Any) -> None:
    """Consume TOPIC with HANDLER (module:function) until SIGTERM or SIGINT."""
    import observability as obs
    from consumers.runner import Runner
    from consumers.settings import ConsumerSettings

    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s [trace %(trace_id)s user %(user_id)s] %(message)s",
    )
    overrides = {k: v for k, v in options.items() if v is not None}
    if topics:
        overrides["topics"] = topics
    if group_id:
        overrides["group_id"] = group_id
    try:
        obs.init(service or os.environ.get("SERVICE_NAME") or "kafka-consumer")
        settings = ConsumerSettings.from_env(**overrides)
        runner = Runner(_load(handler), settings)
    except ObskitError as exc:
        _fail(exc)
        return
    code = runner.run()
    obs.shutdown()
    sys.exit(code)


@click.group()
def dlq() -> None:
    """Dead-letter topics: look at and replay parked messages."""


@dlq.command()
@click.option("--from", "source", required=True, help="The dead-letter topic, e.g. payments.dlq.")
@click.option("--to", "target", help="Where to re-produce (default: each message's original topic).")
@click.option("--limit", type=int, help="At most this many messages.")
@click.option("--dry-run", is_flag=True, help="List what would be replayed; produce and commit nothing.")
@click.option(
    "--group", "group_id", default="obskit-dlq-replay", show_default=True, help="Consumer group of the replay."
)
@click.option(
    "--bootstrap-servers", envvar="KAFKA_BOOTSTRAP_SERVERS", help="Brokers (default: KAFKA_BOOTSTRAP_SERVERS)."
)
@click.option(
    "--idle-timeout",
    "idle_s",
    type=float,
    default=5.0,
    show_default=True,
    help="Stop after this long with nothing new.",
)
def replay(
    *,
    source: str,
    target: str | None,
    limit: int | None,
    dry_run: bool,
    group_id: str,
    bootstrap_servers: str | None,
    idle_s: float,
) -> None:
    """Re-produce parked messages with their original headers (plus a replay count); commit only what was re-sent."""
    from consumers.replay import replay as run_replay

    if not bootstrap_servers:
        _fail(ConfigError("KAFKA_BOOTSTRAP_SERVERS", "", "host:port of the Kafka brokers (or --bootstrap-servers)"))
        return
    try:
        result = run_replay(
            bootstrap_servers=bootstrap_servers,
            source=source,
            target=target,
            limit=limit,
            dry_run=dry_run,
            group_id=group_id,
            idle_s=idle_s,
            echo=click.echo,
        )
    except ObskitError as exc:
        _fail(exc)
        return
    verb = "would replay" if dry_run else "replayed"
    click.echo(
        f"{verb} {result.replayed} message(s) from {source}" + (f", {result.failed} failed" if result.failed else "")
    )
    if result.failed:
        sys.exit(1)

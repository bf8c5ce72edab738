"""The exporter's index of services: kept by every flush, pruned when a service's counts expired, and
emptied of a retired service by `obskit slo forget`."""

from __future__ import annotations

from typing import Any

import redis
from click.testing import CliRunner

from observability.cli import main
from observability.exporter import SLOSource
from observability.slo import Outcome, load_spec
from observability.slo.store import INDEX_KEY, Store, totals_key

NOW = 1_900_000_000.0


def member(service: str, env: str) -> bytes:
    return f"{service}|{env}".encode()


def test_every_flush_puts_the_service_back_in_the_index(redis_client: Any, store: Store, service: str) -> None:
    store.flush([(service, "prod", {Outcome.OK: 1})], NOW)
    redis_client.srem(INDEX_KEY, member(service, "prod"))  # lost (a flushed index key, a forget while running)
    store.flush([(service, "prod", {})], NOW + 60)  # the idle heartbeat, or the next counts
    assert redis_client.sismember(INDEX_KEY, member(service, "prod"))


def test_a_service_whose_counts_expired_leaves_the_exporter(redis_client: Any, store: Store, service: str) -> None:
    store.flush([(service, "prod", {Outcome.ERROR: 3})], NOW)
    store.flush([(service, "staging", {Outcome.OK: 3})], NOW)
    redis_client.delete(totals_key(service, "prod"))  # what Redis does once nothing flushed for the retention
    source = SLOSource(store, load_spec(None), clock=lambda: NOW + 1)
    reported = {(r.service, r.env) for r in source.reports()}
    assert (service, "staging") in reported
    assert (service, "prod") not in reported
    assert not redis_client.sismember(INDEX_KEY, member(service, "prod"))
    assert redis_client.sismember(INDEX_KEY, member(service, "staging"))


def test_prune_keeps_a_service_that_flushed_after_it_was_read(redis_client: Any, store: Store, service: str) -> None:
    store.flush([(service, "prod", {Outcome.OK: 1})], NOW)
    redis_client.delete(totals_key(service, "prod"))
    (reading,) = store.read([(service, "prod")], [3600], NOW)
    assert reading.last_flush is None  # the exporter read it as expired...
    store.flush([(service, "prod", {Outcome.OK: 1})], NOW + 1)  # ...and then the service flushed
    assert store.prune([(service, "prod")]) == []
    assert redis_client.sismember(INDEX_KEY, member(service, "prod"))


def test_forget_deletes_a_retired_service(redis_client: Any, redis_url: str, store: Store, service: str) -> None:
    store.flush([(service, "prod", {Outcome.OK: 5, Outcome.ERROR: 1})], NOW)
    runner = CliRunner()
    result = runner.invoke(main, ["slo", "forget", service, "prod", "--redis-url", redis_url])
    assert result.exit_code == 0, result.output
    assert f"forgot {service} in prod" in result.output
    assert not redis_client.exists(totals_key(service, "prod"))
    assert not redis_client.sismember(INDEX_KEY, member(service, "prod"))
    assert not redis_client.keys(f"obskit:slo:{{{service}}}:*")

    again = runner.invoke(main, ["slo", "forget", service, "prod", "--redis-url", redis_url])
    assert again.exit_code == 1
    assert "nothing forgotten" in again.output
    assert "Traceback" not in again.output


class ReadOnly(Store):
    """The store as an exporter on a replica (or with a read-only user) sees it."""

    def prune(self, pairs: Any) -> list[tuple[str, str]]:
        raise redis.exceptions.ReadOnlyError("You can't write against a read only replica.")


def test_an_exporter_that_cannot_prune_still_reports_the_rest(redis_client: Any, service: str) -> None:
    store = ReadOnly(redis_client)
    store.flush([(service, "prod", {Outcome.OK: 3})], NOW)
    store.flush([(service, "gone", {Outcome.OK: 3})], NOW)
    redis_client.delete(totals_key(service, "gone"))
    reported = {(r.service, r.env) for r in SLOSource(store, load_spec(None), clock=lambda: NOW + 1).reports()}
    assert (service, "prod") in reported

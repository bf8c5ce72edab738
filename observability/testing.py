"""A pytest plugin for users of the kit: capture the Sentry events a test produces, in memory.

    def test_declined_payment_is_reported(obskit_events):
        charge(user_id=42, amount=10_000)
        assert obskit_events.messages[0]["tags"]["rule"] == "payment_limit"

Nothing leaves the process: the SDK's transport is replaced by a list.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from prometheus_client import CollectorRegistry
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from observability._recorder import EnvelopeRecorder

__all__ = ["CapturedEvents", "EnvelopeRecorder", "capture_transport", "envelope_recorder", "obskit_events"]

# Nothing listens on port 9 (discard); the DSN only has to be well formed.
TEST_DSN = "http://public@127.0.0.1:9/1"


class CapturedEvents(list[dict[str, Any]]):
    """Every event and transaction sent, in order; ``errors``/``messages``/``transactions`` filter them."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[Envelope] = []
        self.registry = CollectorRegistry()

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self if e.get("type") != "transaction" and "exception" in e]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [e for e in self if e.get("type") != "transaction" and "exception" not in e]

    @property
    def transactions(self) -> list[dict[str, Any]]:
        return [e for e in self if e.get("type") == "transaction"]

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample's value in the test's own registry (0.0 when absent)."""
        return self.registry.get_sample_value(name, labels or {}) or 0.0


def capture_transport(sink: CapturedEvents) -> type[Transport]:
    """A transport class that appends every envelope's event or transaction to ``sink``."""

    class CaptureTransport(Transport):
        def capture_envelope(self, envelope: Envelope) -> None:
            sink.envelopes.append(envelope)
            for item in envelope.items:
                if item.type in ("event", "transaction") and item.payload.json is not None:
                    sink.append(item.payload.json)

    return CaptureTransport


@pytest.fixture
def envelope_recorder() -> Iterator[EnvelopeRecorder]:
    """A local Sentry ingest endpoint that records envelopes (transactions, check-ins, events)."""
    recorder = EnvelopeRecorder()
    try:
        yield recorder
    finally:
        recorder.close()


@pytest.fixture
def obskit_events() -> Iterator[CapturedEvents]:
    """Initialise the kit for one test with an in-memory transport, a fresh metrics registry and an SDK
    isolation scope of its own."""
    import observability

    sink = CapturedEvents()
    environ = {k: v for k, v in os.environ.items() if k not in ("SENTRY_DSN", "SENTRY_DSN_FILE")}
    observability.init(
        environ.get("SERVICE_NAME") or "test",
        dsn=TEST_DSN,
        environ=environ,
        transport=capture_transport(sink),
        registry=sink.registry,
    )
    try:
        # What the test sets on the SDK's scope (a user, tags) ends with it, not on later tests' events.
        with sentry_sdk.isolation_scope():
            yield sink
    finally:
        observability.shutdown(timeout_s=1.0)

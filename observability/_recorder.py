"""A Sentry ingest endpoint on 127.0.0.1 that keeps what it receives, for what a Sentry-compatible server
does not store (transactions, cron check-ins) and for benchmarks. ``python -m observability._recorder``
runs one in its own process: it prints its DSN, answers ``GET /counts`` and stops on SIGTERM.
"""

from __future__ import annotations

import gzip
import json
import threading
from typing import Any

from sentry_sdk.envelope import Envelope

from observability._http import Server, respond

__all__ = ["EnvelopeRecorder"]


class EnvelopeRecorder:
    """Keeps every envelope item it receives (``keep=False``: only counts them). Point a DSN at ``dsn``."""

    def __init__(self, *, keep: bool = True, port: int = 0) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.counts: dict[str, int] = {}
        self._keep = keep
        self._lock = threading.Lock()
        self._server = Server(self._app, host="127.0.0.1", port=port, name="obskit-envelope-recorder")
        self.dsn = f"http://public@127.0.0.1:{self._server.port}/1"

    def _app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("REQUEST_METHOD") == "GET":
            with self._lock:
                body = json.dumps(self.counts).encode()
            return respond(start_response, "200 OK", "application/json", body)
        size = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(size)
        if environ.get("HTTP_CONTENT_ENCODING") == "gzip":
            raw = gzip.decompress(raw)
        envelope = Envelope.deserialize(raw)
        with self._lock:
            for item in envelope.items:
                kind = item.type or ""
                self.counts[kind] = self.counts.get(kind, 0) + 1
                if self._keep:
                    payload = _json(item)
                    if payload is not None:
                        self.items.append((kind, payload))
        return respond(start_response, "200 OK", "application/json", b"{}")

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [payload for item_type, payload in self.items if item_type == kind]

    def close(self) -> None:
        self._server.stop()


def _json(item: Any) -> dict[str, Any] | None:
    """The item's JSON: the SDK parses events and transactions itself; other items (check-ins, client
    reports) arrive as bytes. None for a payload that is not a JSON object (an attachment)."""
    if item.payload.json is not None:
        return dict(item.payload.json)
    try:
        payload = json.loads(item.payload.get_bytes())
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


if __name__ == "__main__":
    import signal

    recorder = EnvelopeRecorder(keep=False)
    print(recorder.dsn, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    recorder.close()

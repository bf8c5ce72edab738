"""A Sentry ingest endpoint on 127.0.0.1 that keeps what it receives, for what a Sentry-compatible server
does not store (transactions, cron check-ins) and for benchmarks. ``python -m observability._recorder``
runs one in its own process: it prints its DSN, answers ``GET /counts`` and stops on SIGTERM.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sentry_sdk.envelope import Envelope

__all__ = ["EnvelopeRecorder"]

logger = logging.getLogger(__name__)


class EnvelopeRecorder:
    """Keeps every envelope item it receives (``keep=False``: only counts them). Point a DSN at ``dsn``.

    It speaks HTTP/1.1 with keep-alive, as Sentry's ingest does, so the SDK's sender reuses its
    connection here as it would there (a new connection per envelope cost its sender thread a fifth
    more CPU here).
    """

    def __init__(self, *, keep: bool = True, port: int = 0) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.counts: dict[str, int] = {}
        self._keep = keep
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, name="obskit-envelope-recorder", daemon=True)
        self._thread.start()
        self.dsn = f"http://public@127.0.0.1:{self._server.server_port}/1"

    def _receive(self, raw: bytes) -> None:
        envelope = Envelope.deserialize(raw)
        with self._lock:
            for item in envelope.items:
                kind = item.type or ""
                self.counts[kind] = self.counts.get(kind, 0) + 1
                if self._keep:
                    payload = _json(item)
                    if payload is not None:
                        self.items.append((kind, payload))

    def _counts_json(self) -> bytes:
        with self._lock:
            return json.dumps(self.counts).encode()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [payload for item_type, payload in self.items if item_type == kind]

    def close(self) -> None:
        self._server.shutdown()
        self._server.close_connections()  # kept alive, their threads would go on recording
        self._server.server_close()
        self._thread.join(5.0)


class _Server(ThreadingHTTPServer):
    """Knows its open connections, so that closing it also ends the ones kept alive."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            still_open = list(self._open)
        for connection in still_open:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def _handler(recorder: EnvelopeRecorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # The reply goes out as two writes (headers, body): without TCP_NODELAY the second waits for
        # the client's delayed ACK, 40 ms a request on a kept-alive connection.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self._reply(recorder._counts_json())

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                recorder._receive(_decoded(raw, self.headers.get("Content-Encoding")))
            except Exception as exc:  # a body it cannot read: answered, as Sentry's ingest does
                logger.warning("envelope recorder: unreadable envelope: %s", exc)
                self._reply(json.dumps({"detail": str(exc)}).encode(), status=400)
                return
            self._reply(b"{}")

        def _reply(self, body: bytes, status: int = 200) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("envelope recorder: " + format, *args)

    return Handler


def _decoded(raw: bytes, encoding: str | None) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(raw)
    if encoding == "br":  # the SDK's choice when the brotli package is installed
        import brotli  # type: ignore[import-not-found]

        return bytes(brotli.decompress(raw))
    return raw


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

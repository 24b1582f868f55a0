"""A small webhook receiver on loopback: what `make demo` and the tests deliver alerts to.

Usage::

    with WebhookReceiver(secret="s3cret") as receiver:
        receiver.fail("/hooks/flaky", [503, 503])     # two failures, then 200
        ...deliver to receiver.url("/hooks/flaky")...
        receiver.received                             # every request, with its signature checked

It keeps every POST (path, headers, parsed JSON, whether the signature is valid) and answers from a
per-path plan of statuses, so that retries and dead letters can be produced for real.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sitrep.alerts import SIGNATURE_HEADER, verify_signature

__all__ = ["Received", "WebhookReceiver"]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    #: None when no secret is configured or the request carried no signature.
    signature_valid: bool | None

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """A ThreadingHTTPServer on 127.0.0.1 (a free port) that records what it receives."""

    def __init__(self, secret: str | None = None, port: int = 0) -> None:
        self.secret = secret
        self.received: list[Received] = []
        self._plans: dict[str, list[int]] = {}
        self._always: dict[str, int] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
                return

            def do_POST(self) -> None:  # noqa: N802 - stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?", 1)[0]
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver._status(path)
                signature = headers.get(SIGNATURE_HEADER.lower())
                valid = None if receiver.secret is None or signature is None else verify_signature(
                    receiver.secret, body, signature)
                with receiver._lock:
                    receiver.received.append(Received(path, headers, body, status, valid))
                reply = b'{"ok": true}' if status < 300 else b'{"error": "planned failure"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)

    def _status(self, path: str) -> int:
        with self._lock:
            plan = self._plans.get(path)
            if plan:
                return plan.pop(0)
            return self._always.get(path, 200)

    def fail(self, path: str, statuses: list[int] | None = None, *, always: int | None = None) -> None:
        """Answer ``path`` with these statuses first (then 200), or with ``always`` every time."""
        with self._lock:
            if statuses:
                self._plans[path] = list(statuses)
            if always is not None:
                self._always[path] = always

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server's: bytes only for AF_UNIX
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def delivered(self, path: str | None = None) -> list[Received]:
        """The requests answered with a 2xx (on ``path``, or anywhere)."""
        return [r for r in self.received if r.status < 300 and (path is None or r.path == path)]

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

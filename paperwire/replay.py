"""Local stand-ins for the services we cannot reach: serve real recorded responses, record webhook POSTs.

Used by ``paperwire demo`` and by the end-to-end tests; the fetcher reaches them through its base-URL settings.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Route:
    """Serve ``file`` for GET ``path`` when every ``when`` value occurs in the named query parameter."""

    path: str
    file: Path
    when: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None

    def matches(self, path: str, query: dict[str, list[str]]) -> bool:
        if path != self.path:
            return False
        return all(any(want in value for value in query.get(key, [])) for key, want in self.when.items())

    def response(self) -> tuple[int, bytes, str]:
        raw = self.file.read_bytes()
        if self.file.suffix == ".json" and raw.lstrip().startswith(b"{"):
            recorded = json.loads(raw)
            if {"url", "status_code", "body"} <= recorded.keys():  # arxiv.py's recordings
                return recorded["status_code"], recorded["body"].encode(), "application/atom+xml"
        kind = self.content_type or ("application/json" if self.file.suffix == ".json" else "application/xml")
        return 200, raw, kind


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _LocalServer:
    """A threaded HTTP server on an ephemeral 127.0.0.1 port, run for the length of a ``with`` block."""

    path = ""

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._httpd = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{self.path}"

    def __enter__(self):  # noqa: ANN204 - returns the subclass
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class ReplayServer(_LocalServer):
    """A threaded HTTP server on 127.0.0.1 replaying recorded responses; logs every request it served."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                server.requests.append(self.path)
                for route in server.routes:
                    if route.matches(parts.path, query):
                        status, body, kind = route.response()
                        self.send_response(status)
                        self.send_header("Content-Type", kind)
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        return
                self.send_error(404, "no recorded response for this request")

            def log_message(self, *args: Any) -> None:
                pass

        self._serve(Handler)


@dataclass
class ReceivedWebhook:
    headers: dict[str, str]
    body: bytes


class WebhookReceiver(_LocalServer):
    """A webhook endpoint on 127.0.0.1 that keeps every POST it accepted."""

    path = "/hooks/paperwire"

    def __init__(self) -> None:
        self.received: list[ReceivedWebhook] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                receiver.received.append(ReceivedWebhook({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._serve(Handler)

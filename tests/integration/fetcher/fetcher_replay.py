"""A local HTTP server replaying recorded responses, with scripted failures (429, 503, slow, truncated)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from services.fetcher.settings import FetcherSettings


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    truncate_to: int | None = None  # send Content-Length of the full body, then close early


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    started: float
    ended: float = 0.0


Route = Callable[[str, dict[str, str], dict[str, str]], Reply]


class ReplayServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.scripts: dict[str, list[Reply]] = {}
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                record = Seen(parts.path, query, {k.lower(): v for k, v in self.headers.items()}, time.time())
                with server._lock:
                    server.seen.append(record)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    reply = server._reply(parts.path, query, record.headers)
                    if reply.delay_s:
                        time.sleep(reply.delay_s)
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    if reply.truncate_to is not None:
                        self.send_header("Connection", "close")
                    self.end_headers()
                    try:
                        self.wfile.write(
                            reply.body[: reply.truncate_to] if reply.truncate_to is not None else reply.body
                        )
                        self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    if reply.truncate_to is not None:
                        self.close_connection = True
                finally:
                    with server._lock:
                        server.in_flight -= 1
                        record.ended = time.time()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _reply(self, path: str, query: dict[str, str], headers: dict[str, str]) -> Reply:
        script = self.scripts.get(path)
        if script:
            return script.pop(0)
        route = self.routes.get(path)
        return route(path, query, headers) if route else Reply(404, b"not found")

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ReplayServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def requests_to(replay: ReplayServer, path: str) -> int:
    """How many requests the stand-in answered on ``path``."""
    return sum(seen.path == path for seen in replay.seen)


def replayed_settings(clean_redis: str, **values: object) -> FetcherSettings:
    """Fetcher settings against the stand-in: one Daily Papers date (a real recording's), no arXiv pacing."""
    base: dict[str, object] = {"redis_url": clean_redis, "hf_date": date(2026, 5, 11), "hf_days": 1}
    return FetcherSettings(**(base | {"arxiv_min_interval_s": 0} | values))  # type: ignore[arg-type]

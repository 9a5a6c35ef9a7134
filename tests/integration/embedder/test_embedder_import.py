"""Importing the embedder's app never fails; a model problem refuses at service start, with what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import asyncio
import services.embedder.app as mod
print("imported")
async def main():
    try:
        async with mod.app:
            print("started")
    except Exception as exc:
        print("refused:", type(exc).__name__, exc)
asyncio.run(main())
"""


def test_import_succeeds_and_start_refuses(tmp_path: Path, clean_redis: str) -> None:
    env = os.environ | {"PAPERWIRE_MODEL_DIR": str(tmp_path), "REDIS_URL": clean_redis}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "imported" in out.stdout
    assert "refused: ModelError no manifest.json in" in out.stdout
    assert "paperwire model export" in out.stdout
    assert "started" not in out.stdout

"""Headless Chromium for the browser tests: Debian's package, found or the test skips (fails under CI)."""

from __future__ import annotations

import os
import shutil

import pytest

# Flags for a root user on a machine with no network beyond localhost.
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def require(*programs: str, python_modules: tuple[str, ...] = ()) -> dict[str, str]:
    """Paths of the programs (``chromium`` also matches ``chromium-browser``); skip, or fail when CI=true."""
    found, missing = {}, []
    for program in programs:
        names = (program, "chromium-browser") if program == "chromium" else (program,)
        path = next((p for p in map(shutil.which, names) if p), None)
        if path:
            found[program] = path
        else:
            missing.append(program)
    for module in python_modules:
        try:
            __import__(module)
        except ImportError:
            missing.append(f"{module} (pip)")
    if missing:
        reason = f"browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found

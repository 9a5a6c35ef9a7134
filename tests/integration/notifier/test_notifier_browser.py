"""A real digest (real fixture papers) rendered to HTML and opened in headless Chromium at phone width."""

from __future__ import annotations

import struct
import subprocess
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.notifier.email_render import Links, render_html
from services.notifier.jobs import MatchItem, digest_jobs
from shared.subscription import Channels, Schedule
from tests.browser import HEADLESS_FLAGS, require
from tests.unit.notifier.notifier_papers import HF_MAY, hf_papers, listing_papers, subscription

pytestmark = pytest.mark.browser


def png_pixels(path: Path) -> tuple[int, int, bytes]:
    """Width, height and the decompressed scanlines of a PNG: enough to tell a blank page from a rendered one."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return width, height, zlib.decompress(idat)


def test_digest_renders_in_chromium(fixtures_dir: Path, tmp_path: Path) -> None:
    binary = require("chromium")["chromium"]
    hf = hf_papers(fixtures_dir, HF_MAY)
    listing = listing_papers(fixtures_dir, 3)
    matches = [
        MatchItem(paper=p, score=0.82 - i * 0.05, reasons=["close to your interest in agents"])
        for i, p in enumerate(hf)
    ]
    matches += [
        MatchItem(paper=p, score=0.5 - i * 0.05, reasons=["keyword: language model"]) for i, p in enumerate(listing)
    ]
    sub = subscription(top_k=5, schedule=Schedule(mode="daily"), channels=Channels(email="ada@example.org"))
    (job,) = digest_jobs(sub, matches, datetime(2026, 5, 11, 8, tzinfo=UTC), heartbeat=False)
    page = tmp_path / "digest.html"
    page.write_text(render_html(job, sub, Links("https://paperwire.example", "secret")))
    shot = tmp_path / "digest.png"
    common = [
        binary,
        *HEADLESS_FLAGS,
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=414,2400", page.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
    )
    dom = subprocess.run(
        [*common, "--dump-dom", page.as_uri()], check=True, capture_output=True, timeout=120, text=True
    ).stdout
    for item in job.items:
        assert item.paper.title.split(":")[0] in dom
    assert "and 1 more matching paper not shown" in dom and "86 upvotes" in dom
    width, height, pixels = png_pixels(shot)
    assert (width, height) == (414, 2400)
    assert len(set(pixels)) > 50  # text, links and cards were painted, not a blank page
    print(f"screenshot: {shot}")

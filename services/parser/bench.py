"""Parse throughput: papers per second on the recorded fixtures (the 387-record OAI file first)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from services.parser.parse import parse_document, unwrap_recording

OAI_387 = "arxiv_oai/litpuvn_ListRecords_arXivRaw_from2016-10-20.xml"
CASES: tuple[tuple[str, str], ...] = (
    ("arxiv-oai", OAI_387),
    ("arxiv-api", "arxiv_api/extracted_bodies/arxivpy_q_testing_s0_m100_cfe7536492ca.xml"),
    ("arxiv-rss", "arxiv_rss/distill_rss2_cs.LG_2026-04.xml"),
    ("hf-daily", "hf_daily_papers/sotawhat_hf_daily_papers_2026-06.json"),
)


@dataclass
class BenchRow:
    source: str
    file: str
    bytes: int
    papers: int
    repeats: int
    seconds: float

    @property
    def papers_per_s(self) -> float:
        return self.papers * self.repeats / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes * self.repeats / self.seconds / 1e6 if self.seconds else 0.0


def bench(fixtures: Path, min_seconds: float = 2.0) -> list[BenchRow]:
    """Parse each case repeatedly for at least ``min_seconds``; one warm-up parse first."""
    rows = []
    for source, relative in CASES:
        body = unwrap_recording((fixtures / relative).read_bytes())
        papers = len(parse_document(source, body).papers)
        repeats, start = 0, time.perf_counter()
        while True:
            parse_document(source, body)
            repeats += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        size = len(body) if isinstance(body, bytes) else len(body.encode())
        rows.append(BenchRow(source, relative, size, papers, repeats, elapsed))
    return rows

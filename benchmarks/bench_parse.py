"""Parse throughput on the fixtures: ``python benchmarks/bench_parse.py [SECONDS]`` (= ``paperwire bench parse``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.parser.bench import bench  # noqa: E402

if __name__ == "__main__":
    fixtures = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
    for row in bench(fixtures, float(sys.argv[1]) if len(sys.argv) > 1 else 2.0):
        print(
            f"{row.source:10} {row.papers:4d} papers: {row.papers_per_s:10,.0f} papers/s"
            f"  {row.mb_per_s:6.1f} MB/s  {row.file}"
        )

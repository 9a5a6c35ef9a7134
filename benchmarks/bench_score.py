"""Scoring cost: a day of 2,000 papers against 10,000 and 100,000 subscriptions.

Run: .venv/bin/python benchmarks/bench_score.py [--subscriptions 10000,100000] [--papers 2000]
(same as `paperwire bench score`).
"""

from __future__ import annotations

import typer

from services.classifier.cli import bench_score

if __name__ == "__main__":
    typer.run(bench_score)

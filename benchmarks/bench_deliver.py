"""Webhook delivery throughput and hanging-endpoint isolation; same as ``paperwire bench deliver``.

Usage: python benchmarks/bench_deliver.py [--n 2000] [--endpoints 8]
"""

from __future__ import annotations

import typer

from services.notifier.cli import bench_deliver_command

if __name__ == "__main__":
    typer.run(bench_deliver_command)

"""Verify arXiv's shared limit across fetcher processes: ``python benchmarks/bench_arxiv_limit.py [N] [INTERVAL_S]``.

Starts a local server standing in for the arXiv API and a private Redis, then two fetcher processes that each
make N requests through the Redis-backed limiter (the same child the CI test runs, with arXiv's real 3 s
interval). Prints the number of requests, the most ever in flight at once, and the gaps between request starts.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "integration" / "fetcher"))

from fetcher_replay import ReplayServer, Reply  # noqa: E402

from shared.redis_server import EmbeddedRedis  # noqa: E402


def main() -> int:
    per_process = sys.argv[1] if len(sys.argv) > 1 else "3"
    interval = sys.argv[2] if len(sys.argv) > 2 else "3.0"
    source = (ROOT / "tests" / "integration" / "fetcher" / "test_fetcher_poll.py").read_text()
    child = source.split('CHILD = """')[1].split('"""')[0]
    redis = EmbeddedRedis(Path(tempfile.mkdtemp())).start()
    server = ReplayServer().start()
    server.routes["/api/query"] = lambda path, query, headers: Reply(200, b"<feed/>")
    try:
        args = [sys.executable, "-c", child, redis.url, server.url + "/api/query", per_process, interval]
        processes = [subprocess.Popen(args, cwd=ROOT) for _ in range(2)]
        codes = [p.wait() for p in processes]
        starts = sorted(seen.started for seen in server.seen)
        print(f"exit codes {codes}; requests {len(starts)}; max in flight {server.max_in_flight}")
        print("gaps between request starts (s):", [round(b - a, 3) for a, b in zip(starts, starts[1:], strict=False)])
    finally:
        server.stop()
        redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

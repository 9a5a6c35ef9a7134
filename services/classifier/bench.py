"""`paperwire bench score`: a day of papers against N subscriptions, timed, with peak memory."""

from __future__ import annotations

import resource
import time

import numpy as np

from services.classifier.learner import LinearModel
from services.classifier.scoring import Profile, Scorer
from shared.paper import Paper
from shared.subscription import Subscription


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def run_bench(n_subs: int, n_papers: int, vectors_each: int = 3, dims: int = 384, seed: int = 0) -> dict:
    """Synthetic unit vectors (timing does not depend on their values); every profile has a model."""
    rng = np.random.default_rng(seed)
    background = np.sort(rng.standard_normal(200).astype(np.float32))
    bg_cos = np.sort(rng.uniform(0, 0.5, 200).astype(np.float32))
    template = Subscription(id="bench", name="bench", interests=["x"], threshold=0.6)
    profiles = [
        Profile(
            subscription=template.model_copy(update={"id": f"s{i}"}),
            vectors=_unit(rng, vectors_each, dims),
            labels=["interest"] * vectors_each,
            model=LinearModel(_unit(rng, 1, dims)[0], 0.0),
            background_logits=background,
            background_cos=bg_cos,
        )
        for i in range(n_subs)
    ]
    papers = [Paper(id=f"2601.{i:05d}", title=f"paper {i}") for i in range(n_papers)]
    vectors = _unit(rng, n_papers, dims)
    start = time.perf_counter()
    matches = Scorer(profiles, chunk=2048).score(papers, vectors, with_reasons=False)
    seconds = time.perf_counter() - start
    return {
        "subscriptions": n_subs,
        "papers": n_papers,
        "vectors_per_subscription": vectors_each,
        "seconds": round(seconds, 3),
        "pairs_per_s": n_subs * n_papers / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "matches": len(matches),
    }

"""`paperwire bench score`: a day of papers against N subscriptions, timed, with peak memory.

Vectors are synthetic, but the work is the service's: every subscription has positives, a model and its
background calibration, and each one's positives sit near a few of the day's papers, so a realistic number of
pairs match and get their reasons written (the per-match part is Python; a bench without matches would
time only the matrix products).
"""

from __future__ import annotations

import resource
import time
from dataclasses import replace

import numpy as np

from services.classifier.learner import LinearModel
from services.classifier.scoring import Profile, Scorer
from shared.paper import Paper
from shared.subscription import Subscription

BACKGROUND = 200  # background papers per calibration (shared by all subscriptions here)
NEAR = 0.25  # noise added to a paper to make a positive near it (cosine ~0.9999)
PER_PAPER_CALLS = 20  # single-paper calls timed after the batch
THRESHOLD = 0.4  # between the calibrated score of the papers near a positive (~0.5) and of the rest (< 0.3)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def run_bench(
    n_subs: int, n_papers: int, vectors_each: int = 3, dims: int = 384, seed: int = 0, with_reasons: bool = True
) -> dict:
    """Each subscription's ``vectors_each`` positives are noisy copies of random papers of the day. Times the
    compile (once at start), the day as one batch, single papers (a lone event), and a lone paper right after a
    subscription was added and another removed (two chunks compiled again)."""
    rng = np.random.default_rng(seed)
    vectors = _unit(rng.standard_normal((n_papers, dims)))
    background = _unit(rng.standard_normal((BACKGROUND, dims)))
    near = rng.integers(0, n_papers, size=(n_subs, vectors_each))
    positives = _unit(vectors[near] + NEAR * _unit(rng.standard_normal((n_subs, vectors_each, dims))) / np.sqrt(dims))
    directions = _unit(positives.mean(axis=1))
    bg_logits = np.sort(directions @ background.T, axis=1)
    bg_cos = np.sort(np.einsum("svd,bd->sbv", positives, background).max(axis=2), axis=1)
    template = Subscription(id="bench", name="bench", interests=["x"], threshold=THRESHOLD)
    profiles = [
        Profile(
            subscription=template.model_copy(update={"id": f"s{i}"}),
            vectors=positives[i],
            labels=["interest"] * vectors_each,
            model=LinearModel(directions[i], 0.0),
            background_logits=bg_logits[i],
            background_cos=bg_cos[i],
        )
        for i in range(n_subs)
    ]
    papers = [Paper(id=f"2601.{i:05d}", title=f"paper {i}") for i in range(n_papers)]
    start = time.perf_counter()
    scorer = Scorer(profiles, chunk=2048).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    matches = scorer.score(papers, vectors, with_reasons=with_reasons)
    seconds = time.perf_counter() - start
    calls = min(PER_PAPER_CALLS, n_papers)  # a day smaller than 20 papers: time each of them
    start = time.perf_counter()
    for i in range(calls):  # what the service does with a lone papers.embedded event
        scorer.score(papers[i : i + 1], vectors[i : i + 1], with_reasons=with_reasons)
    per_paper = (time.perf_counter() - start) / calls
    start = time.perf_counter()  # a subscription created and another deleted: their chunks only are recompiled
    scorer.put(replace(profiles[-1], subscription=template.model_copy(update={"id": "new"})))
    scorer.remove("s0")
    scorer.score(papers[:1], vectors[:1], with_reasons=with_reasons)
    change_s = time.perf_counter() - start
    return {
        "subscriptions": n_subs,
        "papers": n_papers,
        "vectors_per_subscription": vectors_each,
        "with_reasons": with_reasons,
        "compile_s": round(compile_s, 3),
        "seconds": round(seconds, 3),
        "pairs_per_s": n_subs * n_papers / seconds,
        "one_paper_ms": round(1000 * per_paper, 2),
        "day_one_paper_at_a_time_s": round(per_paper * n_papers, 1),
        "add_and_remove_then_one_paper_ms": round(1000 * change_s, 1),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "matches": len(matches),
        "matches_per_subscription": round(len(matches) / n_subs, 2),
    }

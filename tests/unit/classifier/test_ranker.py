"""The seed ranker on real papers: leave-one-out model choice, stored models, the scorer keeping its order."""

from __future__ import annotations

import json

import numpy as np

from services.classifier.learner import LinearModel, model_from_dict, train_maxent
from services.classifier.profiles import build_profile
from services.classifier.ranker import KINDS, SeedRanker
from services.classifier.scoring import ModelStack, Scorer
from shared.subscription import Subscription

EMPTY = np.zeros((0, 384), np.float32)


def test_choice_follows_leave_one_out_and_ranks_the_topic_first(labeled_slice) -> None:
    papers, vectors, _ = labeled_slice
    background, new = vectors[:120], vectors[120:]
    cl = np.array([i for i in range(120) if papers[i].primary == "cs.CL"][:8])
    ranker = SeedRanker(background=background)
    model = ranker.fit(background[cl])
    aucs = {k: ranker.loo_auc(background[cl], EMPTY, k, ranker.fit_kind(k, background[cl], EMPTY)) for k in KINDS}
    assert len(set(aucs.values())) > 1, "the candidates are different models"
    assert model.kind == max(KINDS, key=lambda k: aucs[k])
    assert model.loo_auc == aucs[model.kind] and 0.5 < model.loo_auc <= 1.0
    is_cl = np.array([p.primary == "cs.CL" for p in papers[120:]])
    top = np.argsort(-model.logits(new))[:10]
    assert is_cl[top].mean() >= is_cl.mean() + 0.3, "cs.CL seeds: language papers on top (17% of new)"


def test_maxent_matches_the_seed_mean_and_keeps_disliked_papers_low(labeled_slice) -> None:
    """The presence-background model's optimum: the tilted background's mean + l2 w = the positives' mean."""
    papers, vectors, _ = labeled_slice
    background, new = vectors[:120], vectors[120:]
    cl = np.array([i for i in range(120) if papers[i].primary == "cs.CL"])
    model = train_maxent(background[cl[:8]], EMPTY, background=background, l2=0.03, steps=100)
    assert model.kind == "maxent"
    logits = background @ model.weights
    tilt = np.exp(logits - logits.max())
    tilt /= tilt.sum()
    gap = background[cl[:8]].mean(axis=0) - tilt @ background - 0.03 * model.weights
    assert np.abs(gap).max() < 1e-3
    # Logits are log density ratios against the background: they average to log 1 under the tilt's normaliser.
    assert abs(np.log(np.mean(np.exp(model.logits(background))))) < 1e-4
    is_cl = np.array([p.primary == "cs.CL" for p in papers[120:]])
    top = np.argsort(-model.logits(new))[:10]
    assert is_cl[top].mean() >= is_cl.mean() + 0.3
    # Disliked papers join the reference with as much weight as the whole background: they go down.
    disliked = background[cl[8:12]]
    with_dislikes = train_maxent(background[cl[:8]], disliked, background=background, l2=0.03, steps=100)
    before = np.argsort(np.argsort(-model.logits(background)))[cl[8:12]]
    after = np.argsort(np.argsort(-with_dislikes.logits(background)))[cl[8:12]]
    assert after.mean() > before.mean() + 5


def test_stored_models_score_the_same(labeled_slice) -> None:
    _, vectors, _ = labeled_slice
    ranker = SeedRanker(background=vectors[:120])
    for kind_seeds in (np.arange(0, 120, 12), np.arange(3, 6)):
        for model in [ranker.fit(vectors[kind_seeds])] + [
            ranker.fit_kind(k, vectors[kind_seeds], EMPTY) for k in KINDS
        ]:
            again = LinearModel.from_dict(model.to_dict())
            assert again.kind == model.kind
            np.testing.assert_allclose(again.logits(vectors[120:]), model.logits(vectors[120:]), rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(
                ModelStack.build([again]).logits(vectors[120:])[:, 0], model.logits(vectors[120:]), rtol=1e-4, atol=1e-4
            )


def test_scorer_keeps_the_model_order_on_the_cosine_scale(labeled_slice) -> None:
    papers, vectors, _ = labeled_slice
    cv = [i for i in range(120) if papers[i].primary == "cs.CV"][:6]
    seeds = {papers[i].id: (papers[i].title, vectors[i]) for i in cv}
    profile = build_profile(Subscription(name="cv", seed_papers=list(seeds)), EMPTY, seeds, EMPTY, EMPTY, vectors[:120])
    semantic = Scorer([profile]).semantic(vectors[120:])
    logits = profile.model.logits(vectors[120:])  # type: ignore[union-attr]
    order = np.argsort(logits)
    assert np.all(np.diff(semantic[order, 0]) >= -1e-6), "calibration is monotone: ranking is the model's"
    assert len(np.unique(semantic[:, 0])) == len(np.unique(np.round(logits, 6))), "no ties made at the top"
    assert semantic.max() > profile.background_cos.min()  # type: ignore[union-attr]


def test_ratings_blend_with_seeds_and_move_the_ranking(labeled_slice) -> None:
    """cs.CL seeds; the user likes vision papers and dislikes language ones: vision papers climb."""
    papers, vectors, _ = labeled_slice
    background, new = vectors[:120], vectors[120:]
    cl = np.array([i for i in range(120) if papers[i].primary == "cs.CL"])
    cv = np.array([i for i in range(120) if papers[i].primary == "cs.CV"])
    ranker = SeedRanker(background=background)
    seeds_only = ranker.fit_feedback(background[cl[:8]], EMPTY, EMPTY)
    rated = ranker.fit_feedback(background[cl[:8]], background[cv[:6]], background[cl[8:14]], warm=seeds_only)
    assert rated.kind == "blend" and rated.coefs[0] > 0 and rated.coefs[1] > 0  # type: ignore[union-attr]
    is_cv = np.array([p.primary == "cs.CV" for p in papers[120:]])

    def mean_cv_rank(model) -> float:  # noqa: ANN001
        return float(np.argsort(np.argsort(-model.logits(new)))[is_cv].mean())

    assert mean_cv_rank(rated) < mean_cv_rank(seeds_only) - 5
    again = model_from_dict(json.loads(json.dumps(rated.to_dict())))
    np.testing.assert_allclose(again.logits(new), rated.logits(new), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        ModelStack.build([rated, seeds_only]).logits(new)[:, 0], rated.logits(new), rtol=1e-4, atol=1e-4
    )


class CountingRanker(SeedRanker):
    """A real ranker that counts how often the seed model (leave-one-out choice included) is fitted."""

    seed_fits = 0

    def fit(self, positives, negatives=None, warm=None):  # noqa: ANN001, ANN201
        self.seed_fits += 1
        return super().fit(positives, negatives, warm)


def test_ratings_reuse_the_stored_seed_model_until_the_background_changes(labeled_slice) -> None:
    """Three ratings in a row, the model stored as JSON between them: the seed model is fitted once, and the
    result equals a fit from scratch; a new background (the next listing) fits it again."""
    papers, vectors, _ = labeled_slice
    background, new = vectors[:120], vectors[120:]
    cl = np.array([i for i in range(120) if papers[i].primary == "cs.CL"])
    cv = np.array([i for i in range(120) if papers[i].primary == "cs.CV"])
    seeds = background[cl[:8]]
    ranker = CountingRanker(background=background)
    stored = None
    for n in range(1, 4):
        model = ranker.fit_feedback(seeds, background[cv[:n]], background[cl[8 : 8 + n]], warm=stored)
        stored = model_from_dict(json.loads(json.dumps(model.to_dict())))
    assert ranker.seed_fits == 1
    fresh = SeedRanker(background=background).fit_feedback(seeds, background[cv[:3]], background[cl[8:11]])
    kept, refitted = stored.parts[0], fresh.parts[0]  # type: ignore[union-attr]
    assert kept.fingerprint == refitted.fingerprint and kept.kind == refitted.kind
    np.testing.assert_allclose(kept.logits(new), refitted.logits(new), rtol=1e-5, atol=1e-5)
    # the feedback part differs only by its warm start (a few L-BFGS steps from the last one)
    np.testing.assert_allclose(stored.logits(new), fresh.logits(new), atol=0.02)
    next_listing = CountingRanker(background=vectors[40:160])
    next_listing.fit_feedback(seeds, background[cv[:4]], background[cl[8:12]], warm=stored)
    assert next_listing.seed_fits == 1

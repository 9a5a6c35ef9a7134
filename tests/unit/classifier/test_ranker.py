"""The seed ranker on real papers: leave-one-out model choice, stored models, the scorer keeping its order."""

from __future__ import annotations

import json

import numpy as np

from services.classifier.learner import LinearModel, model_from_dict
from services.classifier.profiles import build_profile
from services.classifier.ranker import SeedRanker
from services.classifier.scoring import Scorer, _model_logits
from shared.subscription import Subscription

EMPTY = np.zeros((0, 384), np.float32)


def test_choice_follows_leave_one_out_and_ranks_the_topic_first(labeled_slice) -> None:
    papers, vectors, _ = labeled_slice
    background, new = vectors[:120], vectors[120:]
    cl = np.array([i for i in range(120) if papers[i].primary == "cs.CL"][:8])
    ranker = SeedRanker(background=background)
    model = ranker.fit(background[cl])
    linear = ranker.fit_linear(background[cl], EMPTY)
    centroid_auc = ranker.loo_auc(background[cl], EMPTY, "centroid", model)
    linear_auc = ranker.loo_auc(background[cl], EMPTY, "linear", linear)
    assert model.kind == ("linear" if linear_auc >= centroid_auc else "centroid")
    assert 0.5 < model.loo_auc <= 1.0
    is_cl = np.array([p.primary == "cs.CL" for p in papers[120:]])
    top = np.argsort(-model.logits(new))[:10]
    assert is_cl[top].mean() >= is_cl.mean() + 0.3, "cs.CL seeds: language papers on top (17% of new)"


def test_stored_models_score_the_same(labeled_slice) -> None:
    _, vectors, _ = labeled_slice
    for kind_seeds in (np.arange(0, 120, 12), np.arange(3, 6)):
        model = SeedRanker(background=vectors[:120]).fit(vectors[kind_seeds])
        again = LinearModel.from_dict(model.to_dict())
        assert again.kind == model.kind
        np.testing.assert_allclose(again.logits(vectors[120:]), model.logits(vectors[120:]), rtol=1e-5, atol=1e-6)


def test_scorer_keeps_the_model_order_on_the_cosine_scale(labeled_slice) -> None:
    papers, vectors, _ = labeled_slice
    cv = [i for i in range(120) if papers[i].primary == "cs.CV"][:6]
    seeds = {papers[i].id: (papers[i].title, vectors[i]) for i in cv}
    profile = build_profile(Subscription(name="cv", seed_papers=list(seeds)), EMPTY, seeds, EMPTY, EMPTY, vectors[:120])
    _, semantic = Scorer([profile])._chunk_semantic(vectors[120:], [profile])
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
    np.testing.assert_allclose(_model_logits(new, [rated, seeds_only])[:, 0], rated.logits(new), rtol=1e-4, atol=1e-4)

"""Scoring, reasons, thresholds and feedback on real papers with the real model."""

from __future__ import annotations

from collections import Counter

import numpy as np

from services.classifier.embedding import embed_cached
from services.classifier.profiles import build_profile
from services.classifier.scoring import Scorer
from shared.subscription import Subscription
from tests.unit.classifier.conftest import to_paper

EMPTY = np.zeros((0, 384), np.float32)


def test_interest_matches_language_papers_not_vision(labeled_slice) -> None:
    papers, vectors, cache = labeled_slice
    sub = Subscription(name="llm", interests=["large language models for text"])
    profile = build_profile(sub, embed_cached(sub.interests, cache), {}, EMPTY, EMPTY, vectors[:120])
    matches = Scorer([profile]).score([to_paper(p) for p in papers[120:]], vectors[120:])
    by_id = {p.id: p for p in papers}
    prims = Counter(by_id[m.paper_id].primary for m in matches)
    assert matches, "on-topic papers must match at the default threshold"
    assert prims["cs.CL"] / len(matches) >= 0.6
    assert prims["cs.CV"] <= 1
    assert all(m.reasons[0].startswith('closest to your interest "large language models for text"') for m in matches)


def test_keyword_author_and_category_reasons(labeled_slice) -> None:
    papers, vectors, _ = labeled_slice
    # 2503.16511 "Token-Level Uncertainty-Aware Objective for Language Model Post-Training", Liu, Benjamin, Zador
    i = next(i for i, p in enumerate(papers) if p.id == "2503.16511")
    target = papers[i]
    sub = Subscription(
        name="kw", keywords=['"self-distillation" -diffusion'], authors=["Zador, Anthony M."], categories=["cs.CL"]
    )
    profile = build_profile(sub, EMPTY, {}, EMPTY, EMPTY, EMPTY)
    matches = Scorer([profile]).score([to_paper(target)], vectors[i : i + 1])
    assert len(matches) == 1
    reasons = matches[0].reasons
    assert "by Zador, Anthony M., an author you follow" in reasons
    assert any("self distillation" in r and "matched your query" in r for r in reasons)
    assert "primary category cs.CL" in reasons


def test_exclude_category_filters_but_followed_author_always_matches(labeled_slice) -> None:
    papers, vectors, _ = labeled_slice
    i = next(i for i, p in enumerate(papers) if p.id == "2503.16511")
    target = papers[i]
    excluded = Subscription(name="x", keywords=["distillation"], exclude_categories=["cs.CL"])
    followed = excluded.model_copy(update={"authors": ["Anthony M. Zador"]})
    for sub, expected in ((excluded, 0), (followed, 1)):
        profile = build_profile(sub, EMPTY, {}, EMPTY, EMPTY, EMPTY)
        assert len(Scorer([profile]).score([to_paper(target)], vectors[i : i + 1])) == expected


def test_seed_reason_names_closest_seed(labeled_slice) -> None:
    papers, vectors, _ = labeled_slice
    cl = [i for i, p in enumerate(papers[:120]) if p.primary == "cs.CL"][:5]
    seeds = {papers[i].id: (papers[i].title, vectors[i]) for i in cl}
    sub = Subscription(name="s", seed_papers=list(seeds))
    profile = build_profile(sub, EMPTY, seeds, EMPTY, EMPTY, vectors[:120])
    matches = Scorer([profile]).score([to_paper(p) for p in papers[120:]], vectors[120:])
    assert matches
    assert all("seed paper" in m.reasons[0] and "(similarity " in m.reasons[0] for m in matches)


def test_feedback_moves_ranking_in_expected_direction(labeled_slice) -> None:
    """Liking vision papers and disliking language papers raises vision papers for a language subscription."""
    papers, vectors, cache = labeled_slice
    new = np.arange(120, len(papers))
    sub = Subscription(name="llm", interests=["large language models for text"], threshold=-1.0)
    iv = embed_cached(sub.interests, cache)
    cv = np.array([i for i in range(120) if papers[i].primary == "cs.CV"][:6])
    cl = np.array([i for i in range(120) if papers[i].primary == "cs.CL"][:6])
    before = build_profile(sub, iv, {}, EMPTY, EMPTY, vectors[:120])
    after = build_profile(sub, iv, {}, vectors[cv], vectors[cl], vectors[:120], warm=before.model)
    is_cv = np.array([papers[i].primary == "cs.CV" for i in new])

    def mean_cv_rank(profile) -> float:
        scores = {
            m.paper_id: m.score for m in Scorer([profile]).score([to_paper(papers[i]) for i in new], vectors[new])
        }
        s = np.array([scores[papers[i].id] for i in new])
        ranks = np.argsort(np.argsort(-s))
        return float(ranks[is_cv].mean())

    assert mean_cv_rank(after) < mean_cv_rank(before) - 5
    assert after.n_ratings == 12 and before.n_ratings == 0
    assert after.model is not None and after.model.n_neg == 6

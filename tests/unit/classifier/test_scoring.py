"""Scoring, reasons, thresholds and feedback on real papers with the real model."""

from __future__ import annotations

from collections import Counter

import numpy as np

from services.classifier.embedding import embed_cached
from services.classifier.profiles import build_profile
from services.classifier.scoring import Calibration, Scorer, knots
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


def test_calibration_of_all_rows_at_once_equals_interpolating_each_row() -> None:
    """Both ways of mapping (a batch row by row, a lone paper over all rows at once) are np.interp per
    subscription, extended along the overall slope beyond the ends; padded rows and repeated logits included."""
    rng = np.random.default_rng(7)
    xs = [np.sort(rng.normal(size=n)).astype(np.float32) for n in (129, 40, 129, 2)]
    xs[2][60:70] = xs[2][60]  # a run of equal logits
    ys = [np.sort(rng.uniform(0.0, 0.6, size=len(x))).astype(np.float32) for x in xs]
    logits = rng.normal(scale=2.0, size=(50, len(xs))).astype(np.float32)  # many beyond the ends
    logits[0] = [x[5 % len(x)] for x in xs]  # exactly on knots
    calibration = Calibration.build(xs, ys)
    batch = calibration(logits)  # row by row (a big batch)
    lone = np.concatenate([calibration(logits[i : i + 1]) for i in range(len(logits))])  # all rows searched at once
    for j, (x, y) in enumerate(zip(xs, ys, strict=True)):
        slope = max(float(y[-1] - y[0]) / max(float(x[-1] - x[0]), 1e-9), 1e-6)
        col = logits[:, j].astype(np.float64)
        want = np.interp(col, x, y) + slope * (np.maximum(col - x[-1], 0) + np.minimum(col - x[0], 0))
        np.testing.assert_allclose(batch[:, j], want, atol=1e-5)
        np.testing.assert_allclose(lone[:, j], want, atol=1e-5)


def test_knots_keep_the_ends_and_the_shape_of_a_background_map() -> None:
    rng = np.random.default_rng(3)
    logits, cos = np.sort(rng.normal(size=2000)), np.sort(rng.uniform(0, 0.5, size=2000))
    kx, ky = knots(logits), knots(cos)
    assert len(kx) == 129 and kx[0] == logits[0] and kx[-1] == logits[-1]
    probe = rng.normal(size=(300, 1))
    full, kept = Calibration.build([logits], [cos])(probe), Calibration.build([kx], [ky])(probe)
    assert np.abs(full - kept).max() < 0.01  # on a cosine scale of 0-0.5
    assert np.array_equal(np.argsort(full[:, 0], kind="stable"), np.argsort(kept[:, 0], kind="stable"))


def test_a_compiled_scorer_gives_the_same_matches_in_any_chunks_and_on_reuse(labeled_slice) -> None:
    papers, vectors, cache = labeled_slice
    subs = [
        Subscription(name="llm", interests=["large language models for text"]),
        Subscription(name="kw", keywords=['"language model"'], categories=["cs.CL"]),
        Subscription(name="seeds", seed_papers=[papers[i].id for i in range(3)]),
        Subscription(name="vision", interests=["image segmentation"], threshold=0.3),
    ]
    seeds = {papers[i].id: (papers[i].title, vectors[i]) for i in range(3)}
    profiles = [
        build_profile(
            sub, embed_cached(sub.interests, cache), seeds if sub.seed_papers else {}, EMPTY, EMPTY, vectors[:120]
        )
        for sub in subs
    ]
    new = [to_paper(p) for p in papers[120:]]

    def key(matches) -> list:  # noqa: ANN001
        return sorted((m.subscription_id, m.paper_id, m.score, tuple(m.reasons)) for m in matches)

    whole = Scorer(profiles)
    first = key(whole.score(new, vectors[120:]))
    assert len({m[0] for m in first}) == len(subs), "every subscription matches something"
    assert key(whole.score(new, vectors[120:])) == first
    assert key(Scorer(profiles, chunk=3).score(new, vectors[120:])) == first
    one_by_one = [m for i, paper in enumerate(new) for m in whole.score([paper], vectors[120 + i : 121 + i])]
    assert key(one_by_one) == first
    changed = build_profile(
        Subscription(id=subs[3].id, name="vision", interests=["robot navigation"], threshold=0.3),
        embed_cached(["robot navigation"], cache),
        {},
        EMPTY,
        EMPTY,
        vectors[:120],
    )
    small = Scorer(profiles, chunk=3).compile()
    small.put(changed)  # the fourth profile, alone in the second chunk
    fresh = key(Scorer([*profiles[:3], changed]).score(new, vectors[120:]))
    assert key(small.score(new, vectors[120:])) == fresh != first
    # A removed subscription's place goes to the last one; a new one is appended. Each recompiles its chunks only.
    small.remove(subs[0].id)
    assert small.ids == [subs[3].id, subs[1].id, subs[2].id]
    assert key(small.score(new, vectors[120:])) == key(Scorer([changed, *profiles[1:3]]).score(new, vectors[120:]))
    small.put(profiles[0])
    assert key(small.score(new, vectors[120:])) == fresh
    # The keyword terms are counted per profile, so a change never walks every profile and none is left stale.
    assert set(small._terms) == set(Scorer([*profiles[:3], changed])._terms) != set()
    small.remove(subs[1].id)
    assert set(small._terms) == set()
    for sub in subs:
        small.remove(sub.id)
    assert small.score(new, vectors[120:]) == [] and small.semantic(vectors[120:]).shape == (len(new), 0)


def test_trending_subscriptions_get_their_windows_top_n_with_ranks(labeled_slice) -> None:
    """Each trending subscription reads its own window's ranks and keeps its own top-N, in the same pass."""
    papers, vectors, _ = labeled_slice
    subs = [
        Subscription(id="day", name="day", trending={"window": "day", "top": 2}),
        Subscription(id="week", name="week", trending={"window": "week", "top": 3}),
    ]
    profiles = [build_profile(sub, EMPTY, {}, EMPTY, EMPTY, vectors[:120]) for sub in subs]
    new = [to_paper(p) for p in papers[120:125]]
    trending = {"day": np.array([1, 2, 3, 0, 0]), "week": np.array([0, 3, 1, 2, 4])}
    for scorer in (Scorer(profiles), Scorer(profiles, chunk=1)):
        matches = scorer.score(new, vectors[120:125], trending=trending)
        got = sorted((m.subscription_id, m.paper_id, m.trending_rank) for m in matches)
        assert got == sorted(
            [("day", new[0].id, 1), ("day", new[1].id, 2)]
            + [("week", new[1].id, 3), ("week", new[2].id, 1), ("week", new[3].id, 2)]
        )
        assert all(m.reasons[0].startswith(f"#{m.trending_rank} trending") for m in matches)

"""`paperwire eval relevance`: the "category as interest" protocol, paperwire against known recipes.

The last ``eval_days`` days are new papers, earlier days are history (``folds="last"``); or, with
``folds="rotate"``, each day in turn is the new day and every other day is history, and the
per-category results of all folds are averaged (a category of another fold counts separately).
For each primary category with at least ``k`` history papers and some new ones, a simulated
subscriber gives ``k`` random history papers of that category as seeds; every new paper is ranked;
relevant = same primary category.
Metrics are macro-averaged: per category over draws, then over categories.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from services.classifier.dataset import LabeledPaper, load_dataset
from services.classifier.embedding import embed_cached
from services.classifier.learner import Model
from services.classifier.metrics import ndcg_at_k, precision_at_k, top_k
from services.classifier.profiles import build_profile
from services.classifier.scoring import Scorer
from shared.subscription import Subscription

METHODS = ("random", "tfidf_svm", "embedding_centroid", "embedding_logreg", "paperwire")
METHOD_LABELS = {
    "random": "random",
    "tfidf_svm": "tf-idf + LinearSVC (arxiv-sanity-lite)",
    "embedding_centroid": "embedding centroid cosine (zotero-arxiv-daily)",
    "embedding_logreg": "embedding logistic regression (Scholar Inbox)",
    "paperwire": "paperwire",
}


@dataclass
class Split:
    history: list[LabeledPaper]
    new: list[LabeledPaper]
    x_history: np.ndarray
    x_new: np.ndarray
    texts_history: list[str]
    texts_new: list[str]
    tfidf_history: object = None
    tfidf_new: object = None

    def primaries(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([p.primary for p in self.history]), np.array([p.primary for p in self.new])


@dataclass
class EvalResult:
    k: int
    draws: int
    eval_days: int
    folds: str
    n_history: int
    n_new: int
    categories: list[str]
    methods: dict[str, dict[str, float]]
    feedback_rounds: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        best_baseline = max(
            (m for m in self.methods if m not in ("paperwire", "random")), key=lambda m: self.methods[m]["ndcg@10"]
        )
        out: dict[str, object] = {m: v for m, v in self.methods.items()}
        out["feedback_rounds"] = self.feedback_rounds
        out["setup"] = {
            "k": self.k,
            "draws": self.draws,
            "eval_days": self.eval_days,
            "folds": self.folds,
            "history_papers": self.n_history,
            "new_papers": self.n_new,
            "categories": len(self.categories),
            "best_baseline": best_baseline,
            "margin_over_best_baseline": round(
                self.methods["paperwire"]["ndcg@10"] - self.methods[best_baseline]["ndcg@10"], 4
            ),
        }
        return out


def split_by_days(papers: list[LabeledPaper], eval_days: int) -> tuple[list[LabeledPaper], list[LabeledPaper]]:
    days = sorted({p.day for p in papers})
    if len(days) <= eval_days:
        raise ValueError(f"the data set has {len(days)} day(s); need more than --eval-days {eval_days}")
    cut = days[-eval_days]
    return [p for p in papers if p.day < cut], [p for p in papers if p.day >= cut]


def rotating_splits(papers: list[LabeledPaper]) -> list[tuple[list[LabeledPaper], list[LabeledPaper]]]:
    """Each day in turn is the new day; all other days (earlier and later) are its history."""
    days = sorted({p.day for p in papers})
    if len(days) < 2:
        raise ValueError(f"the data set has {len(days)} day(s); rotating folds need at least 2")
    return [([p for p in papers if p.day != d], [p for p in papers if p.day == d]) for d in days]


def build_split(
    papers: list[LabeledPaper],
    eval_days: int,
    cache: Path | None,
    parts: tuple[list[LabeledPaper], list[LabeledPaper]] | None = None,
) -> Split:
    history, new = parts if parts is not None else split_by_days(papers, eval_days)
    texts_h, texts_n = [p.text for p in history], [p.text for p in new]
    vectors = embed_cached(texts_h + texts_n, cache)
    return Split(history, new, vectors[: len(history)], vectors[len(history) :], texts_h, texts_n)


def _tfidf(split: Split) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    # arxiv-sanity-lite's settings, fitted on every text of the run (it is unsupervised).
    vec = TfidfVectorizer(
        input="content",
        encoding="utf-8",
        decode_error="replace",
        strip_accents="unicode",
        lowercase=True,
        analyzer="word",
        stop_words="english",
        token_pattern=r"(?u)\b[a-zA-Z_][a-zA-Z0-9_]+\b",
        ngram_range=(1, 2),
        max_features=20_000,
        norm="l2",
        use_idf=True,
        smooth_idf=True,
        sublinear_tf=True,
        max_df=0.1,
        min_df=1,
    )
    matrix = vec.fit_transform(split.texts_history + split.texts_new)
    split.tfidf_history = matrix[: len(split.history)]
    split.tfidf_new = matrix[len(split.history) :]


def _labels(n: int, seeds: np.ndarray) -> np.ndarray:
    y = np.zeros(n, dtype=np.int64)
    y[seeds] = 1
    return y


def baseline_scores(method: str, split: Split, seeds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n_new = len(split.new)
    if method == "random":
        return rng.random(n_new)
    if method == "embedding_centroid":
        centroid = split.x_history[seeds].mean(axis=0)
        return split.x_new @ (centroid / max(float(np.linalg.norm(centroid)), 1e-12))
    y = _labels(len(split.history), seeds)
    if method == "tfidf_svm":
        from sklearn.svm import LinearSVC

        clf = LinearSVC(class_weight="balanced", verbose=False, max_iter=1_000_000, tol=1e-6, C=0.01)
        clf.fit(split.tfidf_history, y)
        return clf.decision_function(split.tfidf_new)
    if method == "embedding_logreg":
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(class_weight="balanced", max_iter=2000)
        clf.fit(split.x_history, y)
        return clf.decision_function(split.x_new)
    raise ValueError(f"unknown method {method!r}")


_EVAL_SUB = Subscription(id="eval", name="simulated subscriber", seed_papers=["0704.0001"])


@dataclass
class ProductionRanker:
    """The service's own scoring path (profile building, model, semantic blend), on matrices."""

    background: np.ndarray

    def scores(self, candidates: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        return self.scores_with_feedback(candidates, seeds, seeds[:0], seeds[:0])[0]

    def scores_with_feedback(
        self,
        candidates: np.ndarray,
        seeds: np.ndarray,
        liked: np.ndarray,
        disliked: np.ndarray,
        state: Model | None = None,
    ) -> tuple[np.ndarray, Model | None]:
        seed_map = {f"s{i}": ("", v) for i, v in enumerate(seeds)}
        profile = build_profile(_EVAL_SUB, seeds[:0], seed_map, liked, disliked, self.background, warm=state)
        return Scorer([profile]).semantic(candidates)[:, 0], profile.model


def evaluate(
    dataset: Path | list[LabeledPaper],
    *,
    k: int = 10,
    draws: int = 5,
    eval_days: int = 2,
    folds: str = "last",
    seed: int = 0,
    feedback_rounds: int = 3,
    cache: Path | None = Path("data/cache/embeddings.sqlite"),
    progress: Callable[[str], None] | None = None,
) -> EvalResult:
    papers = load_dataset(dataset) if isinstance(dataset, Path) else dataset
    if folds not in ("last", "rotate"):
        raise ValueError(f"--folds must be 'last' or 'rotate', not {folds!r}")
    if folds == "rotate":
        parts_list: list[tuple[list[LabeledPaper], list[LabeledPaper]] | None] = list(rotating_splits(papers))
        embed_cached([p.text for p in papers], cache)  # embed every paper once, then folds hit the cache
    else:
        parts_list = [None]
    rng = np.random.default_rng(seed)
    per_cat: dict[str, dict[str, list[tuple[float, float]]]] = {m: {} for m in METHODS}
    rounds: dict[int, dict[str, list[tuple[float, float]]]] = {r: {} for r in range(feedback_rounds + 1)}
    categories: list[str] = []
    n_history = n_new = 0
    for fold_no, parts in enumerate(parts_list):
        split = build_split(papers, eval_days, cache, parts)
        n_history += len(split.history)
        n_new += len(split.new)
        _tfidf(split)
        prim_h, prim_n = split.primaries()
        fold_cats = sorted(c for c in set(prim_h) if (prim_h == c).sum() >= k and (prim_n == c).any())
        prefix = f"{split.new[0].day}/" if folds == "rotate" else ""
        ranker = ProductionRanker(background=split.x_history)
        for category in fold_cats:
            key = prefix + category
            categories.append(key)
            if progress:
                progress(f"[fold {fold_no + 1}/{len(parts_list)}] {category}")
            relevant = prim_n == category
            pool = np.flatnonzero(prim_h == category)
            for _ in range(draws):
                seeds = rng.choice(pool, size=k, replace=False)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for method in METHODS:
                        if method == "paperwire":
                            scores = ranker.scores(split.x_new, split.x_history[seeds])
                        else:
                            scores = baseline_scores(method, split, seeds, rng)
                        per_cat[method].setdefault(key, []).append(
                            (ndcg_at_k(scores, relevant, 10), precision_at_k(scores, relevant, 10))
                        )
                if feedback_rounds:
                    _feedback_run(ranker, split, seeds, relevant, feedback_rounds, key, rounds)
    if not categories:
        raise ValueError(f"no primary category has >= {k} history papers and some new ones")
    methods = {
        m: {
            "ndcg@10": round(float(np.mean([np.mean([a for a, _ in v]) for v in per_cat[m].values()])), 4),
            "p@10": round(float(np.mean([np.mean([b for _, b in v]) for v in per_cat[m].values()])), 4),
        }
        for m in METHODS
    }
    round_rows: list[dict[str, float]] = []
    for r in range(feedback_rounds + 1):
        per = rounds[r].values()
        value = float(np.mean([np.mean([a for a, _ in v]) for v in per])) if rounds[r] else 0.0
        control = float(np.mean([np.mean([b for _, b in v]) for v in per])) if rounds[r] else 0.0
        row = {"round": r, "ndcg@10": round(value, 4), "seeds_only_ndcg@10": round(control, 4)}
        row["gain"] = round(value - control, 4)
        row["gain_over_previous"] = round(row["gain"] - (round_rows[-1]["gain"] if round_rows else 0.0), 4)
        row["runs"] = sum(len(v) for v in per)
        round_rows.append(row)
    n_folds = len(parts_list)
    return EvalResult(
        k, draws, eval_days, folds, n_history // n_folds, n_new // n_folds, categories, methods, round_rows
    )


def _feedback_run(
    ranker: ProductionRanker,
    split: Split,
    seeds: np.ndarray,
    relevant: np.ndarray,
    n_rounds: int,
    category: str,
    rounds: dict[int, dict[str, list[tuple[float, float]]]],
) -> None:
    """Rank, let the simulated user rate the top 10 unrated papers, retrain, rank the unrated rest again.

    Rated papers leave the candidate list, so every round is scored on papers the user has not seen:
    a gain is a better ranking of new papers, not the liked ones floating back to the top. Each round
    also records the seeds-only model on the same candidates (the control): removing the best papers
    makes later rounds harder for any ranker, so the gain of feedback is the difference between the two.
    A run counts only if relevant papers are left in every round (the same runs in every round).
    """
    rated = np.zeros(len(split.new), dtype=bool)
    liked: list[int] = []
    disliked: list[int] = []
    state = None
    control_all = ranker.scores(split.x_new, split.x_history[seeds])
    rows: list[tuple[float, float]] = []
    for _ in range(n_rounds + 1):
        candidates = np.flatnonzero(~rated)
        if not relevant[candidates].any():
            return
        scores, state = ranker.scores_with_feedback(
            split.x_new[candidates], split.x_history[seeds], split.x_new[liked], split.x_new[disliked], state
        )
        rows.append(
            (ndcg_at_k(scores, relevant[candidates], 10), ndcg_at_k(control_all[candidates], relevant[candidates], 10))
        )
        shown = candidates[top_k(scores, 10)]
        rated[shown] = True
        liked += [int(i) for i in shown if relevant[i]]
        disliked += [int(i) for i in shown if not relevant[i]]
    for r, row in enumerate(rows):
        rounds[r].setdefault(category, []).append(row)


def format_table(result: EvalResult) -> str:
    data = result.to_dict()
    setup = data["setup"]
    lines = [
        (
            f"rotating folds (each day new once): history {result.n_history}, new {result.n_new} papers per fold, "
            if result.folds == "rotate"
            else f"history {result.n_history} papers, new {result.n_new} papers (last {result.eval_days} day(s)), "
        )
        + f"{len(result.categories)} categories, k={result.k} seeds, {result.draws} draws",
        "",
        f"{'method':50s} {'nDCG@10':>8s} {'P@10':>8s}",
    ]
    for m in METHODS:
        v = result.methods[m]
        lines.append(f"{METHOD_LABELS[m]:50s} {v['ndcg@10']:8.4f} {v['p@10']:8.4f}")
    lines.append("")
    lines.append(f"paperwire - best baseline ({setup['best_baseline']}): {setup['margin_over_best_baseline']:+.4f}")  # type: ignore[index]
    if len(result.feedback_rounds) > 1:
        runs = int(result.feedback_rounds[0]["runs"])
        lines += [
            "",
            f"feedback rounds (user rates the top 10 each round; scored on unrated papers; {runs} runs with relevant"
            " papers left in every round; gain = with feedback - seeds-only model on the same papers)",
        ]
        for row in result.feedback_rounds:
            lines.append(
                f"  round {row['round']}: nDCG@10 {row['ndcg@10']:.4f}  seeds only {row['seeds_only_ndcg@10']:.4f}"
                f"  gain {row['gain']:+.4f}  (vs previous round {row['gain_over_previous']:+.4f})"
            )
    return "\n".join(lines)

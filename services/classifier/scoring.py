"""Scoring every paper against every active subscription as matrix work, with reasons in plain words.

Cost: the semantic part is one (papers x d) @ (d x profile vectors) product plus one
(papers x d) @ (d x subscriptions) product for the per-subscription models, so time grows as
papers x (subscriptions x vectors per subscription) x d, done in chunks of subscriptions to bound
memory. Keyword queries are evaluated once per distinct term over the paper batch and combined per
query with numpy; categories and authors are sparse incidence products. No Python loop runs per
(paper, subscription) pair except to write the reasons of the pairs that matched.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from services.classifier.learner import BlendModel, LinearModel, Model
from shared.paper import Paper
from shared.query import Node, Term, normalize_text, parse_query
from shared.subscription import Subscription
from shared.taxonomy import category_matches

KEYWORD_BONUS = 0.15
AUTHOR_SCORE = 1.0
# The model already blends seeds and ratings (one fit, ratings weighing more as they accumulate, see
# ranker.py), so it ranks alone; the closest-positive cosine only sets the scale thresholds live on.
MODEL_WEIGHT = 1.0
MIN_RATINGS = 6  # ratings (with both likes and dislikes) before reasons credit "your ratings"
FEEDBACK_WEIGHT = 1.0


def normalize_author(name: str) -> str:
    """'Del Maestro, Adrian' and 'Adrian Del Maestro' -> 'adrian del maestro'; accents dropped."""
    if "," in name:
        last, _, first = name.partition(",")
        name = f"{first} {last}"
    text = unicodedata.normalize("NFKD", name)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    return " ".join("".join(ch if ch.isalnum() else " " for ch in text).split())


@dataclass
class Profile:
    """What the scorer needs of one subscription; built by the service from stored vectors."""

    subscription: Subscription
    vectors: np.ndarray  # positives: interest texts, seed papers, liked papers (rows L2-normalised)
    labels: list[str]  # plain words per positive row, e.g. 'seed paper 2401.01234 "Title"'
    model: Model | None = None
    background_logits: np.ndarray | None = None  # sorted model logits of the background sample
    background_cos: np.ndarray | None = None  # sorted closest-positive cosines of the background sample
    n_ratings: int = 0
    queries: list[Node] = field(default_factory=list)
    query_texts: list[str] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        subscription: Subscription,
        vectors: np.ndarray,
        labels: list[str],
        model: Model | None = None,
        background_logits: np.ndarray | None = None,
        n_ratings: int = 0,
        background: np.ndarray | None = None,
    ) -> Profile:
        vectors = np.asarray(vectors, np.float32).reshape(-1, vectors.shape[-1] if vectors.size else 384)
        bg_cos = None
        if background is not None and len(background) and len(vectors):
            bg_cos = np.sort((background @ vectors.T).max(axis=1))
        return cls(
            subscription,
            vectors,
            labels,
            model,
            None if background_logits is None else np.sort(background_logits),
            bg_cos,
            n_ratings,
            [parse_query(q) for q in subscription.keywords],
            list(subscription.keywords),
        )

    def model_weight(self) -> float:
        if self.model is None or self.background_logits is None or self.background_cos is None:
            return 0.0
        if self.n_ratings >= MIN_RATINGS:
            return FEEDBACK_WEIGHT
        return MODEL_WEIGHT + (FEEDBACK_WEIGHT - MODEL_WEIGHT) * self.n_ratings / MIN_RATINGS


@dataclass
class Match:
    subscription_id: str
    paper_id: str
    score: float
    reasons: list[str]
    trending_rank: int | None = None


TrendingRanks = dict[str, np.ndarray]  # "day"/"week" -> (papers,) rank by upvotes, 1 = top, 0 = not listed


def _term_columns(papers: list[Paper], terms: set[Term]) -> dict[Term, np.ndarray]:
    titles = [normalize_text(p.title) for p in papers]
    abstracts = [normalize_text(p.abstract) for p in papers]
    return {
        t: np.fromiter((t.matches(a, b) for a, b in zip(titles, abstracts, strict=True)), bool, len(papers))
        for t in terms
    }


def _model_logits(vectors: np.ndarray, models: list[Model]) -> np.ndarray:
    """(papers x models) logits as matrix products; a blend is a weighted sum of its parts' columns."""
    if not any(isinstance(m, BlendModel) for m in models):
        return _linear_logits(vectors, models)  # type: ignore[arg-type]
    parts: list[LinearModel] = []
    rows, cols, coefs, offsets = [], [], [], np.zeros(len(models), np.float32)
    for j, model in enumerate(models):
        pieces = list(zip(model.coefs, model.parts, strict=True)) if isinstance(model, BlendModel) else [(1.0, model)]
        offsets[j] = model.offset if isinstance(model, BlendModel) else 0.0
        for coef, part in pieces:
            rows.append(len(parts))
            cols.append(j)
            coefs.append(coef)
            parts.append(part)
    combine = sparse.csr_matrix((coefs, (rows, cols)), shape=(len(parts), len(models)), dtype=np.float32)
    return np.asarray((combine.T @ _linear_logits(vectors, parts).T).T) + offsets[None, :]


def _linear_logits(vectors: np.ndarray, models: list[LinearModel]) -> np.ndarray:
    """(papers x models) logits in two matrix products; centred models divide by ``|x - center|``."""
    w = np.stack([m.weights for m in models]).astype(np.float32)
    b = np.array([m.bias for m in models], np.float32)
    logits = vectors @ w.T
    centred = np.array([m.center is not None for m in models])
    if centred.any():
        c = np.stack([m.center for m in models if m.center is not None]).astype(np.float32)
        wc = w[centred]
        sq = (vectors * vectors).sum(axis=1)[:, None] - 2.0 * (vectors @ c.T) + (c * c).sum(axis=1)[None, :]
        logits[:, centred] = (logits[:, centred] - (wc * c).sum(axis=1)[None, :]) / np.sqrt(np.maximum(sq, 1e-24))
    return logits + b[None, :]


def calibrate(logits: np.ndarray, bg_logits: list[np.ndarray], bg_cos: list[np.ndarray]) -> np.ndarray:
    """Put each model's logits on the cosine scale: a monotone map through its background sample.

    Each background paper gives a point (model logit, closest-positive cosine), both sorted; a paper's
    logit is interpolated between its neighbours, and beyond the ends extended along the overall
    slope. Thresholds keep their cosine meaning, and the order is the model's own, ties included.
    One vectorised ``np.interp`` over all papers per subscription (a loop per subscription, not per
    pair: measured faster than one flattened searchsorted + gathers over the whole chunk).
    """
    columns = np.ascontiguousarray(np.asarray(logits, np.float32).T)
    out = np.empty_like(columns)
    for j, (x, y) in enumerate(zip(bg_logits, bg_cos, strict=True)):
        row = columns[j]
        slope = max(float(y[-1] - y[0]) / max(float(x[-1] - x[0]), 1e-9), 1e-6)
        out[j] = np.interp(row, x, y) + slope * (np.maximum(row - x[-1], 0.0) + np.minimum(row - x[0], 0.0))
    return out.T


def trending_matrix(profiles: list[Profile], n: int, trending: TrendingRanks | None) -> np.ndarray:
    """(papers x subs) trending rank where it is within the subscription's top-N, else 0."""
    out = np.zeros((n, len(profiles)), np.int64)
    if not trending:
        return out
    for window in ("day", "week"):
        cols = [
            j for j, p in enumerate(profiles) if p.subscription.trending and p.subscription.trending.window == window
        ]
        ranks = trending.get(window)
        if not cols or ranks is None:
            continue
        top = np.array([profiles[j].subscription.trending.top for j in cols])  # type: ignore[union-attr]
        r = np.asarray(ranks, np.int64)[:, None]
        out[:, cols] = np.where((r > 0) & (r <= top[None, :]), r, 0)
    return out


class Scorer:
    """Compiled profiles: score paper batches against all of them at once."""

    def __init__(self, profiles: list[Profile], dims: int = 384, chunk: int = 4096) -> None:
        self.profiles = profiles
        self.dims = dims
        self.chunk = chunk
        self.ids = [p.subscription.id for p in profiles]

    def _chunk_semantic(self, vectors: np.ndarray, profiles: list[Profile]) -> tuple[np.ndarray, np.ndarray]:
        """(papers x subs) best cosine and best row per pair, and the model-blended semantic score."""
        n = len(vectors)
        counts = np.array([len(p.vectors) for p in profiles])
        max_cos = np.zeros((n, len(profiles)), np.float32)
        has = counts > 0
        if has.any():
            stacked = np.concatenate([p.vectors for p in profiles if len(p.vectors)])
            sims = vectors @ stacked.T
            starts = np.concatenate([[0], np.cumsum(counts[has])[:-1]])
            max_cos[:, has] = np.maximum.reduceat(sims, starts, axis=1)
        weights = np.array([p.model_weight() for p in profiles], np.float32)
        semantic = max_cos.copy()
        with_model = np.flatnonzero(weights > 0)
        if len(with_model):
            logits = _model_logits(vectors, [profiles[i].model for i in with_model])  # type: ignore[misc]
            mapped = calibrate(
                logits,
                [profiles[i].background_logits for i in with_model],  # type: ignore[misc]
                [profiles[i].background_cos for i in with_model],  # type: ignore[misc]
            )
            w = weights[with_model][None, :]
            semantic[:, with_model] = (1.0 - w) * max_cos[:, with_model] + w * mapped
        return max_cos, semantic

    def score(
        self,
        papers: list[Paper],
        vectors: np.ndarray,
        *,
        with_reasons: bool = True,
        trending: TrendingRanks | None = None,
    ) -> list[Match]:
        """Matches of every (paper, subscription) pair that passes; ``trending`` gives the papers' ranks."""
        vectors = np.asarray(vectors, np.float32).reshape(len(papers), -1)
        terms = {t for p in self.profiles for q in p.queries for t in q.terms()}
        columns = _term_columns(papers, terms)
        authors = [{normalize_author(a.name) for a in p.authors} for p in papers]
        matches: list[Match] = []
        for start in range(0, len(self.profiles), self.chunk):
            part = self.profiles[start : start + self.chunk]
            max_cos, semantic = self._chunk_semantic(vectors, part)
            matches += self._decide(papers, vectors, part, semantic, columns, authors, with_reasons, trending)
        return matches

    def _decide(
        self,
        papers: list[Paper],
        vectors: np.ndarray,
        profiles: list[Profile],
        semantic: np.ndarray,
        columns: dict[Term, np.ndarray],
        authors: list[set[str]],
        with_reasons: bool,
        trending: TrendingRanks | None = None,
    ) -> list[Match]:
        n, s = semantic.shape
        kw = np.zeros((n, s), bool)
        for j, prof in enumerate(profiles):
            for query in prof.queries:
                kw[:, j] |= query.evaluate(columns)
        # Followed authors: sparse (papers x names) @ (names x subs).
        names = sorted({normalize_author(a) for p in profiles for a in p.subscription.authors})
        author_hit = np.zeros((n, s), bool)
        if names:
            col = {name: i for i, name in enumerate(names)}
            rows_p = [(i, col[a]) for i, paper_authors in enumerate(authors) for a in paper_authors if a in col]
            pa = sparse.csr_matrix(
                (np.ones(len(rows_p)), ([r for r, _ in rows_p], [c for _, c in rows_p])), shape=(n, len(names))
            )
            rows_s = [(col[normalize_author(a)], j) for j, p in enumerate(profiles) for a in p.subscription.authors]
            sa = sparse.csr_matrix(
                (np.ones(len(rows_s)), ([r for r, _ in rows_s], [c for _, c in rows_s])), shape=(len(names), s)
            )
            author_hit = (pa @ sa).toarray() > 0
        allowed = self._category_mask(papers, profiles)
        only_keywords = np.array([len(p.vectors) == 0 for p in profiles])
        score = np.where(only_keywords[None, :], 0.0, semantic) + KEYWORD_BONUS * kw
        score = np.where(only_keywords[None, :] & kw, np.maximum(score, 1.0), score)
        threshold = np.array([p.subscription.threshold for p in profiles], np.float32)
        hit = ((score >= threshold[None, :]) | kw) & allowed
        rank = trending_matrix(profiles, n, trending)
        is_trending = np.array([p.subscription.trending is not None for p in profiles])
        if is_trending.any():
            narrow = np.array([bool(p.subscription.trending and p.subscription.trending.narrow) for p in profiles])
            # A trending subscription gets the window's top papers, narrowed (if asked) to its own matches.
            trend_hit = (rank > 0) & allowed & (~narrow[None, :] | hit)
            hit = np.where(is_trending[None, :], trend_hit, hit)
            top = np.array([p.subscription.trending.top if p.subscription.trending else 1 for p in profiles])
            rank_score = 1.0 - (rank - 1) / (2.0 * top[None, :])
            score = np.where(is_trending[None, :] & only_keywords[None, :] & trend_hit, rank_score, score)
        hit |= author_hit
        score = np.where(author_hit, np.maximum(score, AUTHOR_SCORE), score)
        out = []
        for i, j in zip(*np.nonzero(hit), strict=True):
            prof, paper = profiles[j], papers[i]
            trend_rank = int(rank[i, j]) if rank[i, j] > 0 and is_trending[j] else None
            reasons = (
                self._reasons(
                    prof, paper, vectors[i], float(semantic[i, j]), columns, i, bool(author_hit[i, j]), authors[i]
                )
                if with_reasons
                else []
            )
            if with_reasons and trend_rank is not None:
                window = "today" if prof.subscription.trending.window == "day" else "this week"  # type: ignore[union-attr]
                upvotes = paper.hf.upvotes if paper.hf else 0
                reasons = [r for r in reasons if "upvotes on Hugging Face" not in r]
                reasons.insert(0, f"#{trend_rank} trending on Hugging Face Daily Papers {window} ({upvotes} upvotes)")
            out.append(Match(prof.subscription.id, paper.id, round(float(score[i, j]), 4), reasons, trend_rank))
        return out

    @staticmethod
    def _category_mask(papers: list[Paper], profiles: list[Profile]) -> np.ndarray:
        """Include/exclude filters as (papers x category) @ (category x subs) incidence products."""
        wanted = sorted({c for p in profiles for c in [*p.subscription.categories, *p.subscription.exclude_categories]})
        n, s = len(papers), len(profiles)
        if not wanted:
            return np.ones((n, s), bool)
        prim = np.array([[bool(p.categories) and category_matches(w, p.categories[0]) for w in wanted] for p in papers])
        anyc = np.array([[any(category_matches(w, c) for c in p.categories) for w in wanted] for p in papers])
        idx = {c: k for k, c in enumerate(wanted)}
        inc = np.zeros((len(wanted), s), bool)
        exc = np.zeros((len(wanted), s), bool)
        cross = np.array([p.subscription.include_cross_lists for p in profiles])
        for j, p in enumerate(profiles):
            inc[[idx[c] for c in p.subscription.categories], j] = True
            exc[[idx[c] for c in p.subscription.exclude_categories], j] = True
        prim = prim.reshape(n, len(wanted)).astype(np.float32)
        anyc = anyc.reshape(n, len(wanted)).astype(np.float32)
        in_any = (anyc @ inc) > 0
        in_prim = (prim @ inc) > 0
        # A paper whose categories are not known yet (a Hugging Face listing) is not filtered out by an include list.
        unknown = np.array([not p.categories for p in papers])[:, None]
        included = np.where(cross[None, :], in_any, in_prim) | ~inc.any(axis=0)[None, :] | unknown
        excluded = (anyc @ exc) > 0
        return included & ~excluded

    @staticmethod
    def _reasons(
        prof: Profile,
        paper: Paper,
        vector: np.ndarray,
        semantic: float,
        columns: dict[Term, np.ndarray],
        i: int,
        author_hit: bool,
        paper_authors: set[str],
    ) -> list[str]:
        sub = prof.subscription
        reasons: list[str] = []
        if author_hit:
            followed = {normalize_author(a): a for a in sub.authors}
            names = sorted(followed[a] for a in paper_authors if a in followed)
            reasons.append(f"by {', '.join(names)}, an author you follow")
        for text, query in zip(prof.query_texts, prof.queries, strict=True):
            if query.evaluate({t: columns[t][i : i + 1] for t in query.terms()})[0]:
                hits = [t.describe() for t in query.positive_terms() if columns[t][i]]
                reasons.append(f"keywords {', '.join(dict.fromkeys(hits))} matched your query {text!r}")
        if len(prof.vectors):
            sims = prof.vectors @ vector
            best = int(np.argmax(sims))
            reasons.append(f"closest to your {prof.labels[best]} (similarity {sims[best]:.2f})")
            if prof.model_weight() > 0:
                source = "your ratings" if prof.n_ratings >= MIN_RATINGS else "your seeds and interests"
                reasons.append(f"semantic score {semantic:.2f} from a model trained on {source}")
        wanted = [*sub.categories]
        if paper.categories:
            hit = [c for c in paper.categories if any(category_matches(w, c) for w in wanted)]
            if hit:
                kind = "primary category" if hit[0] == paper.categories[0] else "cross-listed in"
                reasons.append(f"{kind} {hit[0]}")
        elif wanted:
            reasons.append("categories not known yet (listed on Hugging Face), so not filtered by category")
        if paper.hf and paper.hf.upvotes:
            reasons.append(f"{paper.hf.upvotes} upvotes on Hugging Face Daily Papers")
        return reasons

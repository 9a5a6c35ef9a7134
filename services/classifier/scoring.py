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

from services.classifier.learner import LinearModel
from services.classifier.query import Node, Term, normalize_text, parse_query
from shared.paper import Paper
from shared.subscription import Subscription
from shared.taxonomy import category_matches

KEYWORD_BONUS = 0.15
AUTHOR_SCORE = 1.0
MODEL_WEIGHT = 0.85  # share of the model in the semantic score before enough ratings
MIN_RATINGS = 6  # ratings (with both likes and dislikes) before the feedback model takes over
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
    model: LinearModel | None = None
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
        model: LinearModel | None = None,
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


def semantic_blend(
    max_cos: np.ndarray, percentile: np.ndarray, background_cos: np.ndarray, weight: float
) -> np.ndarray:
    """The semantic score: the model's verdict expressed on the cosine scale, blended with the cosine.

    ``percentile`` is the share of recent background papers the model ranks below this paper; it is
    mapped through the background's own closest-positive cosines (quantile mapping), so the score has
    the cosine's distribution (thresholds keep their meaning) but the model's ranking.
    """
    mapped = np.interp(percentile, np.linspace(0.0, 1.0, len(background_cos)), background_cos)
    return (1.0 - weight) * max_cos + weight * mapped


def _term_columns(papers: list[Paper], terms: set[Term]) -> dict[Term, np.ndarray]:
    titles = [normalize_text(p.title) for p in papers]
    abstracts = [normalize_text(p.abstract) for p in papers]
    return {
        t: np.fromiter((t.matches(a, b) for a, b in zip(titles, abstracts, strict=True)), bool, len(papers))
        for t in terms
    }


def _percentiles(logits: np.ndarray, background: np.ndarray) -> np.ndarray:
    return np.searchsorted(background, logits, side="right") / max(len(background), 1)


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
            w = np.stack([profiles[i].model.weights for i in with_model])  # type: ignore[union-attr]
            b = np.array([profiles[i].model.bias for i in with_model], np.float32)  # type: ignore[union-attr]
            logits = vectors @ w.T + b
            for col, i in enumerate(with_model):  # one vectorised searchsorted per subscription
                prof = profiles[i]
                pct = _percentiles(logits[:, col], prof.background_logits)  # type: ignore[arg-type]
                semantic[:, i] = semantic_blend(max_cos[:, i], pct, prof.background_cos, float(weights[i]))  # type: ignore[arg-type]
        return max_cos, semantic

    def score(self, papers: list[Paper], vectors: np.ndarray, *, with_reasons: bool = True) -> list[Match]:
        vectors = np.asarray(vectors, np.float32).reshape(len(papers), -1)
        terms = {t for p in self.profiles for q in p.queries for t in q.terms()}
        columns = _term_columns(papers, terms)
        authors = [{normalize_author(a.name) for a in p.authors} for p in papers]
        matches: list[Match] = []
        for start in range(0, len(self.profiles), self.chunk):
            part = self.profiles[start : start + self.chunk]
            max_cos, semantic = self._chunk_semantic(vectors, part)
            matches += self._decide(papers, vectors, part, semantic, columns, authors, with_reasons)
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
        hit |= author_hit
        score = np.where(author_hit, np.maximum(score, AUTHOR_SCORE), score)
        out = []
        for i, j in zip(*np.nonzero(hit), strict=True):
            prof, paper = profiles[j], papers[i]
            reasons = (
                self._reasons(
                    prof, paper, vectors[i], float(semantic[i, j]), columns, i, bool(author_hit[i, j]), authors[i]
                )
                if with_reasons
                else []
            )
            out.append(Match(prof.subscription.id, paper.id, round(float(score[i, j]), 4), reasons))
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

"""Scoring every paper against every active subscription as matrix work, with reasons in plain words.

Cost: the semantic part is one (papers x d) @ (d x profile vectors) product plus one
(papers x d) @ (d x subscriptions) product for the per-subscription models, so time grows as
papers x (subscriptions x vectors per subscription) x d, done in chunks of subscriptions to bound
memory. Keyword queries are evaluated once per distinct term over the paper batch and combined per
query with numpy; categories and authors are sparse incidence products. No Python loop runs per
(paper, subscription) pair except to write the reasons of the pairs that matched. What depends only on
the subscriptions is compiled once per chunk (``_Chunk``: stacked positives, ``ModelStack``, ``Calibration``,
``_Rules``) and kept by the ``Scorer``; a changed, new or deleted subscription compiles its chunk again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
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


PER_ROW_BATCH = 32  # papers per batch from which calibrating row by row beats one search over all rows
CALIBRATION_KNOTS = 129  # order statistics kept of each background sample: the map's shape, 1/16 of the memory


def knots(sorted_values: np.ndarray, k: int = CALIBRATION_KNOTS) -> np.ndarray:
    """``k`` evenly spaced order statistics of a sorted sample, the first and last included (all when shorter)."""
    if len(sorted_values) <= k:
        return sorted_values
    return sorted_values[np.linspace(0, len(sorted_values) - 1, k).round().astype(int)]


def normalize_author(name: str) -> str:
    """'Del Maestro, Adrian' and 'Adrian Del Maestro' -> 'adrian del maestro'; accents (Unicode or TeX) dropped."""
    if "," in name:
        last, _, first = name.partition(",")
        name = f"{first} {last}"
    return normalize_text(name).strip()


def _author_parts(normalized: str) -> tuple[str, tuple[str, ...]]:
    tokens = normalized.split()
    return (tokens[-1], tuple(tokens[:-1])) if tokens else ("", ())


def _author_key(normalized: str) -> tuple[str, str]:
    """What a followed name is looked up by: surname and first initial."""
    surname, given = _author_parts(normalized)
    return surname, given[0][:1] if given else ""


def same_author(a: str, b: str) -> bool:
    """Two normalised names for one person: the same surname, and given names that agree where both have one, an
    initial standing for any name it begins ('yann lecun', 'y lecun', 'yann a lecun'). A surname alone never
    matches a fuller name (a common surname would match everyone)."""
    (surname_a, given_a), (surname_b, given_b) = _author_parts(a), _author_parts(b)
    if surname_a != surname_b or bool(given_a) != bool(given_b):
        return False
    return all(
        x == y or (len(x) == 1 and y.startswith(x)) or (len(y) == 1 and x.startswith(y))
        for x, y in zip(given_a, given_b, strict=False)
    )


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
            bg_cos = knots(np.sort((background @ vectors.T).max(axis=1)))
        return cls(
            subscription,
            vectors,
            labels,
            model,
            None if background_logits is None else knots(np.sort(background_logits)),
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


def _term_columns(papers: list[Paper], terms: Iterable[Term]) -> dict[Term, np.ndarray]:
    titles = [normalize_text(p.title) for p in papers]
    abstracts = [normalize_text(p.abstract) for p in papers]
    return {
        t: np.fromiter((t.matches(a, b) for a, b in zip(titles, abstracts, strict=True)), bool, len(papers))
        for t in terms
    }


@dataclass
class ModelStack:
    """The subscriptions' models as matrices, built once per profile set: (papers x models) logits are two
    products; a blend is a weighted sum of its parts' columns, and centred models divide by ``|x - center|``."""

    w: np.ndarray  # (parts, d)
    b: np.ndarray  # (parts,)
    centred: np.ndarray  # (parts,) bool
    centers: np.ndarray  # (centred parts, d)
    shift: np.ndarray  # (centred parts,) w·center
    center_sq: np.ndarray  # (centred parts,) |center|²
    combine: sparse.csr_matrix | None  # parts -> models; None when every model is one part
    offsets: np.ndarray  # (models,)

    @classmethod
    def build(cls, models: list[Model]) -> ModelStack:
        parts: list[LinearModel] = []
        rows, cols, coefs, offsets = [], [], [], np.zeros(len(models), np.float32)
        for j, model in enumerate(models):
            pieces = (
                list(zip(model.coefs, model.parts, strict=True)) if isinstance(model, BlendModel) else [(1.0, model)]
            )
            offsets[j] = model.offset if isinstance(model, BlendModel) else 0.0
            for coef, part in pieces:
                rows.append(len(parts))
                cols.append(j)
                coefs.append(coef)
                parts.append(part)
        combine = None
        if any(isinstance(m, BlendModel) for m in models):
            combine = sparse.csr_matrix((coefs, (rows, cols)), shape=(len(parts), len(models)), dtype=np.float32)
        w = np.stack([m.weights for m in parts]).astype(np.float32)
        centred = np.array([m.center is not None for m in parts])
        dims = w.shape[1]
        centers = np.array([m.center for m in parts if m.center is not None], np.float32).reshape(-1, dims)
        return cls(
            w,
            np.array([m.bias for m in parts], np.float32),
            centred,
            centers,
            (w[centred] * centers).sum(axis=1),
            (centers * centers).sum(axis=1),
            combine,
            offsets,
        )

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        logits = vectors @ self.w.T
        if self.centred.any():
            sq = (vectors * vectors).sum(axis=1)[:, None] - 2.0 * (vectors @ self.centers.T) + self.center_sq[None, :]
            logits[:, self.centred] = (logits[:, self.centred] - self.shift[None, :]) / np.sqrt(np.maximum(sq, 1e-24))
        logits += self.b[None, :]
        if self.combine is None:
            return logits
        return np.asarray((self.combine.T @ logits.T).T) + self.offsets[None, :]


@dataclass
class Calibration:
    """Each model's logits put on the cosine scale: a monotone map through its background sample.

    Each background paper gives a point (model logit, closest-positive cosine), both sorted (kept as
    ``knots``); a paper's logit is interpolated between its neighbours, and beyond the ends extended along
    the overall slope. Thresholds keep their cosine meaning, and the order is the model's own. Built once per
    profile set. A few papers (a lone event) search every row at once (each row lives in its own interval
    [2j, 2j + 1] of one sorted array): one search per subscription in C, not a Python loop. A big batch
    interpolates row by row, which is faster once each call has many papers to map (``bench score``).
    """

    x: np.ndarray  # (subscriptions, knots) sorted logits, short rows padded with their last value
    y: np.ndarray  # the matching sorted cosines
    slope: np.ndarray  # (subscriptions,) overall slope, for logits beyond the ends
    flat: np.ndarray  # row j's x scaled into [2j, 2j + 1], all rows in one sorted array

    @classmethod
    def build(cls, xs: list[np.ndarray], ys: list[np.ndarray]) -> Calibration:
        width = max(len(x) for x in xs)
        x = np.stack([np.pad(np.asarray(v, np.float64), (0, width - len(v)), mode="edge") for v in xs])
        y = np.stack([np.pad(np.asarray(v, np.float64), (0, width - len(v)), mode="edge") for v in ys])
        span = np.maximum(x[:, -1] - x[:, 0], 1e-9)
        slope = np.maximum((y[:, -1] - y[:, 0]) / span, 1e-6)
        rows = 2.0 * np.arange(len(x))[:, None]
        return cls(x, y, slope, ((x - x[:, :1]) / span[:, None] + rows).ravel())

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        """(papers x subscriptions) logits -> the same on the cosine scale."""
        v = np.asarray(logits, np.float64)
        first, last = self.x[:, 0][None, :], self.x[:, -1][None, :]
        beyond = np.maximum(v - last, 0.0) + np.minimum(v - first, 0.0)
        if len(v) >= PER_ROW_BATCH:
            columns = np.ascontiguousarray(v.T)
            mapped = np.stack([np.interp(col, x, y) for col, x, y in zip(columns, self.x, self.y, strict=True)], 1)
        else:
            mapped = self._search_all_rows(v, first, last)
        return (mapped + self.slope[None, :] * beyond).astype(np.float32)

    def _search_all_rows(self, v: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        n_rows, width = self.x.shape
        inside = np.clip(v, first, last)
        rows = np.arange(n_rows)[None, :]
        scaled = (inside - first) / np.maximum(last - first, 1e-9) + 2.0 * rows
        right = np.searchsorted(self.flat, scaled, side="right") - rows * width
        right = np.clip(right, 1, width - 1)
        x0, x1 = self.x[rows, right - 1], self.x[rows, right]
        y0, y1 = self.y[rows, right - 1], self.y[rows, right]
        dx = x1 - x0
        t = np.where(dx > 0, (inside - x0) / np.where(dx > 0, dx, 1.0), 1.0)
        return y0 + t * (y1 - y0)


@dataclass
class _Rules:
    """The non-semantic parts of a chunk of subscriptions as arrays: queries, followed authors, category
    filters, thresholds, trending settings. Built with the chunk, so a batch of papers only multiplies."""

    queries: list[tuple[int, Node]]  # (subscription column, query)
    author_index: dict[str, int]  # normalised followed-author name -> row of ``author_subs``
    author_keys: dict[tuple[str, str], list[str]]  # (surname, first initial) -> followed names, for initials
    author_subs: sparse.csr_matrix  # (names x subs) who follows whom
    categories: list[str]  # every category named by an include or exclude filter
    include: np.ndarray  # (categories x subs) float32 incidence
    exclude: np.ndarray  # (categories x subs)
    cross_lists: np.ndarray  # (subs,) bool: an include filter also takes cross-listed papers
    filtered: np.ndarray  # (subs,) bool: has an include filter
    only_keywords: np.ndarray  # (subs,) bool: no positive vectors, keywords/authors/trending only
    has_queries: np.ndarray  # (subs,) bool: has a keyword query
    threshold: np.ndarray  # (subs,)
    trending: np.ndarray  # (subs,) bool
    weekly: np.ndarray  # (subs,) bool: trending over the week, not the day
    narrow: np.ndarray  # (subs,) bool: trending narrowed to the subscription's own matches
    top: np.ndarray  # (subs,) trending top-N (1 where not trending)

    @classmethod
    def build(cls, profiles: list[Profile]) -> _Rules:
        subs = [p.subscription for p in profiles]
        names = sorted({normalize_author(a) for sub in subs for a in sub.authors})
        index = {name: i for i, name in enumerate(names)}
        keys: dict[tuple[str, str], list[str]] = {}
        for name in names:
            keys.setdefault(_author_key(name), []).append(name)
        follows = [(index[normalize_author(a)], j) for j, sub in enumerate(subs) for a in sub.authors]
        author_subs = sparse.csr_matrix(
            (np.ones(len(follows)), ([r for r, _ in follows], [c for _, c in follows])), shape=(len(names), len(subs))
        )
        categories = sorted({c for sub in subs for c in [*sub.categories, *sub.exclude_categories]})
        at = {c: k for k, c in enumerate(categories)}
        include = np.zeros((len(categories), len(subs)), np.float32)
        exclude = np.zeros((len(categories), len(subs)), np.float32)
        for j, sub in enumerate(subs):
            include[[at[c] for c in sub.categories], j] = 1.0
            exclude[[at[c] for c in sub.exclude_categories], j] = 1.0
        queries = [(j, query) for j, p in enumerate(profiles) for query in p.queries]
        has_queries = np.zeros(len(subs), bool)
        has_queries[[j for j, _ in queries]] = True
        return cls(
            queries,
            index,
            keys,
            author_subs,
            categories,
            include,
            exclude,
            np.array([sub.include_cross_lists for sub in subs], bool),
            include.any(axis=0),
            np.array([len(p.vectors) == 0 for p in profiles], bool),
            has_queries,
            np.array([sub.threshold for sub in subs], np.float32),
            np.array([sub.trending is not None for sub in subs], bool),
            np.array([bool(sub.trending and sub.trending.window == "week") for sub in subs], bool),
            np.array([bool(sub.trending and sub.trending.narrow) for sub in subs], bool),
            np.array([sub.trending.top if sub.trending else 1 for sub in subs]),
        )

    def trending_ranks(self, n: int, trending: TrendingRanks | None) -> np.ndarray:
        """(papers x subs) a paper's rank in the subscription's window where it is within its top-N, else 0."""
        out = np.zeros((n, len(self.trending)), np.int64)
        for window, wanted in (("day", self.trending & ~self.weekly), ("week", self.trending & self.weekly)):
            ranks = (trending or {}).get(window)
            if ranks is None or not wanted.any():
                continue
            r = np.asarray(ranks, np.int64)[:, None]
            out = np.where(wanted[None, :] & (r > 0) & (r <= self.top[None, :]), r, out)
        return out

    def keyword_hits(self, columns: dict[Term, np.ndarray], n: int) -> np.ndarray:
        kw = np.zeros((n, len(self.threshold)), bool)
        for j, query in self.queries:
            kw[:, j] |= query.evaluate(columns)
        return kw

    def author_hits(self, authors: list[set[str]]) -> np.ndarray:
        """Followed authors: sparse (papers x names) @ (names x subs); a paper's "Y. LeCun" is a follower's
        "Yann LeCun" (:func:`same_author`)."""
        n = len(authors)
        if not self.author_index:
            return np.zeros((n, len(self.threshold)), bool)
        rows = {
            (i, self.author_index[followed])
            for i, names in enumerate(authors)
            for name in names
            for followed in self.author_keys.get(_author_key(name), ())
            if same_author(name, followed)
        }
        papers_names = sparse.csr_matrix(
            (np.ones(len(rows)), ([r for r, _ in rows], [c for _, c in rows])), shape=(n, len(self.author_index))
        )
        return (papers_names @ self.author_subs).toarray() > 0

    def category_mask(self, papers: list[Paper]) -> np.ndarray:
        """Include/exclude filters as (papers x category) @ (category x subs) incidence products."""
        n, s = len(papers), len(self.threshold)
        if not self.categories:
            return np.ones((n, s), bool)
        prim = np.array(
            [[bool(p.categories) and category_matches(w, p.categories[0]) for w in self.categories] for p in papers],
            np.float32,
        ).reshape(n, -1)
        anyc = np.array(
            [[any(category_matches(w, c) for c in p.categories) for w in self.categories] for p in papers], np.float32
        ).reshape(n, -1)
        in_any = (anyc @ self.include) > 0
        in_prim = (prim @ self.include) > 0
        # A paper whose categories are not known yet (a Hugging Face listing) is not filtered out by an include list.
        unknown = np.array([not p.categories for p in papers])[:, None]
        included = np.where(self.cross_lists[None, :], in_any, in_prim) | ~self.filtered[None, :] | unknown
        return included & ~((anyc @ self.exclude) > 0)


@dataclass
class _Chunk:
    """What scoring needs of a chunk of profiles, independent of the papers: stacked once, reused per batch."""

    profiles: list[Profile]
    stacked: np.ndarray  # every profile's positive rows, one after another
    starts: np.ndarray  # first row of each profile that has rows
    has: np.ndarray  # (profiles,) bool: has positive rows
    weights: np.ndarray  # (profiles,) model weight in the semantic score
    with_model: np.ndarray  # indices of the profiles whose model counts
    models: ModelStack | None
    calibration: Calibration | None
    rules: _Rules

    @classmethod
    def build(cls, profiles: list[Profile], dims: int) -> _Chunk:
        counts = np.array([len(p.vectors) for p in profiles])
        has = counts > 0
        rows = [p.vectors for p in profiles if len(p.vectors)]
        weights = np.array([p.model_weight() for p in profiles], np.float32)
        with_model = np.flatnonzero(weights > 0)
        chosen = [profiles[i] for i in with_model]
        return cls(
            profiles,
            np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, dims), np.float32),
            np.concatenate([[0], np.cumsum(counts[has])[:-1]]).astype(np.int64),
            has,
            weights,
            with_model,
            ModelStack.build([p.model for p in chosen]) if chosen else None,  # type: ignore[misc]
            Calibration.build([p.background_logits for p in chosen], [p.background_cos for p in chosen])  # type: ignore[misc]
            if chosen
            else None,
            _Rules.build(profiles),
        )

    def semantic(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(papers x subs) best cosine to a positive, and the model-blended semantic score."""
        max_cos = np.zeros((len(vectors), len(self.profiles)), np.float32)
        if self.has.any():
            max_cos[:, self.has] = np.maximum.reduceat(vectors @ self.stacked.T, self.starts, axis=1)
        semantic = max_cos.copy()
        if self.models is not None and self.calibration is not None:
            mapped = self.calibration(self.models.logits(vectors))
            w = self.weights[self.with_model][None, :]
            semantic[:, self.with_model] = (1.0 - w) * max_cos[:, self.with_model] + w * mapped
        return max_cos, semantic


def _profile_terms(profile: Profile) -> set[Term]:
    return {t for q in profile.queries for t in q.terms()}


class Scorer:
    """Compiled profiles: score paper batches against all of them at once.

    The matrices of each chunk of profiles are built on first use and kept, so a service that keeps one
    Scorer while its subscriptions are unchanged pays only the products per batch of papers.
    """

    def __init__(self, profiles: list[Profile], dims: int = 384, chunk: int = 4096) -> None:
        self.profiles = list(profiles)
        self.dims = dims
        self.chunk = chunk
        self.ids = [p.subscription.id for p in profiles]
        self._at = {sub_id: i for i, sub_id in enumerate(self.ids)}
        self._chunks: dict[int, _Chunk] = {}
        # How many profiles use each keyword term: a change adds or drops one profile's terms, not all of them.
        self._terms: Counter[Term] = Counter(t for p in profiles for t in _profile_terms(p))

    def compile(self) -> Scorer:
        """Build every chunk's matrices now (otherwise the first batch does)."""
        for start in range(0, len(self.profiles), self.chunk):
            self._compiled(start)
        return self

    def put(self, profile: Profile) -> None:
        """A subscription changed (a rating, a seed that arrived) or is new: only the chunk it lands in is
        compiled again; a new one goes at the end."""
        sub_id = profile.subscription.id
        index = self._at.setdefault(sub_id, len(self.profiles))
        if index == len(self.profiles):
            self.profiles.append(profile)
            self.ids.append(sub_id)
        else:
            self._drop_terms(self.profiles[index])
            self.profiles[index] = profile
        self._terms.update(_profile_terms(profile))
        self._changed(index)

    def remove(self, subscription_id: str) -> None:
        """The last profile takes the removed one's place, so two chunks at most are compiled again."""
        index = self._at.pop(subscription_id, None)
        if index is None:
            return
        self._drop_terms(self.profiles[index])
        last = len(self.profiles) - 1
        if index != last:
            self.profiles[index], self.ids[index] = self.profiles[last], self.ids[last]
            self._at[self.ids[index]] = index
        del self.profiles[last], self.ids[last]
        self._changed(index, last)

    def subscription(self, subscription_id: str) -> Subscription:
        return self.profiles[self._at[subscription_id]].subscription

    def wants_trending(self) -> bool:
        """Whether any subscription asks for trending papers (read off the compiled chunks, not the profiles)."""
        return any(self._compiled(start).rules.trending.any() for start in range(0, len(self.profiles), self.chunk))

    def _changed(self, *indices: int) -> None:
        for index in indices:
            self._chunks.pop(index - index % self.chunk, None)

    def _drop_terms(self, profile: Profile) -> None:
        for term in _profile_terms(profile):
            self._terms[term] -= 1
            if self._terms[term] <= 0:
                del self._terms[term]

    def _compiled(self, start: int) -> _Chunk:
        if start not in self._chunks:
            self._chunks[start] = _Chunk.build(self.profiles[start : start + self.chunk], self.dims)
        return self._chunks[start]

    def semantic(self, vectors: np.ndarray) -> np.ndarray:
        """(papers x subs) semantic score of every profile (what the relevance eval ranks by)."""
        vectors = np.asarray(vectors, np.float32)
        parts = [self._compiled(start).semantic(vectors)[1] for start in range(0, len(self.profiles), self.chunk)]
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(vectors), 0), np.float32)

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
        columns = _term_columns(papers, self._terms)
        authors = [{normalize_author(a.name) for a in p.authors} for p in papers]
        matches: list[Match] = []
        for start in range(0, len(self.profiles), self.chunk):
            compiled = self._compiled(start)
            _, semantic = compiled.semantic(vectors)
            matches += self._decide(papers, vectors, compiled, semantic, columns, authors, with_reasons, trending)
        return matches

    def _decide(
        self,
        papers: list[Paper],
        vectors: np.ndarray,
        compiled: _Chunk,
        semantic: np.ndarray,
        columns: dict[Term, np.ndarray],
        authors: list[set[str]],
        with_reasons: bool,
        trending: TrendingRanks | None = None,
    ) -> list[Match]:
        profiles, rules = compiled.profiles, compiled.rules
        n = len(papers)
        kw = rules.keyword_hits(columns, n)
        author_hit = rules.author_hits(authors)
        allowed = rules.category_mask(papers)
        only_keywords = rules.only_keywords[None, :]
        score = np.where(only_keywords, 0.0, semantic) + KEYWORD_BONUS * kw
        score = np.where(only_keywords & kw, np.maximum(score, 1.0), score)
        # A subscription without interests or seeds has no semantic score: only its keywords (or, below, its
        # authors and trending board) make a match, whatever its threshold.
        hit = ((~only_keywords & (score >= rules.threshold[None, :])) | kw) & allowed
        is_trending = rules.trending
        rank = np.zeros(score.shape, np.int64)
        if is_trending.any():
            rank = rules.trending_ranks(n, trending)
            # A trending subscription gets the window's top papers, narrowed (if asked) to its own matches.
            # With nothing to match but categories, "narrow" narrows by those (``allowed``).
            narrowed = hit | (only_keywords & ~rules.has_queries[None, :])
            trend_hit = (rank > 0) & allowed & (~rules.narrow[None, :] | narrowed)
            hit = np.where(is_trending[None, :], trend_hit, hit)
            rank_score = 1.0 - (rank - 1) / (2.0 * rules.top[None, :])
            score = np.where(is_trending[None, :] & only_keywords & trend_hit, rank_score, score)
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
            names = sorted(a for a in sub.authors if any(same_author(normalize_author(a), p) for p in paper_authors))
            reasons.append(f"by {', '.join(names)}, an author you follow")
        for text, query in zip(prof.query_texts, prof.queries, strict=True):
            matched = query.matched_terms({t: bool(columns[t][i]) for t in query.terms()})
            if matched:
                hits = [t.describe() for t in matched]
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
        if paper.version and paper.version > 1:  # arXiv lists replacements with the day's new papers
            since = f", first submitted {paper.submitted:%Y-%m-%d}" if paper.submitted else ""
            reasons.append(f"a new version (v{paper.version}) of an earlier paper{since}")
        return reasons

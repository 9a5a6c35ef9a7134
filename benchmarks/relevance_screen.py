"""Screen seed-ranker variants on the eval protocol's own draws, seeds only, without the CLI's baselines.

`paperwire eval relevance --folds rotate --seed N` takes minutes per seed; this replica draws the same seeds
(same folds, same rng calls), scores the embedding-LR baseline and every candidate model on them, and keeps
each candidate's leave-one-out scores, so that choice rules and combinations are compared on the same draws
(a paired comparison) without fitting again. The production ranker's number reproduces the CLI's.

    python benchmarks/relevance_screen.py --seed 0 --cache data/cache/embeddings.sqlite --out /tmp/screen0.npz
    python benchmarks/relevance_screen.py --seed 0 --candidates maxent_centred --out /tmp/centred0.npz
    python benchmarks/relevance_screen.py --rules /tmp/screen0.npz,/tmp/centred0.npz /tmp/screen1.npz,...

Candidates (``--candidates``, comma-separated): the production kinds ``linear``, ``maxent``, ``centroid``;
``linear_weak``/``maxent_weak`` (sklearn's C=1 regularisation) and ``*_weakcold`` (cold LOO fits);
``linear_centred``/``maxent_centred`` (fitted on unit(x - background mean)); ``linear_rnmin``/``linear_rnmed``
(two-step PU with reliable negatives); ``upu_est``/``upu_0.1``/``upu_0.3`` (unbiased PU logistic risk with
an estimated or a fixed prior); ``{kind}_col{p}`` for p in 0.5, 0.25, -0.25, -0.5 (features x Σ^p).
``centroid_median`` (the seeds' geometric median as the direction); ``tfidf_svm``/``tfidf_lr`` (lexical models on
the eval's tf-idf features). ``--dataset``/``--k`` screen another
labeled set (``benchmarks/oai_to_labeled.py`` makes one from other fields). ``--smooth K,W`` first replaces every
vector by itself + W x the mean of its K nearest history papers (database-side augmentation); its candidates are
stored as ``{kind}_sK,W``. ``--per-category`` prints where each kind wins. ``--rules`` takes one argument per
seed (files of that seed joined by commas) and prints every rule whose candidates all runs hold. Nothing here
looks at labels except the final nDCG. Sections 13-16 of ``benchmarks/results/relevance_experiments.md`` have
the results.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.classifier.dataset import load_dataset  # noqa: E402
from services.classifier.embedding import embed_cached  # noqa: E402
from services.classifier.evaluate import _tfidf, baseline_scores, build_split, rotating_splits  # noqa: E402
from services.classifier.metrics import ndcg_at_k  # noqa: E402
from services.classifier.ranker import DUPLICATE_COS, LOO_STEPS, MAX_HELD_OUT, SeedRanker  # noqa: E402

DATASET = Path("tests/fixtures/labeled/daily_arxiv_ai_enhanced")


class Transformed:
    """A model fitted on ``(x - mean) @ t``: its logits take raw vectors."""

    def __init__(self, model, mean: np.ndarray, t: np.ndarray) -> None:
        self.model, self.mean, self.t = model, mean, t

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        return self.model.logits(self.features(vectors))

    def features(self, vectors: np.ndarray) -> np.ndarray:
        return (np.asarray(vectors, np.float32) - self.mean) @ self.t


class Centred(Transformed):
    """A model fitted on ``unit(x - mean)``: the space the centroid candidate scores in."""

    def features(self, vectors: np.ndarray) -> np.ndarray:
        shifted = np.asarray(vectors, np.float32) - self.mean
        return shifted / np.maximum(np.linalg.norm(shifted, axis=-1, keepdims=True), 1e-12)


def colouring(background: np.ndarray, power: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """``Σ^power`` of the background, scaled so the background's mean squared norm is unchanged: with power
    1/2, an l2 penalty on the new weights is a Gaussian prior ``N(0, Σ)`` on the old ones."""
    mean = background.mean(axis=0)
    vals, vecs = np.linalg.eigh(np.cov(background - mean, rowvar=False))
    vals = np.maximum(vals, 1e-6 * vals.max())
    t = (vecs * vals**power) @ vecs.T
    scale = np.sqrt(np.sum(vals ** (1 + 2 * power)) / np.sum(vals))
    return mean.astype(np.float32), (t / scale).astype(np.float32)


_RN_CACHE: dict = {}


def reliable_negatives_fit(ranker: SeedRanker, pos: np.ndarray, rule: str, warm=None, steps=None):
    """Two-step PU (Liu et al.'s spies): the background papers that score below the held-out seeds under the
    centroid are reliable negatives; the logistic regression trains against them only. The set is fixed by the
    full seed set (the leave-one-out fits reuse it)."""
    key = (id(ranker), rule)
    if warm is None or key not in _RN_CACHE:
        none = pos[:0]
        spies = []
        for i in range(len(pos)):
            model = ranker.fit_kind("centroid", np.delete(pos, i, axis=0), none)
            spies.append(model.logits(pos[i : i + 1])[0])
        full = ranker.fit_kind("centroid", pos, none)
        threshold = np.min(spies) if rule == "min" else np.median(spies)
        background = ranker.background[full.logits(ranker.background) < threshold]
        _RN_CACHE.clear()
        _RN_CACHE[key] = SeedRanker(background=background)
    return _RN_CACHE[key].fit_kind("linear", pos, pos[:0], warm, steps)


def train_upu(pos: np.ndarray, background: np.ndarray, prior: float, l2: float, warm=None, steps: int = 30):
    """Unbiased PU risk with the logistic loss: -prior * mean_P f + mean_U softplus(f) + l2/2 |w|^2."""
    import torch

    from services.classifier.learner import LinearModel

    x_u = torch.from_numpy(np.asarray(background, np.float32))
    mean_p = torch.from_numpy(np.asarray(pos, np.float32).mean(axis=0))
    w = torch.zeros(x_u.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    if warm is not None:
        with torch.no_grad():
            w.copy_(torch.from_numpy(warm.weights))
            b.fill_(warm.bias)
    optimizer = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = -prior * (mean_p @ w + b[0]) + torch.nn.functional.softplus(x_u @ w + b).mean()
        loss = loss + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return LinearModel(w.detach().numpy().copy(), float(b.item()), len(pos), 0, kind="upu")


_PRIOR_CACHE: dict = {}


def estimated_prior(ranker: SeedRanker, pos: np.ndarray) -> float:
    """2 (1 - leave-one-out AUC of the centroid), clipped: the topic's share if the centroid ranked perfectly."""
    none = pos[:0]
    auc = ranker.loo_auc(pos, none, "centroid", ranker.fit_kind("centroid", pos, none))
    return float(np.clip(2 * (1 - auc), 0.02, 0.8))


def candidates(ranker: SeedRanker, names: list[str]) -> dict[str, object]:
    """name -> fit(positives, warm, steps): the production kinds plus variants under study."""
    none = np.zeros((0, ranker.background.shape[1]), np.float32)
    out = {}
    for kind in ("linear", "maxent", "centroid"):
        out[kind] = lambda pos, warm=None, steps=None, kind=kind: ranker.fit_kind(kind, pos, none, warm, steps)
    weak = 1.0 / len(ranker.background)  # sklearn's LogisticRegression(C=1) in this loss's normalisation
    for kind in ("linear", "maxent"):
        out[f"{kind}_weak"] = lambda pos, warm=None, steps=None, kind=kind: SeedRanker(
            ranker.background, l2=weak
        ).fit_kind(kind, pos, none, warm, steps)
    unit = Centred(None, ranker.center.astype(np.float32), None)
    centred = SeedRanker(background=unit.features(ranker.background))
    for kind in ("linear", "maxent"):

        def fit_centred(pos, warm=None, steps=None, kind=kind):
            warm = warm.model if warm is not None else None
            return Centred(centred.fit_kind(kind, unit.features(pos), none, warm, steps), unit.mean, None)

        out[f"{kind}_centred"] = fit_centred

    def fit_upu(pos, warm=None, steps=None, prior=None):
        if prior is None:
            if warm is None or "prior" not in _PRIOR_CACHE:  # the full fit estimates; its LOO fits reuse it
                _PRIOR_CACHE["prior"] = estimated_prior(ranker, pos)
            prior = _PRIOR_CACHE["prior"]
        return train_upu(pos, ranker.background, prior, ranker.l2, warm, steps or ranker.steps)

    out["upu_est"] = fit_upu

    def fit_median(pos, warm=None, steps=None):
        """The centroid's direction as the geometric median of the seeds (Weiszfeld), not their mean."""
        unit_pos = unit.features(pos)
        direction = unit_pos.mean(axis=0)
        for _ in range(20):
            weights = 1.0 / np.maximum(np.linalg.norm(unit_pos - direction, axis=1), 1e-6)
            direction = (weights[:, None] * unit_pos).sum(axis=0) / weights.sum()
        model = ranker.fit_kind("centroid", pos, none)
        model.weights = (direction / np.linalg.norm(direction)).astype(np.float32)
        return model

    out["centroid_median"] = fit_median
    for prior in (0.1, 0.3):
        out[f"upu_{prior:g}"] = lambda pos, warm=None, steps=None, prior=prior: fit_upu(pos, warm, steps, prior)
    for rule in ("min", "med"):
        out[f"linear_rn{rule}"] = lambda pos, warm=None, steps=None, rule=rule: reliable_negatives_fit(
            ranker, pos, rule, warm, steps
        )
    for kind in ("linear", "maxent"):
        # cold leave-one-out fits to convergence: a weak l2 remembers the held-out seed from a warm start
        out[f"{kind}_weakcold"] = lambda pos, warm=None, steps=None, kind=kind: SeedRanker(
            ranker.background, l2=weak
        ).fit_kind(kind, pos, none, None, 100)
    for power in sorted({float(name.split("_col")[1]) for name in names if "_col" in name}):  # eigh on demand
        mean, t = colouring(ranker.background, power)
        inner = SeedRanker(background=(ranker.background - mean) @ t)
        tag = f"col{power:g}"
        for kind in ("linear", "maxent", "centroid"):

            def fit(pos, warm=None, steps=None, kind=kind, inner=inner, mean=mean, t=t):
                warm = warm.model if warm is not None else None
                return Transformed(inner.fit_kind(kind, (pos - mean) @ t, none, warm, steps), mean, t)

            out[f"{kind}_{tag}"] = fit
    return {name: out[name] for name in names}


def smoothed(history: np.ndarray, new: np.ndarray, neighbours: int, weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Database-side augmentation (Arandjelovic & Zisserman; Gordo et al.): every vector plus ``weight`` x the mean
    of its ``neighbours`` nearest history papers (itself excluded), renormalised. Label-free; new papers look
    only at the history, as the service would when a paper arrives."""

    def apply(x: np.ndarray, exclude_self: bool) -> np.ndarray:
        sims = x @ history.T
        if exclude_self:
            np.fill_diagonal(sims, -np.inf)
        idx = np.argpartition(-sims, neighbours, axis=1)[:, :neighbours]
        out = x + weight * history[idx].mean(axis=1)
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    return apply(history, True), apply(new, False)


def collect(
    seed: int,
    cache: Path,
    names: list[str],
    k: int = 10,
    draws: int = 5,
    smooth: tuple[int, float] | None = None,
    dataset: Path = DATASET,
    holdout: bool = False,
) -> dict[str, np.ndarray]:
    papers = load_dataset(dataset)
    embed_cached([p.text for p in papers], cache)
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"baseline": [], "relevant": [], "key": []}
    for fold_no, parts in enumerate(rotating_splits(papers)):
        split = build_split(papers, 2, cache, parts)
        prim_h, prim_n = split.primaries()
        cats = sorted(c for c in set(prim_h) if (prim_h == c).sum() >= k and (prim_n == c).any())
        x_history, x_new = split.x_history, split.x_new
        if smooth:
            x_history, x_new = smoothed(x_history, x_new, *smooth)
        ranker = SeedRanker(background=x_history)
        if holdout:  # the leave-one-out fits see one half of the background, and are judged on the other
            order = np.random.default_rng(1000 + fold_no).permutation(len(x_history))
            fit_half, judge_half = x_history[order[::2]], x_history[order[1::2]]
            half_fits = candidates(SeedRanker(background=fit_half), list(PRODUCTION))
            judge = SeedRanker(background=judge_half)
        lexical = [name for name in names if name.startswith("tfidf")]
        fits = candidates(ranker, [name for name in names if name not in lexical])
        if lexical:
            _tfidf(split)
        for category in cats:
            relevant = prim_n == category
            pool = np.flatnonzero(prim_h == category)
            for _ in range(draws):
                seeds = rng.choice(pool, size=k, replace=False)
                rng.random(len(split.new))  # the random baseline's draw, to keep the seeds in step with the CLI
                pos = x_history[seeds]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    base = baseline_scores("embedding_logreg", split, seeds, rng)
                rows["baseline"].append(ndcg_at_k(base, relevant, 10))
                rows["relevant"].append(relevant)
                rows["key"].append(f"{fold_no}/{category}")
                others = ranker.others(pos, pos[:0])
                held = np.unique(np.linspace(0, k - 1, min(k, MAX_HELD_OUT)).round().astype(int))
                if lexical:
                    copies = np.flatnonzero(
                        (x_history @ (pos / np.linalg.norm(pos, axis=1, keepdims=True)).T).max(axis=1)
                        > DUPLICATE_COS * np.linalg.norm(x_history, axis=1)
                    )
                    others_idx = np.setdiff1d(np.arange(len(x_history)), copies)
                for name in lexical:
                    full = lexical_fit(name, split.tfidf_history, seeds)
                    loo_pos, loo_others = [], []
                    for i in held:
                        model = lexical_fit(name, split.tfidf_history, np.delete(seeds, i))
                        loo_pos.append(model.decision_function(split.tfidf_history[seeds[i : i + 1]])[0])
                        loo_others.append(model.decision_function(split.tfidf_history[others_idx]))
                    rows.setdefault(f"{name}:new", []).append(
                        full.decision_function(split.tfidf_new).astype(np.float32)
                    )
                    rows.setdefault(f"{name}:bg", []).append(
                        full.decision_function(split.tfidf_history[others_idx]).astype(np.float32)
                    )
                    rows.setdefault(f"{name}:loo_pos", []).append(np.array(loo_pos, np.float32))
                    rows.setdefault(f"{name}:loo_others", []).append(np.array(loo_others, np.float32))
                if holdout:
                    judged = judge.others(pos, pos[:0])
                    for name, fit in half_fits.items():
                        start = fit(pos)
                        loo_pos, loo_others = [], []
                        for i in held:
                            model = fit(np.delete(pos, i, axis=0), warm=start, steps=LOO_STEPS)
                            loo_pos.append(model.logits(pos[i : i + 1])[0])
                            loo_others.append(model.logits(judged))
                        rows.setdefault(f"{name}_hb:loo_pos", []).append(np.array(loo_pos, np.float32))
                        rows.setdefault(f"{name}_hb:loo_others", []).append(np.array(loo_others, np.float32))
                for name, fit in fits.items():
                    full = fit(pos)
                    loo_pos, loo_others, jack = [], [], 0.0
                    for i in held:
                        model = fit(np.delete(pos, i, axis=0), warm=full, steps=LOO_STEPS)
                        loo_pos.append(model.logits(pos[i : i + 1])[0])
                        loo_others.append(model.logits(others))
                        jack = jack + _z(model.logits(x_new), loo_others[-1]) / len(held)
                    rows.setdefault(f"{name}:jack", []).append(np.asarray(jack, np.float32))
                    rows.setdefault(f"{name}:new", []).append(full.logits(x_new).astype(np.float32))
                    rows.setdefault(f"{name}:bg", []).append(full.logits(others).astype(np.float32))
                    rows.setdefault(f"{name}:loo_pos", []).append(np.array(loo_pos, np.float32))
                    rows.setdefault(f"{name}:loo_others", []).append(np.array(loo_others, np.float32))
        print(f"fold {fold_no} done", file=sys.stderr, flush=True)
    if holdout:  # the held-out-background kinds score with the production (full background) models
        for name in PRODUCTION:
            for field in ("new", "bg"):
                rows[f"{name}_hb:{field}"] = rows[f"{name}:{field}"]
    return {key: _objects(value) for key, value in rows.items()}


def lexical_fit(name: str, tfidf_history, seeds: np.ndarray):
    """A lexical candidate on the eval's tf-idf features (arxiv-sanity-lite's vectoriser): ``tfidf_svm`` is the
    baseline's LinearSVC(C=0.01, balanced), ``tfidf_lr`` a class-balanced LR; seeds positive, the rest of the
    history negative (the held-out seed of a leave-one-out fit stays in the history, unlabeled)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    y = np.zeros(tfidf_history.shape[0], np.int64)
    y[seeds] = 1
    if name == "tfidf_svm":
        model = LinearSVC(class_weight="balanced", max_iter=1_000_000, tol=1e-6, C=0.01)
    elif name == "tfidf_lr":
        model = LogisticRegression(class_weight="balanced", max_iter=2000)
    else:
        raise ValueError(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(tfidf_history, y)


def _objects(values: list) -> np.ndarray:
    """One entry per draw (arrays of different lengths, strings, floats), as np.savez can store them."""
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def _z(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return (values - reference.mean(axis=-1, keepdims=True)) / np.maximum(reference.std(axis=-1, keepdims=True), 1e-9)


PRODUCTION = ("linear", "maxent", "centroid")


def held_out_shares(data: dict, names: tuple[str, ...], d: int) -> np.ndarray:
    """Per held-out seed, the share of ``others`` below it under the z-average of ``names`` (AUC = the mean)."""
    pos = sum(_z(data[f"{n}:loo_pos"][d][:, None], data[f"{n}:loo_others"][d]) for n in names)
    others = sum(_z(data[f"{n}:loo_others"][d], data[f"{n}:loo_others"][d]) for n in names)
    return np.mean(others < pos, axis=1)


def loo_stat(data: dict, names: tuple[str, ...], d: int, stat: str = "auc") -> float:
    """A choice statistic from the leave-one-out shares (``auc``, their mean, is the production one)."""
    shares = held_out_shares(data, names, d)
    n_others = len(data[f"{names[0]}:loo_others"][d][0])
    if stat == "auc":
        return float(shares.mean())
    if stat == "logrank":
        return -float(np.mean(np.log((1.0 - shares) * n_others + 1.0)))
    if stat.startswith("top"):
        return float(np.mean(1.0 - shares <= float(stat[3:]) / 100))
    if stat.startswith("pauc"):  # partial AUC: only the top q of the others counts, linearly
        q = float(stat[4:]) / 100
        return float(np.mean(np.maximum(0.0, q - (1.0 - shares)) / q))
    if stat == "median":
        return float(np.median(shares))
    if stat == "trimmed":  # the two worst held-out seeds dropped
        return float(np.sort(shares)[2:].mean())
    if stat == "min":
        return float(shares.min())
    if stat == "probit":
        from scipy.stats import norm

        return float(norm.ppf(np.clip(shares, 1e-4, 1 - 1e-4)).mean())
    if stat == "meanz":
        lo, lp = data[f"{names[0]}:loo_others"][d], data[f"{names[0]}:loo_pos"][d]
        return float(np.mean((lp - lo.mean(axis=1)) / lo.std(axis=1)))
    raise ValueError(stat)


def score_new(data: dict, names: tuple[str, ...], d: int, field: str = "new") -> np.ndarray:
    if field == "jack":
        return sum(data[f"{n}:jack"][d] for n in names)
    return sum(_z(data[f"{n}:new"][d], data[f"{n}:bg"][d]) for n in names)


def choose(data: dict, pool: list[tuple[str, ...]], d: int, stat: str = "auc") -> tuple[str, ...]:
    values = [loo_stat(data, names, d, stat) for names in pool]
    return pool[int(np.argmax(values))]


def macro(data: dict, values: list[float]) -> float:
    per: dict[str, list[float]] = {}
    for key, v in zip(data["key"], values, strict=True):
        per.setdefault(key, []).append(v)
    return float(np.mean([np.mean(v) for v in per.values()]))


def load(spec: str) -> dict:
    """``a.npz,b.npz``: runs of the same seed with different candidates, merged by draw."""
    data: dict = {}
    for path in spec.split(","):
        part = dict(np.load(path, allow_pickle=True))
        if data and list(part["key"]) != list(data["key"]):
            raise ValueError(f"{path} holds other draws")
        data.update(part)
    return data


def names_in(data: dict) -> set[str]:
    return {key.split(":")[0] for key in data if key.endswith(":new")}


Rule = tuple[set[str], object]  # (candidates it needs, (data, draw) -> scores of the new papers)


def choice_rule(pool: list[str], stat: str = "auc", field: str = "new") -> Rule:
    options = [tuple(option.split("+")) for option in pool]
    return {n for o in options for n in o}, lambda data, d: score_new(data, choose(data, options, d, stat), d, field)


def soft_rule(weigh: str) -> Rule:
    """Every production candidate, weighted by its leave-one-out AUC instead of keeping the best."""

    def score(data: dict, d: int) -> np.ndarray:
        shares = {k: held_out_shares(data, (k,), d) for k in PRODUCTION}
        aucs = np.array([shares[k].mean() for k in PRODUCTION])
        if weigh == "softmax":  # temperature: the mean standard error of the AUCs
            se = np.mean([shares[k].std(ddof=1) / np.sqrt(len(shares[k])) for k in PRODUCTION])
            w = np.exp((aucs - aucs.max()) / max(se, 1e-6))
        else:
            w = np.maximum(aucs - 0.5, 0.0) if (aucs > 0.5).any() else np.ones_like(aucs)
        return sum(wi * score_new(data, (k,), d) for wi, k in zip(w / w.sum(), PRODUCTION, strict=True))

    return set(PRODUCTION), score


def one_se_rule(default: str) -> Rule:
    """``default`` unless another candidate beats it by more than one standard error of the paired difference."""

    def score(data: dict, d: int) -> np.ndarray:
        shares = {k: held_out_shares(data, (k,), d) for k in PRODUCTION}
        pick = default
        for k in PRODUCTION:
            diff = shares[k] - shares[default]
            if diff.mean() > diff.std(ddof=1) / np.sqrt(len(diff)) and shares[k].mean() >= shares[pick].mean():
                pick = k
        return score_new(data, (pick,), d)

    return set(PRODUCTION), score


def with_maxent_rule() -> Rule:
    def score(data: dict, d: int) -> np.ndarray:
        best = choose(data, [(k,) for k in PRODUCTION], d)
        return score_new(data, tuple(sorted(set(best) | {"maxent"})), d)

    return set(PRODUCTION), score


def regime_rule(threshold: float) -> Rule:
    """The production choice, but the centroid wherever the best leave-one-out AUC is below ``threshold`` (a
    diffuse or broad topic). A constant read off this data set: screened to size the idea, not to ship it."""

    def score(data: dict, d: int) -> np.ndarray:
        aucs = {k: loo_stat(data, (k,), d) for k in PRODUCTION}
        best = max(PRODUCTION, key=aucs.__getitem__)
        return score_new(data, ("centroid",) if aucs[best] < threshold else (best,), d)

    return set(PRODUCTION), score


def two_stage_rule(compare: str) -> Rule:
    """Centroid against the discriminative pair first, then the better of linear and MaxEnt. The best of two
    noisy, correlated AUCs is biased upwards (the winner's curse), so the pair is compared through their ``mean``,
    or only when ``both`` beat the centroid."""

    def score(data: dict, d: int) -> np.ndarray:
        aucs = {k: loo_stat(data, (k,), d) for k in PRODUCTION}
        pair = (aucs["linear"], aucs["maxent"])
        wins = np.mean(pair) > aucs["centroid"] if compare == "mean" else min(pair) > aucs["centroid"]
        if not wins:
            return score_new(data, ("centroid",), d)
        return score_new(data, ("linear",) if aucs["linear"] >= aucs["maxent"] else ("maxent",), d)

    return set(PRODUCTION), score


def head_rule(head: int) -> Rule:
    """The production choice picks the ``head`` papers, which are then ordered by the z-sum of all three kinds (their
    agreement); the rest keep the chosen kind's order. A list-level rule: no per-paper score gives it."""

    def score(data: dict, d: int) -> np.ndarray:
        chosen = score_new(data, choose(data, [(k,) for k in PRODUCTION], d), d)
        agreement = score_new(data, PRODUCTION, d)
        top = np.argsort(-chosen)[:head]
        out = chosen.copy()
        out[top] = chosen.max() + 1.0 + (agreement[top] - agreement[top].min())
        return out

    return set(PRODUCTION), score


def percentile_head_rule(share: float) -> Rule:
    """A per-paper form of ``head_rule``: a paper the chosen kind ranks in the top ``share`` of the background is
    ordered by the three kinds' agreement, above every paper that it does not; a threshold on the chosen kind's
    background percentile, so each paper is scored alone."""

    def score(data: dict, d: int) -> np.ndarray:
        names = choose(data, [(k,) for k in PRODUCTION], d)
        chosen, background = data[f"{names[0]}:new"][d], data[f"{names[0]}:bg"][d]
        percentile = np.searchsorted(np.sort(background), chosen, side="right") / len(background)
        agreement = score_new(data, PRODUCTION, d)
        head = percentile >= 1.0 - share
        out = score_new(data, names, d)
        out[head] = out.max() + 1.0 + (agreement[head] - agreement[head].min()) if head.any() else out[head]
        return out

    return set(PRODUCTION), score


def rule_table(have: set[str]) -> dict[str, Rule]:
    table: dict[str, Rule] = {"production: LOO AUC choice of linear, maxent, centroid": choice_rule(list(PRODUCTION))}
    have = have - {"jack"}
    for name in sorted(have):
        table[f"fixed {name}"] = choice_rule([name])
    for name in sorted(have - set(PRODUCTION)):
        table[f"choice of the three + {name}"] = choice_rule([*PRODUCTION, name])
        table[f"choice of {name}, maxent, centroid"] = choice_rule([name, "maxent", "centroid"])
    smoothing = sorted({name.split("_", 1)[1] for name in have if name.startswith("centroid_s")})
    for tag in ("col0.5", "col0.25", "col-0.25", *smoothing):  # the three kinds in a transformed space
        transformed = [f"{k}_{tag}" for k in PRODUCTION]
        table[f"choice of the three {tag}"] = choice_rule(transformed)
        table[f"choice of the three + the three {tag}"] = choice_rule([*PRODUCTION, *transformed])
    if {f"{k}_hb" for k in PRODUCTION} <= have:
        table["choice judged on a held-out half of the background"] = choice_rule([f"{k}_hb" for k in PRODUCTION])
    table["choice of the three + their pairs"] = choice_rule(
        [*PRODUCTION, "linear+maxent", "linear+centroid", "maxent+centroid"]
    )
    for stat in ("logrank", "top2", "top5", "top10", "pauc10", "pauc20", "pauc30", "pauc50"):
        table[f"production pool, choice by {stat}"] = choice_rule(list(PRODUCTION), stat)
    for stat in ("median", "trimmed", "min", "probit", "meanz"):
        table[f"production pool, choice by {stat}"] = choice_rule(list(PRODUCTION), stat)
    table["production choice, jackknife-averaged scores"] = (
        {*PRODUCTION, "jack"},
        choice_rule(list(PRODUCTION), "auc", "jack")[1],
    )
    table["softmax(AUC / its standard error) weights"] = soft_rule("softmax")
    table["weights AUC - 0.5"] = soft_rule("linear")
    table["maxent unless beaten by one paired SE"] = one_se_rule("maxent")
    table["linear unless beaten by one paired SE"] = one_se_rule("linear")
    table["production choice z-averaged with maxent"] = with_maxent_rule()
    table["centroid unless the mean AUC of linear and maxent beats it"] = two_stage_rule("mean")
    table["centroid unless both linear and maxent beat it"] = two_stage_rule("both")
    for threshold in (0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
        table[f"centroid where the best LOO AUC < {threshold:g}"] = regime_rule(threshold)
    for head in (3, 5, 8, 10, 12, 15, 20):
        table[f"choice's top {head} ordered by the three kinds' agreement"] = head_rule(head)
    for share in (0.0025, 0.005, 0.01, 0.02, 0.03, 0.05):
        table[f"choice's top {share:.2%} of the background ordered by agreement"] = percentile_head_rule(share)
    return table


def per_category(spec: str) -> None:
    """nDCG@10 per primary category over every run given: each production kind alone, the production choice,
    the embedding-LR baseline, the mean leave-one-out AUCs and how often each kind is chosen."""
    rows: dict[str, list] = {}
    for path in spec.split(","):
        data = load(path)
        for d, key in enumerate(data["key"]):
            aucs = {k: loo_stat(data, (k,), d) for k in PRODUCTION}
            ndcg = {k: ndcg_at_k(score_new(data, (k,), d), data["relevant"][d]) for k in PRODUCTION}
            pick = max(PRODUCTION, key=aucs.__getitem__)
            rows.setdefault(key.split("/")[1], []).append(
                (ndcg, aucs, pick, float(data["baseline"][d]), float(data["relevant"][d].mean()))
            )
    head = " ".join(f"{k:>8s}" for k in PRODUCTION)
    print(f"{'category':10s} {'draws':>5s} {'share':>6s} {'LR base':>7s} {head} {'choice':>7s}  LOO AUC {head}  chosen")
    for cat, draws in sorted(rows.items(), key=lambda item: -np.mean([row[4] for row in item[1]])):
        ndcg = " ".join(f"{np.mean([row[0][k] for row in draws]):8.3f}" for k in PRODUCTION)
        aucs = " ".join(f"{np.mean([row[1][k] for row in draws]):8.3f}" for k in PRODUCTION)
        chosen = np.mean([row[0][row[2]] for row in draws])
        counts = ", ".join(f"{k} {sum(row[2] == k for row in draws)}" for k in PRODUCTION)
        share, base = np.mean([row[4] for row in draws]), np.mean([row[3] for row in draws])
        print(f"{cat:10s} {len(draws):5d} {share:6.3f} {base:7.3f} {ndcg} {chosen:7.3f}          {aucs}  {counts}")


def rules(specs: list[str]) -> None:
    """Margin over the embedding LR baseline of every rule whose candidates every run holds."""
    runs = [load(spec) for spec in specs]
    have = set.intersection(*(names_in(data) | ({"jack"} if "linear:jack" in data else set()) for data in runs))
    table = {label: rule for label, rule in rule_table(have).items() if rule[0] <= have}
    print(f"{len(runs)} run(s): {', '.join(specs)}; margins per run, then their mean")
    for label, (_, score) in table.items():
        margins = []
        for data in runs:
            values = [ndcg_at_k(score(data, d), data["relevant"][d]) for d in range(len(data["key"]))]
            margins.append(macro(data, values) - macro(data, list(data["baseline"])))
        print(f"  {label:55s} {np.mean(margins):+.4f}  ({' / '.join(f'{m:+.4f}' for m in margins)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path("data/cache/embeddings.sqlite"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--k", type=int, default=10, help="seed papers per draw")
    parser.add_argument("--rules", nargs="+", help="npz files of one seed joined by commas, per seed")
    parser.add_argument("--candidates", default="linear,maxent,centroid")
    parser.add_argument("--per-category", help="npz files of the production kinds, joined by commas (any seeds)")
    parser.add_argument("--smooth", help="NEIGHBOURS,WEIGHT: database-side augmentation of every vector first")
    parser.add_argument(
        "--holdout-background",
        action="store_true",
        help="also store {kind}_hb: leave-one-out fits on half the background, judged on the other half",
    )
    args = parser.parse_args()
    if args.rules:
        rules(args.rules)
        return
    if args.per_category:
        per_category(args.per_category)
        return
    if args.holdout_background and not set(PRODUCTION) <= set(args.candidates.split(",")):
        parser.error("--holdout-background scores with the production kinds: keep linear, maxent, centroid")
    smooth = None
    if args.smooth:
        neighbours, weight = args.smooth.split(",")
        smooth = (int(neighbours), float(weight))
    data = collect(
        args.seed,
        args.cache,
        args.candidates.split(","),
        args.k,
        smooth=smooth,
        dataset=args.dataset,
        holdout=args.holdout_background,
    )
    if smooth:  # stored under their own names, so --rules compares them with the raw candidates
        data = {
            (f"{key.split(':')[0]}_s{args.smooth}:{key.split(':')[1]}" if ":" in key else key): v
            for key, v in data.items()
        }
    np.savez(args.out or Path(f"/tmp/screen{args.seed}.npz"), **data)


if __name__ == "__main__":
    main()

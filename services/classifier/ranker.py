"""Seed-based ranking with feedback: the one model the eval command measures and the service runs.

A subscription gives a handful of positives (seed papers, interest texts, liked papers), maybe some
disliked papers, and a background of recent papers it did not pick. The background is *unlabeled*,
not negative: it holds papers on the subscriber's topic too (positive-unlabeled learning). How many
depends on the topic's share of the listing, which we cannot see, and it decides which model wins:

* a **centroid** of the positives in background-centred space (minus a Rocchio share of the disliked
  papers) is robust when the topic is broad: its background is full of unlabeled positives that a
  discriminative model learns to push down;
* a class-balanced, L2-regularised **logistic regression** against the background (disliked papers as
  explicit negatives) is sharper for narrow topics;
* a presence-background **MaxEnt** model (``learner.train_maxent``: the exponential tilt of the
  background that matches the positives' mean) sits between them: as sharp as a linear model, but it
  never treats the background as negative, and it sees the positives only through their mean.

Instead of guessing, each subscription picks by leave-one-out on its own positives: hold one out,
fit on the rest, and measure the share of background papers it is ranked above (P-vs-U AUC, which
under the usual "selected completely at random" assumption is a linear function of the P-vs-N AUC).
No labels beyond the user's own are used, so the choice adapts to other fields and data sets.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from services.classifier.learner import BlendModel, LinearModel, Model, blend, train_linear, train_maxent

SEED_L2 = 0.03
FEEDBACK_L2 = 0.01
ROCCHIO_NEGATIVE = 0.25  # classic Rocchio gamma: disliked papers pull the centroid away, gently
MAX_HELD_OUT = 10  # leave-one-out rounds per fit (evenly spread over the positives)
LOO_STEPS = 10  # L-BFGS steps per leave-one-out fit, warm-started from the full fit
RATING_PRIOR = 10.0  # the seeds count as this many ratings in the blend with the feedback model
DUPLICATE_COS = 0.999  # a background row this close to a positive is that paper (float16 copies differ)
KINDS = ("linear", "maxent", "centroid")  # candidates, in the order that breaks ties in the leave-one-out AUC


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def centroid_model(positives: np.ndarray, disliked: np.ndarray, center: np.ndarray) -> LinearModel:
    """Cosine to the Rocchio centroid in background-centred space (``LinearModel.center`` set)."""
    pos = _unit_rows(positives - center)
    direction = pos.mean(axis=0)
    if len(disliked):
        direction = direction - ROCCHIO_NEGATIVE * _unit_rows(disliked - center).mean(axis=0)
    direction = direction / max(float(np.linalg.norm(direction)), 1e-12)
    return LinearModel(
        direction.astype(np.float32),
        0.0,
        len(positives),
        len(disliked),
        center=center.astype(np.float32),
        kind="centroid",
    )


def seed_fingerprint(seeds: np.ndarray, background: np.ndarray, l2: float) -> str:
    """What a seed model is fitted on. While it is unchanged (ratings arrive between two listings, when the
    background is the same) a new rating refits only the feedback part, not the leave-one-out choice."""
    digest = hashlib.blake2b(digest_size=16)
    for array in (seeds, background):
        array = np.ascontiguousarray(array, dtype=np.float32)
        digest.update(repr(array.shape).encode())
        digest.update(array.tobytes())
    digest.update(repr(l2).encode())
    return digest.hexdigest()


@dataclass
class SeedRanker:
    background: np.ndarray
    background_weight: float = 1.0
    l2: float = SEED_L2
    steps: int = 30

    def _l2(self, n_negatives: int) -> float:
        # Rated papers carry more weight as they accumulate; few ratings barely move the seed model.
        return self.l2 if n_negatives == 0 else max(FEEDBACK_L2, self.l2 * 10 / (10 + n_negatives))

    def fit_linear(
        self, positives: np.ndarray, disliked: np.ndarray, warm: LinearModel | None = None, steps: int | None = None
    ) -> LinearModel:
        return train_linear(
            positives,
            disliked,
            background=self.background,
            background_weight=self.background_weight,
            l2=self._l2(len(disliked)),
            warm=warm if warm is not None and warm.center is None else None,
            steps=steps or self.steps,
        )

    @cached_property
    def center(self) -> np.ndarray:
        """The background mean (the centroid's origin), computed once: every leave-one-out round needs it."""
        return self.background.mean(axis=0)

    def fit_kind(
        self,
        kind: str,
        positives: np.ndarray,
        disliked: np.ndarray,
        warm: LinearModel | None = None,
        steps: int | None = None,
    ) -> LinearModel:
        """One candidate model; ``warm`` (a model of the same kind) starts the optimiser near the answer."""
        if kind == "centroid":
            return centroid_model(positives, disliked, self.center)
        warm = warm if warm is not None and warm.kind == kind else None
        if kind == "maxent":
            return train_maxent(
                positives,
                disliked,
                background=self.background,
                l2=self._l2(len(disliked)),
                warm=warm,
                steps=steps or self.steps,
            )
        return self.fit_linear(positives, disliked, warm=warm, steps=steps)

    def others(self, positives: np.ndarray, disliked: np.ndarray) -> np.ndarray:
        """What a held-out positive should rank above: the background (minus copies of the positives, which
        may sit in the background sample) and the disliked papers."""
        unit = positives / np.maximum(np.linalg.norm(positives, axis=1, keepdims=True), 1e-12)
        copies = (self.background @ unit.T).max(axis=1) > DUPLICATE_COS * np.linalg.norm(self.background, axis=1)
        others = self.background[~copies]
        return np.concatenate([others, disliked]) if len(disliked) else others

    def loo_auc(
        self,
        positives: np.ndarray,
        disliked: np.ndarray,
        kind: str,
        full: LinearModel,
        others: np.ndarray | None = None,
    ) -> float:
        """Mean share of ``others`` ranked below a held-out positive."""
        n = len(positives)
        if n < 3:
            return float("nan")
        held = np.unique(np.linspace(0, n - 1, min(n, MAX_HELD_OUT)).round().astype(int))
        others = self.others(positives, disliked) if others is None else others
        aucs = []
        for i in held:
            model = self.fit_kind(kind, np.delete(positives, i, axis=0), disliked, warm=full, steps=LOO_STEPS)
            score = model.logits(positives[i : i + 1])[0]
            aucs.append(float(np.mean(model.logits(others) < score)))
        return float(np.mean(aucs))

    def fit(
        self,
        positives: np.ndarray,
        negatives: np.ndarray | None = None,
        warm: LinearModel | None = None,
    ) -> LinearModel:
        """Fit every candidate and keep the one its own positives prefer under leave-one-out."""
        dims = positives.shape[1]
        disliked = np.zeros((0, dims), np.float32) if negatives is None else np.asarray(negatives, np.float32)
        models = {kind: self.fit_kind(kind, positives, disliked, warm=warm) for kind in KINDS}
        others = self.others(positives, disliked)
        aucs = {kind: self.loo_auc(positives, disliked, kind, models[kind], others) for kind in KINDS}
        best = KINDS[0] if np.isnan(aucs[KINDS[0]]) else max(KINDS, key=lambda kind: aucs[kind])
        model = models[best]
        model.kind, model.loo_auc = best, aucs[best]
        return model

    def fit_feedback(
        self, seeds: np.ndarray, liked: np.ndarray, disliked: np.ndarray, warm: Model | None = None
    ) -> Model:
        """The seed model, blended with a feedback model once the user rated papers.

        The feedback model is the logistic regression on seeds + liked against disliked + background
        (warm-started from the last one, so a new rating costs a few L-BFGS steps); its share grows as
        ``ratings / (RATING_PRIOR + ratings)``, so a first handful of ratings refines the seeds' ranking
        instead of replacing it. The seed model inside ``warm`` is reused when its fingerprint matches.
        """
        n_ratings = len(liked) + len(disliked)
        if len(seeds) == 0:
            return self.fit(liked, disliked if len(disliked) else None, warm=_linear_part(warm))
        key = seed_fingerprint(seeds, self.background, self.l2)
        base = _seed_part(warm)
        if base is None or base.fingerprint != key:
            base = self.fit(seeds)
            base.fingerprint = key
        if n_ratings == 0:
            return base
        positives = np.concatenate([seeds, liked]) if len(liked) else seeds
        feedback = self.fit_linear(positives, disliked, warm=_linear_part(warm))
        share = n_ratings / (RATING_PRIOR + n_ratings)
        model = blend([base, feedback], [1.0 - share, share], self.background)
        model.loo_auc = base.loo_auc
        return model

    def scores(self, candidates: np.ndarray, positives: np.ndarray) -> np.ndarray:
        return self.fit(positives).logits(candidates)

    def scores_with_feedback(
        self,
        candidates: np.ndarray,
        seeds: np.ndarray,
        liked: np.ndarray,
        disliked: np.ndarray,
        state: Model | None = None,
    ) -> tuple[np.ndarray, Model]:
        model = self.fit_feedback(seeds, liked, disliked, warm=state)
        return model.logits(candidates), model


def _seed_part(model: Model | None) -> LinearModel | None:
    if isinstance(model, BlendModel):
        return model.parts[0]
    return model if model is not None and model.fingerprint else None


def _linear_part(model: Model | None) -> LinearModel | None:
    if isinstance(model, BlendModel):
        return model.feedback_part()
    return model if model is not None and model.center is None and model.kind == "linear" else None

"""Seed-based ranking with feedback: the model the eval command measures and the service runs.

A subscription is a handful of positive vectors (seed papers, interest texts, liked papers), maybe
some disliked papers, and a background of recent papers it did not pick. A strongly L2-regularised,
class-balanced logistic regression against that background sits between the centroid-minus-
background direction (its limit under heavy regularisation: robust with 10 seeds) and a free linear
classifier (better once ratings accumulate). Liked and disliked papers enter as labeled examples
with more weight than the background, and retraining warm-starts from the previous weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.classifier.learner import LinearModel, train_linear

SEED_L2 = 0.03
FEEDBACK_L2 = 0.01


@dataclass
class SeedRanker:
    background: np.ndarray
    background_weight: float = 1.0
    l2: float = SEED_L2

    def fit(
        self,
        positives: np.ndarray,
        negatives: np.ndarray | None = None,
        warm: LinearModel | None = None,
    ) -> LinearModel:
        dims = positives.shape[1]
        negatives = np.zeros((0, dims), np.float32) if negatives is None else negatives
        # Rated papers carry more weight as they accumulate; few ratings barely move the seed model.
        l2 = self.l2 if len(negatives) == 0 else max(FEEDBACK_L2, self.l2 * 10 / (10 + len(negatives)))
        return train_linear(
            positives,
            negatives,
            background=self.background,
            background_weight=self.background_weight,
            l2=l2,
            warm=warm,
        )

    def scores(self, candidates: np.ndarray, positives: np.ndarray) -> np.ndarray:
        return self.fit(positives).logits(candidates)

    def scores_with_feedback(
        self,
        candidates: np.ndarray,
        seeds: np.ndarray,
        liked: np.ndarray,
        disliked: np.ndarray,
        state: LinearModel | None = None,
    ) -> tuple[np.ndarray, LinearModel]:
        positives = np.concatenate([seeds, liked]) if len(liked) else seeds
        model = self.fit(positives, disliked if len(disliked) else None, warm=state)
        return model.logits(candidates), model

"""Ranking metrics with binary relevance."""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best scores, best first; ties broken by index so results are reproducible."""
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores, dtype=np.float64)))
    return order[:k]


def ndcg_at_k(scores: np.ndarray, relevant: np.ndarray, k: int = 10) -> float:
    """nDCG@k: DCG of the top k over the DCG of the best possible top k (0 when nothing is relevant)."""
    gains = np.asarray(relevant, dtype=np.float64)[top_k(scores, k)]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.sort(np.asarray(relevant, dtype=np.float64))[::-1][:k]
    idcg = float((ideal * discounts[: len(ideal)]).sum())
    return float((gains * discounts[: len(gains)]).sum()) / idcg if idcg else 0.0


def precision_at_k(scores: np.ndarray, relevant: np.ndarray, k: int = 10) -> float:
    return float(np.asarray(relevant, dtype=np.float64)[top_k(scores, k)].sum()) / k

"""A per-subscription relevance model: L2-regularised, class-balanced logistic regression in torch.

Positives are the subscription's seed papers, interest texts and liked papers; negatives are its
disliked papers and, as weak negatives, a background sample of recent papers (the "rest of the
day's listing" that arxiv-sanity-lite and Scholar Inbox train against). Weights are a 384-vector and a bias,
stored in Redis beside the subscription (``classifier:model:{id}``, state.py); retraining warm-starts from them
and runs a few L-BFGS steps, so a new rating costs milliseconds. ``train_maxent`` fits the same linear form as a
presence-background MaxEnt model, one of the seed ranker's candidates (ranker.py).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np
import torch

torch.set_num_threads(1)


def _b64(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def _unb64(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


@dataclass
class LinearModel:
    """``w·x + b``; with ``center`` set, ``w·unit(x - center)`` (a cosine in background-centred space)."""

    weights: np.ndarray  # (d,)
    bias: float
    n_pos: int = 0
    n_neg: int = 0
    center: np.ndarray | None = None
    kind: str = "linear"  # "linear" (logistic regression), "maxent" (presence-background) or "centroid"
    loo_auc: float = float("nan")  # leave-one-out AUC that chose this model, for logs and reasons
    fingerprint: str = ""  # of what a seed model was fitted on (ranker.seed_fingerprint): reused while unchanged

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, np.float32)
        if self.center is None:
            return vectors @ self.weights + self.bias
        shifted = vectors - self.center
        norms = np.maximum(np.linalg.norm(shifted, axis=-1), 1e-12)
        return (shifted @ self.weights) / norms + self.bias

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"w": _b64(self.weights), "b": self.bias, "n_pos": self.n_pos, "n_neg": self.n_neg}
        out["kind"] = self.kind
        if self.center is not None:
            out["center"] = _b64(self.center)
        if self.fingerprint:
            out["fingerprint"] = self.fingerprint
        if not np.isnan(self.loo_auc):
            out["loo_auc"] = self.loo_auc
        return out

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> LinearModel:
        center = _unb64(str(data["center"])) if data.get("center") else None
        return cls(
            _unb64(str(data["w"])),
            float(data["b"]),  # type: ignore[arg-type]
            int(data.get("n_pos", 0)),  # type: ignore[arg-type]
            int(data.get("n_neg", 0)),  # type: ignore[arg-type]
            center,
            str(data.get("kind", "linear")),
            float(data.get("loo_auc", float("nan"))),  # type: ignore[arg-type]
            str(data.get("fingerprint", "")),
        )


@dataclass
class BlendModel:
    """``Σ coef·part(x) + offset``: the seed model and the feedback model, each standardised on the background.

    Used until ratings dominate: the weight of the seed model is ``prior / (prior + ratings)``, so ten
    ratings count as much as the seeds, and a handful cannot override them.
    """

    parts: list[LinearModel]
    coefs: list[float]
    offset: float
    n_pos: int = 0
    n_neg: int = 0
    kind: str = "blend"
    loo_auc: float = float("nan")

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        return sum(c * p.logits(vectors) for c, p in zip(self.coefs, self.parts, strict=True)) + self.offset

    @property
    def center(self) -> None:
        return None

    def feedback_part(self) -> LinearModel:
        return self.parts[-1]

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": "blend",
            "parts": [p.to_dict() for p in self.parts],
            "coefs": self.coefs,
            "offset": self.offset,
            "n_pos": self.n_pos,
            "n_neg": self.n_neg,
        }


Model = LinearModel | BlendModel


def model_from_dict(data: dict[str, object]) -> Model:
    if data.get("kind") == "blend":
        return BlendModel(
            [LinearModel.from_dict(p) for p in data["parts"]],  # type: ignore[attr-defined]
            [float(c) for c in data["coefs"]],  # type: ignore[attr-defined]
            float(data["offset"]),  # type: ignore[arg-type]
            int(data.get("n_pos", 0)),  # type: ignore[arg-type]
            int(data.get("n_neg", 0)),  # type: ignore[arg-type]
        )
    return LinearModel.from_dict(data)


def blend(models: list[LinearModel], weights: list[float], background: np.ndarray) -> BlendModel:
    """Weighted sum of models after standardising each one's logits on the background sample."""
    coefs, offset = [], 0.0
    for model, weight in zip(models, weights, strict=True):
        bg = model.logits(background)
        sd = max(float(bg.std()), 1e-9)
        coefs.append(weight / sd)
        offset -= weight * float(bg.mean()) / sd
    return BlendModel(models, coefs, offset, models[-1].n_pos, models[-1].n_neg)


def train_linear(
    positives: np.ndarray,
    negatives: np.ndarray,
    *,
    background: np.ndarray | None = None,
    background_weight: float = 0.5,
    l2: float = 1e-2,
    warm: LinearModel | None = None,
    steps: int = 30,
) -> LinearModel:
    """Fit ``sigmoid(w·x + b)``; each class (and the background) carries its own total weight.

    Class balance: positives carry weight 1 in total, explicit negatives 1, the background
    ``background_weight``; so ten seeds are not drowned by two thousand background papers.
    """
    parts, labels, weights = [], [], []
    groups = [(positives, 1.0, 1.0), (negatives, 0.0, 1.0)]
    if background is not None and len(background):
        groups.append((background, 0.0, background_weight))
    for vectors, label, total in groups:
        if len(vectors):
            parts.append(np.asarray(vectors, dtype=np.float32))
            labels.append(np.full(len(vectors), label, dtype=np.float32))
            weights.append(np.full(len(vectors), total / len(vectors), dtype=np.float32))
    x = torch.from_numpy(np.concatenate(parts))
    y = torch.from_numpy(np.concatenate(labels))
    sample_w = torch.from_numpy(np.concatenate(weights))
    sample_w = sample_w / sample_w.sum()
    dims = x.shape[1]
    w = torch.zeros(dims, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    if warm is not None and warm.center is None and warm.weights.shape == (dims,):
        with torch.no_grad():
            w.copy_(torch.from_numpy(warm.weights))
            b.fill_(warm.bias)
    optimizer = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (sample_w * torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y, reduction="none")).sum()
        loss = loss + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    n_neg = len(negatives)
    return LinearModel(w.detach().numpy().copy(), float(b.item()), len(positives), n_neg)


def train_maxent(
    positives: np.ndarray,
    negatives: np.ndarray,
    *,
    background: np.ndarray,
    l2: float = 1e-2,
    warm: LinearModel | None = None,
    steps: int = 30,
) -> LinearModel:
    """Presence-background MaxEnt: the exponential tilt ``q(x) e^{w·x}`` of the background that fits the positives.

    Maximises ``mean_P w·x - log Σ_r q_r e^{w·x_r} - l2/2 |w|²`` (the presence-only model of species
    distribution modelling; the unbiased PU logistic risk in its small-prior limit). The background is
    never called negative: it is the reference the positives are told apart from, and the positives
    enter only through their mean, so no single seed is fitted by pushing down look-alikes hidden in the
    background. The reference ``q`` puts total weight 1 on the background and 1 on disliked papers (the
    same balance as ``train_linear``), so disliked papers are kept low. The bias makes the logit the log
    density ratio against the reference.
    """
    ref_groups = [g for g in (np.asarray(background, np.float32), np.asarray(negatives, np.float32)) if len(g)]
    x_ref = torch.from_numpy(np.concatenate(ref_groups))
    log_q = torch.from_numpy(
        np.concatenate([np.full(len(g), -np.log(len(g) * len(ref_groups)), np.float32) for g in ref_groups])
    )
    mean_pos = torch.from_numpy(np.asarray(positives, np.float32).mean(axis=0))
    dims = x_ref.shape[1]
    w = torch.zeros(dims, requires_grad=True)
    if warm is not None and warm.center is None and warm.weights.shape == (dims,):
        with torch.no_grad():
            w.copy_(torch.from_numpy(warm.weights))
    optimizer = torch.optim.LBFGS([w], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = -(mean_pos @ w) + torch.logsumexp(x_ref @ w + log_q, dim=0) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        bias = -float(torch.logsumexp(x_ref @ w + log_q, dim=0))
    return LinearModel(w.detach().numpy().copy(), bias, len(positives), len(negatives), kind="maxent")

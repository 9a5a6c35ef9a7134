"""Turning a stored subscription (+ vectors) into a scoring Profile with its trained model."""

from __future__ import annotations

import hashlib

import numpy as np

from services.classifier.learner import Model
from services.classifier.ranker import SeedRanker
from services.classifier.scoring import Profile
from shared.subscription import Subscription

MIN_BACKGROUND = 20


def build_profile(
    subscription: Subscription,
    interest_vectors: np.ndarray,
    seeds: dict[str, tuple[str, np.ndarray]],
    liked: np.ndarray,
    disliked: np.ndarray,
    background: np.ndarray,
    warm: Model | None = None,
    fitted: Model | None = None,
) -> Profile:
    """Positives = interests + seeds + liked; the model trains against disliked and the background.

    ``fitted``: a model already trained on these same inputs (``inputs_digest``), used as it is instead of
    fitting again; only its calibration against today's background is recomputed (a matrix product).
    """
    dims = background.shape[1] if background.ndim == 2 and background.size else 384
    rows: list[np.ndarray] = []
    labels: list[str] = []
    for text, vec in zip(subscription.interests, interest_vectors, strict=False):
        rows.append(vec)
        labels.append(f'interest "{text}"')
    for paper_id, (title, vec) in seeds.items():
        rows.append(vec)
        labels.append(f'seed paper {paper_id} "{title}"')
    for vec in liked:
        rows.append(vec)
        labels.append("liked paper")
    vectors = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dims), np.float32)
    if len(vectors):
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    model = None
    bg_logits = None
    n_ratings = len(liked) + len(disliked)
    if len(vectors) and len(background) >= MIN_BACKGROUND:
        if fitted is not None:
            model = fitted
        else:
            ranker = SeedRanker(background=background)
            n_seed_rows = len(vectors) - len(liked)  # interests and seed papers come first
            model = ranker.fit_feedback(vectors[:n_seed_rows], vectors[n_seed_rows:], disliked, warm=warm)
        bg_logits = model.logits(background)
    enough = n_ratings if (len(liked) and len(disliked)) else 0
    return Profile.build(subscription, vectors, labels, model, bg_logits, enough, background)


def inputs_digest(
    space: str,
    interests: list[str],
    seeds: dict[str, tuple[str, np.ndarray]],
    liked: dict[str, np.ndarray],
    disliked: dict[str, np.ndarray],
) -> str:
    """What a subscription's model is trained on, besides the background: while it is unchanged, a stored model
    can be used again after a restart without fitting (a fit with its leave-one-out choice takes about a second).

    Interests count by their words and the vector space (replicas on other CPUs embed them with last-bit
    differences); papers by id and stored vector, in id order (a Redis hash does not keep its fields' order).
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(space.encode())
    for text in interests:
        digest.update(b"\0i" + text.encode())
    for tag, papers in ((b"s", {pid: vec for pid, (_, vec) in seeds.items()}), (b"l", liked), (b"d", disliked)):
        for paper_id in sorted(papers):
            digest.update(b"\0" + tag + paper_id.encode())
            digest.update(np.ascontiguousarray(papers[paper_id], dtype="<f4").tobytes())
    return digest.hexdigest()

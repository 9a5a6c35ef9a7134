"""Would another view of each paper (shorter truncation, the abstract embedded in pieces) rank better?

`embed` writes a cache keyed like the production one (sha256 of the paper's title + abstract text) whose vectors
are another view, so `relevance_screen.py --cache` screens every method on it with the same draws; `compare`
reads two screens of one seed (production view first) and prints the embedding-LR baseline and paperwire's choice
on each, their z-averaged ensemble, and the view each draw's leave-one-out AUC would pick.

    python benchmarks/relevance_views.py embed --view chunks_all --out data/cache/view_chunks_all.sqlite
    python benchmarks/relevance_screen.py --seed 0 --cache data/cache/view_chunks_all.sqlite --out /tmp/v0.npz
    python benchmarks/relevance_views.py compare /tmp/screen0.npz /tmp/v0.npz

Views: ``t128`` (title + abstract cut at 128 word pieces, the length the model was fine-tuned at); ``chunks``
(the title and the mean of the abstract's pieces of about 110 word pieces, sentence-aligned, weighted equally);
``chunks_all`` (the title and every piece weighted equally). Section 15 of
``benchmarks/results/relevance_experiments.md`` has the results.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from services.classifier.dataset import LabeledPaper, load_dataset  # noqa: E402
from services.classifier.embedding import EmbeddingCache, configured_model, normalize_rows  # noqa: E402

PIECE_WORDS = 80  # about 110 word pieces


def pieces(abstract: str) -> list[str]:
    """The abstract in sentence-aligned pieces of about ``PIECE_WORDS`` words."""
    out, current = [], ""
    for sentence in re.split(r"(?<=[.!?])\s+", abstract):
        if current and len((current + " " + sentence).split()) > PIECE_WORDS:
            out.append(current)
            current = sentence
        else:
            current = (current + " " + sentence).strip()
    return [*out, current] if current else out


def embed_view(papers: list[LabeledPaper], view: str) -> np.ndarray:
    from shared.embedding import load_embedder
    from shared.model_files import default_model_dir

    embedder = load_embedder(default_model_dir(), "fp32", max_tokens=128)
    if view == "t128":
        return normalize_rows(embedder.embed([p.text for p in papers]))
    titles = normalize_rows(embedder.embed([p.title for p in papers]))
    parts = [(i, piece) for i, p in enumerate(papers) for piece in pieces(p.abstract)]
    owner = np.array([i for i, _ in parts])
    vectors = normalize_rows(embedder.embed([piece for _, piece in parts]))
    summed = np.zeros_like(titles)
    np.add.at(summed, owner, vectors)
    if view == "chunks":
        return normalize_rows(titles + normalize_rows(summed))
    if view == "chunks_all":
        return normalize_rows(titles + summed)
    raise ValueError(f"unknown view {view!r}")


def compare(production: str, view: str) -> None:
    import relevance_screen as rs

    from services.classifier.metrics import ndcg_at_k

    kinds = [(k,) for k in rs.PRODUCTION]
    base, other = rs.load(production), rs.load(view)
    if list(base["key"]) != list(other["key"]):
        raise SystemExit("the two screens hold other draws (another seed or data set)")
    rows: dict[str, list[float]] = {
        k: [] for k in ("baseline", "baseline on the view", "paperwire", "paperwire on the view", "ensemble", "pick")
    }
    for d in range(len(base["key"])):
        relevant = base["relevant"][d]
        ours = [rs.score_new(data, rs.choose(data, kinds, d), d) for data in (base, other)]
        aucs = [max(rs.loo_stat(data, k, d) for k in kinds) for data in (base, other)]
        rows["baseline"].append(base["baseline"][d])
        rows["baseline on the view"].append(other["baseline"][d])
        rows["paperwire"].append(ndcg_at_k(ours[0], relevant, 10))
        rows["paperwire on the view"].append(ndcg_at_k(ours[1], relevant, 10))
        rows["ensemble"].append(ndcg_at_k(ours[0] + ours[1], relevant, 10))
        rows["pick"].append(ndcg_at_k(ours[int(np.argmax(aucs))], relevant, 10))
    reference = rs.macro(base, rows["baseline"])
    for name, values in rows.items():
        value = rs.macro(base, values)
        print(f"  {name:<24} {value:.4f}  ({value - reference:+.4f} over the baseline on the production view)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    embed = sub.add_parser("embed")
    embed.add_argument("--view", choices=["t128", "chunks", "chunks_all"], required=True)
    embed.add_argument("--dataset", type=Path, default=Path("tests/fixtures/labeled/daily_arxiv_ai_enhanced"))
    embed.add_argument("--out", type=Path, required=True)
    both = sub.add_parser("compare")
    both.add_argument("production")
    both.add_argument("view")
    args = parser.parse_args()
    if args.command == "compare":
        compare(args.production, args.view)
        return
    papers = load_dataset(args.dataset)
    cache = EmbeddingCache(args.out, configured_model().weights)  # read by relevance_screen.py --cache
    cache.put_many({EmbeddingCache.key(p.text): v for p, v in zip(papers, embed_view(papers, args.view), strict=True)})
    cache.close()


if __name__ == "__main__":
    main()

"""One paper at a time against N subscriptions: the scorer of an earlier commit against this one, in one process.

The classifier used to score each papers.embedded event alone with a fresh Scorer (every profile re-stacked per
call); it now keeps a compiled Scorer. This loads ``services/classifier/scoring.py`` as it was at ``--rev`` (git
show) next to the current one and times both on the same synthetic profiles (`paperwire bench score`'s), so the
ratio is measured on one machine in one run.

    python benchmarks/score_before_after.py --rev e92bd98 --subscriptions 10000,100000
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.classifier import bench  # noqa: E402
from services.classifier.scoring import Scorer  # noqa: E402
from shared.paper import Paper  # noqa: E402


def scoring_at(rev: str, folder: Path):  # noqa: ANN201
    source = subprocess.run(
        ["git", "show", f"{rev}:services/classifier/scoring.py"], check=True, capture_output=True, text=True
    ).stdout
    path = folder / "scoring_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("scoring_before", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["scoring_before"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def profiles_of_bench(n_subs: int) -> list:
    """The synthetic profiles `paperwire bench score` builds (caught on their way into its Scorer)."""
    caught: list = []

    class Catch(Scorer):
        def __init__(self, profiles, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
            caught.extend(profiles)
            super().__init__(profiles, *args, **kwargs)

    real, bench.Scorer = bench.Scorer, Catch
    try:
        bench.run_bench(n_subs, 20)
    finally:
        bench.Scorer = real
    return caught


def per_call(score, papers: list[Paper], vectors: np.ndarray) -> float:  # noqa: ANN001
    """Mean seconds of ``score(one paper, its vector)`` over the papers."""
    start = time.perf_counter()
    for i in range(len(papers)):
        score(papers[i : i + 1], vectors[i : i + 1])
    return (time.perf_counter() - start) / len(papers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rev", default="e92bd98", help="a commit with the scorer to compare against")
    parser.add_argument("--subscriptions", default="10000,100000")
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(5)
    with tempfile.TemporaryDirectory() as folder:
        before = scoring_at(args.rev, Path(folder))
        for n_subs in (int(n) for n in args.subscriptions.split(",")):
            profiles = profiles_of_bench(n_subs)
            vectors = bench._unit(rng.standard_normal((args.calls, 384)))
            papers = [Paper(id=f"2601.{i:05d}", title=f"paper {i}") for i in range(args.calls)]
            compiled = Scorer(profiles, chunk=2048).compile()
            was = per_call(lambda p, v: before.Scorer(profiles, chunk=2048).score(p, v), papers, vectors)  # noqa: B023
            now = per_call(compiled.score, papers, vectors)
            print(
                f"{n_subs} subscriptions, one paper per call: {was * 1e3:.1f} ms with a new Scorer per event "
                f"(before), {now * 1e3:.1f} ms with the compiled one (now), {was / now:.1f}x"
            )


if __name__ == "__main__":
    main()

"""Real labeled papers and their real embeddings (all-MiniLM-L6-v2), shared by the classifier tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from services.classifier.dataset import LabeledPaper, load_dataset
from services.classifier.embedding import embed_cached
from shared.paper import Author, Paper

DATASET = Path(__file__).resolve().parents[2] / "fixtures" / "labeled" / "daily_arxiv_ai_enhanced"
ROOT = Path(__file__).resolve().parents[3]
OAI_LISTING = ROOT / "tests" / "fixtures" / "arxiv_oai" / "litpuvn_ListRecords_arXivRaw_from2016-10-20.xml"


def oai_labeled_set(folder: Path) -> Path:
    """The recorded OAI-PMH listing (physics, maths, statistics; 2016-10-20/21) as a labeled set in ``folder``,
    made by ``benchmarks/oai_to_labeled.py``: the eval's second real data set, from other fields than cs."""
    script = ROOT / "benchmarks" / "oai_to_labeled.py"
    out = folder / "listing.jsonl"
    subprocess.run([sys.executable, str(script), str(OAI_LISTING), "--out", str(out)], check=True, cwd=ROOT)
    return folder


def to_paper(p: LabeledPaper) -> Paper:
    return Paper(
        id=p.id,
        title=p.title,
        abstract=p.abstract,
        categories=list(p.categories),
        authors=[Author(name=a) for a in p.authors],
    )


@pytest.fixture(scope="session")
def labeled_slice(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[LabeledPaper], np.ndarray, Path]:
    """The first 60 papers of three days (cs.CL / cs.CV rich), embedded once per session."""
    papers = load_dataset(DATASET)
    days = sorted({p.day for p in papers})[:3]
    chosen = [p for d in days for p in [q for q in papers if q.day == d][:60]]
    cache = tmp_path_factory.mktemp("emb") / "cache.sqlite"
    vectors = embed_cached([p.text for p in chosen], cache)
    return chosen, vectors, cache

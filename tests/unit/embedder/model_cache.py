"""One exported model per test session: PAPERWIRE_MODEL_DIR when set (CI caches it), else a directory
under pytest's temp root that survives between sessions (the export skips work whose hashes match)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from services.embedder.export import export_model

_exported: dict[str, Path] = {}
LABELED = Path(__file__).parents[2] / "fixtures" / "labeled" / "daily_arxiv_ai_enhanced"


def exported_model_dir(factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("PAPERWIRE_MODEL_DIR")
    out = Path(env) if env else factory.getbasetemp().parent / "paperwire-model-cache"
    if str(out) not in _exported:
        export_model(out=out)
        _exported[str(out)] = out
    return out


def labeled_rows(limit: int | None = None, step: int = 1) -> list[dict]:
    """Real papers from the labeled fixtures (id, title, summary), in file order."""
    rows: list[dict] = []
    for path in sorted(LABELED.glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = rows[::step]
    return rows[:limit] if limit else rows

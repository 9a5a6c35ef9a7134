"""Labeled paper sets for evaluation: JSON Lines files (or a folder of them), one paper per line."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from shared.paper import clean_text
from shared.text_tokens import compose_text

_DATE_NAME_RE = re.compile(r"(\d{4}-\d{2}-\d{2})")
_CATEGORY_SEP_RE = re.compile(r"[\s,;|]+")


@dataclass(frozen=True)
class LabeledPaper:
    id: str
    title: str
    abstract: str
    categories: tuple[str, ...]
    day: date
    authors: tuple[str, ...] = ()

    @property
    def primary(self) -> str:
        return self.categories[0] if self.categories else ""

    @property
    def text(self) -> str:
        """The text the embedder embeds a paper as (``compose_text``), so the eval measures the service's vectors."""
        return compose_text(self.title, self.abstract)


class DatasetError(ValueError):
    """A data set file or line that cannot be read; the message names file and line."""


def _categories(value: object) -> tuple[str, ...]:
    """Primary first, as given: a list, or a string separated by spaces (arXiv's own), commas, semicolons or bars."""
    if isinstance(value, str):
        return tuple(c for c in _CATEGORY_SEP_RE.split(value) if c)
    if isinstance(value, list):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return ()


def _authors(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(a.strip() for a in value.split(",") if a.strip())
    if isinstance(value, list):
        return tuple(str(a.get("name", "") if isinstance(a, dict) else a).strip() for a in value)
    return ()


def read_file(path: Path) -> list[LabeledPaper]:
    name_date = _DATE_NAME_RE.search(path.name)
    papers: list[LabeledPaper] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                raw_date = row.get("date") or (name_date.group(1) if name_date else None)
                if not raw_date:
                    raise DatasetError("no `date` field and the file name has no YYYY-MM-DD")
                papers.append(
                    LabeledPaper(
                        id=str(row["id"]).strip(),
                        title=clean_text(str(row.get("title") or "")),
                        abstract=clean_text(str(row.get("abstract") or row.get("summary") or "")),
                        categories=_categories(row.get("categories")),
                        day=date.fromisoformat(str(raw_date)[:10]),
                        authors=_authors(row.get("authors")),
                    )
                )
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                raise DatasetError(f"{path}:{number}: {exc}") from exc
    return papers


def load_dataset(path: Path) -> list[LabeledPaper]:
    """Read a file or every ``*.jsonl`` in a folder; a paper listed on several days keeps its first day."""
    path = Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    if not files:
        raise DatasetError(f"no .jsonl files in {path}")
    first: dict[str, LabeledPaper] = {}
    for file in files:
        for paper in read_file(file):
            if not paper.categories or not paper.title:
                continue
            known = first.get(paper.id)
            if known is None or paper.day < known.day:
                first[paper.id] = paper
    return sorted(first.values(), key=lambda p: (p.day, p.id))

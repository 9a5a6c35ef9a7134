"""Seed papers from a reference manager's export: BibTeX (.bib) or CSL-JSON (Zotero exports both).

Only arXiv ids are kept (the fetcher resolves them); they are found where exporters put them:
BibTeX ``eprint`` (with ``archivePrefix``/``eprinttype`` arXiv, or an id-shaped value), ``url``,
``doi`` 10.48550/arXiv.*, ``journal``/``note`` "arXiv preprint arXiv:*"; CSL-JSON ``URL``, ``DOI``,
``number`` ("arXiv:2401.01234"), ``archive_location`` and ``note``. Entries without an arXiv id are
reported back by key and title, so the user knows what was skipped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from shared.paper import ARXIV_ID_PATTERN, ARXIV_URL_PREFIX, InvalidArxivId, normalize_arxiv_id

_ID = ARXIV_ID_PATTERN
_FINDERS = (
    re.compile(rf"{ARXIV_URL_PREFIX}({_ID})", re.I),
    re.compile(rf"10\.48550/arxiv\.({_ID})", re.I),
    re.compile(rf"arxiv\s*:\s*({_ID})", re.I),
)
_BARE = re.compile(rf"^\s*({_ID})\s*$")


class SeedImportError(ValueError):
    """The file is neither readable BibTeX nor CSL-JSON; the message says why."""


@dataclass
class SeedImport:
    ids: list[str] = field(default_factory=list)  # normalised, versionless, in file order, no repeats
    skipped: list[str] = field(default_factory=list)  # "key: title" of entries without an arXiv id


def find_arxiv_id(*values: str, bare_ok: bool = False) -> str | None:
    """The first arXiv id in the given field values (URLs, DOIs, 'arXiv:...' notes)."""
    for value in values:
        if not value:
            continue
        candidates = [m.group(1) for finder in _FINDERS for m in finder.finditer(value)]
        if bare_ok and (bare := _BARE.match(value)):
            candidates.append(bare.group(1))
        for candidate in candidates:
            try:
                return normalize_arxiv_id(candidate)
            except InvalidArxivId:
                continue
    return None


def _bib_value(text: str, i: int) -> tuple[str, int]:
    """Read one field value at ``text[i]``: {braced}, "quoted" or bare; '#' concatenations joined."""
    parts = []
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i < len(text) and text[i] == "{":
            depth, start = 0, i
            while i < len(text):
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                i += 1
                if depth == 0:
                    break
            parts.append(text[start + 1 : i - 1])
        elif i < len(text) and text[i] == '"':
            end = i + 1
            while end < len(text) and (text[end] != '"' or text[end - 1] == "\\"):
                end += 1
            parts.append(text[i + 1 : end])
            i = end + 1
        else:
            m = re.match(r"[^,}#\s]*", text[i:])
            parts.append(m.group(0) if m else "")
            i += len(parts[-1])
        while i < len(text) and text[i].isspace():
            i += 1
        if i < len(text) and text[i] == "#":
            i += 1
            continue
        return "".join(parts), i


def parse_bibtex(text: str) -> list[tuple[str, dict[str, str]]]:
    """(citation key, lower-cased fields) per entry; @comment, @string and @preamble are skipped."""
    entries = []
    for m in re.finditer(r"@\s*(\w+)\s*[{(]", text):
        kind = m.group(1).lower()
        if kind in ("comment", "string", "preamble"):
            continue
        i = m.end()
        key_m = re.match(r"\s*([^,\s]*)\s*,", text[i:])
        if not key_m:
            continue
        key, i = key_m.group(1), i + key_m.end()
        fields: dict[str, str] = {}
        while True:
            fm = re.match(r"\s*([\w:.-]+)\s*=", text[i:])
            if not fm:
                break
            value, i = _bib_value(text, i + fm.end())
            fields[fm.group(1).lower()] = re.sub(r"\s+", " ", value.replace("{", "").replace("}", "")).strip()
            cm = re.match(r"\s*,", text[i:])
            if not cm:
                break
            i += cm.end()
        entries.append((key, fields))
    return entries


def _bib_id(fields: dict[str, str]) -> str | None:
    prefix = (fields.get("archiveprefix") or fields.get("eprinttype") or "").lower()
    eprint = fields.get("eprint", "")
    return find_arxiv_id(
        eprint if prefix in ("arxiv", "") else "",
        fields.get("doi", ""),
        fields.get("url", ""),
        fields.get("journal", ""),
        fields.get("note", ""),
        fields.get("howpublished", ""),
        bare_ok=True,
    ) or (find_arxiv_id(eprint, bare_ok=True) if prefix == "arxiv" else None)


def _csl_id(item: dict) -> str | None:
    values = [str(item.get(k) or "") for k in ("DOI", "URL", "number", "archive_location", "note", "id")]
    return find_arxiv_id(*values) or (
        find_arxiv_id(str(item.get("number") or ""), bare_ok=True)
        if "arxiv" in str(item.get("publisher") or item.get("container-title") or "").lower()
        else None
    )


def import_seeds(text: str) -> SeedImport:
    """Read a BibTeX or CSL-JSON export (detected from its first character) into seed ids."""
    result = SeedImport()
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise SeedImportError(f"not valid CSL-JSON: {exc}") from exc
        items = data if isinstance(data, list) else data.get("items", [data])
        items = [it for it in items if isinstance(it, dict)]
        found = [(str(it.get("id", "?")), str(it.get("title", "")), _csl_id(it)) for it in items]
    elif "@" in stripped:
        entries = parse_bibtex(text)
        if not entries:
            raise SeedImportError("no BibTeX entries found (expected @article{key, ...})")
        found = [(key, fields.get("title", ""), _bib_id(fields)) for key, fields in entries]
    else:
        raise SeedImportError("expected a BibTeX (.bib) or CSL-JSON (.json) export")
    for key, title, arxiv_id in found:
        if arxiv_id is None:
            result.skipped.append(f"{key}: {title}" if title else key)
        elif arxiv_id not in result.ids:
            result.ids.append(arxiv_id)
    return result

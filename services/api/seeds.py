"""Seed papers from an uploaded library export (BibTeX or CSL-JSON): which format, which ids, which are new.

The parsing itself is ``shared.seeds_import`` (the same as ``paperwire seeds import``); this module decides
what an upload is and says clearly when it is neither format, so the api answers 422 with a reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from starlette.datastructures import UploadFile

from shared.seeds_import import SeedImport, SeedImportError, import_seeds

SeedFormat = Literal["bibtex", "csl-json"]
UPLOAD_FIELD = "file"

_TYPES: dict[str, SeedFormat] = {
    "application/x-bibtex": "bibtex",
    "text/x-bibtex": "bibtex",
    "application/x-bibtex-text-file": "bibtex",
    "text/bibtex": "bibtex",
    "text/x-biblatex": "bibtex",
    "application/vnd.citationstyles.csl+json": "csl-json",
    "application/csl+json": "csl-json",
    "application/json": "csl-json",
}
_EXTENSIONS: dict[str, SeedFormat] = {".bib": "bibtex", ".bibtex": "bibtex", ".biblatex": "bibtex", ".json": "csl-json"}
_NAMES = {"bibtex": "BibTeX", "csl-json": "CSL-JSON"}
_BIBTEX_ENTRY = re.compile(r"@\s*[A-Za-z]+\s*[{(]")

# The upload's request body in OpenAPI: a multipart form field or the file itself as the body.
REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "a BibTeX (.bib) or CSL-JSON export, e.g. from Zotero: as the multipart field `file`, "
        "or as the request body. The content type or the file name's extension names the format; "
        "text/plain or application/octet-stream: read from the content.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [UPLOAD_FIELD],
                    "properties": {UPLOAD_FIELD: {"type": "string", "format": "binary"}},
                }
            },
            "application/x-bibtex": {"schema": {"type": "string"}},
            "application/vnd.citationstyles.csl+json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "text/plain": {"schema": {"type": "string"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


class SeedUploadError(ValueError):
    """The upload is not a usable export; the message names what is wrong (answered 422)."""


@dataclass
class Upload:
    data: bytes
    content_type: str | None = None
    filename: str | None = None


@dataclass
class ReadExport:
    format: SeedFormat
    found: SeedImport


def declared_format(content_type: str | None, filename: str | None) -> SeedFormat | None:
    """The format the client named: a specific content type first, else the file name's extension."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in _TYPES:
        return _TYPES[media]
    name = (filename or "").lower()
    for extension, fmt in _EXTENSIONS.items():
        if name.endswith(extension):
            return fmt
    return None


def sniffed_format(text: str) -> SeedFormat | None:
    """What the content looks like: JSON as ``import_seeds`` tells it (first character), BibTeX by an entry's
    opening ``@type{`` (an e-mail address alone does not make a feed or a letter BibTeX)."""
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        return "csl-json"
    if _BIBTEX_ENTRY.search(stripped):
        return "bibtex"
    return None


def _csl_items(text: str) -> list[Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SeedUploadError(f"file: not valid CSL-JSON: {exc}") from exc
    items = data if isinstance(data, list) else data.get("items", [data]) if isinstance(data, dict) else None
    return items if isinstance(items, list) else []


def _check_csl(text: str) -> None:
    """CSL-JSON items are objects with an ``id`` and a ``type`` (the schema requires both): other JSON is refused."""
    items = _csl_items(text)
    if not items:
        raise SeedUploadError("file: CSL-JSON export without items (expected a JSON array of CSL items)")
    bad = sum(1 for item in items if not (isinstance(item, dict) and "id" in item and "type" in item))
    if bad:
        raise SeedUploadError(
            f"file: JSON but not CSL-JSON: {bad} of {len(items)} items lack the 'id' and 'type' every CSL item has"
        )


def read_export(upload: Upload) -> ReadExport:
    """Decide the format (declared, else sniffed; the two must agree) and read the arXiv ids."""
    if not upload.data.strip():
        raise SeedUploadError("file: empty: send a BibTeX (.bib) or CSL-JSON (.json) export")
    try:
        text = upload.data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SeedUploadError("file: not UTF-8 text: expected a BibTeX (.bib) or CSL-JSON (.json) export") from exc
    sniffed = sniffed_format(text)
    if sniffed is None:
        raise SeedUploadError("file: neither BibTeX nor CSL-JSON: expected @type{key, ...} entries or a JSON array")
    declared = declared_format(upload.content_type, upload.filename)
    if declared is not None and declared != sniffed:
        raise SeedUploadError(
            f"file: sent as {_NAMES[declared]} (content type or file name) but the content reads as {_NAMES[sniffed]}"
        )
    if sniffed == "csl-json":
        _check_csl(text)
    try:
        found = import_seeds(text)
    except SeedImportError as exc:
        raise SeedUploadError(f"file: {exc}") from exc
    if not found.ids and not found.skipped:
        raise SeedUploadError(f"file: no entries found in the {_NAMES[sniffed]} export")
    return ReadExport(format=sniffed, found=found)


def new_seeds(existing: list[str], found: list[str]) -> tuple[list[str], list[str]]:
    """(added, already there): both in the export's order; ids are normalised on both sides."""
    have = set(existing)
    added = [i for i in found if i not in have]
    return added, [i for i in found if i in have]


async def upload_from_request(request: Request) -> Upload:
    """The file of a multipart form (field ``file``) or the raw request body."""
    content_type = request.headers.get("content-type")
    if (content_type or "").lower().startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=10) as form:
            part = form.get(UPLOAD_FIELD)
            if not isinstance(part, UploadFile):
                raise SeedUploadError(f"{UPLOAD_FIELD}: missing: send the export as the multipart file field 'file'")
            return Upload(await part.read(), part.content_type, part.filename)
    return Upload(await request.body(), content_type)

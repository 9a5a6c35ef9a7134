"""Hardened XML parsing: size limit, explicit decoding, defusedxml (no entities, no external access).

defusedxml refuses entity declarations (billion laughs, quadratic blowup) and external references (XXE),
and expat never fetches anything, so parsing has no network or file access. We decode the bytes ourselves
(BOM, then the XML declaration, then UTF-8) because expat knows only a handful of encodings.
"""

from __future__ import annotations

import codecs
import re
import xml.etree.ElementTree as ET

import defusedxml
import defusedxml.ElementTree as DET
import structlog

from services.parser.errors import DocumentTooLarge, ParseError, UnsafeDocument

DEFAULT_MAX_BYTES = 32 * 1024 * 1024

_BOMS = (
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
)
# Byte patterns of "<?" in wide encodings without a BOM (XML 1.0 appendix F).
_SNIFF = (
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<\x00?", "utf-16-be"),
    (b"<\x00?\x00", "utf-16-le"),
)
_DECL_RE = re.compile(r"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["'][^>]*\?>""")
_DECL_STRIP_RE = re.compile(r"^\s*<\?xml[^>]*\?>")
# Characters XML 1.0 does not allow anywhere: one of them (a form feed pasted into an abstract) would make expat
# refuse the whole document, hundreds of good records with it.
_ILLEGAL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
log = structlog.get_logger("paperwire.parser.xml")


def decode_xml(body: bytes | str) -> str:
    """Bytes to text, by BOM, then declared encoding, then UTF-8; undecodable input is a ParseError."""
    if isinstance(body, str):
        return body.removeprefix("\ufeff")
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            return _decode(body[len(bom) :], encoding)
    for prefix, encoding in _SNIFF:
        if body.startswith(prefix):
            return _decode(body, encoding)
    head = body[:200].decode("ascii", errors="replace")
    match = _DECL_RE.match(head)
    encoding = match.group(1) if match else "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ParseError(f"unknown encoding {encoding!r} declared in the XML declaration") from None
    return _decode(body, encoding)


def _decode(body: bytes, encoding: str) -> str:
    try:
        return body.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ParseError(f"bytes not valid {encoding} at offset {exc.start}") from None


def parse_xml(body: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ET.Element:
    """Parse untrusted XML into an Element tree, or raise a ParseError saying why not."""
    size = len(body.encode() if isinstance(body, str) else body)
    if size > max_bytes:
        raise DocumentTooLarge(f"document is {size} bytes, above the {max_bytes}-byte limit")
    text = decode_xml(body)
    if not text.strip():
        raise ParseError("empty document")
    # The text is already Unicode: drop the declaration so expat does not re-apply its encoding.
    text = _DECL_STRIP_RE.sub("", text, count=1)
    text, replaced = _ILLEGAL_RE.subn(" ", text)
    if replaced:
        log.warning("xml_illegal_characters_replaced", count=replaced, note="each became a space")
    try:
        return DET.fromstring(text, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except defusedxml.EntitiesForbidden as exc:
        raise UnsafeDocument(f"entity declarations are refused ({exc.name})") from None
    except defusedxml.ExternalReferenceForbidden as exc:
        raise UnsafeDocument(f"external reference refused ({exc.sysid})") from None
    except defusedxml.DefusedXmlException as exc:
        raise UnsafeDocument(f"unsafe XML refused: {exc}") from None
    except ET.ParseError as exc:
        raise ParseError(f"ill-formed XML: {exc}") from None


def local(tag: str) -> str:
    """Element name without its namespace: the old and new arXiv formats differ only there at times."""
    return tag.rsplit("}", 1)[-1]


def text_of(element: ET.Element | None) -> str | None:
    if element is None:
        return None
    return "".join(element.itertext())

"""Hostile and broken input: parsed safely or rejected with a ParseError, in bounded time and memory,
with no network or file access (checked by an audit hook in a memory-capped child process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.parser.errors import ParseError
from services.parser.parse import parse_document
from services.parser.xmlsafe import parse_xml

ROOT = Path(__file__).parents[3]
MALFORMED = ROOT / "tests" / "fixtures" / "malformed"

CHILD = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1024 * 1024 * 1024, 1024 * 1024 * 1024))
from pathlib import Path
from services.parser.errors import ParseError
from services.parser.parse import SOURCES, parse_document
bodies = {str(p): p.read_bytes() for p in sorted(Path(sys.argv[1]).rglob("*.xml"))}
blocked = []
LIBS = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})
def hook(event, args):
    if event == "open" and str(args[0]).startswith(LIBS) and str(args[0]).endswith((".py", ".pyc", ".so")):
        return  # lazy stdlib imports (codec modules) are not document-driven access
    if event in ("open", "socket.connect", "socket.getaddrinfo", "subprocess.Popen", "os.system"):
        blocked.append(event)
        raise PermissionError(f"{event} refused during parsing")
sys.addaudithook(hook)
for path, body in bodies.items():
    for source in SOURCES:
        try:
            result = parse_document(source, body)
            outcome = {"ok": len(result.papers), "item_errors": len(result.errors)}
        except ParseError as exc:
            outcome = {"rejected": type(exc).__name__, "reason": str(exc)}
        except BaseException as exc:
            outcome = {"crash": f"{type(exc).__name__}: {exc}"}
        print(json.dumps({"file": path, "source": source, **outcome}), flush=True)
print(json.dumps({"blocked": blocked}), flush=True)
"""


@pytest.fixture(scope="module")
def outcomes() -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(MALFORMED)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_every_malformed_file_is_parsed_or_rejected_never_crashes(outcomes: list[dict]) -> None:
    rows = [o for o in outcomes if "file" in o]
    files = {o["file"] for o in rows}
    assert len(files) == len(list(MALFORMED.rglob("*.xml"))) >= 40
    crashes = [o for o in rows if "crash" in o]
    assert crashes == []
    assert all(o["reason"] and "\n" not in o["reason"] for o in rows if "rejected" in o)


def test_no_file_or_network_access_while_parsing(outcomes: list[dict]) -> None:
    assert outcomes[-1] == {"blocked": []}


@pytest.mark.parametrize(
    "name", ["xmlbomb.xml", "xmlbomb2.xml", "quadratic.xml", "cyclic.xml", "external.xml", "external_file.xml"]
)
def test_entity_tricks_are_refused_as_unsafe(outcomes: list[dict], name: str) -> None:
    rows = [o for o in outcomes if o.get("file", "").endswith(f"defusedxml_hostile/{name}")]
    assert rows and all(o.get("rejected") == "UnsafeDocument" for o in rows if o["source"] != "hf-daily")


def test_wellformed_encodings_are_decoded() -> None:
    """UTF-16/32 with and without BOM and a declared euc-kr decode (expected values from each file's comment)."""
    for name in ("utf-16be-autodetect.xml", "utf-16le-bom.xml", "utf-32be-autodetect.xml", "utf-8-bom.xml"):
        assert parse_xml((MALFORMED / "feedparser_encoding" / name).read_bytes()).tag == "rss"
    root = parse_xml((MALFORMED / "feedparser_encoding" / "euc-kr.xml").read_bytes())
    assert root.find("channel/title").text == "\ub144"


def test_undecodable_bytes_are_a_clear_rejection() -> None:
    with pytest.raises(ParseError, match="not valid utf-8"):
        parse_xml((MALFORMED / "feedparser_illformed" / "chardet_big5.xml").read_bytes())
    with pytest.raises(ParseError, match="unknown encoding 'bogus'"):
        parse_xml((MALFORMED / "feedparser_encoding" / "bozo_bogus_encoding.xml").read_bytes())


def test_bad_item_is_skipped_and_the_rest_goes_on(fixtures_dir: Path) -> None:
    body = (fixtures_dir / "arxiv_rss/distill_rss2_cs.CL_2026-04.xml").read_text()
    # A variant built at run time: the first item's identifiers are broken.
    broken = body.replace("oai:arXiv.org:2604.22002v1", "not-an-id", 1).replace("arXiv:2604.22002v1", "x", 1)
    result = parse_document("arxiv-rss", broken)
    assert [p.id for p in result.papers] == ["2604.22027", "2604.22038"]
    assert len(result.errors) == 1 and result.errors[0].index == 0 and "not-an-id" in result.errors[0].reason


@pytest.mark.parametrize("upvotes", [float("inf"), 1e999, float("nan")], ids=["Infinity", "1e999", "NaN"])
def test_a_daily_paper_with_impossible_upvotes_is_skipped_not_the_day(fixtures_dir: Path, upvotes: float) -> None:
    """``int(inf)`` raised OverflowError, which no item handler caught: the whole day's document was retried and
    dead-lettered, its other 29 papers lost."""
    items = json.loads((fixtures_dir / "hf_daily_papers/sotawhat_hf_daily_papers_2026-06.json").read_text())
    items[3]["paper"]["upvotes"] = upvotes  # a variant built at run time from the recording
    result = parse_document("hf-daily", json.dumps(items))
    assert len(result.papers) == len(items) - 1
    assert [e.index for e in result.errors] == [3] and result.errors[0].ident == items[3]["paper"]["id"]


@pytest.mark.parametrize("character", ["\x0c", "\x00", "\x1b"], ids=["form feed", "NUL", "escape"])
def test_a_character_xml_forbids_costs_a_space_not_the_page(fixtures_dir: Path, character: str) -> None:
    """One control character pasted into one abstract (XML 1.0 allows none) must not lose a 387-record page."""
    body = (fixtures_dir / "arxiv_oai/litpuvn_ListRecords_arXivRaw_from2016-10-20.xml").read_text()
    recorded = parse_document("arxiv-oai", body)
    variant = body.replace("graph-based modeling approach", f"graph-based{character}modeling approach", 1)
    assert variant != body  # built at run time from the recording
    result = parse_document("arxiv-oai", variant)
    assert len(recorded.papers) == 387 and not result.errors
    assert result.papers == recorded.papers  # the space it became is folded like any other whitespace


def test_size_limit_rejects_before_parsing(fixtures_dir: Path) -> None:
    body = (fixtures_dir / "arxiv_oai/litpuvn_ListRecords_arXivRaw_from2016-10-20.xml").read_bytes()
    with pytest.raises(ParseError, match="above the 100000-byte limit"):
        parse_document("arxiv-oai", body, max_bytes=100_000)


def test_truncated_document_is_rejected(fixtures_dir: Path) -> None:
    body = (fixtures_dir / "arxiv_oai/saelim_ListRecordsResponse.xml").read_bytes()
    with pytest.raises(ParseError, match="ill-formed XML"):
        parse_document("arxiv-oai", body[: len(body) // 2])

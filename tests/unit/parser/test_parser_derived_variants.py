"""The arXiv Atom feed and the OAI ``arXiv`` metadata format, on documents DERIVED from real recordings.

No recording of either layout exists in ../shared/fixtures, so these tests build them at run time from the
real fixtures (never written to tests/fixtures, never presented as recorded):
- each real RSS 2.0 feed re-expressed in arXiv's documented Atom layout
  (arXiv/arxiv-docs source/help/atom_specifications.md: entry id, title, link, summary, category term,
  published, arxiv:announce_type, dc:rights, dc:creator, optional arxiv:DOI / arxiv:journal_reference);
- each arXivRaw record of a real OAI-PMH response re-expressed in the ``arXiv`` format
  (arxiv.org/OAI/arXiv.xsd: id, created, updated, authors/author/keyname+forenames+affiliation, title,
  categories, comments, report-no, msc-class, acm-class, journal-ref, doi, license, abstract).
The parser must read the same papers from the recording and from its derived twin.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from services.parser.cli import COMMANDS
from services.parser.parse import parse_document
from services.parser.text import split_authors
from shared.paper import Paper

FIXTURES = Path(__file__).parents[2] / "fixtures"
RSS_FEEDS = sorted((FIXTURES / "arxiv_rss").glob("distill_rss2_*.xml"))
OAI_FILES = [
    "litpuvn_ListRecords_arXivRaw_from2016-10-20.xml",
    "saelim_ListRecordsResponse.xml",
    "saelim_GetRecordResponse.xml",
    "litpuvn_GetRecord_arXivRaw_0804.2273.xml",
]

ATOM = "http://www.w3.org/2005/Atom"
ARXIV_ATOM = "http://arxiv.org/schemas/atom"
DC = "http://purl.org/dc/elements/1.1/"
OAI = "http://www.openarchives.org/OAI/2.0/"
ARXIV_RAW = "http://arxiv.org/OAI/arXivRaw/"
ARXIV_OAI = "http://arxiv.org/OAI/arXiv/"
# Written with literal prefixes, as arXiv's documents are: Atom as the default namespace, arxiv: and dc:.
FEED_NAMESPACES = {"xmlns:arxiv": ARXIV_ATOM, "xmlns:dc": DC}


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    element.text = text
    return element


def _iso(rfc822: str) -> str:
    return parsedate_to_datetime(rfc822).isoformat()


def derived_atom_from_rss(rss: bytes) -> bytes:
    """DERIVED, not recorded: a real arXiv RSS 2.0 feed in arXiv's Atom layout, item by item.

    Feed: id and self link (the RSS link with /rss/ -> /atom/), title, subtitle (the RSS description),
    updated (lastBuildDate). Entry: id (guid), title, updated (lastBuildDate), alternate link, summary (the
    description, "arXiv:... Announce Type: ... Abstract: ..." as in RSS), one category term per category,
    published (pubDate), arxiv:announce_type, dc:rights, dc:creator, and arxiv:DOI /
    arxiv:journal_reference when the item has them.
    """
    channel = ET.fromstring(rss).find("channel")
    assert channel is not None
    atom_url = (channel.findtext("link") or "").replace("/rss/", "/atom/")
    built = _iso(channel.findtext("lastBuildDate") or "")
    feed = ET.Element("feed", {"xmlns": ATOM, **FEED_NAMESPACES})
    _sub(feed, "id", atom_url)
    _sub(feed, "title", channel.findtext("title"))
    _sub(feed, "updated", built)
    _sub(feed, "link", href=atom_url, rel="self", type="application/atom+xml")
    _sub(feed, "subtitle", channel.findtext("description"))
    for item in channel.findall("item"):
        entry = _sub(feed, "entry")
        _sub(entry, "id", item.findtext("guid"))
        _sub(entry, "title", item.findtext("title"))
        _sub(entry, "updated", built)
        _sub(entry, "link", href=item.findtext("link") or "", rel="alternate", type="text/html")
        _sub(entry, "summary", item.findtext("description"))
        for category in item.findall("category"):
            _sub(entry, "category", term=category.text or "")
        _sub(entry, "published", _iso(item.findtext("pubDate") or ""))
        _sub(entry, "arxiv:announce_type", item.findtext(f"{{{ARXIV_ATOM}}}announce_type"))
        _sub(entry, "dc:rights", item.findtext(f"{{{DC}}}rights"))
        for name in ("journal_reference", "DOI"):
            if item.find(f"{{{ARXIV_ATOM}}}{name}") is not None:
                _sub(entry, f"arxiv:{name}", item.findtext(f"{{{ARXIV_ATOM}}}{name}"))
        _sub(entry, "dc:creator", item.findtext(f"{{{DC}}}creator"))
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def derived_arxiv_format_from_raw(oai: bytes) -> bytes:
    """DERIVED, not recorded: a real OAI-PMH arXivRaw response with each record in the ``arXiv`` format.

    id; created = the UTC day of v1; updated = the UTC day of the last version, only when there are several
    (the format has no version numbers); each author of the arXivRaw author line (split by the parser's
    arXivRaw rule, the one split the derivation needs) as keyname = last word, forenames = the words before,
    affiliation = the parenthesised part; title, categories, comments, report-no, msc-class, acm-class,
    journal-ref, doi, license and abstract copied verbatim; the request's metadataPrefix says arXiv. Headers,
    deleted records and the resumptionToken stay as recorded.
    """
    root = ET.fromstring(oai)
    request = root.find(f"{{{OAI}}}request")
    if request is not None and request.get("metadataPrefix"):
        request.set("metadataPrefix", "arXiv")
    for metadata in root.iter(f"{{{OAI}}}metadata"):
        raw = metadata.find(f"{{{ARXIV_RAW}}}arXivRaw")
        assert raw is not None
        metadata.remove(raw)
        metadata.append(_arxiv_record(raw))
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _arxiv_record(raw: ET.Element) -> ET.Element:
    def text(name: str) -> str | None:
        return raw.findtext(f"{{{ARXIV_RAW}}}{name}")

    dates = sorted(
        (int((v.get("version") or "v0").lstrip("v")), parsedate_to_datetime(v.findtext(f"{{{ARXIV_RAW}}}date") or ""))
        for v in raw.findall(f"{{{ARXIV_RAW}}}version")
    )
    record = ET.Element(f"{{{ARXIV_OAI}}}arXiv")
    _sub(record, f"{{{ARXIV_OAI}}}id", text("id"))
    _sub(record, f"{{{ARXIV_OAI}}}created", dates[0][1].date().isoformat())
    if len(dates) > 1:
        _sub(record, f"{{{ARXIV_OAI}}}updated", dates[-1][1].date().isoformat())
    authors = _sub(record, f"{{{ARXIV_OAI}}}authors")
    for author in split_authors(text("authors") or ""):
        words = author.name.split()
        element = _sub(authors, f"{{{ARXIV_OAI}}}author")
        _sub(element, f"{{{ARXIV_OAI}}}keyname", words[-1])
        if len(words) > 1:
            _sub(element, f"{{{ARXIV_OAI}}}forenames", " ".join(words[:-1]))
        for affiliation in author.affiliations:
            _sub(element, f"{{{ARXIV_OAI}}}affiliation", affiliation)
    for name in ("title", "categories", "comments", "report-no", "msc-class", "acm-class", "journal-ref", "doi"):
        if text(name) is not None:
            _sub(record, f"{{{ARXIV_OAI}}}{name}", text(name))
    for name in ("license", "abstract"):
        if text(name) is not None:
            _sub(record, f"{{{ARXIV_OAI}}}{name}", text(name))
    return record


def derived_feed_item_from_oai_record(oai: bytes, index: int) -> tuple[bytes, bytes]:
    """DERIVED, not recorded: one real arXivRaw record (with a DOI and a journal reference) as an arXiv RSS 2.0
    item and as an Atom entry, to read the optional arxiv:DOI / arxiv:journal_reference elements.

    From the record: id and last version (guid oai:arXiv.org:<id>v<n>), title, authors line (dc:creator),
    categories, abstract, doi and journal-ref verbatim. Set by the derivation (the record cannot say):
    announce type "replace" (a later version announced) and the announcement date = the last version's day.
    """
    record = ET.fromstring(oai).findall(f".//{{{ARXIV_RAW}}}arXivRaw")[index]

    def text(name: str) -> str:
        return record.findtext(f"{{{ARXIV_RAW}}}{name}") or ""

    versions = record.findall(f"{{{ARXIV_RAW}}}version")
    last = versions[-1]
    pub = last.findtext(f"{{{ARXIV_RAW}}}date") or ""
    guid = f"oai:arXiv.org:{text('id')}{last.get('version')}"
    description = (
        f"arXiv:{text('id')}{last.get('version')} Announce Type: replace \nAbstract: {text('abstract').strip()}"
    )
    rss = ET.Element("rss", {"version": "2.0", **FEED_NAMESPACES})
    channel = _sub(rss, "channel")
    _sub(channel, "title", f"{text('categories').split()[0]} updates on arXiv.org")
    _sub(channel, "link", f"http://rss.arxiv.org/rss/{text('categories').split()[0]}")
    _sub(channel, "description", "derived from an OAI-PMH arXivRaw record")
    _sub(channel, "lastBuildDate", pub)
    _sub(channel, "pubDate", pub)
    item = _sub(channel, "item")
    _sub(item, "title", text("title"))
    _sub(item, "link", f"https://arxiv.org/abs/{text('id')}")
    _sub(item, "description", description)
    _sub(item, "guid", guid, isPermaLink="false")
    for category in text("categories").split():
        _sub(item, "category", category)
    _sub(item, "pubDate", pub)
    _sub(item, "arxiv:announce_type", "replace")
    _sub(item, "arxiv:DOI", text("doi"))
    _sub(item, "arxiv:journal_reference", text("journal-ref"))
    _sub(item, "dc:creator", text("authors"))
    body = ET.tostring(rss, encoding="utf-8", xml_declaration=True)
    return body, derived_atom_from_rss(body)


def _authors(paper: Paper) -> list[tuple[str, list[str]]]:
    return [(a.name, a.affiliations) for a in paper.authors]


@pytest.mark.parametrize("feed", RSS_FEEDS, ids=lambda p: p.name)
def test_atom_twin_of_a_real_rss_feed_yields_the_same_papers(feed: Path) -> None:
    rss = parse_document("arxiv-rss", feed.read_bytes())
    atom = parse_document("arxiv-rss", derived_atom_from_rss(feed.read_bytes()))
    assert len(rss.papers) == 3 and not rss.errors and not atom.errors
    assert atom.papers == rss.papers  # every field: id, version, title, abstract, authors, categories, dates, ...
    for paper in atom.papers:
        assert paper.version == 1 and paper.announce_type == "new" and paper.authors and paper.doi is None


def test_atom_twin_values_read_by_hand() -> None:
    """cs.AI, first item: arXiv:2604.21935v1, new, cs.AI then cs.LG, Michael Cooper and Samuel Cooper, 27 Apr."""
    body = derived_atom_from_rss((FIXTURES / "arxiv_rss/distill_rss2_cs.AI_2026-04.xml").read_bytes())
    assert b"<dc:creator>Michael Cooper, Samuel Cooper</dc:creator>" in body  # the documented layout
    paper = parse_document("arxiv-rss", body).papers[0]
    assert (paper.id, paper.version, paper.announce_type) == ("2604.21935", 1, "new")
    assert paper.title == "Math Takes Two: A test for emergent mathematical reasoning in communication"
    assert [a.name for a in paper.authors] == ["Michael Cooper", "Samuel Cooper"]
    assert paper.categories == ["cs.AI", "cs.LG"]
    assert paper.announced is not None and paper.announced.isoformat() == "2026-04-27"
    assert paper.abstract.startswith("Although language models demonstrate remarkable proficiency")


def test_empty_weekend_feed_in_atom_is_no_announcement() -> None:
    rss = (FIXTURES / "arxiv_rss/allnewsai_rss2_cs.CL_weekend_empty_2026-08-01.xml").read_bytes()
    result = parse_document("arxiv-rss", derived_atom_from_rss(rss))
    assert result.papers == [] and result.errors == []
    assert result.no_announcement is not None and "Saturday" in result.no_announcement
    assert "does not announce" in result.no_announcement


def test_doi_and_journal_reference_from_rss_and_atom() -> None:
    """0704.0471 (saelim ListRecords): DOI "10.1103/PhysRevC.76.024606 10.1103/PhysRevC.76.039902", first kept."""
    oai = (FIXTURES / "arxiv_oai/saelim_ListRecordsResponse.xml").read_bytes()
    rss_body, atom_body = derived_feed_item_from_oai_record(oai, 0)
    (from_oai,) = [p for p in parse_document("arxiv-oai", oai).papers if p.id == "0704.0471"]
    (rss,) = parse_document("arxiv-rss", rss_body).papers
    (atom,) = parse_document("arxiv-rss", atom_body).papers
    assert atom == rss
    assert rss.doi == from_oai.doi == "10.1103/PhysRevC.76.024606"
    assert rss.journal_ref == from_oai.journal_ref == "Phys.Rev.C76:024606,2007; Erratum-ibid.C76:039902,2007"
    assert _authors(rss) == _authors(from_oai) == [("D.V. Shetty", []), ("S.J. Yennello", []), ("G.A. Souliotis", [])]
    assert (rss.id, rss.version, rss.title, rss.categories) == (
        from_oai.id,
        from_oai.version,
        from_oai.title,
        from_oai.categories,
    )
    assert rss.abstract == from_oai.abstract and rss.announce_type == "replace"


@pytest.mark.parametrize("name", OAI_FILES)
def test_arxiv_format_twin_of_real_arxivraw_yields_the_same_papers(name: str) -> None:
    recorded = (FIXTURES / "arxiv_oai" / name).read_bytes()
    raw = parse_document("arxiv-oai", recorded)
    twin = parse_document("arxiv-oai", derived_arxiv_format_from_raw(recorded))
    assert raw.papers and not raw.errors and not twin.errors
    assert (twin.resumption_token, twin.complete_list_size) == (raw.resumption_token, raw.complete_list_size)
    assert len(twin.papers) == len(raw.papers)
    for a, b in zip(raw.papers, twin.papers, strict=True):
        assert (b.id, b.title, b.abstract, b.categories) == (a.id, a.title, a.abstract, a.categories)
        assert _authors(b) == _authors(a)
        assert (b.doi, b.journal_ref, b.comment, b.announce_type, b.links) == (
            a.doi,
            a.journal_ref,
            a.comment,
            a.announce_type,
            a.links,
        )
        # The arXiv format carries days, not times, and no version number.
        assert b.submitted and a.submitted and b.submitted.date() == a.submitted.date()
        assert b.updated and a.updated and b.updated.date() == a.updated.date()
        assert a.version is not None and b.version is None


def test_arxiv_format_twin_values_read_by_hand() -> None:
    """0803.4354: six versions, v1 30 Mar 2008, v6 20 Oct 2016, cs.DM, Moustapha Diaby."""
    recorded = (FIXTURES / "arxiv_oai/litpuvn_ListRecords_arXivRaw_from2016-10-20.xml").read_bytes()
    body = derived_arxiv_format_from_raw(recorded)
    paper = parse_document("arxiv-oai", body).papers[0]
    assert paper.id == "0803.4354" and paper.categories == ["cs.DM"]
    assert paper.title == "A O(n^8) X O(n^7) Linear Programming Model of the Traveling Salesman Problem"
    assert [a.name for a in paper.authors] == ["Moustapha Diaby"]
    assert paper.submitted is not None and paper.submitted.date().isoformat() == "2008-03-30"
    assert paper.updated is not None and paper.updated.date().isoformat() == "2016-10-20"
    saelim = parse_document(
        "arxiv-oai", derived_arxiv_format_from_raw((FIXTURES / "arxiv_oai/saelim_ListRecordsResponse.xml").read_bytes())
    )
    first = saelim.papers[0]  # 0704.0471: one version, so created = updated = 3 Apr 2007
    assert first.doi == "10.1103/PhysRevC.76.024606" and first.submitted == first.updated


def test_paperwire_parse_reads_the_derived_twins(tmp_path: Path) -> None:
    """``paperwire parse --source arxiv-rss|arxiv-oai`` on the Atom and arXiv-format twins (written to tmp_path)."""
    cli = typer.Typer()
    for group, name, func in COMMANDS:
        if not group:
            cli.command(name)(func)
    cli.command("unused")(lambda: None)
    atom = tmp_path / "atom_cs.CL.xml"
    atom.write_bytes(derived_atom_from_rss((FIXTURES / "arxiv_rss/distill_rss2_cs.CL_2026-04.xml").read_bytes()))
    oai = tmp_path / "oai_arXiv.xml"
    oai.write_bytes(derived_arxiv_format_from_raw((FIXTURES / "arxiv_oai/saelim_ListRecordsResponse.xml").read_bytes()))
    runner = CliRunner()
    for source, path, count in (("arxiv-rss", atom, 3), ("arxiv-oai", oai, 6)):
        result = runner.invoke(cli, ["parse", "--source", source, str(path)])
        assert result.exit_code == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(lines) == count and all(p["sources"] == [source] and p["authors"] for p in lines)
    assert "726959|1001" in result.stderr  # the OAI resumption token, as for the recording

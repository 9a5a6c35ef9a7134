"""Turn a recorded arXiv OAI-PMH ListRecords response into a labeled set for `paperwire eval relevance`.

The labeled fixture is computer science only; the eval is meant to hold in other fields. The OAI fixture
(`tests/fixtures/arxiv_oai/litpuvn_ListRecords_arXivRaw_from2016-10-20.xml`, 387 real records, physics, maths,
statistics, cs) gives a second real set: one line per paper with its categories (primary first) and the day
of its record's datestamp, parsed by the parser service's own OAI code.

    python benchmarks/oai_to_labeled.py tests/fixtures/arxiv_oai/litpuvn_ListRecords_arXivRaw_from2016-10-20.xml \
        --out data/labeled_oai/oai.jsonl
    paperwire eval relevance --dataset data/labeled_oai --eval-days 1 --folds rotate --k 5 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.parser.arxiv_oai import parse  # noqa: E402
from services.parser.xmlsafe import local, parse_xml  # noqa: E402


def datestamps(body: bytes) -> dict[str, str]:
    """Record identifier's arXiv id -> its header datestamp (the day the record entered the listing)."""
    out: dict[str, str] = {}
    for header in parse_xml(body).iter():
        if local(header.tag) != "header":
            continue
        fields = {local(child.tag): (child.text or "").strip() for child in header}
        if fields.get("identifier") and fields.get("datestamp"):
            out[fields["identifier"].rsplit(":", 1)[-1]] = fields["datestamp"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("response", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    body = args.response.read_bytes()
    days = datestamps(body)
    result = parse(body)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with args.out.open("w", encoding="utf-8") as handle:
        for paper in result.papers:
            day = days.get(paper.id)
            if not day or not paper.categories:
                continue
            row = {"id": paper.id, "title": paper.title, "abstract": paper.abstract, "categories": paper.categories}
            handle.write(json.dumps({**row, "date": day}) + "\n")
            written += 1
    print(f"{written} papers ({len(result.errors)} records skipped) -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

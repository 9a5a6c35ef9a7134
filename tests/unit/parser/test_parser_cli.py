"""``paperwire parse`` and ``bench parse`` through a Typer app built from COMMANDS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from services.parser.cli import COMMANDS

FIXTURES = Path(__file__).parents[2] / "fixtures"
SOURCE_DIRS = {
    "arxiv-api": "arxiv_api",
    "arxiv-rss": "arxiv_rss",
    "arxiv-oai": "arxiv_oai",
    "hf-daily": "hf_daily_papers",
}


def app() -> typer.Typer:
    root = typer.Typer()
    groups: dict[str, typer.Typer] = {}
    for group, name, func in COMMANDS:
        if group:
            if group not in groups:
                groups[group] = typer.Typer()
                root.add_typer(groups[group], name=group)
            groups[group].command(name)(func)
        else:
            root.command(name)(func)
    return root


runner = CliRunner()

CASES = [
    (source, path)
    for source, folder in SOURCE_DIRS.items()
    for path in sorted((FIXTURES / folder).iterdir())
    if path.is_file()
]
ERRORS = {"arxivpy_id_abc_s0_m100_b79c8dcf6bc3.json"} | {
    p.name for p in (FIXTURES / "arxiv_oai").glob("saelim_ErrorResponse*.xml") if "NoRecordsMatch" not in p.name
}


@pytest.mark.parametrize(("source", "path"), CASES, ids=[p.name for _, p in CASES])
def test_parse_every_fixture(source: str, path: Path) -> None:
    result = runner.invoke(app(), ["parse", "--source", source, str(path)])
    if path.name in ERRORS:
        assert result.exit_code == 1
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
        return
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    for paper in lines:
        assert paper["id"] and paper["title"] and paper["sources"] == [source]


def test_parse_output_values() -> None:
    path = FIXTURES / "arxiv_oai" / "saelim_GetRecordResponse.xml"
    result = runner.invoke(app(), ["parse", "--source", "arxiv-oai", str(path)])
    (paper,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert paper["id"] == "1302.2146" and paper["version"] == 2 and paper["categories"] == ["hep-ph", "hep-ex"]


def test_bad_file_exits_nonzero_with_one_line() -> None:
    path = FIXTURES / "malformed" / "defusedxml_hostile" / "xmlbomb.xml"
    result = runner.invoke(app(), ["parse", "--source", "arxiv-rss", str(path)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "error: xmlbomb.xml: entity declarations are refused (a)\n"


def test_wrong_source_for_file_is_a_clear_error() -> None:
    path = FIXTURES / "hf_daily_papers" / "sotawhat_hf_daily_papers_2026-06.json"
    result = runner.invoke(app(), ["parse", "--source", "arxiv-api", str(path)])
    assert result.exit_code == 1 and "ill-formed XML" in result.stderr


def test_bench_parse_reports_papers_per_second() -> None:
    result = runner.invoke(app(), ["bench", "parse", "--seconds", "0.05"])
    assert result.exit_code == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("arxiv-oai") and " 387 papers" in first and "papers/s" in first

"""The api's pure parts of the seed import (format decision, dedup) and of /metrics (families, text format)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from services.api.limits import BodySizeLimit
from services.api.metrics import Snapshot, render
from services.api.seeds import SeedUploadError, Upload, declared_format, new_seeds, read_export, sniffed_format
from shared.status import GroupStatus, StreamStatus

FIXTURES = Path(__file__).parents[2] / "fixtures"


@pytest.mark.parametrize(
    ("content_type", "filename", "expected"),
    [
        ("application/x-bibtex; charset=utf-8", None, "bibtex"),
        ("application/vnd.citationstyles.csl+json", "whatever.bib", "csl-json"),  # a specific type wins
        ("application/octet-stream", "My Library.BIB", "bibtex"),
        ("application/octet-stream", "export.json", "csl-json"),
        ("text/plain", "notes.txt", None),
        (None, None, None),
    ],
)
def test_declared_format_from_content_type_then_extension(
    content_type: str | None, filename: str | None, expected: str | None
) -> None:
    assert declared_format(content_type, filename) == expected


def test_sniffing_real_files() -> None:
    """A feed with e-mail addresses in it is not BibTeX; a JSON array is read as CSL-JSON (and checked later)."""
    rss = (FIXTURES / "arxiv_rss/distill_rss2_cs.AI_2026-04.xml").read_text(encoding="utf-8")
    hf = (FIXTURES / "hf_daily_papers/sotawhat_hf_daily_papers_2026-06.json").read_text(encoding="utf-8")
    assert sniffed_format(rss) is None
    assert sniffed_format(hf) == "csl-json"
    with pytest.raises(SeedUploadError, match="JSON but not CSL-JSON"):
        read_export(Upload(hf.encode(), "application/json"))


def test_declared_and_sniffed_formats_must_agree() -> None:
    hf = (FIXTURES / "hf_daily_papers/sotawhat_hf_daily_papers_2026-06.json").read_bytes()
    with pytest.raises(SeedUploadError, match="sent as BibTeX .* reads as CSL-JSON"):
        read_export(Upload(hf, "application/octet-stream", "library.bib"))


def test_new_seeds_keeps_export_order_and_splits_known_ones() -> None:
    assert new_seeds(["1201.4869", "cond-mat/0412498"], ["1005.5383", "1201.4869", "1303.6954"]) == (
        ["1005.5383", "1303.6954"],
        ["1201.4869"],
    )


def test_uploads_have_their_own_body_limit() -> None:
    limit = BodySizeLimit(None, 64 * 1024, per_path={r"/v1/subscriptions/[^/]+/seeds/import": 2 * 1024 * 1024})
    assert limit.limit_for("/v1/subscriptions/abc/seeds/import") == 2 * 1024 * 1024
    assert limit.limit_for("/v1/subscriptions/abc/seeds/import/x") == 64 * 1024
    assert limit.limit_for("/v1/subscriptions") == 64 * 1024


def _snapshot() -> Snapshot:
    raw = [
        GroupStatus("papers.raw", "parser", length=7, pending=2, caught_up=False, dead=1, lag=3, consumers=1),
    ]
    subs = [
        GroupStatus("subscriptions", "classifier", length=4, pending=0, caught_up=True, dead=0, lag=0, consumers=2),
        GroupStatus("subscriptions", "notifier", length=4, pending=1, caught_up=False, dead=0, lag=None),
    ]
    return Snapshot(
        streams=[
            StreamStatus("papers.raw", exists=True, length=7, dead=1, groups=raw),
            StreamStatus("subscriptions", exists=True, length=4, dead=0, groups=subs),
            StreamStatus("matches", exists=False, length=0, dead=0),
        ],
        fetcher={"ok": 40, "status_429": 3, "status_503": 1, "retries": 4, "timeout": 2},
    )


def _samples(text: str, parse=text_string_to_metric_families) -> dict[tuple[str, tuple], float]:  # noqa: ANN001
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in parse(text) for s in family.samples}


def test_metrics_text_format_parses_and_carries_every_number() -> None:
    body, content_type = render(_snapshot())
    assert content_type.startswith("text/plain; version=0.0.4")
    samples = _samples(body.decode())
    assert samples[("paperwire_stream_length", (("stream", "papers.raw"),))] == 7
    assert samples[("paperwire_stream_length", (("stream", "matches"),))] == 0
    assert samples[("paperwire_stream_dead_letters", (("stream", "papers.raw"),))] == 1
    assert samples[("paperwire_group_pending", (("group", "parser"), ("stream", "papers.raw")))] == 2
    assert samples[("paperwire_group_lag", (("group", "parser"), ("stream", "papers.raw")))] == 3
    assert samples[("paperwire_group_caught_up", (("group", "classifier"), ("stream", "subscriptions")))] == 1
    assert samples[("paperwire_group_consumers", (("group", "classifier"), ("stream", "subscriptions")))] == 2
    assert ("paperwire_group_lag", (("group", "notifier"), ("stream", "subscriptions"))) not in samples  # unknown
    assert samples[("paperwire_fetcher_requests_total", (("outcome", "status_429"),))] == 3
    assert samples[("paperwire_fetcher_requests_total", (("outcome", "ok"),))] == 40
    assert ("paperwire_fetcher_requests_total", (("outcome", "retries"),)) not in samples
    assert samples[("paperwire_fetcher_retries_total", ())] == 4


def test_metrics_openmetrics_when_asked() -> None:
    body, content_type = render(_snapshot(), "application/openmetrics-text; version=1.0.0, text/plain;q=0.5")
    assert content_type.startswith("application/openmetrics-text")
    assert body.decode().endswith("# EOF\n")
    samples = _samples(body.decode(), openmetrics_families)
    assert samples[("paperwire_fetcher_requests_total", (("outcome", "status_503"),))] == 1

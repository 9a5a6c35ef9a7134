"""Seed papers from a library export over the api and the page, against a real Redis.

No recorded library export (.bib / CSL-JSON) is among the fixtures yet, so the exports here are built at run
time from real recorded data and say so: papers of a recorded arXiv API response (arXiv ids, titles, and the
journal DOIs of their published versions) and of the labeled arXiv listings, written as BibTeX entries with
``eprint``/``archivePrefix`` (what arXiv's own BibTeX export carries) and CSL-JSON items with ``id``, ``type``,
``URL`` and the arXiv DOI. The files that are neither format are real recorded files, used as they are.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import feedparser
import httpx
import pytest
import redis.asyncio as aioredis

from services.api.app import create_api
from shared.events import SubscriptionChanged
from shared.paper import normalize_arxiv_id
from tests.integration.api.api_helpers import SPEC, api_settings, owner_token, stream_events

IMPORT = "/v1/subscriptions/{sid}/seeds/import"


def _recorded_entries(fixtures_dir: Path) -> list[dict[str, str]]:
    """The 10 papers of a recorded arXiv API response: id (with version), title, journal DOI and reference."""
    parsed = feedparser.parse((fixtures_dir / "arxiv_api/arxivpy2016_q_au_del_maestro.xml").read_bytes())
    return [
        {
            "versioned": e.id.rsplit("/abs/", 1)[1],
            "id": normalize_arxiv_id(e.id.rsplit("/abs/", 1)[1]),
            "title": re.sub(r"\s+", " ", e.title).strip(),
            "doi": e.arxiv_doi,
            "journal": e.arxiv_journal_ref,
        }
        for e in parsed.entries
    ]


def _key(entry: dict[str, str]) -> str:
    return "paper_" + re.sub(r"\W", "_", entry["id"])


def bibtex_preprint(entry: dict[str, str]) -> str:
    return (
        f"@misc{{{_key(entry)},\n  title = {{{entry['title']}}},\n  eprint = {{{entry['versioned']}}},\n"
        f"  archivePrefix = {{arXiv}},\n}}\n"
    )


def bibtex_published(entry: dict[str, str]) -> str:
    """The published version only (journal and its DOI): no arXiv id to find."""
    return (
        f"@article{{{_key(entry)}_pub,\n  title = {{{entry['title']}}},\n  journal = {{{entry['journal']}}},\n"
        f"  doi = {{{entry['doi']}}},\n}}\n"
    )


def csl_preprint(entry: dict[str, str]) -> dict[str, str]:
    return {
        "id": _key(entry),
        "type": "article",
        "title": entry["title"],
        "URL": f"http://arxiv.org/abs/{entry['versioned']}",
        "DOI": f"10.48550/arXiv.{entry['id']}",
    }


def csl_published(entry: dict[str, str]) -> dict[str, str]:
    return {"id": f"{_key(entry)}_pub", "type": "article-journal", "title": entry["title"], "DOI": entry["doi"]}


def labeled_ids(fixtures_dir: Path, n: int) -> list[dict[str, str]]:
    """The first ``n`` distinct papers (id, title, abstract) of the labeled arXiv listings."""
    out: dict[str, dict[str, str]] = {}
    for path in sorted((fixtures_dir / "labeled/daily_arxiv_ai_enhanced").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            out.setdefault(row["id"], {"id": row["id"], "title": row["title"], "abstract": row["summary"]})
            if len(out) == n:
                return list(out.values())
    return list(out.values())


async def _subscription(api: httpx.AsyncClient, redis: aioredis.Redis, **spec: object) -> tuple[dict[str, str], str]:
    alice = await owner_token(redis, "alice")
    created = await api.post("/v1/subscriptions", json={**SPEC, **spec}, headers=alice)
    assert created.status_code == 201, created.text
    return alice, created.json()["id"]


async def _changes(redis: aioredis.Redis) -> list[SubscriptionChanged]:
    return [SubscriptionChanged.model_validate(b) for b in await stream_events(redis, "subscriptions")]


async def test_bibtex_upload_adds_new_seeds_reports_the_rest_and_publishes_the_edit(
    api: httpx.AsyncClient, redis: aioredis.Redis, fixtures_dir: Path
) -> None:
    entries = _recorded_entries(fixtures_dir)
    # already a seed: the first paper (the export carries it with its version suffix)
    alice, sid = await _subscription(api, redis, seed_papers=[entries[0]["id"]])
    export = "".join(bibtex_preprint(e) for e in entries[:4]) + "".join(bibtex_published(e) for e in entries[4:6])

    upload = {"file": ("library.bib", export.encode(), "application/octet-stream")}
    response = await api.post(IMPORT.format(sid=sid), files=upload, headers=alice)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["format"] == "bibtex"
    assert body["added"] == [e["id"] for e in entries[1:4]]
    assert "cond-mat/0412498" in body["added"]  # an old-style id, version dropped
    assert body["already_present"] == [entries[0]["id"]]
    assert body["no_arxiv_id"] == [f"{_key(e)}_pub: {e['title']}" for e in entries[4:6]]
    assert body["subscription"]["spec"]["seed_papers"] == [e["id"] for e in entries[:4]]
    stored = (await api.get(f"/v1/subscriptions/{sid}", headers=alice)).json()
    assert stored["spec"]["seed_papers"] == [e["id"] for e in entries[:4]]
    assert stored["spec"]["interests"] == SPEC["interests"]  # the rest of the subscription is untouched

    changes = await _changes(redis)
    assert [c.action for c in changes] == ["created", "updated"]
    assert changes[-1].subscription is not None
    assert changes[-1].subscription.seed_papers == [e["id"] for e in entries[:4]]


@pytest.mark.parametrize(
    "content_type", ["application/vnd.citationstyles.csl+json", "application/json", "text/plain", None]
)
async def test_csl_json_as_the_request_body_and_a_repeat_changes_nothing(
    api: httpx.AsyncClient, redis: aioredis.Redis, fixtures_dir: Path, content_type: str | None
) -> None:
    entries = _recorded_entries(fixtures_dir)
    alice, sid = await _subscription(api, redis)
    export = json.dumps([csl_preprint(e) for e in entries[:3]] + [csl_published(entries[3])], indent=2).encode()
    headers = {**alice, **({"content-type": content_type} if content_type else {})}

    first = await api.post(IMPORT.format(sid=sid), content=export, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["format"] == "csl-json"
    assert first.json()["added"] == [e["id"] for e in entries[:3]]
    assert first.json()["no_arxiv_id"] == [f"{_key(entries[3])}_pub: {entries[3]['title']}"]

    again = await api.post(IMPORT.format(sid=sid), content=export, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["added"] == [] and again.json()["already_present"] == [e["id"] for e in entries[:3]]
    assert [c.action for c in await _changes(redis)] == ["created", "updated"]  # nothing new: no second event


@pytest.mark.parametrize(
    ("name", "content_type", "message"),
    [
        ("arxiv_rss/distill_rss2_cs.AI_2026-04.xml", "application/rss+xml", "neither BibTeX nor CSL-JSON"),
        ("hf_daily_papers/sotawhat_hf_daily_papers_2026-06.json", "application/json", "JSON but not CSL-JSON"),
        ("malformed/feedparser_encoding/bozo_invalid-bytes-with-bom.xml", None, "not UTF-8 text"),
        ("arxiv_oai/saelim_ErrorResponseBadVerb.xml", "application/x-bibtex", "neither BibTeX nor CSL-JSON"),
    ],
)
async def test_real_files_that_are_no_library_export_get_422_and_change_nothing(
    api: httpx.AsyncClient,
    redis: aioredis.Redis,
    fixtures_dir: Path,
    name: str,
    content_type: str | None,
    message: str,
) -> None:
    alice, sid = await _subscription(api, redis)
    data = (fixtures_dir / name).read_bytes()
    headers = {**alice, **({"content-type": content_type} if content_type else {})}

    response = await api.post(IMPORT.format(sid=sid), content=data, headers=headers)

    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    assert (await api.get(f"/v1/subscriptions/{sid}", headers=alice)).json()["spec"]["seed_papers"] == []
    assert [c.action for c in await _changes(redis)] == ["created"]


async def test_unusable_uploads_say_what_is_wrong(
    api: httpx.AsyncClient, redis: aioredis.Redis, fixtures_dir: Path
) -> None:
    entries = _recorded_entries(fixtures_dir)
    alice, sid = await _subscription(api, redis)
    bib = bibtex_preprint(entries[0]).encode()
    url = IMPORT.format(sid=sid)

    named_json = await api.post(url, files={"file": ("library.json", bib, "application/octet-stream")}, headers=alice)
    assert named_json.status_code == 422
    assert named_json.json()["detail"] == (
        "file: sent as CSL-JSON (content type or file name) but the content reads as BibTeX"
    )
    other_field = await api.post(url, files={"export": ("library.bib", bib, "application/x-bibtex")}, headers=alice)
    assert other_field.status_code == 422 and other_field.json()["detail"].startswith("file: missing")
    empty = await api.post(url, content=b"", headers={**alice, "content-type": "application/x-bibtex"})
    assert empty.status_code == 422 and empty.json()["detail"].startswith("file: empty")
    assert [c.action for c in await _changes(redis)] == ["created"]


async def test_another_owners_subscription_is_404_and_a_token_is_required(
    api: httpx.AsyncClient, redis: aioredis.Redis, fixtures_dir: Path
) -> None:
    entries = _recorded_entries(fixtures_dir)
    alice, sid = await _subscription(api, redis)
    mallory = await owner_token(redis, "mallory")
    bib = bibtex_preprint(entries[0]).encode()

    foreign = await api.post(IMPORT.format(sid=sid), content=bib, headers={**mallory, "content-type": "text/plain"})
    assert foreign.status_code == 404, foreign.text
    missing = await api.post(IMPORT.format(sid="nosuchid"), content=bib, headers=alice)
    assert missing.status_code == 404
    anonymous = await api.post(IMPORT.format(sid=sid), content=bib)
    assert anonymous.status_code == 401
    assert (await api.get(f"/v1/subscriptions/{sid}", headers=alice)).json()["spec"]["seed_papers"] == []
    assert [c.action for c in await _changes(redis)] == ["created"]


async def test_size_limit_of_uploads_is_its_own(clean_redis: str, redis: aioredis.Redis, fixtures_dir: Path) -> None:
    """An export larger than the general 64 KiB body limit is taken; one above API_SEEDS_MAX_BYTES gets 413."""
    papers = labeled_ids(fixtures_dir, 120)
    export = "".join(
        f"@misc{{p{i},\n  title = {{{p['title']}}},\n  abstract = {{{p['abstract']}}},\n"
        f"  eprint = {{{p['id']}}},\n  archivePrefix = {{arXiv}},\n}}\n"
        for i, p in enumerate(papers)
    ).encode()
    assert 64 * 1024 < len(export) < 2 * 1024 * 1024

    for limit, expected in ((2 * 1024 * 1024, 200), (32 * 1024, 413)):
        app = create_api(api_settings(clean_redis, seeds_max_bytes=limit))
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as api:
                alice, sid = await _subscription(api, redis)
                response = await api.post(
                    IMPORT.format(sid=sid), files={"file": ("big.bib", export, "application/x-bibtex")}, headers=alice
                )
                assert response.status_code == expected, response.text[:300]
                seeds = (await api.get(f"/v1/subscriptions/{sid}", headers=alice)).json()["spec"]["seed_papers"]
                assert len(seeds) == (len(papers) if expected == 200 else 0)
                other = await api.post("/v1/subscriptions", content=b"x" * (70 * 1024), headers=alice)
                assert other.status_code == 413  # the general limit still holds everywhere else


async def test_more_seeds_than_a_subscription_holds_is_422(
    api: httpx.AsyncClient, redis: aioredis.Redis, fixtures_dir: Path
) -> None:
    papers = labeled_ids(fixtures_dir, 501)
    alice, sid = await _subscription(api, redis)
    export = json.dumps(
        [{"id": f"p{i}", "type": "article", "URL": f"https://arxiv.org/abs/{p['id']}"} for i, p in enumerate(papers)]
    ).encode()

    response = await api.post(IMPORT.format(sid=sid), content=export, headers={**alice, "content-type": "text/plain"})

    assert response.status_code == 422, response.text[:300]
    assert "seed_papers" in response.json()["detail"] and "500" in response.json()["detail"]
    assert (await api.get(f"/v1/subscriptions/{sid}", headers=alice)).json()["spec"]["seed_papers"] == []


async def test_the_page_imports_an_export_from_its_file_input(
    api: httpx.AsyncClient, redis: aioredis.Redis, fixtures_dir: Path
) -> None:
    entries = _recorded_entries(fixtures_dir)
    alice, sid = await _subscription(api, redis)
    page = (await api.get(f"/v1/subscriptions/{sid}/links", headers=alice)).json()["page_url"]
    path = page.removeprefix("http://testserver")
    shown = await api.get(path)
    assert 'enctype="multipart/form-data"' in shown.text and 'type="file"' in shown.text and 'name="file"' in shown.text

    export = (bibtex_preprint(entries[1]) + bibtex_published(entries[2])).encode()
    done = await api.post(f"{path}/seeds", files={"file": ("My Library.bib", export, "application/x-bibtex")})
    assert done.status_code == 200, done.text
    assert 'id="imported"' in done.text and "1 seed papers added" in done.text and entries[1]["id"] in done.text
    assert f"{_key(entries[2])}_pub" in done.text  # the entry without an arXiv id is named
    assert (await api.get(f"/v1/subscriptions/{sid}", headers=alice)).json()["spec"]["seed_papers"] == [
        entries[1]["id"]
    ]
    assert [c.action for c in await _changes(redis)] == ["created", "updated"]

    rss = (fixtures_dir / "arxiv_rss/distill_rss2_cs.AI_2026-04.xml").read_bytes()
    refused = await api.post(f"{path}/seeds", files={"file": ("feed.xml", rss, "application/xml")})
    assert refused.status_code == 422 and 'id="errors"' in refused.text
    assert "neither BibTeX nor CSL-JSON" in refused.text
    forged = await api.post("/web/not-a-valid-token/seeds", files={"file": ("My Library.bib", export, "text/plain")})
    assert forged.status_code == 403

"""Real papers for the notifier's tests, built from recorded fixtures (Hugging Face Daily Papers, arXiv listings).

The notifier must not import the parser (another service), so this reads the few fields it needs directly.
"""

from __future__ import annotations

import json
from pathlib import Path

from services.notifier.jobs import MatchItem
from shared.paper import Author, HuggingFaceInfo, Paper
from shared.subscription import Channels, Schedule, Subscription, WebhookEndpoint

HF_MAY = "hf_daily_papers/llmpaperradar_hf_daily_papers_2026-05.json"
HF_JUNE = "hf_daily_papers/sotawhat_hf_daily_papers_2026-06.json"
LISTING = "labeled/daily_arxiv_ai_enhanced/2025-03-24.jsonl"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_QWxhZGRpbjpvcGVuIHNlc2FtZQ=="


def hf_papers(fixtures_dir: Path, name: str = HF_MAY) -> list[Paper]:
    papers = []
    for item in json.loads((fixtures_dir / name).read_text()):
        raw = item["paper"]
        papers.append(
            Paper(
                id=raw["id"],
                title=" ".join(raw["title"].split()),
                abstract=" ".join(raw.get("summary", "").split()),
                authors=[Author(name=a["name"]) for a in raw["authors"] if not a.get("hidden")],
                links={"code": raw["githubRepo"]} if raw.get("githubRepo") else {},
                hf=HuggingFaceInfo(upvotes=raw.get("upvotes", 0), github_repo=raw.get("githubRepo")),
                sources=["hf-daily"],
            )
        )
    return papers


def listing_papers(fixtures_dir: Path, limit: int = 50) -> list[Paper]:
    papers = []
    with (fixtures_dir / LISTING).open() as handle:
        for line in handle:
            row = json.loads(line)
            papers.append(
                Paper(
                    id=row["id"],
                    title=" ".join(row["title"].split()),
                    abstract=" ".join(row["summary"].split()),
                    authors=[Author(name=n) for n in row["authors"]],
                    categories=row["categories"],
                    links={"abs": row["abs"], "pdf": row["pdf"]},
                )
            )
            if len(papers) >= limit:
                break
    return papers


def items(papers: list[Paper], base: float = 0.9) -> list[MatchItem]:
    return [
        MatchItem(paper=p, score=round(base - i * 0.01, 4), reasons=[f"close to your interest in {p.title.split()[0]}"])
        for i, p in enumerate(papers)
    ]


def subscription(**overrides: object) -> Subscription:
    values: dict[str, object] = {
        "name": "LLM agents",
        "interests": ["retrieval for agentic search"],
        "top_k": 10,
        "channels": Channels(email="ada@example.org"),
        "schedule": Schedule(mode="instant"),
    }
    return Subscription(**(values | overrides))


def endpoint(url: str, **overrides: object) -> WebhookEndpoint:
    return WebhookEndpoint(url=url, secret=SECRET, **overrides)

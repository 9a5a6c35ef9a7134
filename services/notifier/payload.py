"""The webhook body: a versioned JSON document described by ``schemas/webhook-v1.schema.json``.

Shape follows the Standard Webhooks recommendation ``{type, timestamp, data}``; ``version`` changes only
with an incompatible change, and receivers may ignore fields they do not know.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.notifier.jobs import DeliveryJob, MatchItem
from shared.subscription import Subscription

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).parent / "schemas" / "webhook-v1.schema.json"
EVENT_TYPES = {"alert": "paper.matched", "digest": "digest.ready", "heartbeat": "digest.empty"}


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def paper_entry(item: MatchItem) -> dict[str, Any]:
    paper = item.paper
    return {
        "id": paper.id,
        "version": paper.version,
        "title": paper.title,
        "authors": [a.name for a in paper.authors],
        "categories": paper.categories,
        "abstract": paper.abstract,
        "abs_url": paper.abs_url,
        "pdf_url": paper.pdf_url,
        "announced": paper.announced.isoformat() if paper.announced else None,
        "score": round(item.score, 6),
        "reasons": item.reasons,
        "upvotes": paper.hf.upvotes if paper.hf else None,
        "trending_rank": item.trending_rank,
    }


def build_payload(job: DeliveryJob, subscription: Subscription, now: datetime | None = None) -> dict[str, Any]:
    return {
        "type": EVENT_TYPES[job.kind],
        "version": SCHEMA_VERSION,
        "timestamp": (now or datetime.now(UTC)).isoformat(),
        "data": {
            "delivery_id": job.id,
            "subscription": {"id": subscription.id, "name": subscription.name},
            "period": job.period,
            "papers": [paper_entry(item) for item in job.items],
            "more": job.more,
            "note": job.note,
        },
    }


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()

"""Helpers of the api tests: settings, owners with tokens, real papers from fixtures, a live server."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from pathlib import Path

import feedparser
import redis.asyncio as aioredis
import uvicorn

from services.api.settings import ApiSettings
from services.api.store import OwnerStore, TokenStore
from shared.paper import Author, Paper, normalize_arxiv_id


def api_settings(redis_url: str, **overrides: object) -> ApiSettings:
    values: dict[str, object] = {
        "redis_url": redis_url,
        "auth_fail_limit": 5,
        "read_block_ms": 50,
        "claim_poll_ms": 50,
        "public_url": "http://testserver",
        "link_secret": "test-link-secret",
    }
    # model_copy: fields with a validation alias (link_secret, public_url) ignore their name as an init keyword
    return ApiSettings().model_copy(update=values | overrides)


async def owner_token(redis: aioredis.Redis, owner: str) -> dict[str, str]:
    await OwnerStore(redis).create(owner)
    token, _info = await TokenStore(redis).create(owner)
    return {"Authorization": f"Bearer {token}"}


def fixture_papers(fixtures_dir: Path, name: str = "arxiv_api/arxivpy2016_q_au_del_maestro.xml") -> list[Paper]:
    """Papers from a recorded arXiv API response, read with feedparser (not our parser: that is another service)."""
    parsed = feedparser.parse((fixtures_dir / name).read_bytes())
    papers = []
    for entry in parsed.entries:
        papers.append(
            Paper(
                id=normalize_arxiv_id(entry.id.rsplit("/abs/", 1)[1]),
                title=re.sub(r"\s+", " ", entry.title).strip(),
                abstract=re.sub(r"\s+", " ", entry.summary).strip(),
                authors=[Author(name=a.name) for a in entry.authors],
                categories=[t.term for t in entry.tags],
            )
        )
    return papers


SPEC = {
    "name": "helium in nanopores",
    "interests": ["superfluid helium confined in nanopores", "Luttinger liquids"],
    "categories": ["cond-mat.stat-mech"],
    "schedule": {"mode": "daily", "at": "08:00", "timezone": "Europe/Berlin"},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """uvicorn in a thread with its own event loop: for the browser and the fuzzer, which speak real HTTP."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("api server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


async def stream_events(redis: aioredis.Redis, stream: str) -> list[dict]:
    """The JSON bodies FastStream published on ``stream``, oldest first."""
    from shared.events import entry_body

    return [entry_body(fields) for _id, fields in await redis.xrange(stream)]

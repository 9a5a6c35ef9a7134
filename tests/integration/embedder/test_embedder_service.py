"""The embedder service on a real Redis with the real model: a burst of real papers embedded into the right
papers exactly once, a broken event dead-lettered with its reason, a mismatched model refusing to start."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as aioredis
from faststream.redis import RedisBroker
from faststream.redis.parser.binary import BinaryMessageFormatV1

from services.embedder.batch import done_key
from services.embedder.settings import EmbedderSettings
from services.parser.tokens import PaperTokenizer
from shared.consumer import dead_letter, ensure_groups, replay_dead
from shared.embedding import load_embedder
from shared.events import PaperEmbedded, PaperParsed, Stream
from shared.model_files import ModelError
from shared.paper import Paper
from shared.storage import PaperStore
from shared.text_tokens import compose_text
from tests.unit.embedder.model_cache import labeled_rows

SPACE = "sentence-transformers/all-MiniLM-L6-v2:384"


@pytest.fixture
def build_router(model_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """``services.embedder.app`` builds its module-level app at import: point it at the test model first."""
    monkeypatch.setenv("PAPERWIRE_MODEL_DIR", str(model_dir))
    from services.embedder.app import build_router

    return build_router


def settings(redis_url: str, model_dir: Path, **overrides: object) -> EmbedderSettings:
    values = {
        "redis_url": redis_url,
        "model_dir": model_dir,
        "device": "cpu",
        "claim_idle_ms": 5000,
        "claim_poll_ms": 100,
        "read_block_ms": 50,
        "max_attempts": 2,
        "batch_max_records": 16,
    }
    return EmbedderSettings(**(values | overrides))


async def wait_for(predicate, limit_s: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


async def embedded_events(redis: aioredis.Redis) -> list[PaperEmbedded]:
    out = []
    for _, fields in await redis.xrange(Stream.EMBEDDED):
        body, _headers = BinaryMessageFormatV1.parse(fields[b"__data__"])  # FastStream's stream entry format
        out.append(PaperEmbedded.model_validate_json(body))
    return out


async def test_burst_is_embedded_into_the_right_papers_exactly_once(
    redis: aioredis.Redis, clean_redis: str, model_dir: Path, build_router
) -> None:
    rows = labeled_rows(30, step=70)
    events = [PaperParsed(paper=Paper(id=r["id"], title=r["title"], abstract=r["summary"])) for r in rows]
    PaperTokenizer.open(model_dir).attach(events[::2])  # half carry the parser's token ids: same vectors
    blank = events[3].paper.model_copy(update={"id": "2503.99999", "title": "", "abstract": "  \n "})
    broken = PaperParsed(paper=blank)
    await ensure_groups(redis)
    broker = RedisBroker(clean_redis)
    broker.include_router(build_router(settings(clean_redis, model_dir)))
    async with broker:
        await broker.start()
        for event in events[:20]:
            await broker.publish(event, stream=Stream.PARSED)
        await broker.publish(broken, stream=Stream.PARSED)
        for event in [*events[20:], events[0], events[5]]:  # two redeliveries of events already handled
            await broker.publish(event, stream=Stream.PARSED)

        async def all_handled() -> bool:
            return (await redis.xlen(Stream.EMBEDDED)) >= 30 and (await redis.xlen("papers.parsed.dead")) >= 1

        await wait_for(all_handled)

        async def nothing_pending() -> bool:
            return (await redis.xpending(Stream.PARSED, "embedder"))["pending"] == 0

        await wait_for(nothing_pending)
        await asyncio.sleep(0.5)  # a late duplicate would show up now

    published = await embedded_events(redis)
    assert sorted(e.paper.id for e in published) == sorted(r["id"] for r in rows)  # each paper exactly once
    dead = await redis.xrange("papers.parsed.dead")
    assert len(dead) == 1
    assert dead[0][1][b"dead.error"] == b"empty text: paper 2503.99999 has neither title nor abstract"

    reference = load_embedder(model_dir, "fp32", providers=["CPUExecutionProvider"])
    expected = reference.embed([compose_text(r["title"], r["summary"]) for r in rows])
    stored = await PaperStore(redis).get_vectors(SPACE, [r["id"] for r in rows])
    by_id = {e.paper.id: e for e in published}
    for row, want in zip(rows, expected, strict=True):
        vector = stored[row["id"]]
        assert vector.shape == (384,) and float(vector @ want) / np.linalg.norm(vector) >= 0.98
        event = by_id[row["id"]]
        assert event.dtype == "float16" and np.allclose(event.array(), vector)
        assert event.manifest.precision == "int8" and event.manifest.space == SPACE
        assert event.paper.title == row["title"]
    # vectors of different papers differ: the vector went to the right paper, not a neighbour's
    sims = np.stack([stored[r["id"]] for r in rows]) @ expected.T
    assert (sims.argmax(axis=1) == np.arange(len(rows))).all()


async def test_a_vector_the_model_got_wrong_is_dead_lettered_not_stored(
    redis: aioredis.Redis, clean_redis: str, model_dir: Path, build_router, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: a NaN in one row of the model's output (fp16 can overflow). It was stored with the paper,
    and the batch then failed on the event's own check: the other papers waited for the claimer."""
    from shared import embedding

    rows = labeled_rows(8, step=70)
    poisoned = rows[3]["title"]
    real = embedding.Embedder.embed_many

    def with_a_nan(self, texts, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        vectors = np.array(real(self, texts, *args, **kwargs))
        vectors[[i for i, text in enumerate(texts) if text.startswith(poisoned)], 5] = np.nan
        return vectors

    monkeypatch.setattr(embedding.Embedder, "embed_many", with_a_nan)
    await ensure_groups(redis)
    broker = RedisBroker(clean_redis)
    broker.include_router(build_router(settings(clean_redis, model_dir, claim_idle_ms=60_000)))
    async with broker:
        await broker.start()
        for r in rows:
            event = PaperParsed(paper=Paper(id=r["id"], title=r["title"], abstract=r["summary"]))
            await broker.publish(event, stream=Stream.PARSED)

        async def all_handled() -> bool:
            pending = (await redis.xpending(Stream.PARSED, "embedder"))["pending"]
            return (
                await redis.xlen(Stream.EMBEDDED) == 7 and await redis.xlen("papers.parsed.dead") == 1 and not pending
            )

        await wait_for(all_handled, limit_s=30)  # well before the claimer (60 s) could have retried anything
    [(_id, dead)] = await redis.xrange("papers.parsed.dead")
    assert dead[b"dead.error"] == b"the model (int8) gave NaN or infinite values for this text"
    stored = await PaperStore(redis).get_vectors(SPACE, [r["id"] for r in rows])
    assert sorted(stored) == sorted(r["id"] for i, r in enumerate(rows) if i != 3)


async def test_mismatched_model_refuses_to_start(clean_redis: str, model_dir: Path, build_router) -> None:
    with pytest.raises(ModelError, match="model/manifest mismatch: PAPERWIRE_MODEL_ID is 'intfloat/e5-small-v2'"):
        build_router(settings(clean_redis, model_dir, model_id="intfloat/e5-small-v2"))
    with pytest.raises(ModelError, match="precision 'fp16' was not exported|no manifest.json"):
        build_router(settings(clean_redis, model_dir / "missing", precision="fp16"))


async def test_an_older_entry_never_overwrites_a_newer_entrys_vector(redis: aioredis.Redis) -> None:
    store = PaperStore(redis)
    newer, older = np.full(384, 0.5, dtype=np.float32), np.full(384, -0.25, dtype=np.float32)
    await store.set_vector(SPACE, "p1", newer, "1764000000000-3")
    await store.set_vector(SPACE, "p1", older, "1764000000000-2")
    await store.set_vector(SPACE, "p1", older, "999999999999-9")  # fewer digits, still older
    np.testing.assert_array_equal((await store.get_vectors(SPACE, ["p1"]))["p1"], newer)
    # as the service writes: a batch in one call, each row judged against what the rows before it stored
    rows = [("p1", older, "1764000000000-4"), ("p2", newer, "1764000000000-1"), ("p1", newer, "1764000000000-2")]
    assert await store.set_vectors(SPACE, rows) == [True, True, False]
    stored = await store.get_vectors(SPACE, ["p1", "p2"])
    np.testing.assert_array_equal(stored["p1"], older)
    np.testing.assert_array_equal(stored["p2"], newer)
    assert await redis.hget(f"vectors:{SPACE}:entry", "p1") == b"1764000000000-4"


async def test_a_retried_older_event_keeps_the_newer_vector(
    redis: aioredis.Redis, clean_redis: str, model_dir: Path, build_router
) -> None:
    """The service passes each event's stream entry id: a vector stored from a later entry (as a newer event for
    the paper, embedded while this one's failed batch waited to be re-claimed) stays."""
    rows = labeled_rows(2, step=400)
    events = [PaperParsed(paper=Paper(id=r["id"], title=r["title"], abstract=r["summary"])) for r in rows]
    newer = np.full(384, 0.5, dtype=np.float32)
    await PaperStore(redis).set_vector(SPACE, events[0].paper.id, newer, "99999999999999-0")
    await ensure_groups(redis)
    broker = RedisBroker(clean_redis)
    broker.include_router(build_router(settings(clean_redis, model_dir)))
    async with broker:
        await broker.start()
        for event in events:
            await broker.publish(event, stream=Stream.PARSED)

        async def handled() -> bool:
            return all(await redis.mget([done_key(e.event_id) for e in events]))

        await wait_for(handled)
    # the older event is handled but not published: its paper's newer version is the news
    assert [e.paper.id for e in await embedded_events(redis)] == [events[1].paper.id]
    stored = await PaperStore(redis).get_vectors(SPACE, [e.paper.id for e in events])
    np.testing.assert_array_equal(stored[events[0].paper.id], newer)
    entries = [entry for entry, _ in await redis.xrange(Stream.PARSED)]
    assert await redis.hget(f"vectors:{SPACE}:entry", events[1].paper.id) == entries[1]
    assert not np.allclose(stored[events[1].paper.id], newer)


async def test_an_event_whose_text_the_store_no_longer_holds_is_skipped(
    redis: aioredis.Redis, clean_redis: str, model_dir: Path, build_router
) -> None:
    """Two parser replicas race: v2 is written and its event published before v1's (written earlier) is. The v1
    event arrives last, with the newer entry id; its text is not the stored paper's, so it is not embedded and
    v2's vector stays."""
    rows = labeled_rows(2, step=400)
    paper_id = rows[0]["id"]
    v1, v2 = (PaperParsed(paper=Paper(id=paper_id, title=r["title"], abstract=r["summary"])) for r in rows)
    await PaperStore(redis).put(v2.paper)  # the store holds v2, as both parsers' writes left it
    await ensure_groups(redis)
    broker = RedisBroker(clean_redis)
    broker.include_router(build_router(settings(clean_redis, model_dir)))
    async with broker:
        await broker.start()
        await broker.publish(v2, stream=Stream.PARSED)
        await broker.publish(v1, stream=Stream.PARSED)

        async def handled() -> bool:
            return all(await redis.mget([done_key(v2.event_id), done_key(v1.event_id)]))

        await wait_for(handled)
    assert [e.paper.title for e in await embedded_events(redis)] == [v2.paper.title]
    v2_entry = (await redis.xrange(Stream.PARSED))[0][0]
    assert await redis.hget(f"vectors:{SPACE}:entry", paper_id) == v2_entry


async def test_a_replayed_dead_letter_never_overwrites_a_newer_versions_vector(
    redis: aioredis.Redis, clean_redis: str, model_dir: Path, build_router
) -> None:
    """v1 of a paper dead-lettered, v2 embedded, then v1 replayed: the replay is a new stream entry, but it carries
    its original id (``replay.of``), so v2's vector and entry stay, and v1 is not published as news."""
    rows = labeled_rows(2, step=400)
    paper_id = rows[0]["id"]
    v1, v2 = (PaperParsed(paper=Paper(id=paper_id, title=r["title"], abstract=r["summary"])) for r in rows)
    await ensure_groups(redis)
    async with RedisBroker(clean_redis) as publisher:  # no subscriber: v1 waits for the embedder's group
        await publisher.publish(v1, stream=Stream.PARSED)
    # the embedder gave up on v1: what the middleware does once its attempts are spent
    [(_, [(v1_id, v1_fields)])] = await redis.xreadgroup("embedder", "test", {Stream.PARSED: ">"})
    await dead_letter(redis, Stream.PARSED, "embedder", v1_id.decode(), v1_fields, "RuntimeError: boom", 2)
    await redis.xack(Stream.PARSED, "embedder", v1_id)

    broker = RedisBroker(clean_redis)
    broker.include_router(build_router(settings(clean_redis, model_dir)))
    async with broker:
        await broker.start()
        await broker.publish(v2, stream=Stream.PARSED)

        async def embedded(count: int):
            async def reached() -> bool:
                return (await redis.xlen(Stream.EMBEDDED)) >= count

            return reached

        await wait_for(await embedded(1))
        v2_id = (await redis.xrange(Stream.PARSED))[-1][0]
        assert len(await replay_dead(redis, Stream.PARSED)) == 1

        async def replay_handled() -> bool:
            pending = (await redis.xpending(Stream.PARSED, "embedder"))["pending"]
            return pending == 0 and await redis.get(done_key(v1.event_id)) is not None

        await wait_for(replay_handled)

    published = await embedded_events(redis)
    assert [e.paper.title for e in published] == [v2.paper.title]  # the superseded v1 is not published
    replayed = (await redis.xrange(Stream.PARSED))[-1][1]
    assert replayed[b"replay.of"] == v1_id and replayed[b"replay.for"] == b"embedder"
    assert await redis.hget(f"vectors:{SPACE}:entry", paper_id) == v2_id
    stored = (await PaperStore(redis).get_vectors(SPACE, [paper_id]))[paper_id]
    np.testing.assert_allclose(stored, published[0].array())

"""A replayed dead letter keeps its original entry id (``replay.of``), so consumers that order a subject's events by
entry id rank the copy where the original was; the field is validated, so a forged one cannot rank an entry newer."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from shared.consumer import REPLAY_OF, dead_letter, order_id, parse_stream_id, replay_dead

STREAM = "test.replay"
GROUP = "workers"


def test_a_normal_entry_is_ordered_by_its_own_id() -> None:
    assert order_id(b"1764000000000-5", {b"__data__": b"x"}) == "1764000000000-5"
    assert order_id("1764000000000-5", {}) == "1764000000000-5"


def test_a_replayed_entry_is_ordered_by_its_original_id() -> None:
    assert order_id(b"1764000000900-0", {b"__data__": b"x", b"replay.of": b"1764000000000-2"}) == "1764000000000-2"
    assert order_id("1764000000900-0", {REPLAY_OF: "0001764000000000-02"}) == "1764000000000-2"  # normalised


@pytest.mark.parametrize(
    "forged",
    [
        b"99999999999999-0",  # newer than the entry itself: would make it win over later events
        b"1764000000900-0",  # the entry's own id
        b"1764000000000",  # incomplete ids Redis would accept on XADD, but that are no version
        b"1764000000000-*",
        b"-1-0",
        b"1764000000000-2\n",
        b" 1764000000000-2",
        b"1-2-3",
        b"\xff\xfe",  # no UTF-8: ignored, not a crash of the consumer
        "١٧٦٤-٠".encode(),  # digits of another script
        b"18446744073709551616-0",  # past 64 bits
        b"",
    ],
)
def test_a_forged_or_malformed_replay_of_is_ignored(forged: bytes) -> None:
    assert order_id(b"1764000000900-0", {b"replay.of": forged}) == "1764000000900-0"


def test_parse_stream_id() -> None:
    assert parse_stream_id("0-0") == (0, 0)
    assert parse_stream_id(b"18446744073709551615-18446744073709551615") == (2**64 - 1, 2**64 - 1)
    assert parse_stream_id(None) is None
    assert parse_stream_id("1-") is None


async def test_replay_marks_the_copy_with_its_original_id(redis: aioredis.Redis) -> None:
    original = (await redis.xadd(STREAM, {"__data__": b"v1"})).decode()
    await dead_letter(redis, STREAM, GROUP, original, {b"__data__": b"v1"}, "boom", 5)
    assert len(await replay_dead(redis, STREAM)) == 1
    copy_id, fields = (await redis.xrange(STREAM))[-1]
    assert fields == {b"__data__": b"v1", b"replay.for": GROUP.encode(), b"replay.of": original.encode()}
    assert order_id(copy_id, fields) == original

    # the copy fails again and is replayed again: the second copy still ranks at the first original
    await dead_letter(redis, STREAM, GROUP, copy_id.decode(), fields, "boom again", 5)
    assert len(await replay_dead(redis, STREAM)) == 1
    second_id, second = (await redis.xrange(STREAM))[-1]
    assert second[b"replay.of"] == original.encode() and order_id(second_id, second) == original


async def test_replay_does_not_trust_a_forged_replay_of(redis: aioredis.Redis) -> None:
    """An entry published with a bogus ``replay.of`` (too new, or no id) is dead-lettered: its copy is marked with
    the entry's own id, the only one replay can vouch for."""
    for forged in (b"99999999999999-0", b"not-an-id"):
        entry = (await redis.xadd(STREAM, {"__data__": b"x", "replay.of": forged})).decode()
        await dead_letter(redis, STREAM, GROUP, entry, {b"__data__": b"x", b"replay.of": forged}, "boom", 5)
        assert len(await replay_dead(redis, STREAM)) == 1
        _, fields = (await redis.xrange(STREAM))[-1]
        assert fields[b"replay.of"] == entry.encode()


async def test_a_dead_letter_without_a_valid_dead_id_replays_unmarked(redis: aioredis.Redis) -> None:
    await redis.xadd(f"{STREAM}.dead", {"__data__": b"x", "dead.group": GROUP, "dead.id": "garbage"})
    assert len(await replay_dead(redis, STREAM)) == 1
    [(_, fields)] = await redis.xrange(STREAM)
    assert fields == {b"__data__": b"x", b"replay.for": GROUP.encode()}

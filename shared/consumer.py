"""Reliable consumption on Redis Streams: what FastStream does not give for free (see DESIGN.md).

- one consumer group per service, created at id ``0`` with MKSTREAM before anything is read or published;
- one stable, unique consumer name per process (``PAPERWIRE_CONSUMER_NAME`` or ``<service>-<host>-<pid>``);
- ack only after the handler (and its publishes) returned: FastStream's REJECT_ON_ERROR leaves a failed
  entry pending;
- a claimer per consumer (a claim-only XAUTOCLAIM subscriber running the same handler) for entries idle
  longer than ``claim_idle_ms``, so a crashed consumer's or a failed handler's entries are retried;
- a heartbeat while a handler runs (XCLAIM JUSTID of the entries it still owns, every ``claim_idle_ms / 3``), so
  no claimer takes a slow but live entry and the delivery count only counts real deliveries;
- a retry cap from the delivery count (XPENDING): after ``max_attempts`` the entry goes to ``<stream>.dead``
  with its error and is acked, so a poison message never blocks or loops;
- a replayed dead letter carries ``replay.for=<group>``: every other group on the stream acks it unhandled;
  and ``replay.of=<original entry id>``: code that orders events by entry id (``order_id``) ranks the copy at
  its original's place, not as the newest entry.

Usage in a service::

    router = make_router("parser", settings)
    parsed = router.publisher(stream=Stream.PARSED)  # stream=, else it is a pub/sub channel

    @subscriber(router, Stream.RAW, service="parser", settings=settings)
    async def on_raw(event: RawPapers) -> None:
        ...
        await parsed.publish(PaperParsed(...))

A batch subscriber (``batch=True, max_records=N``) gets the bodies undecoded: ``parse_batch`` them (or
``parse_event`` each) and ``bury_rejected`` those that are no event, so a poison entry is dead-lettered at once
and the rest of its batch goes on (the embedder and the classifier's ``papers.embedded`` consumer do this).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import redis.asyncio as aioredis
import structlog
from faststream import BaseMiddleware
from faststream.exceptions import NackMessage
from faststream.message import StreamMessage
from faststream.redis import RedisRouter, StreamSub
from faststream.redis.publisher.usecase import StreamPublisher
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError, ResponseError

from shared.events import CONSUMER_GROUPS, dead_letter_stream, entry_body
from shared.settings import ServiceSettings
from shared.storage import PIPELINE_CHUNK, claim_once, reply_text
from shared.tasks import cancel_and_wait

log = structlog.get_logger("paperwire.consumer")

REPLAY_FOR = "replay.for"
REPLAY_OF = "replay.of"
_STREAM_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")  # ASCII digits only: \d takes other scripts' too
_U64 = 2**64

# XCLAIM ... JUSTID resets the idle time without raising the delivery count; checking the owner in the same script
# keeps a beat from taking back an entry another consumer claimed in between.
_KEEP_CLAIMED = """
local claim = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
for i = 3, #ARGV do
  if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2]) > 0 then
    claim[#claim + 1] = ARGV[i]
  end
end
if #claim == 5 then
  return 0
end
claim[#claim + 1] = 'JUSTID'
return #redis.call(unpack(claim))
"""


def consumer_name(service: str, settings: ServiceSettings) -> str:
    """Stable for the life of the process and unique across processes (``--workers N`` included)."""
    if settings.consumer_name:
        return f"{settings.consumer_name}-{os.getpid()}"
    return f"{service}-{socket.gethostname()}-{os.getpid()}"


async def ensure_group(redis: aioredis.Redis, stream: str, group: str) -> bool:
    """Create ``group`` on ``stream`` at id 0 (MKSTREAM); False when it already existed."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
        return False
    return True


async def ensure_groups(redis: aioredis.Redis) -> None:
    """Create every consumer group of the contract, so nothing published before a consumer starts is lost."""
    for stream, groups in CONSUMER_GROUPS.items():
        for group in groups:
            await ensure_group(redis, stream, group)


Event = TypeVar("Event", bound=BaseModel)


class BadEvent(ValueError):
    """An entry no retry can handle (not JSON, not the event's shape): dead-letter it, never retry."""


def parse_event(body: Any, model: type[Event]) -> Event:
    """One body of a batch subscriber (batches arrive undecoded) as ``model``, or ``BadEvent`` saying why not."""
    if isinstance(body, model):
        return body
    if isinstance(body, dict) and UNREADABLE in body:
        raise BadEvent(str(body[UNREADABLE]))
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except ValueError as exc:
            raise BadEvent(f"not JSON: {exc}") from exc
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise BadEvent(
            f"not a {model.__name__} event ({exc.error_count()} errors, first: {where}: {first['msg']})"
        ) from exc


def parse_batch(bodies: list[Any], model: type[Event]) -> tuple[list[Event], list[tuple[int, str]]]:
    """The events of a batch, and ``(index, reason)`` for each body that is none (for ``bury_rejected``)."""
    events: list[Event] = []
    rejected: list[tuple[int, str]] = []
    for index, body in enumerate(bodies):
        try:
            events.append(parse_event(body, model))
        except BadEvent as exc:
            rejected.append((index, str(exc)))
    return events, rejected


async def bury_rejected(
    redis: aioredis.Redis, stream: str, group: str, message: Any, rejected: list[tuple[int, str]]
) -> None:
    """Dead-letter the entries of a batch (or a lone entry, index 0) that no retry can handle, each once (a
    redelivery after a crash does not bury them again); the handler goes on with the rest of the batch, whose ack
    then covers these entries too."""
    ids = [reply_text(i) for i in message.raw_message["message_ids"]]
    entries = message.raw_message["data"]
    entries = entries if isinstance(entries, list) else [entries]
    for index, reason in rejected:
        if await claim_once(redis, f"{group}:dead:{ids[index]}", 7 * 24 * 3600):
            await dead_letter(redis, stream, group, ids[index], entries[index], reason, 1)


async def dead_letter(
    redis: aioredis.Redis,
    stream: str,
    group: str,
    message_id: str,
    fields: dict[Any, Any],
    error: str,
    attempts: int,
) -> str:
    """Copy an entry to ``<stream>.dead`` with why it failed; ``paperwire dead replay`` puts it back."""
    entry = {reply_text(k): v for k, v in fields.items()}
    entry.update(
        {
            "dead.stream": stream,
            "dead.group": group,
            "dead.id": message_id,
            "dead.error": error[:4000],
            "dead.attempts": str(attempts),
            "dead.at": str(int(time.time())),
        }
    )
    dead_id = await redis.xadd(dead_letter_stream(stream), entry)
    # ERROR: an event that will not be handled until an operator replays it (alerts key on this level)
    log.error("dead_lettered", stream=stream, group=group, id=message_id, attempts=attempts, error=error[:500])
    return reply_text(dead_id)


class PublishError(RuntimeError):
    """``publish_all`` failed: the events before ``unsent_from`` are out; any of the failing chunk may be too."""

    def __init__(self, stream: str, unsent_from: int, cause: BaseException) -> None:
        super().__init__(f"publishing to {stream} failed from event {unsent_from} on: {type(cause).__name__}: {cause}")
        self.unsent_from = unsent_from


async def publish_all(redis: aioredis.Redis, publisher: StreamPublisher, events: Sequence[BaseModel]) -> None:
    """Publish ``events`` in order through a FastStream stream publisher, pipelined: one round trip per chunk.

    A handler that awaited each publish spent most of a batch waiting on Redis. ``redis`` must be a client of the
    broker's Redis (the pipeline runs there). Publisher middlewares see each message queued, not sent. A failure
    raises :class:`PublishError`, saying from which event on some may be unsent: the handler fails and its entries
    are retried (consumers drop an event id they handled).
    """
    stream = publisher.stream.name  # passed on: each read of the property copies the stream spec
    for start in range(0, len(events), PIPELINE_CHUNK):
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for event in events[start : start + PIPELINE_CHUNK]:
                    await publisher.publish(event, stream=stream, pipeline=pipe)
                await pipe.execute()
        except Exception as exc:
            raise PublishError(stream, start, exc) from exc


def _errors_key(stream: str, group: str) -> str:
    return f"errors:{stream}:{group}"


def _event_id(msg: StreamMessage[Any]) -> str | None:
    try:
        body = json.loads(msg.body)
    except (ValueError, TypeError):
        return None
    return body.get("event_id") if isinstance(body, dict) else None


async def _delivery_counts(redis: aioredis.Redis, stream: str, group: str, ids: list[str]) -> dict[str, int]:
    """XPENDING's times_delivered per entry (1 for an entry not pending any more)."""
    pending = await redis.xpending_range(stream, group, min=ids[0], max=ids[-1], count=max(len(ids), 1) * 2)
    counts = {reply_text(p["message_id"]): int(p["times_delivered"]) for p in pending}
    return {i: counts.get(i, 1) for i in ids}


async def _bury(
    redis: aioredis.Redis,
    stream: str,
    group: str,
    message_id: str,
    fields: dict[Any, Any],
    error: str,
    attempts: int,
) -> None:
    await dead_letter(redis, stream, group, message_id, fields, error, attempts)
    await redis.xack(stream, group, message_id)
    await redis.hdel(_errors_key(stream, group), message_id)


async def _keep_claimed(
    redis: aioredis.Redis, stream: str, group: str, consumer: str, ids: list[str], interval_s: float
) -> None:
    """Reset the idle time of ``ids`` while their handler runs, so no claimer takes them from a live consumer."""
    script = redis.register_script(_KEEP_CLAIMED)
    while True:
        await asyncio.sleep(interval_s)
        try:
            if not await script(keys=[stream], args=[group, consumer, *ids]):
                return
        except RedisError as exc:
            log.warning("heartbeat_failed", error=str(exc)[:500])


@asynccontextmanager
async def _heartbeat(
    redis: aioredis.Redis, stream: str, group: str, consumer: str, ids: list[str], interval_s: float
) -> AsyncIterator[None]:
    task = asyncio.create_task(_keep_claimed(redis, stream, group, consumer, ids, interval_s))
    try:
        yield
    finally:
        await cancel_and_wait(task)  # a beat in flight would swallow a single cancel, and the handler never return


def _field(fields: dict[Any, Any], name: str) -> str | None:
    """One field of a raw stream entry (keys and values bytes or str), decoded; bytes that are no UTF-8 (anyone
    can XADD them) decode replaced instead of failing the consumer."""
    for key, value in fields.items():
        if reply_text(key) == name:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None


def _replayed_for(fields: dict[Any, Any]) -> str | None:
    return _field(fields, REPLAY_FOR)


def parse_stream_id(value: Any) -> tuple[int, int] | None:
    """``<ms>-<seq>`` as two integers, or None when ``value`` is no complete Redis stream id (both parts
    unsigned 64-bit): an id compared as a version must never be something a script or ``int`` misreads."""
    if value is None:
        return None
    match = _STREAM_ID.fullmatch(value.decode(errors="replace") if isinstance(value, bytes) else str(value))
    if not match:
        return None
    ms, seq = int(match[1]), int(match[2])
    return (ms, seq) if ms < _U64 and seq < _U64 else None


def order_id(entry_id: Any, fields: dict[Any, Any]) -> str:
    """The id that places an entry among the events of its subject: its own, but for a replayed dead letter the
    original's (``replay.of``), since XADD gave the copy a new id that would rank it above newer events.

    ``replay.of`` is internal (written by ``replay_dead``) but anyone can XADD a field, so it is used only when it
    is a valid stream id older than the entry's own: a forged one can only make its own entry look older (lose its
    own write), never newer than the events that came after it."""
    own = reply_text(entry_id)
    own_id = parse_stream_id(own)
    original = parse_stream_id(_field(fields, REPLAY_OF))
    if own_id is None or original is None or original >= own_id:
        return own
    return f"{original[0]}-{original[1]}"


def _keep_entries(msg: StreamMessage[Any], keep: list[int]) -> None:
    """Narrow a batch message in place to the entries at ``keep``: the handler, its ``Context("message")`` and the
    final ack all see the same object, so bodies, ids and entries stay aligned (``bury_rejected`` relies on it)."""
    raw = msg.raw_message
    msg.raw_message = {
        **raw,
        "message_ids": [raw["message_ids"][i] for i in keep],
        "data": [raw["data"][i] for i in keep],
    }
    bodies = json.loads(msg.body)
    msg.body = json.dumps([bodies[i] for i in keep]).encode()
    if msg.batch_headers:
        msg.batch_headers = [msg.batch_headers[i] for i in keep]
    msg.clear_cache()


def reliability_middleware(settings: ServiceSettings, consumer: str) -> Callable[..., BaseMiddleware]:
    """Retry cap, dead letters, heartbeat of in-flight entries, replays kept to their group, and the event id bound
    to every log line of the handler. ``consumer`` is the name the router's subscribers read with."""

    max_attempts = settings.max_attempts
    heartbeat_s = settings.claim_idle_ms / 3 / 1000

    class Reliability(BaseMiddleware):
        async def consume_scope(self, call_next: Callable[..., Any], msg: StreamMessage[Any]) -> Any:
            raw = msg.raw_message
            group = getattr(msg, "group", None)
            if not isinstance(raw, dict) or raw.get("type") not in ("stream", "bstream") or not group:
                return await call_next(msg)
            redis: aioredis.Redis = msg.consumer  # type: ignore[attr-defined]
            stream = raw["channel"]
            ids = [reply_text(i) for i in raw["message_ids"]]
            entries = raw["data"] if raw["type"] == "bstream" else [raw["data"]]
            foreign = [i for i, fields in enumerate(entries) if _replayed_for(fields) not in (None, group)]
            if foreign:
                # a dead letter replayed for another group on this stream: this group handled it already
                await redis.xack(stream, group, *(ids[i] for i in foreign))
                log.info("replay_for_other_group_skipped", stream=stream, group=group, ids=[ids[i] for i in foreign])
                if len(foreign) == len(ids):
                    return None
                keep = [i for i in range(len(ids)) if i not in foreign]
                _keep_entries(msg, keep)
                ids = [ids[i] for i in keep]
                entries = [entries[i] for i in keep]
            if raw["type"] == "stream" and (unreadable := _unreadable(msg)):
                await _bury(redis, stream, group, ids[0], entries[0], unreadable, 1)  # no retry reads it better
                return None
            structlog.contextvars.bind_contextvars(
                event_id=_event_id(msg) if raw["type"] == "stream" else None, stream=stream, group=group, entry=ids[0]
            )
            try:
                attempts = await _delivery_counts(redis, stream, group, ids)
                if min(attempts.values()) > max_attempts:
                    # The handler never returned nor raised that often: the process died holding them.
                    for message_id, fields in zip(ids, entries, strict=True):
                        last = await redis.hget(_errors_key(stream, group), message_id)
                        error = reply_text(last) if last else "consumer died while handling it"
                        await _bury(redis, stream, group, message_id, fields, error, attempts[message_id] - 1)
                    return None
                try:
                    async with _heartbeat(redis, stream, group, consumer, ids, heartbeat_s):
                        result = await call_next(msg)
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    # The traceback once per entry (its first recorded failure, whatever the delivery count: a
                    # consumer may have died on it before), not on every retry of an expected failure.
                    first = not await redis.hexists(_errors_key(stream, group), ids[0])
                    log.warning(
                        "handler_failed",
                        attempt=max(attempts.values()),
                        max_attempts=max_attempts,
                        error=error[:500],
                        exc_info=exc if first else None,
                    )
                    if min(attempts.values()) >= max_attempts:
                        for message_id, fields in zip(ids, entries, strict=True):
                            await _bury(redis, stream, group, message_id, fields, error, attempts[message_id])
                        return None
                    await redis.hset(_errors_key(stream, group), mapping={i: error[:4000] for i in ids})
                    # Left pending for the claimer, as a raise would; but FastStream logs a NackMessage in one
                    # line instead of a second full traceback for every attempt.
                    raise NackMessage() from exc
                if max(attempts.values()) > 1:
                    await redis.hdel(_errors_key(stream, group), *ids)
                return result
            finally:
                structlog.contextvars.unbind_contextvars("event_id", "stream", "group", "entry")

    return Reliability


UNREADABLE = "paperwire.unreadable"  # the body ``readable_entries`` puts in place of an entry that is not UTF-8


async def readable_entries(msg: Mapping[str, Any], original: Callable[..., Any]) -> StreamMessage[Any]:
    """FastStream's parser, for an entry that is not UTF-8 text: it fails before the reliability middleware runs
    (no retry cap, no dead letter: redelivered forever) and, in a batch, fails the entries read with it. Such an
    entry is parsed as a body saying so; the middleware dead-letters a lone one at once, a batch handler rejects it
    (``parse_event``) and ``bury_rejected`` dead-letters it. The dead letter holds the entry as it came."""
    try:
        return await original(msg)
    except UnicodeDecodeError:
        pass
    batch = isinstance(msg["data"], list)
    data = []
    for fields in msg["data"] if batch else [msg["data"]]:
        try:
            await original({**msg, "data": [fields] if batch else fields, "message_ids": msg["message_ids"][:1]})
            data.append(fields)
        except UnicodeDecodeError as exc:
            why = f"entry is not UTF-8 text ({exc.reason} at byte {exc.start})"
            data.append({b"__data__": json.dumps({UNREADABLE: why}).encode()})
    parsed = await original({**msg, "data": data if batch else data[0]})
    parsed.raw_message = msg
    return parsed


def _unreadable(msg: StreamMessage[Any]) -> str | None:
    """Why ``readable_entries`` could not read this lone entry, or None (a prefix test first: a raw document's body
    can be megabytes of JSON)."""
    if not isinstance(msg.body, bytes) or not msg.body.startswith(b'{"' + UNREADABLE.encode()):
        return None
    try:
        body = json.loads(msg.body)
    except (TypeError, ValueError):
        return None
    return str(body[UNREADABLE]) if isinstance(body, dict) and UNREADABLE in body else None


def make_router(service: str, settings: ServiceSettings) -> RedisRouter:
    return RedisRouter(middlewares=[reliability_middleware(settings, consumer_name(service, settings))])


def subscriber(
    router: RedisRouter,
    stream: str,
    *,
    service: str,
    settings: ServiceSettings,
    batch: bool = False,
    max_records: int | None = None,
) -> Callable[[Callable[..., Any]], Any]:
    """Register ``handler`` twice on the service's group: a reader of new entries and a claimer of stale ones.

    A lone-entry reader reads one entry at a time: FastStream handles what one XREADGROUP returned one by one, and
    the heartbeat covers only the entry in hand, so entries read ahead went idle, were claimed and handled again by
    a claimer (this replica's or another's) while they waited."""
    name = consumer_name(service, settings)
    if not batch:
        max_records = 1
    reader = router.subscriber(
        stream=StreamSub(
            stream,
            group=service,
            consumer=name,
            batch=batch,
            max_records=max_records,
            polling_interval=settings.read_block_ms,
        ),
        title=f"{service}:{stream}",
        parser=readable_entries,
    )
    claimer = router.subscriber(
        stream=StreamSub(
            stream,
            group=service,
            consumer=name,
            batch=batch,
            min_idle_time=settings.claim_idle_ms,
            polling_interval=settings.claim_poll_ms,
        ),
        title=f"{service}:{stream}:claim",
        include_in_schema=False,
        parser=readable_entries,
    )

    def register(handler: Callable[..., Any]) -> Any:
        return claimer(reader(handler))

    return register


def replay_copy(fields: dict[Any, Any]) -> dict[str, Any]:
    """What a dead letter puts back on its stream: the original entry without the ``dead.*`` fields, marked
    ``replay.for=<dead.group>`` and ``replay.of=<original id>`` (see ``replay_dead``)."""
    decoded = {reply_text(k): v for k, v in fields.items()}
    original = {k: v for k, v in decoded.items() if not k.startswith("dead.") and k not in (REPLAY_FOR, REPLAY_OF)}
    if "dead.group" in decoded:
        original[REPLAY_FOR] = decoded["dead.group"]
    if parse_stream_id(decoded.get("dead.id")) is not None:
        original[REPLAY_OF] = order_id(decoded["dead.id"], decoded)
    return original


async def replay_dead(
    redis: aioredis.Redis,
    stream: str,
    entry_ids: list[str] | None = None,
    *,
    only: Callable[[dict[str, Any]], bool] | None = None,
    limit: int | None = None,
) -> list[str]:
    """Put dead-lettered entries of ``stream`` back on it (without the ``dead.*`` fields); returns their dead-letter
    ids. ``entry_ids`` picks entries by id, ``only`` by their event body (an api owner replays only their own).

    Each goes back marked ``replay.for=<dead.group>``: the stream is shared, and the other groups on it handled
    the entry the first time, so their middleware acks the copy unhandled. And ``replay.of=<original id>``: the
    copy gets a new id, but consumers that order a subject's events by entry id (``order_id``) must rank it where
    the original was; a copy dead-lettered and replayed again keeps the first original's id."""
    replayed = []
    for entry_id, fields in await redis.xrange(dead_letter_stream(stream), count=limit):
        eid = reply_text(entry_id)
        if entry_ids and eid not in entry_ids:
            continue
        if only is not None and not only(entry_body(fields) or {}):
            continue
        async with redis.pipeline(transaction=True) as pipe:
            pipe.xadd(stream, replay_copy(fields))
            pipe.xdel(dead_letter_stream(stream), entry_id)
            await pipe.execute()
        replayed.append(eid)
    return replayed

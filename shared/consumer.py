"""Reliable consumption on Redis Streams: what FastStream does not give for free (see DESIGN.md).

- one consumer group per service, created at id ``0`` with MKSTREAM before anything is read or published;
- one stable, unique consumer name per process (``PAPERWIRE_CONSUMER_NAME`` or ``<service>-<host>-<pid>``);
- ack only after the handler (and its publishes) returned: FastStream's REJECT_ON_ERROR leaves a failed
  entry pending;
- a claimer per consumer (a claim-only XAUTOCLAIM subscriber running the same handler) for entries idle
  longer than ``claim_idle_ms``, so a crashed consumer's or a failed handler's entries are retried;
- a retry cap from the delivery count (XPENDING): after ``max_attempts`` the entry goes to ``<stream>.dead``
  with its error and is acked, so a poison message never blocks or loops.

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

import json
import os
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
import structlog
from faststream import BaseMiddleware
from faststream.message import StreamMessage
from faststream.redis import RedisRouter, StreamSub
from pydantic import BaseModel, ValidationError
from redis.exceptions import ResponseError

from shared.events import CONSUMER_GROUPS, dead_letter_stream
from shared.settings import ServiceSettings
from shared.storage import claim_once

log = structlog.get_logger("paperwire.consumer")


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


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


Event = TypeVar("Event", bound=BaseModel)


class BadEvent(ValueError):
    """An entry no retry can handle (not JSON, not the event's shape): dead-letter it, never retry."""


def parse_event(body: Any, model: type[Event]) -> Event:
    """One body of a batch subscriber (batches arrive undecoded) as ``model``, or ``BadEvent`` saying why not."""
    if isinstance(body, model):
        return body
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
    """Dead-letter the entries of a batch that no retry can handle, each once (a redelivered batch does not bury
    them again); the handler goes on with the rest of the batch, whose ack then covers these entries too."""
    ids = [_decode(i) for i in message.raw_message["message_ids"]]
    entries = message.raw_message["data"]
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
    entry = {_decode(k): v for k, v in fields.items()}
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
    log.warning("dead_lettered", stream=stream, group=group, id=message_id, attempts=attempts, error=error[:500])
    return _decode(dead_id)


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
    counts = {_decode(p["message_id"]): int(p["times_delivered"]) for p in pending}
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


def reliability_middleware(settings: ServiceSettings) -> Callable[..., BaseMiddleware]:
    """Retry cap, dead letters, and the event id bound to every log line of the handler."""

    max_attempts = settings.max_attempts

    class Reliability(BaseMiddleware):
        async def consume_scope(self, call_next: Callable[..., Any], msg: StreamMessage[Any]) -> Any:
            raw = msg.raw_message
            group = getattr(msg, "group", None)
            if not isinstance(raw, dict) or raw.get("type") not in ("stream", "bstream") or not group:
                return await call_next(msg)
            redis: aioredis.Redis = msg.consumer  # type: ignore[attr-defined]
            stream = raw["channel"]
            ids = [_decode(i) for i in raw["message_ids"]]
            entries = raw["data"] if raw["type"] == "bstream" else [raw["data"]]
            structlog.contextvars.bind_contextvars(
                event_id=_event_id(msg) if raw["type"] == "stream" else None, stream=stream, entry=ids[0]
            )
            try:
                attempts = await _delivery_counts(redis, stream, group, ids)
                if min(attempts.values()) > max_attempts:
                    # The handler never returned nor raised that often: the process died holding them.
                    for message_id, fields in zip(ids, entries, strict=True):
                        last = await redis.hget(_errors_key(stream, group), message_id)
                        error = _decode(last) if last else "consumer died while handling it"
                        await _bury(redis, stream, group, message_id, fields, error, attempts[message_id] - 1)
                    return None
                try:
                    result = await call_next(msg)
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    if min(attempts.values()) >= max_attempts:
                        for message_id, fields in zip(ids, entries, strict=True):
                            await _bury(redis, stream, group, message_id, fields, error, attempts[message_id])
                        return None
                    await redis.hset(_errors_key(stream, group), mapping={i: error[:4000] for i in ids})
                    log.warning(
                        "handler_failed",
                        attempt=max(attempts.values()),
                        max_attempts=max_attempts,
                        error=error[:500],
                    )
                    raise
                if max(attempts.values()) > 1:
                    await redis.hdel(_errors_key(stream, group), *ids)
                return result
            finally:
                structlog.contextvars.unbind_contextvars("event_id", "stream", "entry")

    return Reliability


def make_router(service: str, settings: ServiceSettings) -> RedisRouter:
    return RedisRouter(middlewares=[reliability_middleware(settings)])


def subscriber(
    router: RedisRouter,
    stream: str,
    *,
    service: str,
    settings: ServiceSettings,
    batch: bool = False,
    max_records: int | None = None,
) -> Callable[[Callable[..., Any]], Any]:
    """Register ``handler`` twice on the service's group: a reader of new entries and a claimer of stale ones."""
    name = consumer_name(service, settings)
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
    )

    def register(handler: Callable[..., Any]) -> Any:
        return claimer(reader(handler))

    return register


async def replay_dead(redis: aioredis.Redis, stream: str, entry_ids: list[str] | None = None) -> int:
    """Put dead-lettered entries of ``stream`` back on it (without the ``dead.*`` fields); returns how many."""
    replayed = 0
    for entry_id, fields in await redis.xrange(dead_letter_stream(stream)):
        if entry_ids and _decode(entry_id) not in entry_ids:
            continue
        original = {k: v for k, v in fields.items() if not _decode(k).startswith("dead.")}
        await redis.xadd(stream, original)
        await redis.xdel(dead_letter_stream(stream), entry_id)
        replayed += 1
    return replayed

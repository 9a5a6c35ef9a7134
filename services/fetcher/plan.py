"""Each source's polling schedule, kept in Redis so a restart and every fetcher replica share it.

State: one hash per source, ``fetcher:schedule:{source}`` (no TTL: a handful of small hashes), holding when its
last attempt started (``attempt_started``, ``by``) and finished (``finished``, ``ok``, ``error``), and the start
of its last success (``last_ok``). Whether a source is due is computed from that hash by the pure ``decide``: due
when it never finished a poll, else ``poll_interval_s`` after a success or ``retry_failed_after_s`` after a
failure, both counted from the end of the attempt. A changed interval therefore applies at once.

Claim: ``fetcher:poll:{source}`` = ``<holder>|<random>``, taken with SET NX PX ``poll_lease_s`` and renewed every
third of it while the poll runs; released (compare-and-delete) after the outcome is recorded. Why a lease and
not a Lua or WATCH check-and-claim: the due logic stays in Python (one copy, tested without Redis), and a lease
is the only piece that must be atomic. The poller decides from a first read, takes the claim, then reads the
hash again under the claim: a replica that polled and released in between has already recorded its run, so the
second read says "not due" and nobody polls twice. A crashed poller stops renewing and its claim expires after
at most ``poll_lease_s``, so the source is never stuck; renewing (rather than one long TTL) keeps the lease short
without letting it lapse under a slow poll (an OAI harvest at one page per 3 s can take many minutes).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
import structlog

from shared.storage import release_held, reply_text
from shared.tasks import lease_kept

log = structlog.get_logger("paperwire.fetcher.plan")

STATE_KEY = "fetcher:schedule:{source}"
CLAIM_KEY = "fetcher:poll:{source}"

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end
"""
# Move a timestamp (ISO 8601, UTC) only forward: replicas finishing out of order must not set it back.
_SET_IF_LATER = """
local current = redis.call('get', KEYS[1])
if current == false or ARGV[1] > current then redis.call('set', KEYS[1], ARGV[1]) return 1 end
return 0
"""


# ---- pure decision logic ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceState:
    """What Redis remembers about one source's polls; the default is a source never polled."""

    finished: datetime | None = None
    ok: bool = False
    last_ok: datetime | None = None
    attempt_started: datetime | None = None
    by: str = ""
    error: str = ""

    @classmethod
    def from_hash(cls, fields: Mapping[bytes | str, bytes | str]) -> SourceState:
        """Parse the stored hash (bytes from redis-py); a missing or empty hash is a source never polled."""
        data = {reply_text(k): reply_text(v) for k, v in fields.items()}

        def when(name: str) -> datetime | None:
            return datetime.fromisoformat(data[name]) if data.get(name) else None

        return cls(
            finished=when("finished"),
            ok=data.get("ok") == "1",
            last_ok=when("last_ok"),
            attempt_started=when("attempt_started"),
            by=data.get("by", ""),
            error=data.get("error", ""),
        )


def outcome_fields(started: datetime, finished: datetime, ok: bool, error: str | None) -> dict[str, str]:
    """The hash fields an attempt's outcome writes. Success counts from its start (what was fetched then)."""
    fields = {"finished": _iso(finished), "ok": "1" if ok else "0", "error": (error or "")[:500]}
    if ok:
        fields["last_ok"] = _iso(started)
    return fields


@dataclass(frozen=True)
class Claim:
    """Another poller holds the source until ``until`` (unless it renews)."""

    holder: str
    until: datetime


@dataclass(frozen=True)
class Decision:
    source: str
    due: bool
    next_due: datetime
    """When the schedule says the source should be polled (``now`` or earlier when due)."""
    reason: str
    claim: Claim | None = None

    @property
    def wake_at(self) -> datetime:
        """When a poller should look again: the due time, or the end of someone else's claim if that is later."""
        return max(self.next_due, self.claim.until) if self.claim else self.next_due


def next_due(state: SourceState, interval_s: float, retry_s: float) -> datetime | None:
    """The end of the last attempt plus the interval (success) or the retry delay (failure); None: never ran."""
    if state.finished is None:
        return None
    return state.finished + timedelta(seconds=interval_s if state.ok else retry_s)


def decide(
    source: str,
    state: SourceState,
    now: datetime,
    interval_s: float,
    retry_s: float,
    claim: Claim | None = None,
) -> Decision:
    """Is ``source`` due at ``now``, and why (in words an operator reads in ``paperwire fetch schedule``)."""
    due_at = next_due(state, interval_s, retry_s)
    if claim is not None and claim.until > now:
        return Decision(
            source,
            False,
            due_at or now,
            f"claimed by another fetcher ({claim.holder}) until {_clock(claim.until)}",
            claim,
        )
    if due_at is None:
        return Decision(source, True, now, "due: never ran")
    if due_at <= now:
        if state.ok:
            why = f"due: interval {span(interval_s)} elapsed since the last poll ended at {_clock(state.finished)}"
        else:
            why = f"due: last poll failed at {_clock(state.finished)}, retry delay {span(retry_s)} elapsed"
        return Decision(source, True, due_at, why)
    if state.ok:
        why = f"waiting: next at {_clock(due_at)} (every {span(interval_s)})"
    else:
        error = f": {_shorten(state.error, 200)}" if state.error else ""
        why = f"waiting: next at {_clock(due_at)} (retry after {span(retry_s)}, the last poll failed{error})"
    return Decision(source, False, due_at, why)


def complete_since(states: Mapping[str, SourceState], keys: Iterable[str]) -> datetime | None:
    """The time since which every source has been fetched successfully; None while one never was."""
    keys = list(keys)
    if not keys or any(states.get(key, SourceState()).last_ok is None for key in keys):
        return None
    return min(states[key].last_ok for key in keys)  # type: ignore[type-var]


def seconds_until_wake(decisions: Iterable[Decision], now: datetime, default_s: float) -> float:
    """How long the loop may sleep before a source is due or a claim it waits on ends (``default_s``: none)."""
    wakes = [decision.wake_at for decision in decisions]
    if not wakes:
        return default_s
    return max(0.0, (min(wakes) - now).total_seconds())


def format_decision(decision: Decision, now: datetime) -> str:
    """One line of ``paperwire fetch schedule``: the source, its next due time and why."""
    when = "now" if decision.next_due <= now else _clock(decision.next_due)
    return f"{decision.source}: next due {when}; {decision.reason}"


def span(seconds: float) -> str:
    """``3600`` -> ``60 min``, ``90`` -> ``90 s``, ``86400`` -> ``24 h``: intervals as operators write them."""
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 2 * 3600 or seconds % 3600:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"


def _shorten(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word and marked, so an operator never reads half a word."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " …"


def _clock(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if moment else "never"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


# ---- Redis edge --------------------------------------------------------------------------------------------------


@dataclass
class SourceSchedule:
    """The schedule of every source in Redis, seen by one poller (``holder``): read, claim, record."""

    redis: aioredis.Redis
    holder: str
    interval_s: float = 3600.0
    retry_s: float = 120.0
    lease_s: float = 60.0
    _tokens: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def lease_ms(self) -> int:
        return max(1, int(self.lease_s * 1000))

    async def states(self, keys: Iterable[str]) -> dict[str, SourceState]:
        keys = list(keys)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(STATE_KEY.format(source=key))
            hashes = await pipe.execute()
        return {key: SourceState.from_hash(fields) for key, fields in zip(keys, hashes, strict=True)}

    async def claims(self, keys: Iterable[str], now: datetime) -> dict[str, Claim]:
        """Claims held now, each with its end (``now`` plus the key's remaining TTL, by Redis' clock)."""
        keys = list(keys)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(CLAIM_KEY.format(source=key))
                pipe.pttl(CLAIM_KEY.format(source=key))
            replies = await pipe.execute()
        held: dict[str, Claim] = {}
        for key, value, ttl_ms in zip(keys, replies[::2], replies[1::2], strict=True):
            if value is not None and ttl_ms > 0:
                holder = reply_text(value).rsplit("|", 1)[0]
                held[key] = Claim(holder, now + timedelta(milliseconds=ttl_ms))
        return held

    async def decisions(self, keys: Iterable[str], now: datetime) -> list[Decision]:
        keys = list(keys)
        states = await self.states(keys)
        claims = await self.claims(keys, now)
        return [decide(k, states[k], now, self.interval_s, self.retry_s, claims.get(k)) for k in keys]

    async def due_now(self, key: str, now: datetime) -> bool:
        """The re-check made under the claim (another poller may have recorded a run since the first read)."""
        state = (await self.states([key]))[key]
        return decide(key, state, now, self.interval_s, self.retry_s).due

    async def try_claim(self, key: str) -> bool:
        """SET NX PX: True when this poller now holds ``key`` (until it releases it or stops renewing)."""
        token = f"{self.holder}|{uuid.uuid4().hex}"
        if await self.redis.set(CLAIM_KEY.format(source=key), token, nx=True, px=self.lease_ms):
            self._tokens[key] = token
            return True
        return False

    async def renew(self, key: str) -> bool:
        """Push the lease forward; False when the claim was lost (expired, or never held)."""
        token = self._tokens.get(key)
        if token is None:
            return False
        return bool(await self.redis.eval(_RENEW, 1, CLAIM_KEY.format(source=key), token, self.lease_ms))

    async def release(self, key: str) -> None:
        """Delete the claim only if it is still ours (an expired one may already be someone else's)."""
        token = self._tokens.pop(key, None)
        if token is not None:
            await release_held(self.redis, CLAIM_KEY.format(source=key), token)

    @contextlib.asynccontextmanager
    async def claimed(self, key: str) -> AsyncIterator[bool]:
        """Hold ``key`` for the block, renewing the lease every third of it; yields False when another has it."""
        if not await self.try_claim(key):
            yield False
            return
        async with lease_kept(
            lambda: self.renew(key), lambda: self.release(key), self.lease_s / 3, "poll claim", source=key
        ):
            yield True

    async def mark_started(self, key: str, started: datetime) -> None:
        await self.redis.hset(
            STATE_KEY.format(source=key), mapping={"attempt_started": _iso(started), "by": self.holder}
        )

    async def record(self, key: str, started: datetime, finished: datetime, ok: bool, error: str | None) -> None:
        await self.redis.hset(STATE_KEY.format(source=key), mapping=outcome_fields(started, finished, ok, error))


async def set_if_later(redis: aioredis.Redis, key: str, moment: datetime) -> bool:
    """Store ``moment`` (UTC ISO 8601, which sorts as text) unless the stored one is later."""
    return bool(await redis.eval(_SET_IF_LATER, 1, key, _iso(moment)))

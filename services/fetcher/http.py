"""Polite, bounded HTTP GETs: size limit, timeouts, Retry-After and jittered backoff, conditional requests.

Every attempt to an arXiv host goes through the shared rate limiter. 429 and 503 answers push the
shared limiter forward by their Retry-After (so every replica backs off), are logged and counted in
the ``fetcher:metrics`` hash; timeouts, connection errors and truncated bodies are retried the same way.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
import redis.asyncio as aioredis
import structlog

from services.fetcher.ratelimit import SharedRateLimiter
from shared.status import FETCHER_METRICS_KEY as METRICS_KEY

log = structlog.get_logger("paperwire.fetcher.http")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class FetchError(RuntimeError):
    """A fetch that failed for good (after retries, or for a reason retrying cannot fix)."""


class ResponseTooLarge(FetchError):
    pass


@dataclass
class FetchResult:
    url: str
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    attempts: int = 1

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_s(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff: uniform in [base * 2**(attempt-1) / 2, base * 2**(attempt-1)], capped."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


class Fetcher:
    """One httpx client plus the politeness rules; ``limiter`` None for hosts without a shared limit."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        redis: aioredis.Redis | None = None,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        max_retries: int = 4,
        backoff_base_s: float = 2.0,
        backoff_max_s: float = 300.0,
    ) -> None:
        self.client = client
        self.redis = redis
        self.max_bytes = max_bytes
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s

    async def get(
        self,
        url: str,
        *,
        params: dict[str, str | int] | None = None,
        limiter: SharedRateLimiter | None = None,
        conditional: bool = False,
    ) -> FetchResult:
        """GET with retries; 304 comes back as a result (``not_modified``), other failures raise FetchError."""
        request_url = str(httpx.URL(url, params=params)) if params else url
        headers = await self._validators(request_url) if conditional else {}
        last_error = "no attempt made"
        for attempt in range(1, self.max_retries + 2):
            wait: float | None = None
            try:
                result = await self._attempt(request_url, headers, limiter)
            except ResponseTooLarge:
                await self._count("too_large")
                raise
            except (httpx.RequestError, zlib.error) as exc:
                # Timeouts, dropped connections, redirect loops, bodies that do not decode: retried, then FetchError.
                kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "transport_error"
                last_error = f"{kind}: {type(exc).__name__}: {exc}"
                await self._count(kind)
            else:
                result.attempts = attempt
                if result.status < 400 or result.status == 304:
                    await self._count("ok")
                    return result
                if result.status not in RETRY_STATUSES:
                    await self._count(f"status_{result.status}")
                    raise FetchError(f"HTTP {result.status} from {request_url}: {result.text()[:200]}")
                await self._count(f"status_{result.status}")
                last_error = f"HTTP {result.status}"
                wait = _retry_after(result)
            if attempt > self.max_retries:
                break
            delay = max(wait or 0.0, backoff_s(attempt, self.backoff_base_s, self.backoff_max_s))
            await self._count("retries")
            log.warning("fetch_retry", url=request_url, attempt=attempt, error=last_error, retry_in_s=round(delay, 2))
            await asyncio.sleep(delay)
        raise FetchError(f"gave up on {request_url} after {self.max_retries + 1} attempts: {last_error}")

    async def _attempt(self, url: str, headers: dict[str, str], limiter: SharedRateLimiter | None) -> FetchResult:
        """One request; a Retry-After reaches the shared limiter before the slot is given up, so no one slips in."""
        if limiter is None:
            return await self._once(url, headers)
        async with limiter.slot():
            result = await self._once(url, headers)
            wait = _retry_after(result)
            if wait is not None:
                await limiter.defer(wait)
            return result

    async def _once(self, url: str, headers: dict[str, str]) -> FetchResult:
        async with self.client.stream("GET", url, headers=headers) as response:
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.max_bytes:
                raise ResponseTooLarge(f"{url}: Content-Length {declared} above the {self.max_bytes}-byte limit")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > self.max_bytes:
                    raise ResponseTooLarge(f"{url}: body above the {self.max_bytes}-byte limit")
                chunks.append(chunk)
            body = b"".join(chunks)
            if response.headers.get("content-encoding") in ("gzip", "deflate", "br"):
                body = await _decode_body(response, body, self.max_bytes, url)
            return FetchResult(
                url=url,
                status=response.status_code,
                body=body,
                content_type=response.headers.get("content-type"),
                headers={k.lower(): v for k, v in response.headers.items()},
            )

    async def _validators(self, url: str) -> dict[str, str]:
        if self.redis is None:
            return {}
        stored = await self.redis.hgetall(_cond_key(url))
        headers = {}
        etag, modified = stored.get(b"etag"), stored.get(b"last-modified")
        if etag:
            headers["If-None-Match"] = etag.decode()
        if modified:
            headers["If-Modified-Since"] = modified.decode()
        return headers

    async def remember(self, result: FetchResult) -> None:
        """Store ETag / Last-Modified once the body was handed on (so a lost publish is fetched again)."""
        if self.redis is None or result.status != 200:
            return
        values = {k: result.headers[k] for k in ("etag", "last-modified") if result.headers.get(k)}
        if values:
            await self.redis.hset(_cond_key(result.url), mapping=values)

    async def _count(self, what: str) -> None:
        if self.redis is not None:
            await self.redis.hincrby(METRICS_KEY, what, 1)


def _retry_after(result: FetchResult) -> float | None:
    """The Retry-After of a retryable answer, in seconds; None for any other answer."""
    if result.status not in RETRY_STATUSES:
        return None
    return retry_after_s(result.headers.get("retry-after"))


def _cond_key(url: str) -> str:
    return f"fetcher:conditional:{url}"


async def _decode_body(response: httpx.Response, raw: bytes, max_bytes: int, url: str) -> bytes:
    """Decompress with the size limit applied to the output too (a small gzip can expand enormously)."""
    encoding = response.headers.get("content-encoding")
    if encoding == "br":
        raise FetchError(f"{url}: brotli bodies are not accepted (we send Accept-Encoding: gzip)")
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
    out = decompressor.decompress(raw, max_bytes + 1)
    if len(out) > max_bytes or decompressor.unconsumed_tail:
        raise ResponseTooLarge(f"{url}: decompressed body above the {max_bytes}-byte limit")
    return out


def make_client(settings_timeout_connect: float, settings_timeout_read: float, user_agent: str) -> httpx.AsyncClient:
    """One connection per host at a time is what arXiv asks; the limiter enforces it across processes."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings_timeout_read, connect=settings_timeout_connect),
        headers={"User-Agent": user_agent, "Accept-Encoding": "gzip"},
        follow_redirects=True,
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
    )

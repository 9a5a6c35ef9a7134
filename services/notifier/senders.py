"""The three channels. Each ``send`` makes one attempt and says how it went; the worker decides what next."""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import ssl
import tempfile
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal

import aiosmtplib
import httpx
import redis.asyncio as aioredis

from services.notifier import payload as webhook_payload
from services.notifier.email_render import Links, build_message, wire_bytes
from services.notifier.jobs import DeliveryJob
from services.notifier.settings import NotifierSettings
from services.notifier.slack_blocks import build_messages
from shared.ssrf import Unresolvable, UnsafeURL, parse_networks, resolve_safe
from shared.subscription import Subscription, WebhookEndpoint
from shared.webhook_signing import BadSecret, webhook_headers

OutcomeKind = Literal["delivered", "retry", "gone", "refused"]


@dataclass
class Outcome:
    """``retry``: try again later; ``gone``: the receiver said 410; ``refused``: never deliverable (SSRF, an SMTP
    5xx refusal of the recipient or message)."""

    kind: OutcomeKind
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    throttle: bool = False
    detail: dict[str, object] = field(default_factory=dict)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date. ``inf`` and ``nan`` (which
    ``float`` accepts) are no delay at all: None, the retry schedule decides. The worker caps what is left."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now or time.time()))


def http_outcome(response: httpx.Response) -> Outcome:
    code = response.status_code
    if 200 <= code < 300:
        return Outcome("delivered", code)
    if code == 410:
        return Outcome("gone", code, "410 Gone")
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    throttle = code == 429 or code >= 500
    return Outcome("retry", code, f"HTTP {code}: {response.text[:200]}", retry_after=retry_after, throttle=throttle)


class EmailSender:
    """SMTP (aiosmtplib) when a host is set, else ``<outbox>/<job id>.eml`` (same id, same file: no duplicate)."""

    def __init__(self, settings: NotifierSettings, links: Links) -> None:
        self.settings = settings
        self.links = links

    def message(self, job: DeliveryJob, subscription: Subscription) -> EmailMessage:
        return build_message(job, subscription, self.links, self.settings.mail_from)

    async def send(self, job: DeliveryJob, subscription: Subscription) -> Outcome:
        msg = self.message(job, subscription)
        s = self.settings
        if not s.smtp_host:
            path = await asyncio.to_thread(write_eml, s.outbox_dir, job.id, msg)
            return Outcome("delivered", detail={"path": str(path)})
        try:
            await aiosmtplib.send(
                wire_bytes(msg),  # aiosmtplib's own flattening folds at 78 characters
                sender=parseaddr(s.mail_from)[1],
                recipients=[job.target],  # the validated address itself, not a re-parse of the To header
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password,
                start_tls=s.smtp_starttls,
                use_tls=s.smtp_tls,
                timeout=s.smtp_timeout_s,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return smtp_outcome(exc)
        return Outcome("delivered")


def smtp_outcome(exc: Exception) -> Outcome:
    """A failed SMTP send. A 5xx answer to the recipient (550 5.1.1 user unknown) or to the message is final
    (RFC 5321): ``refused``, not ~18 h of retries. 4xx answers and connection trouble are retried, and so are
    5xx answers to the session itself (greeting, HELO, AUTH, MAIL FROM): those are the deployment's settings,
    which an operator can fix before the retries run out."""
    error = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [refusal.code for refusal in exc.recipients]
    elif isinstance(exc, (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPDataError)):
        codes = [exc.code]
    else:
        code = getattr(exc, "code", None)
        return Outcome("retry", code if isinstance(code, int) else None, error)
    if codes and all(500 <= code < 600 for code in codes):
        return Outcome("refused", codes[0], error)
    return Outcome("retry", codes[0] if codes else None, error)


def write_eml(outbox: Path, name: str, msg: EmailMessage) -> Path:
    outbox.mkdir(parents=True, exist_ok=True)
    final = outbox / f"{name}.eml"
    fd, tmp = tempfile.mkstemp(dir=outbox, suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(wire_bytes(msg))
    os.replace(tmp, final)
    return final


def _pace_key(url: str) -> str:
    return f"notifier:slack:pace:{hashlib.sha256(url.encode()).hexdigest()[:16]}"


class SlackSender:
    """Incoming webhooks: one message at a time per webhook, at most one a second, 429 Retry-After honoured.

    The pace is kept in Redis (``notifier:slack:pace:{webhook hash}``, a key that lives as long as the wait), so
    it holds across notifier replicas: each post first takes the key, and a 429 stretches it to Retry-After."""

    def __init__(self, settings: NotifierSettings, links: Links, poster: PinnedPoster, redis: aioredis.Redis) -> None:
        self.settings = settings
        self.links = links
        self.poster = poster  # a Slack webhook URL is user input like any webhook's: same SSRF check
        self.redis = redis

    async def _pace(self, url: str) -> None:
        """Wait until this webhook may take a post, then reserve the next interval for it."""
        key = _pace_key(url)
        interval_ms = max(1, int(self.settings.slack_min_interval_s * 1000))
        while True:
            if await self.redis.set(key, 1, nx=True, px=interval_ms):
                return
            await asyncio.sleep(max(await self.redis.pttl(key), 1) / 1000)  # held by another post (any replica)

    async def _hold_off(self, url: str, seconds: float) -> None:
        await self.redis.set(_pace_key(url), 1, px=max(1, int(seconds * 1000)))

    async def send(self, job: DeliveryJob, subscription: Subscription) -> Outcome:
        url = str(subscription.channels.slack_webhook_url)
        messages = build_messages(job, subscription, self.links)
        waited, rate_limited = 0.0, 0
        while job.parts_done < len(messages):
            await self._pace(url)
            response = await self.poster.post(url, json=messages[job.parts_done])
            if isinstance(response, Outcome):
                response.detail["parts_done"] = job.parts_done
                return response
            outcome = http_outcome(response)
            if outcome.kind == "delivered":
                job.parts_done += 1
                continue
            if response.status_code == 429:
                wait = outcome.retry_after if outcome.retry_after is not None else self.settings.slack_min_interval_s
                wait = max(wait, self.settings.slack_min_interval_s)
                rate_limited += 1
                if (
                    wait <= self.settings.slack_max_inline_wait_s
                    and waited + wait <= self.settings.slack_inline_wait_budget_s
                    and rate_limited <= self.settings.slack_max_inline_retries
                ):
                    waited += wait
                    await self._hold_off(url, wait)
                    continue
            outcome.detail["parts_done"] = job.parts_done
            return outcome
        return Outcome("delivered", 200, detail={"messages": len(messages)})


@dataclass
class _PooledClient:
    client: httpx.AsyncClient
    users: int = 0
    evicted: bool = False


class HostClients:
    """One pooled HTTPS client per host name, least recently used closed beyond ``size``.

    Requests go to the checked IP address, and httpx keys its connection pool by the URL's host: with one
    client for all, a TLS connection negotiated (SNI and certificate) for ``a.test`` would be reused for
    ``b.test`` on the same address, whose certificate would then never be checked. A client per name keeps
    every name on connections verified for it, and keep-alive within a name."""

    def __init__(self, size: int, make: Callable[[], httpx.AsyncClient]) -> None:
        self.size = size
        self.make = make
        self._clients: OrderedDict[str, _PooledClient] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clients)

    @asynccontextmanager
    async def use(self, host: str) -> AsyncIterator[httpx.AsyncClient]:
        entry = self._clients.pop(host, None) or _PooledClient(self.make())
        self._clients[host] = entry
        entry.users += 1
        evicted = self._evict()
        try:
            yield entry.client
        finally:
            entry.users -= 1
            if entry.evicted and entry.users == 0:
                evicted.append(entry)
            for old in evicted:
                if old.users == 0:
                    await old.client.aclose()

    def _evict(self) -> list[_PooledClient]:
        """Drop the least recently used names; a client still sending is closed by its last user."""
        dropped = []
        while len(self._clients) > self.size:
            _, old = self._clients.popitem(last=False)
            old.evicted = True
            dropped.append(old)
        return dropped

    async def aclose(self) -> None:
        entries = list(self._clients.values())
        self._clients.clear()
        for entry in entries:
            await entry.client.aclose()


class PinnedPoster:
    """POSTs to user-supplied URLs (webhook endpoints, Slack webhook URLs): the SSRF check first, then the request
    goes to exactly the checked address (host name in ``Host`` and TLS SNI), within a hard timeout.

    ``client`` carries plain HTTP; HTTPS goes through a client of its own per host name (see :class:`HostClients`),
    verified with ``verify`` (default: the system's trusted CAs)."""

    def __init__(
        self, settings: NotifierSettings, client: httpx.AsyncClient, *, verify: ssl.SSLContext | bool = True
    ) -> None:
        self.settings = settings
        self.client = client
        self.allowed = parse_networks(settings.webhook_allowed_networks)
        tls = httpx.create_ssl_context(verify=verify) if not isinstance(verify, ssl.SSLContext) else verify
        limits = httpx.Limits(
            max_connections=settings.delivery_concurrency,
            max_keepalive_connections=settings.webhook_concurrency_per_endpoint,
        )
        self.tls_clients = HostClients(
            settings.webhook_tls_clients,
            lambda: httpx.AsyncClient(verify=tls, limits=limits, follow_redirects=False, trust_env=False),
        )

    @asynccontextmanager
    async def _client_for(self, url: httpx.URL) -> AsyncIterator[httpx.AsyncClient]:
        if url.scheme != "https":
            yield self.client
            return
        async with self.tls_clients.use(f"{url.host}:{url.port or 443}") as client:
            yield client

    async def post(self, url: str, **request: Any) -> httpx.Response | Outcome:
        """The response, or the outcome that replaces it: refused (not a public address), retry (DNS failed, no
        answer in time, a transport error)."""
        try:
            pinned = await resolve_safe(url, self.allowed)
        except UnsafeURL as exc:
            if isinstance(exc, Unresolvable):
                return Outcome("retry", error=f"DNS: {exc}", throttle=True)
            return Outcome("refused", error=f"unsafe URL: {exc}")
        target = httpx.URL(url)
        headers = {**request.pop("headers", {}), "host": pinned.host}
        timeout = self.settings.webhook_timeout_s
        try:
            async with asyncio.timeout(timeout), self._client_for(target) as client:
                return await client.post(
                    pinned.url, headers=headers, timeout=timeout, extensions={"sni_hostname": target.host}, **request
                )
        except (httpx.TimeoutException, TimeoutError):
            return Outcome("retry", None, f"no answer within {timeout:g} s", throttle=True)
        except httpx.HTTPError as exc:
            return Outcome("retry", None, f"{type(exc).__name__}: {exc}", throttle=True)

    async def aclose(self) -> None:
        await self.tls_clients.aclose()


class WebhookSender:
    """Standard Webhooks POSTs to user endpoints, through the :class:`PinnedPoster`."""

    def __init__(self, settings: NotifierSettings, poster: PinnedPoster) -> None:
        self.settings = settings
        self.poster = poster

    def endpoint(self, job: DeliveryJob, subscription: Subscription) -> WebhookEndpoint | None:
        return next((e for e in subscription.channels.webhooks if e.id == job.target), None)

    async def send(self, job: DeliveryJob, subscription: Subscription) -> Outcome:
        endpoint = self.endpoint(job, subscription)
        if endpoint is None:
            return Outcome("refused", error="endpoint no longer in the subscription")
        body = webhook_payload.encode(webhook_payload.build_payload(job, subscription))
        now = int(datetime.now(UTC).timestamp())
        try:
            headers = webhook_headers(endpoint.secret, endpoint.previous_secret, job.id, now, body)
        except BadSecret as exc:  # stored under older rules: no retry will make it sign
            return Outcome("refused", error=f"the endpoint's secret cannot sign: {exc}")
        response = await self.poster.post(str(endpoint.url), content=body, headers=headers)
        return response if isinstance(response, Outcome) else http_outcome(response)


def attempt_record(job: DeliveryJob, outcome: Outcome, started: float, finished: float) -> dict[str, object]:
    return {
        "delivery_id": job.id,
        "subscription_id": job.subscription_id,
        "papers": job.paper_ids,
        "attempt": job.attempts,
        "at": datetime.fromtimestamp(started, UTC).isoformat(),
        "duration_ms": round((finished - started) * 1000, 1),
        "outcome": outcome.kind,
        "status_code": outcome.status_code,
        "error": outcome.error,
    }


__all__ = ["EmailSender", "HostClients", "Outcome", "PinnedPoster", "SlackSender", "WebhookSender", "attempt_record"]

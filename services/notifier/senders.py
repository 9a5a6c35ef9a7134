"""The three channels. Each ``send`` makes one attempt and says how it went; the worker decides what next."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Literal

import aiosmtplib
import httpx

from services.notifier import payload as webhook_payload
from services.notifier.email_render import Links, build_message
from services.notifier.jobs import DeliveryJob
from services.notifier.settings import NotifierSettings
from services.notifier.signing import webhook_headers
from services.notifier.slack_blocks import build_messages
from services.notifier.ssrf import UnsafeURL, parse_networks, resolve_safe
from shared.subscription import Subscription, WebhookEndpoint

OutcomeKind = Literal["delivered", "retry", "gone", "refused"]


@dataclass
class Outcome:
    """``retry``: try again later; ``gone``: the receiver said 410; ``refused``: never deliverable (SSRF)."""

    kind: OutcomeKind
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    throttle: bool = False
    detail: dict[str, object] = field(default_factory=dict)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
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
                msg,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password,
                start_tls=s.smtp_starttls,
                use_tls=s.smtp_tls,
                timeout=s.smtp_timeout_s,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            code = getattr(exc, "code", None)
            return Outcome("retry", code if isinstance(code, int) else None, f"{type(exc).__name__}: {exc}")
        return Outcome("delivered")


def write_eml(outbox: Path, name: str, msg: EmailMessage) -> Path:
    outbox.mkdir(parents=True, exist_ok=True)
    final = outbox / f"{name}.eml"
    fd, tmp = tempfile.mkstemp(dir=outbox, suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(msg.as_bytes())
    os.replace(tmp, final)
    return final


class SlackSender:
    """Incoming webhooks: one message at a time per webhook, at most one a second, 429 Retry-After honoured."""

    def __init__(self, settings: NotifierSettings, links: Links, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.links = links
        self.client = client
        self._next_at: dict[str, float] = {}

    async def _pace(self, url: str) -> None:
        wait = self._next_at.get(url, 0.0) - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    async def send(self, job: DeliveryJob, subscription: Subscription) -> Outcome:
        url = str(subscription.channels.slack_webhook_url)
        messages = build_messages(job, subscription, self.links)
        while job.parts_done < len(messages):
            await self._pace(url)
            try:
                response = await self.client.post(
                    url, json=messages[job.parts_done], timeout=self.settings.webhook_timeout_s
                )
            except httpx.HTTPError as exc:
                return Outcome("retry", None, f"{type(exc).__name__}: {exc}", throttle=True)
            finally:
                self._next_at[url] = time.monotonic() + self.settings.slack_min_interval_s
            outcome = http_outcome(response)
            if outcome.kind == "delivered":
                job.parts_done += 1
                continue
            if response.status_code == 429:
                wait = outcome.retry_after if outcome.retry_after is not None else self.settings.slack_min_interval_s
                if wait <= self.settings.slack_max_inline_wait_s:
                    self._next_at[url] = time.monotonic() + wait
                    continue
            outcome.detail["parts_done"] = job.parts_done
            return outcome
        return Outcome("delivered", 200, detail={"messages": len(messages)})


class WebhookSender:
    """Standard Webhooks POSTs to user endpoints, after the SSRF check, within a hard timeout."""

    def __init__(self, settings: NotifierSettings, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.client = client
        self.allowed = parse_networks(settings.webhook_allowed_networks)

    def endpoint(self, job: DeliveryJob, subscription: Subscription) -> WebhookEndpoint | None:
        return next((e for e in subscription.channels.webhooks if e.id == job.target), None)

    async def send(self, job: DeliveryJob, subscription: Subscription) -> Outcome:
        endpoint = self.endpoint(job, subscription)
        if endpoint is None:
            return Outcome("refused", error="endpoint no longer in the subscription")
        try:
            pinned = await resolve_safe(str(endpoint.url), self.allowed)
        except UnsafeURL as exc:
            return Outcome("refused", error=f"unsafe URL: {exc}")
        body = webhook_payload.encode(webhook_payload.build_payload(job, subscription))
        now = int(datetime.now(UTC).timestamp())
        headers = webhook_headers(endpoint.secret, endpoint.previous_secret, job.id, now, body)
        headers["host"] = pinned.host
        sni = httpx.URL(str(endpoint.url)).host
        try:
            async with asyncio.timeout(self.settings.webhook_timeout_s):
                response = await self.client.post(
                    pinned.url,
                    content=body,
                    headers=headers,
                    timeout=self.settings.webhook_timeout_s,
                    extensions={"sni_hostname": sni},
                )
        except (httpx.TimeoutException, TimeoutError):
            return Outcome("retry", None, f"no answer within {self.settings.webhook_timeout_s:g} s", throttle=True)
        except httpx.HTTPError as exc:
            return Outcome("retry", None, f"{type(exc).__name__}: {exc}", throttle=True)
        return http_outcome(response)


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


__all__ = ["EmailSender", "Outcome", "SlackSender", "WebhookSender", "attempt_record"]

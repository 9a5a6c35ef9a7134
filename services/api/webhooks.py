"""Webhook endpoints: secrets in the Standard Webhooks form, the test event, and the SSRF guard."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx


def new_secret() -> str:
    """``whsec_`` + base64 of 24 random bytes: what Standard Webhooks libraries expect."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def mask(secret: str) -> str:
    return secret[:10] + "…"


class BlockedAddress(ValueError):
    """The URL resolves to an address a user's webhook may not reach."""


async def check_destination(url: str, allow_hosts: list[str]) -> None:
    """Refuse private, loopback, link-local and other special addresses unless the host is allow-listed."""
    host = urlsplit(url).hostname or ""
    if host in allow_hosts:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BlockedAddress(f"cannot resolve {host!r}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise BlockedAddress(f"{host!r} resolves to a non-public address ({address})")


def test_payload(subscription_id: str, endpoint_id: str) -> dict[str, Any]:
    return {
        "type": "paperwire.test",
        "timestamp": int(time.time()),
        "data": {"subscription_id": subscription_id, "endpoint_id": endpoint_id, "message": "test event"},
    }


async def send_signed(
    url: str, secret: str, payload: dict[str, Any], *, timeout_s: float, allow_hosts: list[str]
) -> dict[str, Any]:
    """POST one signed event; return the attempt record (status code or error), never raise for HTTP trouble."""
    msg_id = f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time())
    body = json.dumps(payload, separators=(",", ":"))
    attempt: dict[str, Any] = {"id": msg_id, "at": timestamp, "type": payload.get("type"), "url": url}
    try:
        await check_destination(url, allow_hosts)
        async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client:
            response = await client.post(
                url,
                content=body,
                headers={
                    "content-type": "application/json",
                    "webhook-id": msg_id,
                    "webhook-timestamp": str(timestamp),
                    "webhook-signature": sign(secret, msg_id, timestamp, body),
                    "user-agent": "paperwire-webhooks",
                },
            )
        attempt.update(status_code=response.status_code, ok=200 <= response.status_code < 300)
    except (httpx.HTTPError, BlockedAddress) as exc:
        attempt.update(status_code=None, ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
    return attempt

"""Webhook endpoints: secrets in the Standard Webhooks form, the test event, and the SSRF guard."""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from typing import Any

import httpx

from shared.ssrf import PinnedURL, Unresolvable, UnsafeURL, parse_networks, resolve_safe
from shared.webhook_signing import PREFIX, webhook_headers


def new_secret() -> str:
    """``whsec_`` + base64 of 24 random bytes: what Standard Webhooks libraries expect."""
    return PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def mask(secret: str) -> str:
    return secret[:10] + "…"


class BlockedAddress(ValueError):
    """The URL resolves to an address a user's webhook may not reach."""


async def check_destination(url: str, allowed_networks: list[str]) -> PinnedURL:
    """Refuse private, loopback, link-local and other special addresses outside ``allowed_networks`` (CIDRs).

    Returns the checked address to send to, so a second DNS answer cannot point the request elsewhere
    (rebinding): the notifier's guard, with the same allow-list setting."""
    try:
        return await resolve_safe(url, parse_networks(allowed_networks))
    except UnsafeURL as exc:
        if isinstance(exc, Unresolvable):  # a name that does not resolve is no blocked address
            raise httpx.ConnectError(f"DNS: {exc}") from exc
        raise BlockedAddress(str(exc)) from exc


def test_payload(subscription_id: str, endpoint_id: str) -> dict[str, Any]:
    return {
        "type": "paperwire.test",
        "timestamp": int(time.time()),
        "data": {"subscription_id": subscription_id, "endpoint_id": endpoint_id, "message": "test event"},
    }


async def send_signed(
    url: str,
    secret: str,
    payload: dict[str, Any],
    *,
    timeout_s: float,
    allowed_networks: list[str],
    previous_secret: str | None = None,
) -> dict[str, Any]:
    """POST one signed event (signed with both secrets during a rotation, as deliveries are); return the attempt
    record (status code or error), never raise for HTTP trouble."""
    msg_id = f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time())
    body = json.dumps(payload, separators=(",", ":"))
    attempt: dict[str, Any] = {"id": msg_id, "at": timestamp, "type": payload.get("type"), "url": url}
    try:
        pinned = await check_destination(url, allowed_networks)
        headers = webhook_headers(secret, previous_secret, msg_id, timestamp, body.encode()) | {"host": pinned.host}
        # trust_env=False: a proxy from the environment would resolve the name again, past the pinned address.
        async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, trust_env=False) as client:
            response = await client.post(
                pinned.url, content=body, headers=headers, extensions={"sni_hostname": httpx.URL(url).host}
            )
        attempt.update(status_code=response.status_code, ok=200 <= response.status_code < 300)
    except (httpx.HTTPError, BlockedAddress) as exc:
        attempt.update(status_code=None, ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
    return attempt

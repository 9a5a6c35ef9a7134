"""Signed, expiring links for emails and Slack buttons: like, dislike, unsubscribe, no login needed.

The notifier makes them, the api verifies them; both read ``PAPERWIRE_LINK_SECRET``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any, Literal

LinkAction = Literal["like", "dislike", "unsubscribe", "view"]


class BadLink(ValueError):
    """A tampered, malformed or expired link."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_link(
    secret: str,
    action: LinkAction,
    subscription_id: str,
    paper_id: str | None = None,
    *,
    ttl_s: int = 30 * 24 * 3600,
    now: float | None = None,
) -> str:
    payload = {"a": action, "s": subscription_id, "p": paper_id, "e": int((now or time.time()) + ttl_s)}
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    mac = _b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest())
    return f"{body}.{mac}"


def verify_link(secret: str, token: str, *, now: float | None = None) -> dict[str, Any]:
    """Return ``{"action", "subscription_id", "paper_id", "expires"}`` or raise BadLink."""
    try:
        body, mac = token.split(".", 1)
        expected = _b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(mac, expected):
            raise BadLink("signature does not match")
        payload = json.loads(_unb64(body))
    except (ValueError, json.JSONDecodeError) as exc:
        if isinstance(exc, BadLink):
            raise
        raise BadLink("malformed link") from exc
    if payload["e"] < (now or time.time()):
        raise BadLink("link expired")
    return {
        "action": payload["a"],
        "subscription_id": payload["s"],
        "paper_id": payload["p"],
        "expires": payload["e"],
    }


def link_url(public_url: str, token: str) -> str:
    action = json.loads(_unb64(token.split(".", 1)[0]))["a"]
    path = "unsubscribe" if action == "unsubscribe" else "feedback"
    return f"{public_url.rstrip('/')}/v1/{path}/{token}"

"""Standard Webhooks signatures and headers, the one implementation: the notifier signs deliveries with it, the api
its test event, and the subscription model checks secrets with it.

Secrets are ``whsec_<base64>``; unpadded base64 is accepted, as the Standard Webhooks libraries accept it, so a
secret the model lets through signs the same everywhere. The signature is ``v1,<base64 HMAC-SHA256 of
id.timestamp.body>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

PREFIX = "whsec_"
MIN_SECRET_BYTES = 16  # HMAC-SHA256 keys shorter than this are guessable; new secrets have 24 (api.new_secret)


class BadSecret(ValueError):
    """Not ``whsec_`` and base64 of at least :data:`MIN_SECRET_BYTES` bytes."""


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (padding optional)."""
    raw = secret.removeprefix(PREFIX)
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadSecret(f"not base64 after {PREFIX!r}: {exc}") from exc
    if len(key) < MIN_SECRET_BYTES:
        raise BadSecret(f"decodes to {len(key)} bytes, at least {MIN_SECRET_BYTES} needed")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` entry for one secret."""
    mac = hmac.new(secret_bytes(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signature_header(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """Space-separated signatures, one per secret: during a rotation the old and the new both verify."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets)


def webhook_headers(
    secret: str, previous_secret: str | None, msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The Standard Webhooks headers of one POST, deliveries and test events alike."""
    secrets = [secret] + ([previous_secret] if previous_secret and previous_secret != secret else [])
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": "paperwire-webhooks/1",
    }

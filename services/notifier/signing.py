"""Standard Webhooks headers of a delivery; the signature itself is :mod:`shared.webhook_signing` (the api's test
event uses the same)."""

from __future__ import annotations

from shared.webhook_signing import sign


def signature_header(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """Space-separated signatures, one per secret: during a rotation the old and the new both verify."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets)


def webhook_headers(
    secret: str, previous_secret: str | None, msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    secrets = [secret] + ([previous_secret] if previous_secret and previous_secret != secret else [])
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": "paperwire-notifier/1",
    }

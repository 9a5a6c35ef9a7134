"""The web page's form <-> subscription fields, and validation errors as messages that name the field."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from pydantic import ValidationError

from shared.subscription import Subscription


def parse_form(body: bytes) -> dict[str, str]:
    """application/x-www-form-urlencoded, last value wins (no python-multipart needed)."""
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {key: values[-1] for key, values in parsed.items()}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace("\r", "").split("\n") if line.strip()]


def _words(text: str) -> list[str]:
    return [w for w in text.replace(",", " ").split() if w]


def form_to_changes(form: dict[str, str]) -> dict[str, Any]:
    """Only the fields the form carries; the rest of the subscription stays as it is (``SubscriptionOps.patch``
    merges ``schedule`` and ``channels`` one level down, so the form may send only some of their fields)."""
    changes: dict[str, Any] = {}
    if "name" in form:
        changes["name"] = form["name"].strip()
    for field in ("interests", "keywords", "seed_papers", "authors"):
        if field in form:
            changes[field] = _lines(form[field])
    if "categories" in form:
        changes["categories"] = _words(form["categories"])
    schedule = {
        key.removeprefix("schedule_"): value
        for key, value in form.items()
        if key in ("schedule_mode", "schedule_at", "schedule_timezone")
    }
    if schedule:
        changes["schedule"] = schedule
    channels = {}
    if "email" in form:
        channels["email"] = form["email"].strip() or None
    if "slack_webhook_url" in form:
        channels["slack_webhook_url"] = form["slack_webhook_url"].strip() or None
    if channels:
        changes["channels"] = channels
    if "form" in form:  # a checkbox is absent when unticked: the hidden "form" field says the form was sent
        changes["active"] = form.get("active") == "on"
    return changes


def error_messages(exc: ValidationError) -> list[str]:
    """``field.path: message`` for every error, so the person or program knows what to fix."""
    out = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "subscription"
        out.append(f"{where}: {error['msg']}")
    return out


def form_values(subscription: Subscription) -> dict[str, str]:
    return {
        "name": subscription.name,
        "interests": "\n".join(subscription.interests),
        "keywords": "\n".join(subscription.keywords),
        "seed_papers": "\n".join(subscription.seed_papers),
        "authors": "\n".join(subscription.authors),
        "categories": " ".join(subscription.categories),
        "schedule_mode": subscription.schedule.mode,
        "schedule_at": subscription.schedule.at.strftime("%H:%M"),
        "schedule_timezone": subscription.schedule.timezone,
        "email": subscription.channels.email or "",
        "slack_webhook_url": str(subscription.channels.slack_webhook_url or ""),
    }

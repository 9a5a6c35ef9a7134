"""One e-mail per job: multipart text + HTML (CSS inlined for mail clients), RFC 8058 one-click unsubscribe.

Every paper field reaches the HTML through Jinja's autoescape; header values are folded to one line so a
title or subscription name with CR/LF cannot inject headers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Any

import css_inline
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.notifier.jobs import DeliveryJob, MatchItem
from shared.links import link_url, sign_link
from shared.subscription import Subscription

_TEMPLATES = Path(__file__).parent / "templates"
_html_env = Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=select_autoescape(["html"]))
_text_env = Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=False, keep_trailing_newline=True)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]+")
_INLINER = css_inline.CSSInliner(keep_style_tags=False)
MAX_AUTHORS = 8


def one_line(text: str, limit: int = 250) -> str:
    """Header-safe: control characters (CR, LF, tabs) become spaces, runs of spaces collapse."""
    flat = re.sub(r"\s+", " ", _CONTROL_RE.sub(" ", text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


UNSUBSCRIBE_TTL_S = 5 * 365 * 24 * 3600


@dataclass(frozen=True)
class Links:
    """Signed links for one deployment. Unsubscribe links live for years: a message read (or a one-click
    ``List-Unsubscribe`` sent) months later must still stop the mail; like/dislike keep the shorter default."""

    public_url: str
    secret: str
    unsubscribe_ttl_s: int = UNSUBSCRIBE_TTL_S

    def make(self, action: str, subscription_id: str, paper_id: str | None = None, *, via: str | None = None) -> str:
        """``via``: the channel the link is shown in, when it is not e-mail (the api records feedback as
        ``via=email`` unless the URL says ``?via=slack``); outside the signed token, it only labels the rating."""
        ttl = {"ttl_s": self.unsubscribe_ttl_s} if action == "unsubscribe" else {}
        url = link_url(self.public_url, sign_link(self.secret, action, subscription_id, paper_id, **ttl))  # type: ignore[arg-type]
        return f"{url}?via={via}" if via else url


def authors_line(item: MatchItem) -> str:
    names = [a.name for a in item.paper.authors]
    if len(names) > MAX_AUTHORS:
        return ", ".join(names[:MAX_AUTHORS]) + f", et al. ({len(names)} authors)"
    return ", ".join(names)


def why_line(item: MatchItem) -> str:
    reasons = "; ".join(r for r in item.reasons if r)
    return f"{reasons} (score {item.score:.2f})" if reasons else f"score {item.score:.2f}"


def paper_view(item: MatchItem, subscription_id: str, links: Links) -> dict[str, Any]:
    paper = item.paper
    return {
        "id": paper.id,
        "title": paper.title,
        "authors": authors_line(item),
        "categories": paper.categories,
        "upvotes": paper.hf.upvotes if paper.hf else None,
        "announced": paper.announced.isoformat() if paper.announced else None,
        "why": why_line(item),
        "abstract": paper.abstract if len(paper.abstract) <= 700 else paper.abstract[:700].rsplit(" ", 1)[0] + " …",
        "abs_url": paper.abs_url,
        "pdf_url": paper.pdf_url,
        "code_url": paper.links.get("code"),
        "like_url": links.make("like", subscription_id, paper.id),
        "dislike_url": links.make("dislike", subscription_id, paper.id),
    }


def subject_for(job: DeliveryJob, subscription: Subscription) -> str:
    if job.kind == "alert" and job.items:
        return one_line(f"[paperwire] {job.items[0].paper.title}")
    if job.kind == "heartbeat":
        return one_line(f"[paperwire] {subscription.name}: no new papers")
    total = len(job.items) + job.more
    return one_line(f"[paperwire] {subscription.name}: {total} new paper{'s' if total != 1 else ''}")


def context(job: DeliveryJob, subscription: Subscription, links: Links) -> dict[str, Any]:
    total = len(job.items) + job.more
    if job.kind == "alert":
        heading, subheading = "New matching paper", f"For your subscription “{subscription.name}”"
    elif job.kind == "heartbeat":
        heading, subheading = f"{subscription.name}: nothing new", "Your digest for this period is empty."
    else:
        heading = f"{subscription.name}: {total} new paper{'s' if total != 1 else ''}"
        subheading = (
            "Matches collected for your digest before you switched to instant alerts, best first."
            if subscription.schedule.mode == "instant"
            else f"Your {subscription.schedule.mode} digest, best matches first."
        )
    return {
        "subject": subject_for(job, subscription),
        "heading": heading,
        "subheading": subheading,
        "note": job.note,
        "papers": [paper_view(item, subscription.id, links) for item in job.items],
        "more": job.more,
        "total": total,
        "top_k": subscription.top_k,
        "subscription_name": subscription.name,
        "unsubscribe_url": links.make("unsubscribe", subscription.id),
    }


def render_html(job: DeliveryJob, subscription: Subscription, links: Links) -> str:
    html = _html_env.get_template("email.html").render(**context(job, subscription, links))
    return _INLINER.inline(html)


def render_text(job: DeliveryJob, subscription: Subscription, links: Links) -> str:
    return _text_env.get_template("email.txt").render(**context(job, subscription, links))


def message_id(job: DeliveryJob, mail_from: str) -> str:
    """Derived from the job id: a resend of the same delivery carries the same Message-ID."""
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "paperwire.localhost"
    return f"<{job.id}@{domain}>"


# RFC 5322's hard limit instead of the 78-character fold: the List-Unsubscribe URL (no spaces, ~200 characters)
# was folded into RFC 2047 encoded words, which RFC 2369/8058 readers (Gmail's one-click unsubscribe) cannot read.
WIRE_POLICY = policy.SMTP.clone(max_line_length=998)


def wire_bytes(msg: EmailMessage) -> bytes:
    """The message as sent and as written to the outbox (CRLF, headers unfolded up to 998 characters)."""
    return msg.as_bytes(policy=WIRE_POLICY)


def build_message(job: DeliveryJob, subscription: Subscription, links: Links, mail_from: str) -> EmailMessage:
    ctx_links = links
    unsubscribe = ctx_links.make("unsubscribe", subscription.id)
    msg = EmailMessage()
    msg["From"] = mail_from
    msg["To"] = job.target
    msg["Subject"] = subject_for(job, subscription)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = message_id(job, mail_from) if job.id else make_msgid()
    msg["List-Id"] = f"paperwire subscription {subscription.id} <{subscription.id}.paperwire>"
    msg["List-Unsubscribe"] = f"<{unsubscribe}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Paperwire-Delivery"] = job.id
    msg.set_content(render_text(job, subscription, links))
    msg.add_alternative(render_html(job, subscription, links), subtype="html")
    return msg

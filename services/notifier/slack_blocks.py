"""Slack Block Kit messages built with slack_sdk's models, which check Slack's limits as they serialise.

Limits kept here: 50 blocks per message (a digest is split over several messages), 150 characters in a
header, 3000 in a section, 75 in a button label; mrkdwn control characters (&, <, >) escaped.
"""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from services.notifier.email_render import Links, authors_line, one_line, why_line
from services.notifier.jobs import DeliveryJob, MatchItem
from shared.subscription import Subscription

MAX_BLOCKS = 50
SECTION_LIMIT = 3000
HEADER_LIMIT = 150


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def paper_blocks(item: MatchItem, subscription_id: str, links: Links) -> list[Block]:
    paper = item.paper
    title = clip(escape(one_line(paper.title, 500)), 600)
    lines = [f"*<{paper.abs_url}|{title}>*"]
    if paper.authors:
        lines.append(escape(clip(authors_line(item), 600)))
    lines.append(f"_Why:_ {escape(clip(why_line(item), 1200))}")
    context_bits = [" · ".join(paper.categories[:6]) or "uncategorised"]
    if paper.hf is not None:
        context_bits.append(f"▲ {paper.hf.upvotes} upvotes")
    return [
        SectionBlock(text=MarkdownTextObject(text=clip("\n".join(lines), SECTION_LIMIT))),
        ContextBlock(elements=[MarkdownTextObject(text=clip(escape("  |  ".join(context_bits)), 2000))]),
        ActionsBlock(
            elements=[
                ButtonElement(text=PlainTextObject(text="Abstract"), url=paper.abs_url, action_id=f"abs-{paper.id}"),
                ButtonElement(text=PlainTextObject(text="PDF"), url=paper.pdf_url, action_id=f"pdf-{paper.id}"),
                ButtonElement(
                    text=PlainTextObject(text="👍 More like this"),
                    url=links.make("like", subscription_id, paper.id, via="slack"),
                    action_id=f"like-{paper.id}",
                    style="primary",
                ),
                ButtonElement(
                    text=PlainTextObject(text="👎 Less like this"),
                    url=links.make("dislike", subscription_id, paper.id, via="slack"),
                    action_id=f"dislike-{paper.id}",
                ),
            ]
        ),
        DividerBlock(),
    ]


def header_text(job: DeliveryJob, subscription: Subscription) -> str:
    total = len(job.items) + job.more
    if job.kind == "alert":
        return clip(one_line(f"New paper for {subscription.name}"), HEADER_LIMIT)
    if job.kind == "heartbeat":
        return clip(one_line(f"{subscription.name}: no new papers"), HEADER_LIMIT)
    return clip(one_line(f"{subscription.name}: {total} new paper{'s' if total != 1 else ''}"), HEADER_LIMIT)


def build_messages(job: DeliveryJob, subscription: Subscription, links: Links) -> list[dict[str, Any]]:
    """One or more webhook payloads ``{"text", "blocks"}``; blocks are validated by slack_sdk's ``to_dict``."""
    header = header_text(job, subscription)
    head: list[Block] = [HeaderBlock(text=PlainTextObject(text=header))]
    if job.note:
        head.append(SectionBlock(text=MarkdownTextObject(text=escape(job.note))))
    tail: list[Block] = []
    unsubscribe = links.make("unsubscribe", subscription.id)
    footer = f"<{unsubscribe}|Unsubscribe> from “{escape(one_line(subscription.name, 200))}”"
    if job.more:
        footer = f"…and {job.more} more matching papers not shown (top {subscription.top_k}).  " + footer
    tail.append(ContextBlock(elements=[MarkdownTextObject(text=clip(footer, 2000))]))
    paper_groups = [paper_blocks(item, subscription.id, links) for item in job.items]
    messages: list[list[Block]] = []
    current = list(head)
    for group in paper_groups:
        if len(current) + len(group) > MAX_BLOCKS - len(tail):
            messages.append(current)
            current = [HeaderBlock(text=PlainTextObject(text=clip(header + " (continued)", HEADER_LIMIT)))]
        current.extend(group)
    current.extend(tail)
    messages.append(current)
    out = []
    for index, blocks in enumerate(messages):
        text = header if len(messages) == 1 else f"{header} ({index + 1}/{len(messages)})"
        out.append({"text": text, "blocks": [block.to_dict() for block in blocks]})
    return out

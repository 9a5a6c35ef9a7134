"""E-mail, Slack and webhook bodies rendered from real fixture papers: escaping, limits, schema, links."""

from __future__ import annotations

import email
import json
import time
from email import policy
from pathlib import Path

import jsonschema_rs
import pytest
from slack_sdk.models.blocks import Block

from services.notifier.email_render import Links, build_message, render_html, render_text
from services.notifier.jobs import HEARTBEAT_NOTE, MatchItem, alert_jobs, digest_jobs, job_id
from services.notifier.payload import build_payload, encode, load_schema
from services.notifier.slack_blocks import MAX_BLOCKS, build_messages
from shared.links import BadLink, verify_link
from shared.paper import Paper
from shared.subscription import Channels
from tests.unit.notifier.notifier_papers import HF_JUNE, hf_papers, items, listing_papers, subscription

LINKS = Links("https://paperwire.example", "test-link-secret")
FROM = "paperwire <alerts@paperwire.example>"


def hostile(paper: Paper) -> Paper:
    return paper.model_copy(update={"title": '<script>alert("x")</script> ' + paper.title})


def test_email_is_multipart_escaped_and_unsubscribable(fixtures_dir: Path) -> None:
    papers = hf_papers(fixtures_dir)
    sub = subscription(name="LLM agents\r\nBcc: victim@example.org")
    job = digest_jobs(
        sub, items([hostile(papers[0]), *papers[1:]]), period=papers[0].submitted or _slot(), heartbeat=False
    )
    msg = build_message(job[0], sub, LINKS, FROM)
    parsed = email.message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert parsed["Bcc"] is None and "\n" not in parsed["Subject"] and "\r" not in parsed["Subject"]
    assert parsed["Subject"] == "[paperwire] LLM agents Bcc: victim@example.org: 3 new papers"
    html = parsed.get_body(("html",)).get_content()
    text = parsed.get_body(("plain",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    # CSS is inlined: no <style> block left, styles on the elements
    assert "<style" not in html and 'style="' in html
    # every paper: linked title, authors, links to abstract and PDF, upvotes (86 for 2605.05242 in the fixture)
    for paper in papers:
        assert f'href="https://arxiv.org/abs/{paper.id}"' in html
        assert f"https://arxiv.org/pdf/{paper.id}" in text
        assert paper.authors[0].name in text
    assert "86 upvotes" in html and "86 upvotes" in text
    assert "https://github.com/DCI-Agent/DCI-Agent-Lite" in html
    unsubscribe = parsed["List-Unsubscribe"].strip("<>")
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    token = unsubscribe.rsplit("/", 1)[1]
    assert unsubscribe.startswith("https://paperwire.example/v1/unsubscribe/")
    assert verify_link("test-link-secret", token)["subscription_id"] == sub.id
    assert parsed["Message-ID"] == f"<{job[0].id}@paperwire.example>"


def test_like_links_are_signed_per_paper(fixtures_dir: Path) -> None:
    paper = listing_papers(fixtures_dir, 1)[0]
    sub = subscription()
    (job,) = alert_jobs(sub, items([paper])[0])
    html = render_html(job, sub, LINKS)
    tokens = [part.split('"')[0] for part in html.split("/v1/feedback/")[1:]]
    actions = {verify_link("test-link-secret", t)["action"]: verify_link("test-link-secret", t) for t in tokens}
    assert set(actions) == {"like", "dislike"}
    assert all(a["paper_id"] == paper.id == "2503.16511" and a["subscription_id"] == sub.id for a in actions.values())
    assert "cs.CL" in html and "Token-Level Uncertainty-Aware Objective" in html


def _slot():
    from datetime import UTC, datetime

    return datetime(2026, 5, 11, 8, 0, tzinfo=UTC)


def test_digest_ranks_caps_and_counts_the_rest(fixtures_dir: Path) -> None:
    papers = listing_papers(fixtures_dir, 25)
    matches = [MatchItem(paper=p, score=0.3 + (i % 7) / 10) for i, p in enumerate(papers)]
    sub = subscription(top_k=10)
    (job,) = digest_jobs(sub, matches, _slot(), heartbeat=False)
    assert len(job.items) == 10 and job.more == 15
    scores = [i.score for i in job.items]
    assert scores == sorted(scores, reverse=True) and scores[0] == max(m.score for m in matches)
    assert digest_jobs(sub, [], _slot(), heartbeat=False) == []
    (beat,) = digest_jobs(sub, [], _slot(), heartbeat=True)
    assert beat.kind == "heartbeat" and beat.note == HEARTBEAT_NOTE and not beat.items
    # same subscription, target and slot: same id (a rebuilt digest is not a second one)
    assert job.id == digest_jobs(sub, matches[:3], _slot(), heartbeat=False)[0].id
    assert job.id != job_id(sub.id, "email", "ada@example.org", "digest:other")


def test_slack_digest_is_split_within_limits_and_validates(fixtures_dir: Path) -> None:
    papers = hf_papers(fixtures_dir, HF_JUNE)  # 30 papers: 4 blocks each, more than one message can hold
    sub = subscription(top_k=30)
    (job,) = digest_jobs(sub, items([hostile(papers[0]), *papers[1:]]), _slot(), heartbeat=False)
    messages = build_messages(job, sub, LINKS)
    assert len(messages) == 3
    assert all(len(m["blocks"]) <= MAX_BLOCKS for m in messages)
    linked = [
        b
        for m in messages
        for b in m["blocks"]
        if b["type"] == "section" and "<https://arxiv.org/abs/" in b["text"]["text"]
    ]
    assert len(linked) == 30
    assert "&lt;script&gt;" in linked[0]["text"]["text"] and "<script>" not in linked[0]["text"]["text"]
    for message in messages:
        for raw in message["blocks"]:
            block = Block.parse(raw)
            assert block is not None and block.to_dict() == raw  # slack_sdk validates while serialising


def test_webhook_payload_matches_its_schema(fixtures_dir: Path) -> None:
    validator = jsonschema_rs.validator_for(load_schema())
    papers = hf_papers(fixtures_dir)
    sub = subscription(top_k=2)
    (alert,) = alert_jobs(sub, items(papers)[0])
    (digest,) = digest_jobs(sub, items(papers), _slot(), heartbeat=False)
    (beat,) = digest_jobs(sub, [], _slot(), heartbeat=True)
    for job in (alert, digest, beat):
        payload = build_payload(job, sub)
        validator.validate(payload)
        assert encode(payload).decode().startswith('{"type":')
    digest_payload = build_payload(digest, sub)
    assert digest_payload["type"] == "digest.ready" and digest_payload["data"]["more"] == 1
    assert [p["id"] for p in digest_payload["data"]["papers"]] == ["2605.05242", "2605.06548"]
    assert digest_payload["data"]["papers"][0]["upvotes"] == 86
    assert not validator.is_valid({"type": "paper.matched", "version": 2, "timestamp": "x", "data": {}})


def test_unsubscribe_links_outlive_feedback_links(fixtures_dir: Path) -> None:
    """An old message must still unsubscribe (one click from the mail client, the body, Slack) years later;
    like/dislike links keep the 30-day default."""
    sub = subscription(channels=Channels(email="ada@example.org", slack_webhook_url="https://hooks.slack.com/x"))
    (job,) = [j for j in alert_jobs(sub, items(hf_papers(fixtures_dir)[:1])[0]) if j.channel == "email"]
    parsed = email.message_from_bytes(build_message(job, sub, LINKS, FROM).as_bytes(), policy=policy.default)
    marker = "https://paperwire.example/v1/unsubscribe/"
    found = {
        "header": parsed["List-Unsubscribe"].strip("<>"),
        "text": next(w for w in parsed.get_body(("plain",)).get_content().split() if w.startswith(marker)),
        "html": marker + parsed.get_body(("html",)).get_content().split(f'href="{marker}', 1)[1].split('"', 1)[0],
        "slack": marker + json.dumps(build_messages(job, sub, LINKS)).split(f"<{marker}", 1)[1].split("|", 1)[0],
    }
    in_4_years = time.time() + 4 * 365 * 86400
    for where, url in found.items():
        link = verify_link("test-link-secret", url.rsplit("/", 1)[1], now=in_4_years)
        assert link["action"] == "unsubscribe", where
    like = parsed.get_body(("html",)).get_content().split('href="https://paperwire.example/v1/feedback/', 1)[1]
    with pytest.raises(BadLink):
        verify_link("test-link-secret", like.split('"', 1)[0], now=time.time() + 31 * 86400)


def test_code_link_is_only_an_http_url(fixtures_dir: Path) -> None:
    """A paper carried by an event (its JSON from any producer) with a script URL as its code link: no href."""
    papers = hf_papers(fixtures_dir)
    raw = papers[0].model_dump(mode="json")
    raw["links"] = {"code": "javascript:alert(document.cookie)", "abs": "data:text/html,x"}
    raw["hf"]["github_repo"] = "javascript:alert(document.cookie)"
    evil = Paper.model_validate(raw)
    sub = subscription()
    html = render_html(digest_jobs(sub, items([evil, *papers[1:]]), period=_slot(), heartbeat=False)[0], sub, LINKS)
    assert "javascript:" not in html and "data:text" not in html
    assert f'href="https://arxiv.org/abs/{evil.id}"' in html
    assert "https://github.com/DCI-Agent/DCI-Agent-Lite" not in html
    assert html.count(">Code</a>") == sum(1 for p in papers[1:] if p.links.get("code"))


def test_text_mail_shows_categories_and_upvotes_without_a_stray_separator(fixtures_dir: Path) -> None:
    papers = hf_papers(fixtures_dir)
    bare = papers[0].model_copy(update={"categories": []})  # Hugging Face alone gives no arXiv category
    sub = subscription()
    (job,) = alert_jobs(sub, items([bare])[0])
    text = render_text(job, sub, LINKS)
    assert f"\n   {bare.hf.upvotes} upvotes\n" in text and "   | " not in text

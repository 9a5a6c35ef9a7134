"""The api's pure modules: form mapping, webhook signing, entry decoding, token shapes, Atom, access log."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree

import feedparser
from faststream.redis.parser.binary import BinaryMessageFormatV1
from standardwebhooks import Webhook
from uvicorn.logging import AccessFormatter

from services.api.access_log import RedactSecrets, redact_path
from services.api.atom import ATOM_NS, build_feed
from services.api.forms import form_to_changes, parse_form
from services.api.store import split_token
from services.api.webhooks import new_secret
from shared.events import MatchFound, entry_body
from shared.subscription import Subscription
from shared.webhook_signing import sign
from tests.integration.api.api_helpers import fixture_papers


def test_form_maps_lines_words_and_unticked_checkbox() -> None:
    form = parse_form(b"form=1&interests=a+b%0D%0A%0D%0Ac&categories=cs.LG,+cs.CL&schedule_mode=daily&email=")
    changes = form_to_changes(form)
    assert changes["interests"] == ["a b", "c"]
    assert changes["categories"] == ["cs.LG", "cs.CL"]
    assert changes["schedule"] == {"mode": "daily"}
    assert changes["channels"] == {"email": None}
    assert changes["active"] is False


def test_signature_matches_standardwebhooks() -> None:
    """Same MAC as the reference library for a fixed id and timestamp (it would reject an old timestamp)."""
    secret = new_secret()
    body = '{"type":"paperwire.test"}'
    when = datetime.fromtimestamp(1700000000, tz=UTC)
    assert sign(secret, "msg_1", 1700000000, body.encode()) == Webhook(secret).sign("msg_1", when, body)
    assert sign(secret, "msg_1", 1700000001, body.encode()) != Webhook(secret).sign("msg_1", when, body)


def test_entry_body_reads_faststream_binary_envelope() -> None:
    raw = asyncio.run(
        BinaryMessageFormatV1.encode(message={"subscription_id": "s1"}, reply_to=None, headers={}, correlation_id="c")
    )
    assert entry_body({b"__data__": raw}) == {"subscription_id": "s1"}
    assert entry_body({b"other": b"x"}) is None


def test_token_shape() -> None:
    assert split_token("pw_abc123_" + "s" * 43) == ("abc123", "s" * 43)
    assert split_token("pw_abc123_short") is None
    assert split_token("Bearer whatever") is None


def test_atom_feed_drops_characters_xml_forbids(fixtures_dir: Path) -> None:
    """One paper whose title or abstract carries a control character used to make the whole feed unparseable."""
    papers = fixture_papers(fixtures_dir)[:3]
    papers[1] = papers[1].model_copy(
        update={"title": "Thermal\x08 melting\x00 of\ufffe density\x1f waves", "abstract": "lone \ud800 surrogate\x0c"}
    )
    subscription = Subscription(name="helium", interests=["helium in nanopores"], id="sub1")
    matches = [
        MatchFound(subscription_id="sub1", owner="alice", paper=p, score=0.5, reasons=["why\x0b"]) for p in papers
    ]
    body = build_feed(subscription, matches, "https://paperwire.example/v1/feeds/s", None)

    root = ElementTree.fromstring(body)
    titles = [e.findtext(f"{{{ATOM_NS}}}title") for e in root.iter(f"{{{ATOM_NS}}}entry")]
    assert titles == [papers[0].title, "Thermal melting of density waves", papers[2].title]
    feed = feedparser.parse(body)
    assert feed.bozo == 0, feed.get("bozo_exception")
    assert len(feed.entries) == 3 and feed.entries[1].summary.endswith("lone  surrogate")


def test_redact_secrets_rewrites_uvicorn_access_records() -> None:
    """The record as uvicorn's h11/httptools protocols build it, formatted by uvicorn's own access formatter."""
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("10.0.0.1:5123", "POST", "/web/eyJhIjoidmlldyJ9.MAC%3D%3D/rate?next=1", "1.1", 303),
        None,
    )
    assert RedactSecrets().filter(record)
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False).format(record)
    assert line == '10.0.0.1:5123 - "POST /web/REDACTED/rate?next=1 HTTP/1.1" 303 See Other'
    assert redact_path("/v1/feeds/abcDEF_-1") == "/v1/feeds/REDACTED"
    assert redact_path("/v1/feedback/t.k?via=slack") == "/v1/feedback/REDACTED?via=slack"
    assert redact_path("/root/v1/unsubscribe/t.k") == "/root/v1/unsubscribe/REDACTED"
    assert redact_path("/v1/subscriptions/abc/links") == "/v1/subscriptions/abc/links"
    other = logging.LogRecord("x", logging.INFO, __file__, 1, "%s", ("/web/token",), None)
    assert RedactSecrets().filter(other) and other.args == ("/web/token",)

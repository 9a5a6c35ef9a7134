"""The api's pure modules: form mapping, webhook signing, FastStream entry decoding, token shapes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from faststream.redis.parser.binary import BinaryMessageFormatV1
from standardwebhooks import Webhook

from services.api.forms import form_to_changes, parse_form
from services.api.store import split_token
from services.api.webhooks import new_secret, sign
from shared.events import entry_body


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
    assert sign(secret, "msg_1", 1700000000, body) == Webhook(secret).sign("msg_1", when, body)
    assert sign(secret, "msg_1", 1700000001, body) != Webhook(secret).sign("msg_1", when, body)


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

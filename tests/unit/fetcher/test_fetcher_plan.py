"""Per-source scheduling, the pure part: when a source is due and why, from the state Redis keeps (no Redis here)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.fetcher.plan import (
    Claim,
    Decision,
    SourceState,
    complete_since,
    decide,
    format_decision,
    outcome_fields,
    seconds_until_wake,
    span,
)
from services.fetcher.poll import source_keys
from services.fetcher.settings import FetcherSettings

T0 = datetime(2026, 5, 11, 12, 0, tzinfo=UTC)
KEYS = ["arxiv-api:cat:cs.CL", "arxiv-rss", "hf-daily"]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def stored(started: datetime, finished: datetime, ok: bool, error: str | None = None) -> SourceState:
    """The state as a round trip through the hash fields an outcome writes (bytes, like redis-py returns)."""
    fields = outcome_fields(started, finished, ok, error)
    return SourceState.from_hash({k.encode(): v.encode() for k, v in fields.items()})


def test_source_keys_follow_the_settings() -> None:
    settings = FetcherSettings(arxiv_queries=["cat:cs.CL", "cat:cs.LG"], rss_categories=["cs.CL"], oai_enabled=True)
    assert source_keys(settings) == ["arxiv-api:cat:cs.CL", "arxiv-api:cat:cs.LG", "arxiv-rss", "arxiv-oai", "hf-daily"]
    assert source_keys(FetcherSettings(rss_categories=[], hf_enabled=False)) == []


def test_a_source_never_polled_is_due() -> None:
    decision = decide("arxiv-rss", SourceState.from_hash({}), T0, 3600, 120)
    assert decision.due and decision.next_due == T0 and decision.reason == "due: never ran"


def test_the_interval_counts_from_the_end_of_a_successful_poll() -> None:
    state = stored(T0, at(5), ok=True)
    waiting = decide("arxiv-rss", state, at(1800), 1800, 120)
    assert not waiting.due and waiting.next_due == at(1805)
    assert waiting.reason == "waiting: next at 2026-05-11 12:30:05 UTC (every 30 min)"
    due = decide("arxiv-rss", state, at(1805), 1800, 120)
    assert due.due and due.reason.startswith("due: interval 30 min elapsed")


def test_only_the_failed_source_comes_back_sooner() -> None:
    states = {
        "arxiv-api:cat:cs.CL": stored(T0, at(5), ok=True),
        "arxiv-rss": stored(T0, at(5), ok=True),
        "hf-daily": stored(T0, at(5), ok=False, error="HTTP 503"),
    }
    decisions = [decide(k, states[k], at(5), 3600, 120) for k in KEYS]
    assert seconds_until_wake(decisions, at(5), 3600) == 120
    assert "retry after 2 min, the last poll failed: HTTP 503" in decisions[2].reason
    assert [d.source for d in (decide(k, states[k], at(125), 3600, 120) for k in KEYS) if d.due] == ["hf-daily"]
    failed = decide("hf-daily", states["hf-daily"], at(125), 3600, 120)
    assert failed.reason.startswith("due: last poll failed at 2026-05-11 12:00:05 UTC, retry delay 2 min elapsed")


def test_a_claim_by_another_poller_holds_a_due_source_until_it_ends() -> None:
    claim = Claim("fetcher-b-42", at(60))
    held = decide("arxiv-rss", SourceState(), T0, 3600, 120, claim)
    assert not held.due
    assert held.reason == "claimed by another fetcher (fetcher-b-42) until 2026-05-11 12:01:00 UTC"
    assert held.wake_at == at(60)
    assert seconds_until_wake([held], T0, 3600) == 60  # look again when the lease ends, not in a busy loop
    # An expired claim (its key is gone by then anyway) is no claim.
    assert decide("arxiv-rss", SourceState(), at(61), 3600, 120, claim).due


def test_complete_since_is_the_oldest_success() -> None:
    states = {
        "arxiv-api:cat:cs.CL": stored(T0, at(5), ok=True),
        "arxiv-rss": stored(T0, at(5), ok=True),
        "hf-daily": stored(T0, at(5), ok=False),
    }
    assert complete_since(states, KEYS) is None
    states["hf-daily"] = stored(at(125), at(126), ok=True)
    assert complete_since(states, KEYS) == T0
    assert complete_since(states, []) is None


def test_nothing_configured_sleeps_the_interval() -> None:
    assert seconds_until_wake([], T0, 3600) == 3600


def test_schedule_lines_name_the_due_time_and_the_reason() -> None:
    assert format_decision(Decision("hf-daily", True, T0, "due: never ran"), at(1)) == (
        "hf-daily: next due now; due: never ran"
    )
    line = format_decision(decide("arxiv-rss", stored(T0, at(5), ok=True), at(10), 3600, 120), at(10))
    assert line == (
        "arxiv-rss: next due 2026-05-11 13:00:05 UTC; waiting: next at 2026-05-11 13:00:05 UTC (every 60 min)"
    )


def test_spans_read_like_an_operator_writes_them() -> None:
    assert [span(s) for s in (45, 120, 1800, 3600, 5400, 7200, 86400)] == [
        "45 s",
        "2 min",
        "30 min",
        "60 min",
        "90 min",
        "2 h",
        "24 h",
    ]

"""Digest slots in the subscriber's time zone and the retry schedule."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time

from services.notifier.schedule import digest_due, latest_slot, retry_delay
from shared.subscription import Schedule


def test_daily_slot_is_local_time_in_winter_and_summer() -> None:
    berlin = Schedule(mode="daily", at=time(8, 0), timezone="Europe/Berlin")
    # 26 Nov: CET (UTC+1) -> 08:00 local is 07:00 UTC; at 06:59 UTC the latest slot is the day before
    assert latest_slot(berlin, datetime(2026, 11, 26, 7, 0, tzinfo=UTC)) == datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
    assert latest_slot(berlin, datetime(2026, 11, 26, 6, 59, tzinfo=UTC)) == datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
    # July: CEST (UTC+2) -> 06:00 UTC
    assert latest_slot(berlin, datetime(2026, 7, 1, 12, 0, tzinfo=UTC)) == datetime(2026, 7, 1, 6, 0, tzinfo=UTC)


def test_daily_slot_across_the_dst_change_stays_at_local_eight() -> None:
    new_york = Schedule(mode="daily", at=time(8, 0), timezone="America/New_York")
    # DST ended on 1 Nov 2026: 08:00 EDT on 31 Oct is 12:00 UTC, 08:00 EST on 1 Nov is 13:00 UTC
    assert latest_slot(new_york, datetime(2026, 11, 1, 14, 0, tzinfo=UTC)) == datetime(2026, 11, 1, 13, 0, tzinfo=UTC)
    # 12:30 UTC on 1 Nov is 07:30 EST: still before that day's slot
    assert latest_slot(new_york, datetime(2026, 11, 1, 12, 30, tzinfo=UTC)) == datetime(2026, 10, 31, 12, 0, tzinfo=UTC)


def test_weekly_slot_on_the_chosen_weekday() -> None:
    tokyo_friday = Schedule(mode="weekly", at=time(9, 30), timezone="Asia/Tokyo", weekday=4)
    # Thu 26 Nov 2026 -> the latest Friday 09:30 JST (00:30 UTC) is Fri 20 Nov
    assert latest_slot(tokyo_friday, datetime(2026, 11, 26, 10, 0, tzinfo=UTC)) == datetime(
        2026, 11, 20, 0, 30, tzinfo=UTC
    )
    # Fri 27 Nov 00:30 UTC is exactly the slot
    assert latest_slot(tokyo_friday, datetime(2026, 11, 27, 0, 30, tzinfo=UTC)) == datetime(
        2026, 11, 27, 0, 30, tzinfo=UTC
    )


def test_digest_due_only_once_per_slot() -> None:
    daily = Schedule(mode="daily", at=time(8, 0), timezone="UTC")
    now = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    slot = digest_due(daily, datetime(2026, 11, 25, 8, 0, tzinfo=UTC), now)
    assert slot == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    assert digest_due(daily, slot, now) is None
    assert digest_due(Schedule(mode="instant"), datetime(2000, 1, 1, tzinfo=UTC), now) is None


def test_retry_delays_follow_the_schedule_with_bounded_jitter() -> None:
    schedule = [5, 300, 1800, 7200, 18000, 36000]
    rng = random.Random(7)
    for attempt, base in enumerate(schedule, start=1):
        delays = [retry_delay(schedule, attempt, 0.2, rng) for _ in range(50)]
        assert all(base * 0.8 <= d <= base * 1.2 for d in delays)
        assert len(set(delays)) > 1  # jittered, not all equal
    assert retry_delay(schedule, len(schedule) + 1, 0.2) is None
    assert retry_delay(schedule, 2, 0.0) == 300

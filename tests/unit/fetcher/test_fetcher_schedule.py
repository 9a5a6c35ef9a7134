"""The announcement calendar: Sunday-Thursday 20:00 US Eastern, none Friday/Saturday, holidays."""

from __future__ import annotations

from datetime import UTC, date, datetime

from services.fetcher import schedule


def et(*args: int) -> datetime:
    return datetime(*args, tzinfo=schedule.EASTERN)


def test_last_and_next_announcement_around_a_weekend() -> None:
    saturday_noon = et(2026, 8, 1, 12, 0)
    assert schedule.last_announcement(saturday_noon) == et(2026, 7, 30, 20, 0)  # Thursday
    assert schedule.next_announcement(saturday_noon) == et(2026, 8, 2, 20, 0)  # Sunday


def test_before_and_after_eight_pm() -> None:
    assert schedule.last_announcement(et(2026, 8, 3, 19, 59)) == et(2026, 8, 2, 20, 0)
    assert schedule.last_announcement(et(2026, 8, 3, 20, 0)) == et(2026, 8, 3, 20, 0)


def test_utc_input_and_daylight_saving() -> None:
    # 2026-01-05 01:30 UTC is Sunday 20:30 EST (UTC-5): Sunday's announcement has happened.
    assert schedule.last_announcement(datetime(2026, 1, 5, 1, 30, tzinfo=UTC)) == et(2026, 1, 4, 20, 0)
    # 2026-07-06 00:30 UTC is Sunday 20:30 EDT (UTC-4).
    assert schedule.last_announcement(datetime(2026, 7, 6, 0, 30, tzinfo=UTC)) == et(2026, 7, 5, 20, 0)


def test_friday_says_why_there_is_nothing_new() -> None:
    friday = et(2026, 7, 31, 21, 0)
    status = schedule.status(friday, since=et(2026, 7, 30, 21, 0))
    assert not status.new_papers
    assert "does not announce on Fridays" in status.reason and "Sunday 2026-08-02 20:00" in status.reason


def test_new_papers_since_last_poll() -> None:
    status = schedule.status(et(2026, 8, 3, 20, 5), since=et(2026, 8, 3, 9, 0))
    assert status.new_papers and "Monday 2026-08-03 20:00" in status.reason


def test_before_todays_announcement() -> None:
    status = schedule.status(et(2026, 8, 4, 10, 0), since=et(2026, 8, 3, 21, 0))
    assert not status.new_papers and "today's announcement is at 20:00" in status.reason


def test_holiday_is_skipped() -> None:
    holidays = frozenset({date(2026, 12, 24)})
    assert schedule.next_announcement(et(2026, 12, 24, 8, 0), holidays) == et(2026, 12, 27, 20, 0)
    status = schedule.status(et(2026, 12, 24, 22, 0), since=et(2026, 12, 23, 21, 0), holidays=holidays)
    assert not status.new_papers and "holiday" in status.reason

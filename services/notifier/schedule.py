"""When digests are due and when a failed delivery is tried again: plain time arithmetic, no Redis."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from shared.subscription import Schedule


def _at(day: datetime, schedule: Schedule, tz: ZoneInfo) -> datetime:
    return datetime.combine(day.date(), schedule.at, tzinfo=tz)


def latest_slot(schedule: Schedule, now: datetime) -> datetime:
    """The most recent scheduled digest instant at or before ``now`` (UTC), in the subscriber's time zone.

    Computed on local calendar days, so 08:00 stays 08:00 local across daylight-saving changes.
    """
    tz = ZoneInfo(schedule.timezone)
    local = now.astimezone(tz)
    if schedule.mode == "weekly":
        day = local - timedelta(days=(local.weekday() - schedule.weekday) % 7)
        slot = _at(day, schedule, tz)
        if slot > local:
            slot = _at(day - timedelta(days=7), schedule, tz)
    else:
        slot = _at(local, schedule, tz)
        if slot > local:
            slot = _at(local - timedelta(days=1), schedule, tz)
    return slot.astimezone(UTC)


def digest_due(schedule: Schedule, last_sent: datetime, now: datetime) -> datetime | None:
    """The slot to send now, or None when no slot has passed since ``last_sent`` (instant: never)."""
    if schedule.mode == "instant":
        return None
    slot = latest_slot(schedule, now)
    return slot if slot > last_sent else None


def retry_delay(
    schedule_s: list[float], attempts: int, jitter: float, rng: random.Random | None = None
) -> float | None:
    """Delay before the next try after ``attempts`` failed ones; None when the schedule is spent.

    Jitter spreads the retries of many deliveries that failed together (an endpoint back up after an outage).
    """
    if attempts < 1 or attempts > len(schedule_s):
        return None
    base = schedule_s[attempts - 1]
    spread = (rng or random).uniform(-jitter, jitter) if jitter else 0.0
    return max(0.0, base * (1 + spread))

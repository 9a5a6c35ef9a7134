"""arXiv's announcement calendar, so "no new papers today" comes with its reason.

arXiv announces Sunday to Thursday at 20:00 US Eastern (the mailing that RSS shows dated the next
day, Monday to Friday); nothing on Friday or Saturday evenings, nor on listed holidays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

EASTERN = ZoneInfo("America/New_York")
ANNOUNCE_AT = time(20, 0)
ANNOUNCE_WEEKDAYS = frozenset({6, 0, 1, 2, 3})  # Sunday..Thursday (Monday is 0)


@dataclass(frozen=True)
class ScheduleStatus:
    new_papers: bool
    reason: str
    last_announcement: datetime
    next_announcement: datetime


def is_announcement_day(day: date, holidays: frozenset[date] = frozenset()) -> bool:
    return day.weekday() in ANNOUNCE_WEEKDAYS and day not in holidays


def _at(day: date) -> datetime:
    return datetime.combine(day, ANNOUNCE_AT, tzinfo=EASTERN)


def last_announcement(now: datetime, holidays: frozenset[date] = frozenset()) -> datetime:
    """The most recent announcement at or before ``now`` (aware datetime, any zone)."""
    local = now.astimezone(EASTERN)
    day = local.date()
    if local.time() < ANNOUNCE_AT:
        day -= timedelta(days=1)
    for _ in range(30):
        if is_announcement_day(day, holidays):
            return _at(day)
        day -= timedelta(days=1)
    raise ValueError("no announcement day in the last 30 days: check the holiday list")


def next_announcement(now: datetime, holidays: frozenset[date] = frozenset()) -> datetime:
    local = now.astimezone(EASTERN)
    day = local.date()
    if local.time() >= ANNOUNCE_AT:
        day += timedelta(days=1)
    for _ in range(30):
        if is_announcement_day(day, holidays):
            return _at(day)
        day += timedelta(days=1)
    raise ValueError("no announcement day in the next 30 days: check the holiday list")


def status(now: datetime, since: datetime | None = None, holidays: frozenset[date] = frozenset()) -> ScheduleStatus:
    """Whether an announcement happened after ``since`` (the last successful poll), and why not if not."""
    last = last_announcement(now, holidays)
    upcoming = next_announcement(now, holidays)
    if since is None or since < last:
        return ScheduleStatus(True, f"announcement of {last:%A %Y-%m-%d %H:%M %Z}", last, upcoming)
    local = now.astimezone(EASTERN)
    today = local.date()
    if today in holidays:
        why = f"{today:%A %Y-%m-%d} is an arXiv holiday"
    elif today.weekday() in (4, 5):
        why = f"arXiv does not announce on {today:%A}s"
    elif local.time() < ANNOUNCE_AT:
        why = f"today's announcement is at {ANNOUNCE_AT:%H:%M} US Eastern"
    else:
        why = "already fetched the latest announcement"
    return ScheduleStatus(
        False, f"no new papers: {why}; next announcement {upcoming:%A %Y-%m-%d %H:%M %Z}", last, upcoming
    )

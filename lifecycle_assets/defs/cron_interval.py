"""The shortest time between two ticks of a cron schedule (UTC): a freshness policy's bound.

Dagster refuses a freshness policy whose lower bound is longer than the gap between two of its
deadlines, and its own measure of that gap is private (`dagster._utils.schedules`), so this is
ours. It reads the five-field cron Dagster schedules take: numbers and names (`mon`, `jan`),
`*` and `?`, ranges, steps and lists, `L` (the month's last day), `5#2` (the month's second
Friday), and the `@hourly` ... `@yearly` macros. When both the day of the month and the day
of the week are restricted, a day matching either fires (as in cron).

The times of day a schedule fires are the same on every day it fires, so the shortest gap is
within one day or across the night between two firing days: the days are walked over 28 years,
every pattern of weekdays and leap years the calendar has this century.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import itertools

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# 28 years: the Gregorian calendar's weekdays and leap years repeat (from 1901 to 2099).
FIRST_YEAR, YEARS = 2001, 28
MINUTES_A_DAY = 24 * 60


class CronError(ValueError):
    """A cron string this module cannot read; the message names it and why."""


def _number(text: str, names: tuple[str, ...], first: int) -> int:
    lowered = text.lower()
    if lowered in names:
        return names.index(lowered) + first
    if not text.isdigit():
        raise CronError(f"{text!r} is not a number")
    return int(text)


def _values(field: str, low: int, high: int, names: tuple[str, ...] = ()) -> set[int]:
    """The numbers a field of plain values, ranges, steps and lists names, within [low, high]."""
    values: set[int] = set()
    for part in field.split(","):
        body, slash, step_text = part.partition("/")
        step = _number(step_text, (), 1) if slash else 1
        if body in ("*", "?"):
            start, end = low, high
        elif "-" in body:
            start, end = (_number(end, names, low) for end in body.split("-", 1))
        else:
            start = _number(body, names, low)
            end = high if slash else start
        if step < 1 or not low <= start <= end <= high:
            raise CronError(f"{part!r} is not within {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def _month_days(field: str) -> tuple[set[int], bool]:
    """The days of the month a field names, and whether it names the last one (`L`)."""
    parts = field.split(",")
    plain = [part for part in parts if part.upper() != "L"]
    return (_values(",".join(plain), 1, 31) if plain else set()), len(plain) < len(parts)


def _week_days(field: str) -> list[tuple[int, int]]:
    """(weekday, n) pairs, Sunday 0: n is 0 for every such day of the month, else the n-th
    one only (`5#2`)."""
    days: list[tuple[int, int]] = []
    for part in field.split(","):
        if "#" in part:
            day, nth = part.split("#", 1)
            days.append((_number(day, WEEKDAYS, 0) % 7, _number(nth, (), 1)))
        else:
            days += [(day % 7, 0) for day in _values(part, 0, 7, WEEKDAYS)]
    return days


def _firing_days(day_field: str, month_field: str, weekday_field: str) -> list[int]:
    """The days (numbered from FIRST_YEAR's first) on which the schedule fires."""
    months = sorted(_values(month_field, 1, 12, MONTHS))
    month_days, last_day = _month_days(day_field)
    week_days = _week_days(weekday_field)
    any_day, any_weekday = day_field in ("*", "?"), weekday_field in ("*", "?")

    def fires(day: int, weekday: int, length: int) -> bool:
        by_month = day in month_days or (last_day and day == length)
        by_week = any(weekday == wanted and n in (0, (day + 6) // 7) for wanted, n in week_days)
        if any_day or any_weekday:  # one of them unrestricted: the other decides
            return (any_day or by_month) and (any_weekday or by_week)
        return by_month or by_week

    found = []
    for year in range(FIRST_YEAR, FIRST_YEAR + YEARS):
        for month in months:
            monday_first, length = calendar.monthrange(year, month)  # weekday of the 1st
            start = (dt.date(year, month, 1) - dt.date(FIRST_YEAR, 1, 1)).days
            found += [
                start + day - 1
                for day in range(1, length + 1)
                if fires(day, (monday_first + day) % 7, length)
            ]
    return found


@functools.cache
def smallest_interval(cron: str) -> dt.timedelta:
    """The shortest time between two consecutive ticks of `cron` (UTC); CronError when it
    cannot be read or never fires."""
    fields = MACROS.get(cron.strip().lower(), cron).split()
    if len(fields) != 5:
        raise CronError(f"cron {cron!r}: five fields expected, found {len(fields)}")
    minute, hour, day, month, weekday = fields
    try:
        times = sorted(h * 60 + m for h in _values(hour, 0, 23) for m in _values(minute, 0, 59))
        days = _firing_days(day, month, weekday)
    except CronError as error:
        raise CronError(f"cron {cron!r}: {error}") from None
    if not days:
        raise CronError(f"cron {cron!r} never fires")
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    day_gaps = [later - earlier for earlier, later in itertools.pairwise(days)]
    if day_gaps:  # from the day's last tick to the next firing day's first
        gaps.append(min(day_gaps) * MINUTES_A_DAY - (times[-1] - times[0]))
    return dt.timedelta(minutes=min(gaps))

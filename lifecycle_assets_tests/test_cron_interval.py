"""The shortest gap between two ticks of a cron schedule bounds the monitoring assets' freshness
policy (`defs/automation.py`); Dagster's own measure is private, so ours is checked here against
gaps counted by hand (each agreed with Dagster 1.13's when this was written)."""

from __future__ import annotations

import datetime as dt

import pytest

from lifecycle_assets.defs.cron_interval import CronError, smallest_interval

HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)


@pytest.mark.parametrize(
    ("cron", "gap"),
    [
        ("0 2 * * *", DAY),  # the built-in specs' nightly monitoring
        ("0 * * * *", HOUR),
        ("@hourly", HOUR),
        ("0 2,3 * * *", HOUR),
        ("*/4 * * * *", dt.timedelta(minutes=4)),
        ("0 1,23 * * *", 2 * HOUR),  # across midnight: 23:00 to 01:00
        ("0 0,23 * * 1", 23 * HOUR),  # Mondays only: nothing across the night
        ("15,45 8-17/3 * * 1-5", dt.timedelta(minutes=30)),
        ("30 3 * * mon-fri", DAY),
        ("0 3 * * 1", 7 * DAY),
        ("0 4 * * 7", 7 * DAY),  # 7 is Sunday, as 0
        ("0 6 1 * *", 28 * DAY),  # February
        ("@monthly", 28 * DAY),
        ("0 0 L,15 * *", 13 * DAY),  # February's 15th to its 28th
        ("0 0 31 * *", 31 * DAY),  # only the months that have one
        ("0 0 */2 * *", DAY),  # the 31st, then the 1st
        ("0 0 13 * fri", DAY),  # the 13th or a Friday: either fires
        ("0 9 1-7 * 1", DAY),
        ("0 12 * * 5#2", 28 * DAY),  # the second Friday
        ("0 0 * * 5#5", 63 * DAY),  # a fifth Friday, in some months only
        ("0 0 29 2 *", 1461 * DAY),  # leap days
        ("@yearly", 365 * DAY),
    ],
)
def test_the_shortest_gap_between_two_ticks(cron: str, gap: dt.timedelta) -> None:
    assert smallest_interval(cron) == gap


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("61 * * * *", "'61' is not within 0-59"),
        ("0 0 30 2 *", "never fires"),
        ("* * *", "five fields expected, found 3"),
        ("0 0 * * xyz", "'xyz' is not a number"),
    ],
)
def test_a_cron_it_cannot_read_is_one_line_naming_it(cron: str, message: str) -> None:
    with pytest.raises(CronError) as raised:
        smallest_interval(cron)
    assert str(raised.value).startswith(f"cron {cron!r}") and message in str(raised.value)

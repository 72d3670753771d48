"""The time span an object key names, for ``--since`` / ``--until`` on bucket sources.

Log objects often carry their time in the key:

- Hive-style parts (IBM VPC flow logs, many exporters): ``…/year=2020/month=06/day=04/hour=13/…``
- AWS VPC flow logs and CloudTrail: ``…/2024/05/01/…_20240501T1205Z_…`` (the file's time
  stamp, written a few minutes after its events, and the date folders above it).

A key without one of these has no span; its object is selected by LastModified.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

#: Events of a stamped AWS file precede its stamp by at most this much (flow logs aggregate
#: for up to 10 minutes and are published every 5; CloudTrail delivers within about 15).
STAMP_LEAD = timedelta(minutes=15)

_HIVE = re.compile(
    r"(?:^|/)year=(\d{4})/month=(\d{1,2})(?:/day=(\d{1,2})(?:/hour=(\d{1,2}))?)?(?:/|$)"
)
_STAMP = re.compile(r"_(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})Z(?:_|\.|$)")
_DATE_DIRS = re.compile(r"(?:^|/)(\d{4})/(\d{2})/(\d{2})(?:/|$)")


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _span(start: datetime, length: timedelta) -> tuple[int, int]:
    return _ms(start), _ms(start + length)


def key_time_span(key: str) -> tuple[int, int] | None:
    """``(start_ms, end_ms)`` of the events a key's object holds, by its name; None if unknown.

    The span is half-open and generous: a key names an hour, a day, or a stamp with the
    minutes before it, and every event of the object falls inside.
    """
    try:
        stamp = _STAMP.search(key)
        if stamp:
            y, mo, d, h, mi = map(int, stamp.groups())
            at = datetime(y, mo, d, h, mi, tzinfo=UTC)
            return _span(at - STAMP_LEAD, STAMP_LEAD + timedelta(minutes=1))
        hive = _HIVE.search(key)
        if hive:
            year, month, day, hour = hive.groups()
            if day is None:
                start = datetime(int(year), int(month), 1, tzinfo=UTC)
                following = datetime(
                    int(year) + (month == "12"), int(month) % 12 + 1, 1, tzinfo=UTC
                )
                return _ms(start), _ms(following)
            start = datetime(int(year), int(month), int(day), int(hour or 0), tzinfo=UTC)
            return _span(start, timedelta(hours=1) if hour is not None else timedelta(days=1))
        dirs = _DATE_DIRS.search(key)
        if dirs:
            y, mo, d = map(int, dirs.groups())
            return _span(datetime(y, mo, d, tzinfo=UTC), timedelta(days=1))
    except ValueError:  # month=13 and the like: not a time after all
        return None
    return None


def in_time_range(key: str, last_modified_ms: int, since: int | None, until: int | None) -> bool:
    """Whether an object may hold events in ``[since, until)`` (epoch ms, None: open).

    An object written before ``since`` holds nothing newer, whatever its key says. Beyond
    that the key's span decides where there is one, else LastModified: events precede the
    moment their object was written, so a backfill with ``until`` set to the start of a live
    subscription takes exactly the objects written before it.
    """
    if since is not None and last_modified_ms < since:
        return False
    span = key_time_span(key)
    if span is None:
        return until is None or last_modified_ms < until
    start, end = span
    return (since is None or end > since) and (until is None or start < until)

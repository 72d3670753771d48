"""Event timestamps: parse what logs carry into UTC epoch milliseconds, and format them back.

Naive date-times are UTC, never local time (invariant 6). Many lines share a timestamp,
so parsed strings go through a small bounded cache.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

_CACHE_SIZE = 8192
_MISS = object()
_cache: dict[str, int | None] = {}
# RFC 3339 strings split into "YYYY-MM-DDTHH:MM:SS" (repeats for every line of a second)
# and the rest (".123Z": repeats across seconds): two small caches hit where one would miss.
_second_cache: dict[str, int] = {}
_suffix_cache: dict[str, int] = {}
_HEAD = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d")
_days_cache: dict[tuple[int, int, int], int] = {}
_iso_cache: dict[int, str] = {}

_ISO = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)(?:[Tt ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?)?"
    r"\s*(?:([Zz])|([+-])(\d\d):?(\d\d)?)?"
)
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d*)?")

# Magnitude thresholds for epoch numbers: below 1e11 seconds reach year 5138, while 1e11
# milliseconds is only 1973, so each unit owns a disjoint band of plausible dates.
_SECONDS_BELOW = 10**11
_MILLIS_BELOW = 10**14
_MICROS_BELOW = 10**17


def parse_timestamp(value: object) -> int | None:
    """Return ``value`` (ISO 8601 / RFC 3339 string or epoch s/ms/µs/ns) as UTC epoch ms."""
    if isinstance(value, str):
        if len(value) > 19:
            base = _second_cache.get(value[:19])
            if base is not None:
                offset = _suffix_cache.get(value[19:])
                if offset is not None:
                    return base + offset
        hit = _cache.get(value, _MISS)
        if hit is not _MISS:
            return hit  # type: ignore[return-value]
        result = _parse_string(value)
        if result is not None and len(value) > 19 and not value[19].isdigit():
            _learn_split(value, result)
        _remember(_cache, value, result)
        return result
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return _from_int(value)
    if isinstance(value, float):
        return _from_float(value)
    return None


def parse_timestamps(values: Iterable[object], default: int) -> list[int]:
    """:func:`parse_timestamp` of each value, ``default`` where it gives None.

    The cache lookups that answer nearly every RFC 3339 string run inline here, so a block
    of lines costs one Python call rather than one per line.
    """
    seconds, suffixes = _second_cache, _suffix_cache  # cleared in place, never replaced
    parse = parse_timestamp
    out: list[int] = []
    append = out.append
    for value in values:
        if type(value) is str and len(value) > 19:
            base = seconds.get(value[:19])
            if base is not None:
                offset = suffixes.get(value[19:])
                if offset is not None:
                    append(base + offset)
                    continue
        ms = parse(value)
        append(default if ms is None else ms)
    return out


def _remember(cache: dict[str, Any], key: str, value: object) -> None:
    if len(cache) >= _CACHE_SIZE:
        cache.clear()  # cheap bound; the hot set refills at once
    cache[key] = value


def _learn_split(value: str, result: int) -> None:
    """Teach the fast path the second and suffix of a parsed RFC 3339 string."""
    head = value[:19]
    if _HEAD.fullmatch(head):
        base = _parse_string(head)
        if base is not None:
            _remember(_second_cache, head, base)
            _remember(_suffix_cache, value[19:], result - base)


def _parse_string(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if _NUMBER.fullmatch(text):
        if "." in text:
            return _from_float(float(text))
        return _from_int(int(text))
    m = _ISO.fullmatch(text)
    if m is None:
        return _parse_fallback(text)
    year, month, day, hour, minute, second, frac, _zulu, sign, off_h, off_m = m.groups()
    try:
        days = _days(int(year), int(month), int(day))
    except ValueError:
        return None
    hour_i = int(hour) if hour else 0
    minute_i = int(minute) if minute else 0
    second_i = int(second) if second else 0
    if hour_i > 23 or minute_i > 59 or second_i > 60:
        return None
    ms = ((days * 24 + hour_i) * 60 + minute_i) * 60_000 + second_i * 1000
    if frac:
        ms += int(frac[:3].ljust(3, "0"))
    if sign:
        offset = (int(off_h) * 60 + (int(off_m) if off_m else 0)) * 60_000
        ms += -offset if sign == "+" else offset
    return ms


def _days(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a date (validated by ``datetime``)."""
    key = (year, month, day)
    days = _days_cache.get(key)
    if days is None:
        days = datetime(year, month, day).toordinal() - 719163  # ordinal of 1970-01-01
        if len(_days_cache) >= _CACHE_SIZE:
            _days_cache.clear()
        _days_cache[key] = days
    return days


def _parse_fallback(text: str) -> int | None:
    # Rarer ISO shapes (basic format "20210625T205621Z", week dates) via the stdlib.
    try:
        dt = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return math.floor(dt.timestamp() * 1000)


def _from_int(value: int) -> int:
    magnitude = abs(value)
    if magnitude < _SECONDS_BELOW:
        return value * 1000
    if magnitude < _MILLIS_BELOW:
        return value
    if magnitude < _MICROS_BELOW:
        return value // 1000
    return value // 1_000_000


def _from_float(value: float) -> int | None:
    if not math.isfinite(value):
        return None
    magnitude = abs(value)
    if magnitude < _SECONDS_BELOW:
        return math.floor(value * 1000 + 1e-6)  # 1.001 s must not round down to 1000 ms
    if magnitude < _MILLIS_BELOW:
        return math.floor(value)
    if magnitude < _MICROS_BELOW:
        return math.floor(value / 1000)
    return math.floor(value / 1_000_000)


def format_iso(ms: int) -> str:
    """Format UTC epoch ms as RFC 3339 with milliseconds, e.g. ``2021-06-25T20:56:21.123Z``."""
    seconds, millis = divmod(ms, 1000)
    base = _iso_cache.get(seconds)
    if base is None:
        base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        if len(_iso_cache) >= _CACHE_SIZE:
            _iso_cache.clear()
        _iso_cache[seconds] = base
    return f"{base}.{millis:03d}Z"
